#!/usr/bin/env bash
# `anneal generate`, `perplexity` and `bench` end to end on a tiny random model written by
# `anneal init`: determinism, stop strings, logprobs, JSON output and exit statuses.
source "$(dirname "$0")/common.bash"

VOCAB="$SHARED/fixtures/vocab/ggml-vocab-llama-spm.gguf"

M="$TMP/tiny.gguf"
expect 0 "$BIN" init --arch llama --dim 64 --layers 2 --heads 4 --kv-heads 2 --ffn 128 \
    --vocab-from "$VOCAB" --type q8_0 --seed 3 "$M"

# Greedy is deterministic; so is a fixed seed; different seeds differ.
expect 0 "$BIN" generate -m "$M" -p "Once upon a time" -n 12 --temp 0 -t 2
cp "$TMP/out" "$TMP/greedy1"
grep -q '^prompt: 5 tokens' "$TMP/err" || fail "generate: no prompt speed line: $(cat "$TMP/err")"
grep -q '^generation: 12 tokens' "$TMP/err" || fail "generate: no generation line: $(cat "$TMP/err")"
expect 0 "$BIN" generate -m "$M" -p "Once upon a time" -n 12 --temp 0 -t 1
cmp -s "$TMP/out" "$TMP/greedy1" || fail "greedy output differs between 2 threads and 1"
expect 0 "$BIN" generate -m "$M" -p "Once upon a time" -n 12 --seed 7 --temp 1.5 --top-k 0 --top-p 1 --min-p 0
cp "$TMP/out" "$TMP/seed7"
expect 0 "$BIN" generate -m "$M" -p "Once upon a time" -n 12 --seed 7 --temp 1.5 --top-k 0 --top-p 1 --min-p 0
cmp -s "$TMP/out" "$TMP/seed7" || fail "seed 7 gave two different outputs"
expect 0 "$BIN" generate -m "$M" -p "Once upon a time" -n 12 --seed 8 --temp 1.5 --top-k 0 --top-p 1 --min-p 0
cmp -s "$TMP/out" "$TMP/seed7" && fail "seeds 7 and 8 gave the same output"

# A stop string taken from the middle of the greedy text cuts the output right before it.
text=$(head -c -1 "$TMP/greedy1")
stop=${text:10:4}
prefix=${text%%"$stop"*}
expect 0 "$BIN" generate -m "$M" -p "Once upon a time" -n 12 --temp 0 --stop "$stop"
[ "$(head -c -1 "$TMP/out")" = "$prefix" ] || fail "stop '$stop': got '$(cat "$TMP/out")', want '$prefix'"

# --logprobs N: one line per generated token with N alternatives.
expect 0 "$BIN" generate -m "$M" -p "Hello" -n 5 --temp 0 --logprobs 3
n=$(grep -c ' | ' "$TMP/err")
[ "$n" -eq 5 ] || fail "--logprobs 3 printed $n token lines, expected 5"

# Perplexity of a random model is near the vocabulary size (uniform guessing: 32000).
head -c 12000 "$SHARED/corpora/tinyshakespeare.txt" >"$TMP/text.txt"
expect 0 "$BIN" perplexity -m "$M" -f "$TMP/text.txt" --ctx 64 --chunks 4 --json
ppl=$(sed -n 's/.*"ppl":\([0-9.]*\).*/\1/p' "$TMP/out")
awk -v p="$ppl" 'BEGIN { exit !(p > 10000 && p < 100000) }' || fail "perplexity $ppl is not near 32000"
grep -q '"chunks":4,' "$TMP/out" || fail "perplexity: --chunks 4 not honoured: $(cat "$TMP/out")"
grep -q '"scored_tokens":124,' "$TMP/out" || fail "perplexity: expected 4 x 31 scored tokens: $(cat "$TMP/out")"
expect 0 "$BIN" perplexity -m "$M" -f "$TMP/text.txt" --ctx 64 --chunks 2
grep -q '^\[1\][0-9.]*,\[2\][0-9.]*,$' "$TMP/out" || fail "perplexity: no running figures: $(cat "$TMP/out")"
grep -q '^Final estimate: PPL = ' "$TMP/out" || fail "perplexity: no final estimate"
printf 'too short' >"$TMP/short.txt"
expect 1 "$BIN" perplexity -m "$M" -f "$TMP/short.txt"
grep -q 'needs at least 1024' "$TMP/err" || fail "perplexity: short text message: $(cat "$TMP/err")"

# Bench: the JSON has both tests with positive figures.
expect 0 "$BIN" bench -m "$M" -p 16 -n 4 -r 2 --json
grep -q '"prefill":{"tokens":16,"median":[1-9]' "$TMP/out" || fail "bench: prefill: $(cat "$TMP/out")"
grep -q '"decode":{"tokens":4,"median":[1-9]' "$TMP/out" || fail "bench: decode: $(cat "$TMP/out")"

# Errors: usage errors exit 2, failures exit 1 with the file named.
expect 2 "$BIN" generate -p hi
expect 2 "$BIN" generate -m "$M" -p hi --temp -1
grep -q 'temperature' "$TMP/err" || fail "generate --temp -1: message does not name the field"
expect 2 "$BIN" generate -m "$M" -p hi --bogus
expect 1 "$BIN" generate -m "$TMP/missing.gguf" -p hi
grep -q 'missing.gguf' "$TMP/err" || fail "generate: missing model not named"
expect 1 "$BIN" generate -m "$M" -p hi -n 100 -c 50
expect 1 "$BIN" generate -m "$VOCAB" -p hi
expect 2 "$BIN" bench -m "$M" -p 0 -n 0
expect 2 "$BIN" perplexity -m "$M"
for c in generate perplexity bench; do expect 0 "$BIN" "$c" --help; done

[ "$FAILS" -eq 0 ] || { echo "$FAILS failure(s)" >&2; exit 1; }
echo "engine cli: all checks passed"
