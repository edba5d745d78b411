#!/usr/bin/env bash
# `anneal serve` under load: 40 concurrent clients (streaming and not) all answered in
# full with the same greedy text as alone, a client that disconnects cancels its request
# and frees its KV blocks, a full queue answers 429 with Retry-After, a deadline answers
# 408, and SIGTERM drains (in-flight streams finish, new connections are refused, exit 0).
source "$(dirname "$0")/serve_lib.bash"

metric() { # metric NAME: the value of an unlabelled-but-model series
    curl -s -m 10 "$URL/metrics" | sed -n "s/^$1{[^}]*} //p" | head -n 1
}

start_server --parallel 8 --max-queue 64

# ---- 40 concurrent clients
req POST /v1/completions '{"prompt":"The quick brown fox","max_tokens":16,"temperature":0,"ignore_eos":true}'
alone=$(jqb '.choices[0].text')
pids=()
for i in $(seq 1 40); do
    if [ $((i % 2)) = 0 ]; then
        curl -s -N -m 120 "$URL/v1/completions" -o "$TMP/c$i" \
            -d '{"prompt":"The quick brown fox","max_tokens":16,"temperature":0,"ignore_eos":true,"stream":true}' &
    else
        curl -s -m 120 "$URL/v1/completions" -o "$TMP/c$i" \
            -d "{\"prompt\":\"Client $i says\",\"max_tokens\":16,\"temperature\":0.8,\"seed\":$i,\"ignore_eos\":true}" &
    fi
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || fail "a concurrent client failed (curl status $?)"; done
for i in $(seq 1 40); do
    if [ $((i % 2)) = 0 ]; then
        [ "$(sse_text "$TMP/c$i")" = "$alone" ] || fail "client $i (stream) got '$(sse_text "$TMP/c$i")', alone '$alone'"
        grep -q '^data: \[DONE\]' "$TMP/c$i" || fail "client $i: no [DONE]"
    else
        [ "$(jq -r '.usage.completion_tokens' "$TMP/c$i" 2>/dev/null)" = 16 ] || fail "client $i: $(head -c 300 "$TMP/c$i")"
    fi
done
m=$(curl -s "$URL/metrics")
echo "$m" | grep -q '^anneal_batch_size' || fail "no batch size gauge"
# more than one sequence per step happened: tokens per step above one on average
steps=$(echo "$m" | sed -n 's/^anneal_batch_tokens_count{[^}]*} //p')
toks=$(echo "$m" | sed -n 's/^anneal_batch_tokens_sum{[^}]*} //p')
awk -v s="$steps" -v t="$toks" 'BEGIN { exit !(s > 0 && t / s > 2) }' || fail "no batching: $toks tokens in $steps steps"
[ "$(metric anneal_requests_running)" = 0 ] || fail "requests still running after all clients finished"

# ---- a disconnecting client cancels its request and frees its blocks at once (cached
# prefixes of finished requests may be evicted meanwhile, so at most the blocks used before)
base=$(metric anneal_kv_blocks_used)
curl -s -N -m 1 "$URL/v1/completions" -o /dev/null \
    -d '{"prompt":"A unique prompt that nobody else sends, to be cancelled","max_tokens":1800,"ignore_eos":true,"stream":true}'
curl -s -m 1 "$URL/v1/completions" -o /dev/null \
    -d '{"prompt":"Another unique prompt, not streamed, to be cancelled","max_tokens":1800,"ignore_eos":true}'
ok=0
for _ in $(seq 1 100); do
    c=$(curl -s "$URL/metrics" | sed -n 's/^anneal_request_finish_total{.*reason="cancelled"} //p')
    if [ "$c" = 2 ] && [ "$(metric anneal_kv_blocks_used)" -le "$base" ] && [ "$(metric anneal_requests_running)" = 0 ]; then ok=1; break; fi
    sleep 0.1
done
[ $ok = 1 ] || fail "disconnects: cancelled=$c, kv used $(metric anneal_kv_blocks_used) (before $base)"
grep -q '"finish_reason":"cancelled"' "$TMP/server.err" || fail "no cancelled request in the access log"
healthy "after disconnects"
stop_server
[ "$SERVER_RC" = 0 ] || fail "exit status $SERVER_RC"

# ---- a full queue answers 429 with Retry-After; /ready says so
start_server --parallel 1 --max-queue 2
for i in $(seq 1 8); do
    curl -s -m 120 -D "$TMP/h$i" -o "$TMP/q$i" "$URL/v1/completions" \
        -d "{\"prompt\":\"queue $i\",\"max_tokens\":120,\"ignore_eos\":true}" &
    pids[$i]=$!
done
sleep 0.3
curl -s -o "$TMP/ready" -w '%{http_code}' "$URL/ready" >"$TMP/ready_code"
for i in $(seq 1 8); do wait "${pids[$i]}"; done
n429=0; n200=0
for i in $(seq 1 8); do
    if grep -q '^HTTP/1.1 429' "$TMP/h$i"; then
        n429=$((n429 + 1))
        grep -qi '^retry-after: [1-9]' "$TMP/h$i" || fail "429 without Retry-After"
        jq -e '.error.code == "queue_full"' "$TMP/q$i" >/dev/null || fail "429 body: $(cat "$TMP/q$i")"
    elif grep -q '^HTTP/1.1 200' "$TMP/h$i"; then
        n200=$((n200 + 1))
    fi
done
[ $n429 -ge 1 ] && [ $((n429 + n200)) = 8 ] || fail "queue: $n200 answered, $n429 rejected"
[ "$(cat "$TMP/ready_code")" = 503 ] && ! grep -q 'queue full' "$TMP/ready" && fail "/ready 503 without reason"
healthy "after a full queue"
stop_server

# ---- per-request deadline
start_server --timeout 0.3
req POST /v1/completions '{"prompt":"slow","max_tokens":2000,"ignore_eos":true}'
want_error 408 "deadline"
healthy "after a deadline"
stop_server

# ---- SIGTERM drains: the running stream completes, new connections are refused, exit 0
# (a drain timeout far above the stream's length, so a slow sanitizer build on a busy
# machine still finishes it)
start_server --drain-timeout 600
curl -s -N -m 120 "$URL/v1/completions" -o "$TMP/drain" \
    -d '{"prompt":"drain","max_tokens":200,"temperature":0,"ignore_eos":true,"stream":true}' &
cpid=$!
for _ in $(seq 1 200); do [ -s "$TMP/drain" ] && break; sleep 0.05; done
kill -TERM "$SERVER_PID"
for _ in $(seq 1 200); do grep -q draining "$TMP/server.err" && break; sleep 0.05; done
curl -s -m 5 -o /dev/null "$URL/health" && fail "a new connection was accepted while draining"
wait $cpid
grep -q '^data: \[DONE\]' "$TMP/drain" || fail "drained stream did not finish: $(tail -c 300 "$TMP/drain")"
sed -n 's/^data: //p' "$TMP/drain" | grep -v DONE | jq -se 'map(select(.choices[0].finish_reason == "length")) | length == 1' >/dev/null ||
    fail "drained stream lacks its finish chunk"
wait "$SERVER_PID"; rc=$?; SERVER_PID=
[ $rc = 0 ] || fail "exit status $rc after a drain"

# ---- a drain timeout cancels what is left and still exits 0
start_server --drain-timeout 0.5
curl -s -N -m 120 "$URL/v1/completions" -o "$TMP/drain2" \
    -d '{"prompt":"drain","max_tokens":2000,"ignore_eos":true,"stream":true}' &
cpid=$!
for _ in $(seq 1 200); do [ -s "$TMP/drain2" ] && break; sleep 0.05; done
kill -TERM "$SERVER_PID"
wait $cpid
wait "$SERVER_PID"; rc=$?; SERVER_PID=
[ $rc = 0 ] || fail "exit status $rc after a drain timeout"
grep -q '"error"' "$TMP/drain2" || fail "a cancelled stream should end with an error event: $(tail -c 300 "$TMP/drain2")"
grep -q 'cancelled 1 request' "$TMP/server.err" || fail "drain timeout not reported: $(tail -n 3 "$TMP/server.err")"

[ "$FAILS" -eq 0 ] || { echo "$FAILS failure(s)" >&2; exit 1; }
echo "serve load: all checks passed"
