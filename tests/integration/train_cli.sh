#!/usr/bin/env bash
# `anneal train` end to end on a tiny model: from scratch (--init) on a text file, metrics,
# validation, the loss curve, the engine loading the checkpoint (generate, perplexity),
# --resume bit-identical to an uninterrupted run, a crash between the checkpoint's files,
# kill -9 at random moments (checkpointing every step) then resume to the same bytes, a
# damaged latest checkpoint, --init-from, a config file, and usage errors.
source "$(dirname "$0")/common.bash"
export ANNEAL_LINEAGE_TIME=2026-11-29T12:00:00Z

# A byte vocabulary (<unk>, <s>, </s> and the 256 byte tokens of SentencePiece's byte
# fallback) keeps the model tiny, so the runs stay fast under the sanitizers.
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

# make_shard TEXT OUT NBYTES VOCAB: a token shard (docs/formats.md) of the text's first bytes
# as byte-fallback ids (byte + 3), a document per 300 tokens, each followed by EOS (id 2);
# u16 tokens. The header's CRC-32 is the one gzip puts in its trailer.
make_shard() {
    local text=$1 out=$2 n=$3 vocab=$4 d bytes
    d=$(mktemp -d "$TMP/shard.XXXXXX")
    head -c "$n" "$text" | od -An -v -tu1 -w1 | awk '
        { id = $1 + 3; printf "%c%c", id % 256, int(id / 256); k++
          if (k % 300 == 0) printf "%c%c", 2, 0 }
        END { if (k % 300 != 0) printf "%c%c", 2, 0 }' >"$d/payload"
    bytes=$(wc -c <"$d/payload")
    {
        printf ANNSHARD; u32 1; u32 2; u32 "$vocab"; u32 2; u64 $((bytes / 2)); u64 $(((n + 299) / 300))
        printf "$(sha256sum "$d/payload" | cut -c1-64 | sed 's/../\\x&/g')"
        head -c 52 /dev/zero
    } >"$d/head"
    { cat "$d/head"; gzip -c <"$d/head" | tail -c 8 | head -c 4; cat "$d/payload"; } >"$out"
}
COMMON=(--init dim=32,layers=2,heads=4,kv_heads=2,ffn=64,tied=1 --vocab-from "$VOCAB"
        --data "$TMP/text.txt" --seq 16 --batch 2 --accum 2 --lr 3e-3 --warmup 2
        --threads 1 --quiet)

# data_sum DIR STEP: SHA-256 of the checkpoint's tensor data and of its Adam moments (the
# headers differ by the recorded command, which names the output directory).
data_sum() {
    local m="$1/ckpt-$(printf %08d "$2")/model.gguf" o="$1/ckpt-$(printf %08d "$2")/optim.bin"
    local off
    off=$("$BIN" gguf show "$m" | sed -n 's/.*data section at \([0-9]*\),.*/\1/p')
    [ -n "$off" ] || { echo "no-data-section"; return; }
    { tail -c +$((off + 1)) "$m" | sha256sum; tail -c +129 "$o" | head -c -32 | sha256sum; } | tr -d ' \n-'
}

# ---- a straight run ---------------------------------------------------------------------
expect 0 "$BIN" train --out "$TMP/a" "${COMMON[@]}" --threads 2 --steps 8 --val-every 4 --ckpt-every 4 --json
has "$TMP/out" '^\{"steps":8,"loss":[0-9.]+,"val_loss":[0-9.]+,"tokens_per_s":[0-9.]+,"checkpoint":".*ckpt-00000008/model.gguf"\}$'
[ "$(cat "$TMP/a/latest")" = "ckpt-00000008" ] || fail "latest is '$(cat "$TMP/a/latest")'"
[ -f "$TMP/a/ckpt-00000004/optim.bin" ] || fail "ckpt-00000004 missing"
[ "$(grep -c '"loss"' "$TMP/a/metrics.jsonl")" = 8 ] || fail "metrics: $(cat "$TMP/a/metrics.jsonl")"
has "$TMP/a/metrics.jsonl" '^\{"step":4,"val_loss":[0-9.]+,"val_ppl":[0-9.]+\}$'
has "$TMP/a/metrics.jsonl" '^\{"step":1,"loss":[0-9.]+,"lr":1\.500000e-03,"grad_norm":[0-9.]+,"tokens":64,'
has "$TMP/a/loss.svg" '^<svg xmlns="http://www.w3.org/2000/svg"'
has "$TMP/a/loss.svg" '<polyline'
has "$TMP/a/loss.svg" '<circle'
# Loss goes down on the same text over 8 steps.
first=$(sed -n '1s/.*"loss":\([0-9.]*\).*/\1/p' "$TMP/a/metrics.jsonl")
last=$(grep '"step":8,"loss"' "$TMP/a/metrics.jsonl" | sed 's/.*"loss":\([0-9.]*\).*/\1/')
awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a) }' || fail "loss $first -> $last did not drop"

# The engine loads the checkpoint unchanged.
CK="$TMP/a/ckpt-00000008/model.gguf"
expect 0 "$BIN" gguf verify "$CK"
expect 0 "$BIN" gguf show "$CK"
has "$TMP/out" 'anneal\.train\.step +u64 += 8'
has "$TMP/out" 'anneal\.lineage\.command'
has "$TMP/out" 'general\.file_type +u32 += 0'
expect 0 "$BIN" generate -m "$CK" -p "ROMEO:" -n 4 --seed 1 -t 2
expect 0 "$BIN" perplexity -m "$CK" -f "$TMP/text.txt" --ctx 32 --chunks 2 -t 2
has "$TMP/out" 'PPL = [0-9.]+'

# ---- resume is bit-identical ---------------------------------------------------------------
# A crash right after the model file of step 8 (before optim.bin): latest still names step 4.
expect 3 "$BIN" train --out "$TMP/b" "${COMMON[@]}" --threads 2 --steps 8 --val-every 4 --ckpt-every 4 --crash-at-ckpt 8
[ "$(cat "$TMP/b/latest")" = "ckpt-00000004" ] || fail "after the crash latest is '$(cat "$TMP/b/latest")'"
expect 0 "$BIN" train --out "$TMP/b" "${COMMON[@]}" --threads 2 --steps 8 --val-every 4 --ckpt-every 4 --resume
[ "$(data_sum "$TMP/a" 8)" = "$(data_sum "$TMP/b" 8)" ] || fail "resumed run differs from the straight one"
cmp -s <(grep '"loss"' "$TMP/a/metrics.jsonl" | cut -d, -f1-4) \
       <(grep '"loss"' "$TMP/b/metrics.jsonl" | cut -d, -f1-4) || fail "resumed metrics differ"
[ "$(grep -c '"step":5,"loss"' "$TMP/b/metrics.jsonl")" = 1 ] || fail "metrics after resume repeat steps"

# ---- kill -9 during training and checkpoint writing, many times ------------------------------
KS=120
expect 0 "$BIN" train --out "$TMP/k0" "${COMMON[@]}" --steps $KS --val-every 0 --ckpt-every 1
# Killed after 0.05 to 0.2 s, again and again, until a run gets to finish on its own (at
# most 40 runs; the last resume below finishes the job in any case).
kills=0
for i in $(seq 1 40); do
    "$BIN" train --out "$TMP/k" "${COMMON[@]}" --steps $KS --val-every 0 --ckpt-every 1 --resume \
        >/dev/null 2>&1 &
    pid=$!
    sleep "$(printf '0.%02d' $(( i % 4 * 5 + 5 )))"
    if kill -9 "$pid" 2>/dev/null; then
        kills=$((kills + 1))
        wait "$pid" 2>/dev/null
    else
        wait "$pid" 2>/dev/null
        break
    fi
done
[ "$kills" -ge 3 ] || fail "only $kills runs were killed before one finished"
echo "kill -9: $kills runs killed mid-training"
expect 0 "$BIN" train --out "$TMP/k" "${COMMON[@]}" --steps $KS --val-every 0 --ckpt-every 1 --resume
[ "$(data_sum "$TMP/k0" $KS)" = "$(data_sum "$TMP/k" $KS)" ] || fail "after $kills kills the result differs"
expect 0 "$BIN" train --out "$TMP/k" "${COMMON[@]}" --steps $KS --val-every 0 --ckpt-every 1 --resume
has "$TMP/out" "^already at step $KS: nothing to do"
ls "$TMP/k" | grep -q '\.tmp\.' && fail "temporary files left in the output directory"

# ---- a damaged latest checkpoint: resume falls back to the previous one ---------------------
expect 0 "$BIN" train --out "$TMP/d" "${COMMON[@]}" --steps 4 --val-every 0 --ckpt-every 2 --keep 2
printf 'X' | dd of="$TMP/d/ckpt-00000004/optim.bin" bs=1 seek=500 conv=notrunc 2>/dev/null
expect 0 "$BIN" train --out "$TMP/d" "${COMMON[@]}" --steps 6 --val-every 0 --ckpt-every 2 --keep 2 --resume
has "$TMP/err" 'ckpt-00000004.*(missing or damaged|checksum)'
[ "$(cat "$TMP/d/latest")" = "ckpt-00000006" ] || fail "latest after fallback: $(cat "$TMP/d/latest")"
[ "$(grep -c '"step":3,"loss"' "$TMP/d/metrics.jsonl")" = 1 ] || fail "metrics after fallback"
# keep 2: only the two newest remain.
[ "$(ls -d "$TMP/d"/ckpt-* | wc -l)" = 2 ] || fail "keep 2 left: $(ls "$TMP/d")"

# ---- --init-from a checkpoint, and a config file --------------------------------------------
cat >"$TMP/cfg.json" <<EOF
{"init-from": "$CK", "data": ["$TMP/text.txt"], "seq": 16, "batch": 2, "steps": 3,
 "lr": 1e-3, "val-every": 0, "ckpt-every": 0, "threads": 2, "quiet": true}
EOF
expect 0 "$BIN" train --out "$TMP/c" --config "$TMP/cfg.json" --steps 2
has "$TMP/out" '^trained to step 2: loss [0-9.]+, [0-9]+ tokens/s; checkpoint .*ckpt-00000002/model\.gguf$'
expect 0 "$BIN" gguf show "$TMP/c/ckpt-00000002/model.gguf"
has "$TMP/out" 'base .*model\.gguf'

# ---- token shards: a file, a directory of shards, a vocabulary too large -------------------
mkdir -p "$TMP/shards"
make_shard "$TMP/text.txt" "$TMP/shards/train-00000.bin" 3000 259
tail -c 5000 "$TMP/text.txt" >"$TMP/text2.txt"
make_shard "$TMP/text2.txt" "$TMP/shards/train-00001.bin" 3000 259
expect 0 "$BIN" train --out "$TMP/s1" --init-from "$CK" --shards "$TMP/shards/train-00000.bin" \
    --seq 16 --batch 2 --steps 2 --val-every 2 --threads 1
has "$TMP/err" '^data: 3010 tokens \(2709 train, 301 validation\)$'
has "$TMP/out" '^trained to step 2: loss [0-9.]+, validation loss [0-9.]+'
expect 0 "$BIN" train --out "$TMP/s2" --init-from "$CK" --shards "$TMP/shards" \
    --seq 16 --batch 2 --steps 2 --val-every 0 --threads 1
has "$TMP/err" '^data: 6020 tokens'
# A dataset's shard directory: val-* shards are the validation set.
cp "$TMP/shards/train-00001.bin" "$TMP/shards/val-00000.bin"
expect 0 "$BIN" train --out "$TMP/s4" --init-from "$CK" --shards "$TMP/shards" \
    --seq 16 --batch 2 --steps 2 --val-every 2 --threads 1
has "$TMP/err" '^data: 9030 tokens \(6020 train, 3010 validation\)$'
expect 0 "$BIN" train --out "$TMP/s5" --init-from "$CK" --shards "$TMP/shards/train-00000.bin" \
    --val-shards "$TMP/shards/val-00000.bin" --seq 16 --batch 2 --steps 2 --val-every 2 --threads 1
has "$TMP/err" '^data: 6020 tokens \(3010 train, 3010 validation\)$'
make_shard "$TMP/text.txt" "$TMP/big.bin" 1000 300
expect 1 "$BIN" train --out "$TMP/s3" --init-from "$CK" --shards "$TMP/big.bin" --steps 1
has "$TMP/err" 'shard vocabulary of 300 tokens exceeds the model.s 259'

# ---- usage errors and failures ---------------------------------------------------------------
expect 2 "$BIN" train --out "$TMP/u" --data "$TMP/text.txt"
has "$TMP/err" 'one of --init, --init-from or --resume is required'
expect 2 "$BIN" train --out "$TMP/u" --init-from "$CK"
has "$TMP/err" 'no training data'
expect 2 "$BIN" train --out "$TMP/u" --init-from "$CK" --data "$TMP/text.txt" --lr nope
has "$TMP/err" "--lr 'nope' must be a number"
expect 2 "$BIN" train --out "$TMP/u" --init dim=32 --vocab-from "$VOCAB" --data "$TMP/text.txt"
has "$TMP/err" '--init needs dim=, layers=, heads= and ffn='
expect 1 "$BIN" train --out "$TMP/u" --resume --data "$TMP/text.txt"
has "$TMP/err" 'no valid checkpoint to resume from'
expect 1 "$BIN" train --out "$TMP/u" --init-from "$TMP/nope.gguf" --data "$TMP/text.txt"
expect 0 "$BIN" train --help
has "$TMP/out" '^usage: anneal train'

# A core type below the CPU, forced by the user, is reported.
if grep -q avx2 /proc/cpuinfo; then
    OPENBLAS_CORETYPE=Prescott expect 0 "$BIN" train --out "$TMP/p" --init-from "$CK" \
        --data "$TMP/text.txt" --seq 16 --batch 1 --steps 1 --val-every 0 --threads 1
    has "$TMP/err" 'OpenBLAS runs its Prescott kernels on a CPU that supports'
fi

[ "$FAILS" -eq 0 ] || { echo "$FAILS failure(s)" >&2; exit 1; }
echo "train_cli: ok"
