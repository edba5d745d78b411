#!/usr/bin/env bash
# Reproduces models/default.gguf, the bundled model, with anneal alone: a SentencePiece-style
# BPE vocabulary and a small llama model trained on the first 90% of tinyshakespeare, the
# last 10% held out. The model card is models/README.md.
#
#   models/recipe.sh [BUILD_DIR] [WORK_DIR]      (defaults: build, build/default-model)
#
# Needs ../shared/corpora/tinyshakespeare.txt (or CORPUS=path) and about 30 minutes of two
# cores. Training is deterministic for a given seed and thread count, so the same build
# reproduces the same bytes (apart from the lineage time).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
WORK=${2:-$BUILD/default-model}
A="$BUILD/anneal"
CORPUS=${CORPUS:-../shared/corpora/tinyshakespeare.txt}
THREADS=2
[ -x "$A" ] || { echo "recipe: no $A (run make build first)" >&2; exit 1; }
[ -r "$CORPUS" ] || { echo "recipe: cannot read $CORPUS (set CORPUS=path)" >&2; exit 1; }
rm -rf "$WORK"
mkdir -p "$WORK"

# 1. The split: the first 90% of the bytes train, the last 10% validate.
n=$(wc -c <"$CORPUS")
cut=$((n * 9 / 10))
head -c "$cut" "$CORPUS" >"$WORK/train.txt"
tail -c +"$((cut + 1))" "$CORPUS" >"$WORK/val.txt"

# 2. The vocabulary, learned from the training part only.
"$A" tokenizer train --vocab-size 2048 --type spm-bpe "$WORK/train.txt" -o "$WORK/vocab.gguf"

# 3. Token shards of each part (one document each, so the split stays by position).
"$A" data shard "$WORK/train.txt" --tokenizer "$WORK/vocab.gguf" --val-fraction 0 -o "$WORK/train" -q
"$A" data shard "$WORK/val.txt" --tokenizer "$WORK/vocab.gguf" --val-fraction 1 -o "$WORK/val" -q

# 4. Training: dim 256, 4 layers, 4 heads, FFN 688, context 256; AdamW, warmup then cosine.
"$A" train --out "$WORK/run" --init dim=256,layers=4,heads=4,ffn=688,ctx=256 \
    --vocab-from "$WORK/vocab.gguf" \
    --shards "$WORK/train/shards/train-00000.bin" --val-shards "$WORK/val/shards/val-00000.bin" \
    --steps 1500 --seq 256 --batch 8 --lr 1e-3 --warmup 100 --seed 1 \
    --val-every 100 --val-batches 16 --ckpt-every 100 --keep 20 --threads "$THREADS"

# 5. The checkpoint with the lowest validation loss, in F16 (half the size, same quality).
best=$(grep '"val_loss"' "$WORK/run/metrics.jsonl" | sort -t: -k3 -g | head -1 |
    sed 's/.*"step":\([0-9]*\).*/\1/')
ckpt=$(printf '%s/run/ckpt-%08d/model.gguf' "$WORK" "$best")
echo "recipe: best validation loss at step $best ($ckpt)"
"$A" quantize "$ckpt" models/default.gguf f16

# 6. The figures for the model card: bits per byte on the held-out 10%.
"$A" perplexity -m models/default.gguf -f "$WORK/val.txt" --ctx 256 -t "$THREADS"
ls -l models/default.gguf
