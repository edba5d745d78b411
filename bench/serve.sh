#!/usr/bin/env bash
# Side-by-side serving benchmark: anneal serve vs llama.cpp's llama-server on one GGUF
# file, N concurrent streaming chat clients (bench_serve), N = 1, 4, 8, 16, 2 threads.
# Usage: bench/serve.sh BUILD_DIR (with anneal and bench_serve built:
#        cmake --build BUILD_DIR --target anneal bench_serve)
#   LLAMA_SERVER  path of a llama-server binary built outside this repository (required)
#   SERVE_MODEL   GGUF file (default /work/models/bench/tinyllama-shape-q4_0.gguf)
#   SERVE_CLIENTS client counts (default "1 4 8 16"); SERVE_THREADS (default 2)
#   SERVE_ROUNDS  alternating llama-server / anneal rounds (default 3); the table gives the
#                 median over rounds of each figure
#   SERVE_TOKENS  generated tokens per request (default 48); SERVE_KV total KV positions
#                 (default 8192, llama-server's -c); SERVE_REQS requests per client
#                 (default 4 for 1 client, 3 for 4 and 8, 2 for 16)
#   ANNEAL_SERVE_ARGS extra flags for anneal serve
set -euo pipefail
build=${1:?usage: bench/serve.sh BUILD_DIR}
llama_server=${LLAMA_SERVER:?set LLAMA_SERVER to a llama-server binary (llama.cpp, built outside this repository)}
model=${SERVE_MODEL:-/work/models/bench/tinyllama-shape-q4_0.gguf}
clients=${SERVE_CLIENTS:-1 4 8 16}
threads=${SERVE_THREADS:-2}
rounds=${SERVE_ROUNDS:-3}
tokens=${SERVE_TOKENS:-48}
kv=${SERVE_KV:-8192}
anneal="$build/anneal"
bench="$build/bench_serve"
[ -x "$anneal" ] || { echo "serve.sh: $anneal is missing; build first" >&2; exit 1; }
[ -x "$llama_server" ] || { echo "serve.sh: $llama_server is not executable" >&2; exit 1; }
[ -f "$model" ] || { echo "serve.sh: $model is missing" >&2; exit 1; }
[ -x "$bench" ] || cmake --build "$build" --target bench_serve >/dev/null
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# Waits until GET /health answers 200 (llama-server answers 503 while it loads).
wait_ready() {
  for _ in $(seq 600); do
    if curl -sf "http://127.0.0.1:$1/health" >/dev/null 2>&1; then return 0; fi
    kill -0 "$pid" 2>/dev/null || { echo "serve.sh: the server exited; its log:" >&2; cat "$work/log" >&2; exit 1; }
    sleep 0.2
  done
  echo "serve.sh: no answer on port $1" >&2
  kill "$pid"
  exit 1
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=; }

# run SERVER N: starts SERVER with N slots, runs N clients, prints bench_serve's JSON line.
run() {
  local server=$1 n=$2 port reqs
  port=$(free_port)
  reqs=${SERVE_REQS:-$(case $n in 1) echo 4 ;; 16) echo 2 ;; *) echo 3 ;; esac)}
  if [ "$server" = llama ]; then
    "$llama_server" -m "$model" -t "$threads" -np "$n" -c "$kv" --cont-batching --host 127.0.0.1 \
      --port "$port" --chat-template chatml --no-webui >"$work/log" 2>&1 &
  else
    # The same KV budget; llama-server gives each of its N slots kv/N positions.
    local ctx=$((kv / n))
    [ "$ctx" -gt 2048 ] && ctx=2048
    # shellcheck disable=SC2086
    "$anneal" serve -m "$model" -t "$threads" --parallel "$n" --kv-tokens "$kv" -c "$ctx" --host 127.0.0.1 \
      --port "$port" --chat-template chatml --access-log off ${ANNEAL_SERVE_ARGS:-} >"$work/log" 2>&1 &
  fi
  pid=$!
  wait_ready "$port"
  # One short request first, so both servers have touched every weight page (its prompt
  # shares only the chat template's first tokens with the measured ones).
  "$bench" --port "$port" -c 1 -n 1 --max-tokens 4 --chat --same-prompt >/dev/null
  "$bench" --port "$port" -c "$n" -n "$reqs" --max-tokens "$tokens" --chat --json || true
  stop
}

echo "model $model, $threads threads, $tokens tokens per request, KV $kv positions, $rounds rounds"
: >"$work/all"
for r in $(seq "$rounds"); do
  for n in $clients; do
    for server in llama anneal; do
      line=$(run "$server" "$n")
      echo "round $r $server $line | load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
      echo "$server $n $line" >>"$work/all"
    done
  done
done

# median of the numbers on stdin
median() { sort -g | awk '{ v[NR] = $1 } END { print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
field() { grep "^$1 $2 " "$work/all" | sed -n "s/.*\"$3\":\([0-9.]*\).*/\1/p" | median; }
echo
echo "| clients | server | tokens/s | TTFT p50 s | TTFT p99 s | ITL p50 ms | ITL p99 ms | errors |"
echo "|---:|---|---:|---:|---:|---:|---:|---:|"
for n in $clients; do
  for server in llama anneal; do
    name=$([ "$server" = llama ] && echo llama-server || echo anneal)
    awk -v n="$n" -v s="$name" -v t="$(field $server "$n" tokens_per_s)" -v a="$(field $server "$n" ttft_p50)" \
      -v b="$(field $server "$n" ttft_p99)" -v c="$(field $server "$n" itl_p50)" -v d="$(field $server "$n" itl_p99)" \
      -v e="$(grep "^$server $n " "$work/all" | sed -n 's/.*"errors":\([0-9]*\).*/\1/p' | awk '{ s += $1 } END { print s + 0 }')" \
      'BEGIN { printf "| %s | %s | %.1f | %.2f | %.2f | %.0f | %.0f | %d |\n", n, s, t, a, b, c * 1e3, d * 1e3, e }'
  done
done
echo
for n in $clients; do
  awk -v n="$n" -v lt="$(field llama "$n" tokens_per_s)" -v at="$(field anneal "$n" tokens_per_s)" \
    -v lf="$(field llama "$n" ttft_p99)" -v af="$(field anneal "$n" ttft_p99)" \
    'BEGIN { printf "%s clients: anneal / llama-server tokens/s %.2fx, TTFT p99 %.2f s vs %.2f s\n", n, at / lt, af, lf }'
done
echo "uptime at the end: $(uptime)"
