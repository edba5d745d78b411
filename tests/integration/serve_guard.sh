#!/usr/bin/env bash
# `anneal serve` guards and configuration: API keys (Bearer, constant-time check, key id
# logged and the secret never), per-key request and token limits (429 + Retry-After), body
# size caps (413, with and without Content-Length), slow request bodies (408), the config
# file / environment / flag precedence, --help and start-up errors.
source "$(dirname "$0")/serve_lib.bash"

# ---- API keys and per-key request limits
cat >"$TMP/keys" <<'KEYS'
# id    key                     limits
alice   sk-alice-0123456789     rpm=3
bob     sk-bob-0123456789
KEYS
start_server --api-keys "$TMP/keys"
req GET /health; want_code 200 "/health without a key"
req GET /ready; want_code 200 "/ready without a key"
req GET /v1/models; want_error 401 "/v1/models without a key"
req GET /metrics; want_error 401 "/metrics without a key"
req POST /v1/completions '{"prompt":"x","max_tokens":2}' -H 'Authorization: Bearer sk-wrong-0123456789'
want_error 401 "a wrong key"
[ "$(jqb .error.type)" = authentication_error ] || fail "401 type: $(cat "$TMP/body")"
req POST /v1/completions '{"prompt":"x","max_tokens":2}' -H 'Authorization: Basic c2stYWxpY2U='
want_error 401 "a non-Bearer scheme"
for i in 1 2 3; do
    req POST /v1/completions '{"prompt":"x","max_tokens":2}' -H 'Authorization: Bearer sk-alice-0123456789'
    want_code 200 "alice request $i"
done
curl -s -m 30 -D "$TMP/hdr" -o "$TMP/body" -H 'Authorization: Bearer sk-alice-0123456789' \
    "$URL/v1/completions" -d '{"prompt":"x","max_tokens":2}' >/dev/null
grep -q '^HTTP/1.1 429' "$TMP/hdr" || fail "alice's 4th request in a minute: $(head -n 1 "$TMP/hdr")"
grep -qi '^retry-after: [1-9]' "$TMP/hdr" || fail "rate limit without Retry-After"
jq -e '.error.type == "rate_limit_error"' "$TMP/body" >/dev/null || fail "429 body: $(cat "$TMP/body")"
for i in 1 2 3 4 5; do
    req POST /v1/completions '{"prompt":"x","max_tokens":2}' -H 'Authorization: Bearer sk-bob-0123456789'
    want_code 200 "bob request $i (no limit)"
done
req GET /v1/models '' -H 'Authorization: Bearer sk-bob-0123456789'; want_code 200 "/v1/models with a key"
grep -q 'sk-alice\|sk-bob\|sk-wrong' "$TMP/server.err" && fail "a secret reached the log"
grep '^{"ts"' "$TMP/server.err" | jq -se 'map(select(.key_id == "alice")) | length == 4' >/dev/null ||
    fail "alice's requests not logged with her key id"
healthy "after auth failures"
# a second server on the same port fails instead of sharing it
expect 1 "$BIN" serve -m "$M" --port "$PORT" -t 1
grep -q 'cannot listen' "$TMP/err" || fail "port in use: $(cat "$TMP/err")"
stop_server

# ---- tokens per minute
start_server --tpm 30
req POST /v1/completions '{"prompt":"x","max_tokens":30,"ignore_eos":true}'; want_code 200 "first request under tpm"
req POST /v1/completions '{"prompt":"x","max_tokens":30,"ignore_eos":true}'; want_error 429 "second request over tpm"
stop_server

# ---- body caps and slow bodies
start_server --max-body 2048 --read-timeout 1
big=$(head -c 5000 /dev/zero | tr '\0' 'a')
req POST /v1/completions "{\"prompt\":\"$big\"}"; want_error 413 "a body over --max-body"
curl -s -m 30 -o "$TMP/body" -w '%{http_code}' -H 'Transfer-Encoding: chunked' --data-binary "{\"prompt\":\"$big\"}" \
    "$URL/v1/completions" >"$TMP/code"
want_error 413 "a chunked body over --max-body"
req POST /v1/completions '{"prompt":"fits","max_tokens":2}'; want_code 200 "a body under the cap"
# a client that sends half a body, waits past --read-timeout, then sends the rest
exec 3<>"/dev/tcp/127.0.0.1/$PORT"
printf 'POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: 32\r\n\r\n{"prompt":"slow",' >&3
sleep 1.5
printf '"max_tokens":2}' >&3
timeout 30 cat <&3 >"$TMP/slow"
exec 3<&-
grep -q '^HTTP/1.1 408' "$TMP/slow" || fail "slow body: $(head -c 300 "$TMP/slow")"
grep -q '"error"' "$TMP/slow" || fail "slow body: no error object"
healthy "after caps"
stop_server

# ---- configuration: file < environment < flags
cat >"$TMP/serve.conf" <<'CONF'
# a comment
alias = from-file
max-queue = 5   # trailing comment
kv-f32 = true
CONF
start_server --config "$TMP/serve.conf"
req GET /v1/models; [ "$(jqb '.data[0].id')" = from-file ] || fail "config file alias: $(cat "$TMP/body")"
stop_server
export ANNEAL_SERVE_ALIAS=from-env
start_server --config "$TMP/serve.conf"
req GET /v1/models; [ "$(jqb '.data[0].id')" = from-env ] || fail "environment alias: $(cat "$TMP/body")"
stop_server
start_server --config "$TMP/serve.conf" --alias from-flag
req GET /v1/models; [ "$(jqb '.data[0].id')" = from-flag ] || fail "flag alias: $(cat "$TMP/body")"
stop_server
unset ANNEAL_SERVE_ALIAS

printf 'port = lots\n' >"$TMP/bad.conf"
expect 2 "$BIN" serve -m "$M" --config "$TMP/bad.conf"
grep -q 'bad.conf:1' "$TMP/err" || fail "bad config line not named: $(cat "$TMP/err")"
expect 2 "$BIN" serve -m "$M" --no-such-flag 1
expect 2 "$BIN" serve --port 1
ANNEAL_SERVE_PORT=99999 expect 2 "$BIN" serve -m "$M"
grep -q ANNEAL_SERVE_PORT "$TMP/err" || fail "bad environment value not named: $(cat "$TMP/err")"
expect 1 "$BIN" serve -m "$TMP/missing.gguf" --port 0
expect 1 "$BIN" serve -m "$M" --port 0 --api-keys "$TMP/missing-keys"
expect 0 "$BIN" serve --help
for o in model alias host port threads ctx parallel kv-tokens block-size batch prefill-chunk kv-f32 \
         max-queue max-body max-tokens timeout read-timeout idle-timeout max-connections api-keys rpm tpm \
         drain-timeout chat-template access-log config; do
    grep -q -- "--$o" "$TMP/out" || fail "serve --help lacks --$o"
done
grep -q ANNEAL_SERVE_MAX_QUEUE "$TMP/out" || fail "serve --help lacks the environment variables"

[ "$FAILS" -eq 0 ] || { echo "$FAILS failure(s)" >&2; exit 1; }
echo "serve guard: all checks passed"
