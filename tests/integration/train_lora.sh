#!/usr/bin/env bash
# `anneal train --lora-rank`: adapters trained over a frozen tiny base; the loss falls, the
# checkpoint's adapter.gguf loads with `generate --lora` and changes the output, `lora merge`
# gives the perplexity of `perplexity --lora`, the base is never changed, resume is
# bit-identical, 2 MPI ranks follow one process, and bad flag combinations are usage errors.
source "$(dirname "$0")/common.bash"
export ANNEAL_LINEAGE_TIME=2026-11-29T12:00:00Z

# A byte vocabulary (as train_cli.sh builds it) keeps the base tiny.
u32() { printf "$(printf '\\x%02x\\x%02x\\x%02x\\x%02x' $(($1 & 255)) $((($1 >> 8) & 255)) $((($1 >> 16) & 255)) $((($1 >> 24) & 255)))"; }
u64() { u32 $(($1 & 0xffffffff)); u32 $((($1 >> 32) & 0xffffffff)); }
str() { u64 ${#1}; printf '%s' "$1"; }
VOCAB="$TMP/vocab.gguf"
{
    printf GGUF; u32 3; u64 0; u64 2
    str tokenizer.ggml.model; u32 8; str llama
    str tokenizer.ggml.tokens; u32 9; u32 8; u64 259
    str "<unk>"; str "<s>"; str "</s>"
    for i in $(seq 0 255); do str "$(printf '<0x%02X>' "$i")"; done
} >"$VOCAB"
head -c 20000 "$SHARED/corpora/tinyshakespeare.txt" >"$TMP/text.txt"

# The base: a few steps of full training from scratch.
expect 0 "$BIN" train --out "$TMP/base" --init dim=32,layers=2,heads=4,kv_heads=2,ffn=64,tied=1 \
    --vocab-from "$VOCAB" --data "$TMP/text.txt" --seq 16 --batch 2 --steps 4 --lr 3e-3 \
    --warmup 1 --val-every 0 --threads 2 --quiet
BASE="$TMP/base/ckpt-00000004/model.gguf"
BASE_SUM=$(sha256sum "$BASE" | cut -c1-64)

LORA=(--init-from "$BASE" --data "$TMP/text.txt" --seq 16 --batch 2 --accum 2 --lr 1e-2
      --warmup 1 --lora-rank 4 --lora-alpha 8 --lora-targets q,k,v,o,gate,up,down
      --threads 2 --quiet)

# ---- a straight run ---------------------------------------------------------------------
expect 0 "$BIN" train --out "$TMP/a" "${LORA[@]}" --steps 16 --val-every 8 --ckpt-every 8 --json
has "$TMP/out" '^\{"steps":16,"loss":[0-9.]+,"val_loss":[0-9.]+,"tokens_per_s":[0-9.]+,"checkpoint":".*ckpt-00000016/adapter.gguf"\}$'
[ "$(cat "$TMP/a/latest")" = "ckpt-00000016" ] || fail "latest is '$(cat "$TMP/a/latest")'"
for f in model.gguf optim.bin adapter.gguf adapter.bin; do
    [ -f "$TMP/a/ckpt-00000008/$f" ] || fail "ckpt-00000008/$f missing"
done
has "$TMP/a/metrics.jsonl" '^\{"step":8,"val_loss":[0-9.]+,"val_ppl":[0-9.]+\}$'
# The loss falls: the mean of the last four steps' against the first four's, and validation.
awk -F'"loss":' '/"loss"/ { split($2, v, ","); l[++n] = v[1] }
    END { for (i = 1; i <= 4; i++) { a += l[i]; b += l[n - 4 + i] } exit !(b < a) }' \
    "$TMP/a/metrics.jsonl" || fail "training loss did not drop: $(cat "$TMP/a/metrics.jsonl")"
v8=$(sed -n 's/^{"step":8,"val_loss":\([0-9.]*\).*/\1/p' "$TMP/a/metrics.jsonl")
v16=$(sed -n 's/^{"step":16,"val_loss":\([0-9.]*\).*/\1/p' "$TMP/a/metrics.jsonl")
awk -v a="$v8" -v b="$v16" 'BEGIN { exit !(b < a) }' || fail "validation loss $v8 -> $v16"

[ "$(sha256sum "$BASE" | cut -c1-64)" = "$BASE_SUM" ] || fail "the base file changed"

# The checkpoint's model.gguf is the frozen base: the same tensor data as the base file.
tensors() {
    local off
    off=$("$BIN" gguf show "$1" | sed -n 's/.*data section at \([0-9]*\),.*/\1/p')
    tail -c +$((off + 1)) "$1" | sha256sum | cut -c1-64
}
[ "$(tensors "$TMP/a/ckpt-00000016/model.gguf")" = "$(tensors "$BASE")" ] ||
    fail "the checkpoint's model.gguf is not the frozen base"

# The adapter: llama.cpp's layout, usable by generate, merge and perplexity.
AD="$TMP/a/ckpt-00000016/adapter.gguf"
expect 0 "$BIN" gguf show "$AD"
has "$TMP/out" 'adapter\.type +str += "?lora'
has "$TMP/out" 'blk\.1\.ffn_down\.weight\.lora_b'
expect 0 "$BIN" generate -m "$BASE" -p "ROMEO:" -n 24 --temp 0 -t 2
cp "$TMP/out" "$TMP/gen_base"
expect 0 "$BIN" generate -m "$BASE" --lora "$AD" -p "ROMEO:" -n 24 --temp 0 -t 2
cp "$TMP/out" "$TMP/gen_lora"
cmp -s "$TMP/gen_base" "$TMP/gen_lora" && fail "the adapter does not change the output"
expect 0 "$BIN" lora merge "$BASE" "$AD" "$TMP/merged.gguf"
expect 0 "$BIN" perplexity -m "$TMP/merged.gguf" -f "$TMP/text.txt" --ctx 32 --chunks 2 --json
sed 's/"seconds":[0-9.]*//' "$TMP/out" >"$TMP/ppl_merged"
expect 0 "$BIN" perplexity -m "$BASE" --lora "$AD" -f "$TMP/text.txt" --ctx 32 --chunks 2 --json
sed 's/"seconds":[0-9.]*//' "$TMP/out" >"$TMP/ppl_lora"
cmp -s "$TMP/ppl_merged" "$TMP/ppl_lora" || fail "merged perplexity differs from --lora"
expect 0 "$BIN" perplexity -m "$BASE" -f "$TMP/text.txt" --ctx 32 --chunks 2 --json
sed 's/"seconds":[0-9.]*//' "$TMP/out" >"$TMP/ppl_base"
pb=$(sed 's/.*"ppl":\([0-9.]*\).*/\1/' "$TMP/ppl_base")
pl=$(sed 's/.*"ppl":\([0-9.]*\).*/\1/' "$TMP/ppl_lora")
awk -v a="$pb" -v b="$pl" 'BEGIN { exit !(b < a) }' || fail "perplexity base $pb, with the adapter $pl"

# ---- resume is bit-identical ---------------------------------------------------------------
# A crash between step 8's files: latest still names step 4; the resumed run's adapter and
# its AdamW state equal the straight run's.
expect 3 "$BIN" train --out "$TMP/b" "${LORA[@]}" --steps 16 --val-every 8 --ckpt-every 8 --crash-at-ckpt 16
[ "$(cat "$TMP/b/latest")" = "ckpt-00000008" ] || fail "after the crash latest is '$(cat "$TMP/b/latest")'"
expect 0 "$BIN" train --out "$TMP/b" "${LORA[@]}" --steps 16 --val-every 8 --ckpt-every 8 --resume
cmp -s "$TMP/a/ckpt-00000016/adapter.bin" "$TMP/b/ckpt-00000016/adapter.bin" ||
    fail "resumed adapter state differs from the straight run's"
[ "$(tensors "$TMP/a/ckpt-00000016/adapter.gguf")" = "$(tensors "$TMP/b/ckpt-00000016/adapter.gguf")" ] ||
    fail "resumed adapter differs from the straight run's"
cmp -s <(grep '"loss"' "$TMP/a/metrics.jsonl" | cut -d, -f1-4) \
       <(grep '"loss"' "$TMP/b/metrics.jsonl" | cut -d, -f1-4) || fail "resumed metrics differ"
# A damaged adapter state is caught by the checkpoint's hashes.
printf 'X' | dd of="$TMP/b/ckpt-00000016/adapter.bin" bs=1 seek=100 conv=notrunc 2>/dev/null
expect 1 "$BIN" train --out "$TMP/b" "${LORA[@]}" --steps 20 --val-every 0 --resume
has "$TMP/err" 'adapter\.bin: its SHA-256 is not the one'
# Resuming a LoRA checkpoint without the flags, or with other ones, fails.
expect 1 "$BIN" train --out "$TMP/a" --init-from "$BASE" --data "$TMP/text.txt" --seq 16 \
    --batch 2 --steps 20 --resume --quiet
has "$TMP/err" 'frozen base of a LoRA run'
expect 1 "$BIN" train --out "$TMP/a" "${LORA[@]}" --lora-rank 2 --steps 20 --resume
has "$TMP/err" 'other LoRA settings'

# ---- data parallel: 2 MPI ranks follow the single-process run ------------------------------
if MPIRUN=$(command -v mpirun); then
    expect 0 "$BIN" train --out "$TMP/p1" "${LORA[@]}" --threads 1 --steps 4 --val-every 0 --ckpt-every 4
    # OpenMPI's own allocations at exit read as leaks under LeakSanitizer (train_mpi.sh).
    OMPI_MCA_btl_vader_single_copy_mechanism=none \
        ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 expect 0 timeout 120 "$MPIRUN" --allow-run-as-root --oversubscribe \
        -np 2 "$BIN" train --out "$TMP/p2" "${LORA[@]}" --threads 1 --steps 4 --val-every 0 --ckpt-every 4
    [ -f "$TMP/p2/ckpt-00000004/adapter.gguf" ] || fail "the 2-rank run wrote no adapter"
    paste <(grep -o '"loss":[0-9.]*' "$TMP/p1/metrics.jsonl") <(grep -o '"loss":[0-9.]*' "$TMP/p2/metrics.jsonl") |
        tr -d '"los:' | awk '{ n++; d = $1 - $2; if (d < 0) d = -d; if (d > 1e-4 * $1) bad = 1 }
                             END { exit !(n == 4 && !bad) }' ||
        fail "2-rank LoRA losses differ: $(paste "$TMP/p1/metrics.jsonl" "$TMP/p2/metrics.jsonl" | cut -c1-120)"
else
    fail "mpirun not found (scripts/setup.sh installs openmpi-bin)"
fi

# ---- usage errors ----------------------------------------------------------------------------
expect 2 "$BIN" train --out "$TMP/u" --init dim=32,layers=2,heads=4,ffn=64 --vocab-from "$VOCAB" \
    --data "$TMP/text.txt" --lora-rank 4
has "$TMP/err" 'LoRA needs a base model'
expect 2 "$BIN" train --out "$TMP/u" --resume --data "$TMP/text.txt" --lora-rank 4
has "$TMP/err" 'LoRA needs a base model'
expect 2 "$BIN" train --out "$TMP/u" --init-from "$BASE" --data "$TMP/text.txt" --lora-alpha 8
has "$TMP/err" 'need --lora-rank'
expect 2 "$BIN" train --out "$TMP/u" --init-from "$BASE" --data "$TMP/text.txt" --lora-rank 4 \
    --lora-targets q,x
has "$TMP/err" "LoRA target 'x'"
expect 2 "$BIN" train --out "$TMP/u" --init-from "$BASE" --data "$TMP/text.txt" --lora-rank 0
expect 0 "$BIN" train --help
has "$TMP/out" '--lora-rank R'

[ "$FAILS" -eq 0 ] || { echo "$FAILS failure(s)" >&2; exit 1; }
echo "train_lora: ok"
