#!/usr/bin/env bash
# `anneal distill` end to end on tiny models: a briefly trained teacher distilled into a
# smaller new student (--init) and into a given one (--student), the checkpoint loading in
# the engine (generate, perplexity) with the teacher in its lineage, --resume, a quantized
# teacher, vocabulary mismatches (size and token strings), and usage errors.
source "$(dirname "$0")/common.bash"
export ANNEAL_LINEAGE_TIME=2026-11-29T12:00:00Z

# Byte vocabularies (<unk>, <s>, </s> and the 256 byte-fallback tokens) keep the models
# tiny: $1 = output, $2 = extra tokens appended, $3 = the name of token 3 (normally <0x00>).
u32() { printf "$(printf '\\x%02x\\x%02x\\x%02x\\x%02x' $(($1 & 255)) $((($1 >> 8) & 255)) $((($1 >> 16) & 255)) $((($1 >> 24) & 255)))"; }
u64() { u32 $(($1 & 0xffffffff)); u32 $((($1 >> 32) & 0xffffffff)); }
str() { u64 ${#1}; printf '%s' "$1"; }
make_vocab() {
    local extra=$2 first=$3 i
    {
        printf GGUF; u32 3; u64 0; u64 2
        str tokenizer.ggml.model; u32 8; str llama
        str tokenizer.ggml.tokens; u32 9; u32 8; u64 $((259 + extra))
        str "<unk>"; str "<s>"; str "</s>"; str "$first"
        for i in $(seq 1 255); do str "$(printf '<0x%02X>' "$i")"; done
        for i in $(seq 1 "$extra"); do str "extra$i"; done
    } >"$1"
}
VOCAB="$TMP/vocab.gguf"
make_vocab "$VOCAB" 0 "<0x00>"
make_vocab "$TMP/vocab260.gguf" 1 "<0x00>"
make_vocab "$TMP/vocabx.gguf" 0 "<zero>"
head -c 20000 "$SHARED/corpora/tinyshakespeare.txt" >"$TMP/text.txt"

DATA=(--data "$TMP/text.txt" --seq 16 --batch 2 --lr 3e-3 --warmup 2 --threads 1 --quiet)
SMALL=dim=16,layers=1,heads=2,ffn=32

# ---- the teacher: dim 32, 2 layers, 20 steps of plain training ------------------------
expect 0 "$BIN" train --out "$TMP/t" --init dim=32,layers=2,heads=4,ffn=64 --vocab-from "$VOCAB" \
    "${DATA[@]}" --steps 20 --val-every 0 --ckpt-every 20
T="$TMP/t/ckpt-00000020/model.gguf"
[ -f "$T" ] || fail "no teacher checkpoint"

# ---- a new student, vocabulary from the teacher ----------------------------------------
expect 0 "$BIN" distill --teacher "$T" --out "$TMP/d" --init "$SMALL" "${DATA[@]}" --steps 6 \
    --val-every 3 --ckpt-every 3 --temperature 2 --alpha 0.7 --json
has "$TMP/out" '^\{"steps":6,"loss":[0-9.]+,"val_loss":[0-9.]+,"tokens_per_s":[0-9.]+,"checkpoint":".*ckpt-00000006/model.gguf"\}$'
CK="$TMP/d/ckpt-00000006/model.gguf"
expect 0 "$BIN" generate -m "$CK" -p "ROMEO:" -n 4 --seed 1 -t 1
expect 0 "$BIN" perplexity -m "$CK" -f "$TMP/text.txt" --ctx 32 --chunks 2 -t 1
grep -aq "teacher $T" "$CK" || fail "the checkpoint's lineage does not name the teacher"
grep -aq '"temperature":2' "$CK" || fail "the checkpoint's config lacks the temperature"
grep -aq 'anneal distill --teacher' "$CK" || fail "the lineage command is not the distill one"
has "$TMP/d/metrics.jsonl" '"val_loss"'

# --resume continues the distillation to step 8.
expect 0 "$BIN" distill --teacher "$T" --out "$TMP/d" --resume --init "$SMALL" "${DATA[@]}" \
    --steps 8 --val-every 0 --ckpt-every 4 --temperature 2 --alpha 0.7
[ "$(cat "$TMP/d/latest")" = "ckpt-00000008" ] || fail "resume: latest is '$(cat "$TMP/d/latest")'"

# ---- a given student, reverse KL, and alpha = 0 (plain training) ------------------------
expect 0 "$BIN" distill --teacher "$T" --student "$TMP/d/init.gguf" --out "$TMP/s" "${DATA[@]}" \
    --steps 3 --val-every 0 --reverse-kl --temperature 0.5 --alpha 1
expect 0 "$BIN" distill --teacher "$T" --student "$TMP/d/init.gguf" --out "$TMP/a0" "${DATA[@]}" \
    --steps 3 --val-every 0 --alpha 0 --json
expect 0 "$BIN" train --init-from "$TMP/d/init.gguf" --out "$TMP/p" "${DATA[@]}" --steps 3 \
    --val-every 0 --json
L0=$(sed 's/.*"loss":\([0-9.]*\).*/\1/' "$TMP/out")
expect 0 "$BIN" distill --teacher "$T" --student "$TMP/d/init.gguf" --out "$TMP/a0b" "${DATA[@]}" \
    --steps 3 --val-every 0 --alpha 0 --json
L1=$(sed 's/.*"loss":\([0-9.]*\).*/\1/' "$TMP/out")
[ -n "$L0" ] && [ "$L0" = "$L1" ] || fail "alpha 0 loss $L1 differs from plain training's $L0"

# ---- data parallel: 2 MPI ranks (each runs the teacher on its share of the batch) give
# the single process's loss ---------------------------------------------------------------
MPIRUN=$(command -v mpirun) || fail "mpirun not found (scripts/setup.sh installs openmpi-bin)"
if [ -n "$MPIRUN" ]; then
    export OMPI_MCA_btl_vader_single_copy_mechanism=none
    ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 expect 0 timeout 120 "$MPIRUN" \
        --allow-run-as-root --oversubscribe -np 2 "$BIN" distill --teacher "$T" \
        --student "$TMP/d/init.gguf" --out "$TMP/m2" "${DATA[@]}" --steps 3 --val-every 0 --json
    LM=$(sed 's/.*"loss":\([0-9.]*\).*/\1/' "$TMP/out")
    expect 0 "$BIN" distill --teacher "$T" --student "$TMP/d/init.gguf" --out "$TMP/m1" \
        "${DATA[@]}" --steps 3 --val-every 0 --json
    LS=$(sed 's/.*"loss":\([0-9.]*\).*/\1/' "$TMP/out")
    awk -v a="$LM" -v b="$LS" 'BEGIN { d = a - b; exit !(a != "" && d < 1e-5 && d > -1e-5) }' ||
        fail "2 ranks' loss $LM differs from one process's $LS"
fi

# ---- a quantized teacher --------------------------------------------------------------
expect 0 "$BIN" quantize "$T" "$TMP/tq.gguf" q8_0
expect 0 "$BIN" distill --teacher "$TMP/tq.gguf" --out "$TMP/q" --init "$SMALL" "${DATA[@]}" \
    --steps 3 --val-every 0

# ---- vocabulary mismatches ------------------------------------------------------------
expect 0 "$BIN" init --arch llama --dim 16 --layers 1 --heads 2 --ffn 32 \
    --vocab-from "$TMP/vocab260.gguf" "$TMP/t260.gguf"
expect 1 "$BIN" distill --teacher "$TMP/t260.gguf" --out "$TMP/v" --init "$SMALL" \
    --vocab-from "$VOCAB" "${DATA[@]}" --steps 2
has "$TMP/err" '^anneal distill: teacher .*t260.gguf has 260 tokens in its vocabulary and the student 259: distillation needs one shared vocabulary'
expect 0 "$BIN" init --arch llama --dim 16 --layers 1 --heads 2 --ffn 32 \
    --vocab-from "$TMP/vocabx.gguf" "$TMP/tx.gguf"
expect 1 "$BIN" distill --teacher "$TMP/tx.gguf" --out "$TMP/v" --init "$SMALL" \
    --vocab-from "$VOCAB" "${DATA[@]}" --steps 2
has "$TMP/err" 'differ at token 3 \(tokenizer.ggml.tokens\)'
expect 1 "$BIN" distill --teacher "$TMP/missing.gguf" --out "$TMP/v" --init "$SMALL" \
    "${DATA[@]}" --steps 2 --vocab-from "$VOCAB"
has "$TMP/err" 'missing.gguf'

# ---- usage errors ----------------------------------------------------------------------
expect 2 "$BIN" distill --out "$TMP/u" --init "$SMALL" "${DATA[@]}"
has "$TMP/err" '--teacher MODEL.gguf is required'
expect 2 "$BIN" distill --teacher "$T" --out "$TMP/u" "${DATA[@]}"
has "$TMP/err" 'give the student'
expect 2 "$BIN" distill --teacher "$T" --out "$TMP/u" --init "$SMALL" "${DATA[@]}" --alpha 1.5
has "$TMP/err" "--alpha '1.5' must be a number in \[0, 1\]"
expect 2 "$BIN" distill --teacher "$T" --out "$TMP/u" --init "$SMALL" "${DATA[@]}" --temperature 0
has "$TMP/err" "--temperature '0' must be a number > 0"
expect 2 "$BIN" distill --teacher "$T" --out "$TMP/u" --init "$SMALL" "${DATA[@]}" --temperature x
expect 2 "$BIN" distill --teacher "$T" --out "$TMP/u" --init "$SMALL" "${DATA[@]}" --teacher
has "$TMP/err" '--teacher needs a value'
expect 2 "$BIN" distill --teacher "$T" --out "$TMP/u" --init "$SMALL" "${DATA[@]}" --bogus 1
has "$TMP/err" "unknown option 'bogus'"
expect 0 "$BIN" distill --help
has "$TMP/out" 'alpha \* T\^2 \* KL'
[ ! -e "$TMP/u" ] || fail "a usage error created the output directory"

[ "$FAILS" -eq 0 ] || { echo "$FAILS failure(s)" >&2; exit 1; }
echo "distill_cli: ok"
