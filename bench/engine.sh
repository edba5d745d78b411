#!/usr/bin/env bash
# Side-by-side inference benchmark: anneal bench vs llama.cpp's llama-bench on
# TinyLlama-1.1B-shaped models (random weights) in Q8_0, Q4_0 and Q4_K_M, 2 threads.
# Usage: bench/engine.sh BUILD_DIR
#   LLAMA_BENCH  path of a llama-bench binary built outside this repository (required)
#   BENCH_MODELS directory for the model files (default /tmp/anneal-bench-models; the
#                F16 model is 2.2 GB, the three quantized ones 2.5 GB together)
#   BENCH_REPS   repetitions per test (default 5); BENCH_THREADS (default 2)
#   BENCH_ROUNDS alternating llama-bench / anneal bench rounds per model (default 3); the
#                table gives the median over rounds of each tool's figure, and its range
set -euo pipefail
build=${1:?usage: bench/engine.sh BUILD_DIR}
root=$(cd "$(dirname "$0")/.." && pwd)
shared=${ANNEAL_SHARED:-$root/../shared}
llama_bench=${LLAMA_BENCH:?set LLAMA_BENCH to a llama-bench binary (llama.cpp, built outside this repository)}
models=${BENCH_MODELS:-/tmp/anneal-bench-models}
reps=${BENCH_REPS:-5}
rounds=${BENCH_ROUNDS:-3}
threads=${BENCH_THREADS:-2}
anneal="$build/anneal"
[ -x "$anneal" ] || { echo "engine.sh: $anneal is missing; build first" >&2; exit 1; }
[ -x "$llama_bench" ] || { echo "engine.sh: $llama_bench is not executable" >&2; exit 1; }
cmake --build "$build" --target bench_membw >/dev/null
mkdir -p "$models"

# The models: one F16 file from `anneal init`, quantized by `anneal quantize`.
f16="$models/tinyllama-shape-f16.gguf"
if [ ! -f "$f16" ]; then
  "$anneal" init --arch llama --dim 2048 --layers 22 --heads 32 --kv-heads 4 --ffn 5632 \
    --vocab-from "$shared/fixtures/vocab/ggml-vocab-llama-spm.gguf" --type f16 --seed 1 "$f16" >/dev/null
fi
for t in q8_0 q4_0 q4_K_M; do
  [ -f "$models/tinyllama-shape-$t.gguf" ] ||
    "$anneal" quantize "$f16" "$models/tinyllama-shape-$t.gguf" "$t" >/dev/null 2>&1
done

bw=$("$build/bench_membw" "$threads" 1024 9 | sed -n 's/.*median \([0-9.]*\) GB\/s.*/\1/p')
echo "measured read bandwidth ($threads threads): $bw GB/s"
echo
echo "| model | test | llama.cpp t/s | anneal t/s | ratio | anneal decode GB/s | of measured bandwidth |"
echo "|---|---|---:|---:|---:|---:|---:|"
# median and range of the numbers on stdin, formatted "M [lo, hi]"
median_range() { sort -g | awk '{ v[NR] = $1 } END { m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
  printf "%.2f [%.2f, %.2f]\n", m, v[1], v[NR] }'; }
for t in q8_0 q4_0 q4_K_M; do
  m="$models/tinyllama-shape-$t.gguf"
  : >"$models/$t.rounds"
  for _ in $(seq "$rounds"); do
    # llama-bench prints the mean over its repetitions; anneal bench the median.
    ll=$("$llama_bench" -m "$m" -p 128 -n 32 -r "$reps" -t "$threads" -o csv 2>/dev/null |
         awk -F'","' 'NR > 1 { gsub(/"/, "", $NF); print $(NF-1) }')
    js=$("$anneal" bench -m "$m" -p 128 -n 32 -r "$reps" -t "$threads" --json)
    get() { echo "$js" | sed -n "s/.*\"$1\":{[^}]*\"$2\":\([0-9.]*\).*/\1/p"; }
    echo "$(echo "$ll" | sed -n 1p) $(echo "$ll" | sed -n 2p) $(get prefill median) $(get decode median) $(get decode gb_per_s)" \
      >>"$models/$t.rounds"
  done
  col() { awk -v c="$1" '{ print $c }' "$models/$t.rounds" | median_range; }
  lp=$(col 1) lt=$(col 2) ap=$(col 3) at=$(col 4) gb=$(col 5)
  awk -v m="$t" -v lp="$lp" -v lt="$lt" -v ap="$ap" -v at="$at" -v gb="$gb" -v bw="$bw" 'BEGIN {
    split(lp, a, " "); split(lt, b, " "); split(ap, c, " "); split(at, d, " "); split(gb, g, " ")
    printf "| %s | pp128 | %s | %s | %.2fx | | |\n", m, lp, ap, c[1] / a[1]
    printf "| %s | tg32 | %s | %s | %.2fx | %.2f | %.0f%% |\n", m, lt, at, d[1] / b[1], g[1], 100 * g[1] / bw
  }'
  rss=$(echo "$js" | sed -n 's/.*"peak_rss":\([0-9]*\).*/\1/p')
  kv=$(echo "$js" | sed -n 's/.*"kv_bytes":\([0-9]*\).*/\1/p')
  size=$(stat -c %s "$m")
  awk -v t="$t" -v rss="$rss" -v size="$size" -v kv="$kv" 'BEGIN {
    lim = size + kv + 64 * 1048576
    printf "  %s: peak RSS %.1f MiB; file %.1f MiB + KV %.1f MiB + 64 MiB = %.1f MiB (%s)\n", t,
      rss / 1048576, size / 1048576, kv / 1048576, lim / 1048576, rss <= lim ? "within" : "OVER"
  }' >&2
  rm -f "$models/$t.rounds"
done
