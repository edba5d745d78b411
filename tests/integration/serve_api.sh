#!/usr/bin/env bash
# `anneal serve` end to end, one endpoint at a time: health, readiness, models, completions
# and chat (plain and streamed, greedy equal to `anneal generate`, seeds, stop strings,
# logprobs, usage), embeddings, tokenize/detokenize, metrics accepted by promtool, and bad
# input answered with an OpenAI error object while the server stays healthy.
source "$(dirname "$0")/serve_lib.bash"

start_server --alias tiny-test

# ---- health, ready, models
req GET /health; want_code 200 "/health"
[ "$(jqb .status)" = ok ] || fail "/health body: $(cat "$TMP/body")"
req GET /ready; want_code 200 "/ready"
[ "$(jqb .status)" = ready ] || fail "/ready body: $(cat "$TMP/body")"
req GET /v1/models; want_code 200 "/v1/models"
[ "$(jqb '.data[0].id')" = tiny-test ] || fail "/v1/models: $(cat "$TMP/body")"
[ "$(jqb '.object')" = list ] || fail "/v1/models object"
req GET /v1/models/tiny-test; want_code 200 "/v1/models/{id}"
[ "$(jqb '.id') $(jqb '.object')" = "tiny-test model" ] || fail "/v1/models/tiny-test: $(cat "$TMP/body")"
req GET /v1/models/gpt-4; want_error 404 "/v1/models/{unknown id}"
[ "$(jqb '.error.code')" = model_not_found ] || fail "unknown model code: $(cat "$TMP/body")"

# ---- completions: greedy equals `anneal generate`
req POST /v1/completions '{"model":"tiny-test","prompt":"Once upon a time","max_tokens":12,"temperature":0}'
want_code 200 "greedy completion"
greedy=$(jqb '.choices[0].text')
[ "$(jqb '.object')" = text_completion ] || fail "completion object"
[ "$(jqb '.choices[0].finish_reason')" = length ] || fail "finish_reason: $(cat "$TMP/body")"
[ "$(jqb '.usage.prompt_tokens') $(jqb '.usage.completion_tokens') $(jqb '.usage.total_tokens')" = "5 12 17" ] ||
    fail "usage: $(jqb .usage)"
"$BIN" generate -m "$M" -p "Once upon a time" -n 12 --temp 0 -t 2 >"$TMP/gen" 2>/dev/null
[ "$greedy" = "$(head -c -1 "$TMP/gen")" ] || fail "server greedy '$greedy' != generate '$(cat "$TMP/gen")'"
# the same prompt again reuses the cached prefix and gives the same text
req POST /v1/completions '{"prompt":"Once upon a time","max_tokens":12,"temperature":0,"unknown_field":{"x":[1,2]}}'
want_code 200 "second greedy completion (unknown field ignored)"
[ "$(jqb '.choices[0].text')" = "$greedy" ] || fail "second greedy run differs"
[ "$(jqb '.usage.prompt_tokens_details.cached_tokens')" = 4 ] || fail "prefix cache: $(jqb .usage)"
# token-array prompt, max_completion_tokens
req POST /v1/completions '{"prompt":[1,9038,2501,263,931],"max_completion_tokens":12,"temperature":0}'
want_code 200 "token prompt"
[ "$(jqb '.choices[0].text')" = "$greedy" ] || fail "token-array prompt differs from text prompt"

# seeds: the same seed repeats, another differs
body='{"prompt":"Hello","max_tokens":16,"temperature":1.2,"seed":7}'
req POST /v1/completions "$body"; a=$(jqb '.choices[0].text')
req POST /v1/completions "$body"; b=$(jqb '.choices[0].text')
req POST /v1/completions '{"prompt":"Hello","max_tokens":16,"temperature":1.2,"seed":8}'; c=$(jqb '.choices[0].text')
[ "$a" = "$b" ] || fail "seed 7 gave '$a' and '$b'"
[ "$a" != "$c" ] || fail "seeds 7 and 8 gave the same text"
# sampling extensions are accepted
req POST /v1/completions '{"prompt":"Hello","max_tokens":4,"top_k":5,"top_p":0.9,"min_p":0.05,"repetition_penalty":1.1,"presence_penalty":0.5,"frequency_penalty":0.5,"ignore_eos":true}'
want_code 200 "sampling extensions"
[ "$(jqb '.usage.completion_tokens')" = 4 ] || fail "ignore_eos: $(jqb .usage)"

# stop string from the middle of the greedy text
stop=${greedy:10:4}
prefix=${greedy%%"$stop"*}
req POST /v1/completions "$(jq -cn --arg s "$stop" '{prompt:"Once upon a time",max_tokens:12,temperature:0,stop:[$s]}')"
want_code 200 "stop"
[ "$(jqb '.choices[0].text')" = "$prefix" ] || fail "stop '$stop': '$(jqb '.choices[0].text')' != '$prefix'"
[ "$(jqb '.choices[0].finish_reason')" = stop ] || fail "stop finish_reason"

# logprobs (completions: parallel arrays; chat: content list)
req POST /v1/completions '{"prompt":"Hello","max_tokens":4,"temperature":0,"logprobs":2}'
[ "$(jqb '.choices[0].logprobs.token_logprobs | length')" = 4 ] || fail "completion logprobs: $(cat "$TMP/body")"
[ "$(jqb '.choices[0].logprobs.top_logprobs[0] | length')" = 2 ] || fail "completion top_logprobs"
jq -e '.choices[0].logprobs.token_logprobs | all(. <= 0)' "$TMP/body" >/dev/null || fail "logprobs > 0"
req POST /v1/chat/completions '{"messages":[{"role":"user","content":"Hi"}],"max_tokens":3,"temperature":0,"logprobs":true,"top_logprobs":3}'
want_code 200 "chat logprobs"
[ "$(jqb '.choices[0].logprobs.content | length')" = 3 ] || fail "chat logprobs: $(cat "$TMP/body")"
[ "$(jqb '.choices[0].logprobs.content[0].top_logprobs | length')" = 3 ] || fail "chat top_logprobs"

# ---- chat
msgs='[{"role":"system","content":"You are terse."},{"role":"user","content":[{"type":"text","text":"Say hi"}]}]'
req POST /v1/chat/completions "{\"messages\":$msgs,\"max_tokens\":6,\"temperature\":0}"
want_code 200 "chat"
[ "$(jqb '.object')" = chat.completion ] || fail "chat object"
[ "$(jqb '.choices[0].message.role')" = assistant ] || fail "chat role"
chat=$(jqb '.choices[0].message.content')
ptoks=$(jqb '.usage.prompt_tokens')
[ "$ptoks" -gt 10 ] || fail "chat prompt tokens $ptoks"

# ---- streaming: same text as the plain answer, SSE framing, usage chunk
curl -s -N -m 60 "$URL/v1/completions" -d '{"prompt":"Once upon a time","max_tokens":12,"temperature":0,"stream":true,"stream_options":{"include_usage":true}}' >"$TMP/sse"
[ "$(sse_text "$TMP/sse")" = "$greedy" ] || fail "streamed completion '$(sse_text "$TMP/sse")' != '$greedy'"
[ "$(tail -n 2 "$TMP/sse" | head -n 1)" = "data: [DONE]" ] || fail "stream does not end with [DONE]: $(tail -c 200 "$TMP/sse")"
sed -n 's/^data: //p' "$TMP/sse" | grep -v DONE | tail -n 1 | jq -e '.usage.completion_tokens == 12 and (.choices | length) == 0' >/dev/null ||
    fail "no usage chunk: $(tail -c 300 "$TMP/sse")"
sed -n 's/^data: //p' "$TMP/sse" | grep -v DONE | jq -se 'map(select(.choices[0].finish_reason == "length")) | length == 1' >/dev/null ||
    fail "no finish chunk"
curl -s -N -m 60 "$URL/v1/chat/completions" -d "{\"messages\":$msgs,\"max_tokens\":6,\"temperature\":0,\"stream\":true}" >"$TMP/sse"
[ "$(sse_text "$TMP/sse")" = "$chat" ] || fail "streamed chat '$(sse_text "$TMP/sse")' != '$chat'"
sed -n 's/^data: //p' "$TMP/sse" | head -n 1 | jq -e '.object == "chat.completion.chunk" and .choices[0].delta.role == "assistant"' >/dev/null ||
    fail "first chat chunk: $(head -c 300 "$TMP/sse")"
grep -q '"usage"' "$TMP/sse" && fail "usage sent without include_usage"
curl -s -D "$TMP/hdr" -o /dev/null -N -m 60 "$URL/v1/completions" -d '{"prompt":"x","max_tokens":2,"stream":true}'
grep -qi '^content-type: text/event-stream' "$TMP/hdr" || fail "stream content type: $(cat "$TMP/hdr")"

# ---- embeddings: unit length, one per input, deterministic, base64
req POST /v1/embeddings '{"input":["hello world","hello world","other"]}'
want_code 200 "embeddings"
[ "$(jqb '.data | length')" = 3 ] || fail "embeddings count"
[ "$(jqb '.data[0].embedding | length')" = 64 ] || fail "embedding size"
jq -e '.data[0].embedding | (map(. * .) | add) | (. > 0.9999 and . < 1.0001)' "$TMP/body" >/dev/null || fail "embedding norm"
jq -e '.data[0].embedding == .data[1].embedding and .data[0].embedding != .data[2].embedding' "$TMP/body" >/dev/null ||
    fail "embeddings not deterministic or not distinct"
[ "$(jqb '.usage.prompt_tokens')" -gt 3 ] || fail "embedding usage"
req POST /v1/embeddings '{"input":"hello","encoding_format":"base64"}'
want_code 200 "embeddings base64"
[ "$(jqb '.data[0].embedding' | base64 -d | wc -c)" = 256 ] || fail "base64 embedding is not 64 floats"

# ---- tokenize / detokenize round trip
req POST /tokenize '{"content":"Hello world"}'
want_code 200 "tokenize"
[ "$(jq -c .tokens "$TMP/body")" = "[1,15043,3186]" ] || fail "tokenize ids: $(cat "$TMP/body")"
req POST /tokenize '{"content":"Hello","add_special":false,"with_pieces":true}'
[ "$(jq -c .tokens "$TMP/body")" = '[{"id":15043,"piece":" Hello"}]' ] || fail "tokenize pieces: $(cat "$TMP/body")"
req POST /detokenize '{"tokens":[1,15043,3186]}'
want_code 200 "detokenize"
[ "$(jqb .content)" = "Hello world" ] || fail "detokenize: $(cat "$TMP/body")"

# ---- bad input: an error object with the right status, and the server stays healthy
bad() { # CODE WHAT PATH BODY
    req POST "$3" "$4"
    want_error "$1" "$2"
}
bad 400 "malformed JSON" /v1/completions '{"prompt":"x",'
bad 400 "not an object" /v1/completions '[1,2,3]'
bad 400 "wrong type" /v1/completions '{"prompt":"x","max_tokens":"ten"}'
[ "$(jqb .error.param)" = max_tokens ] || fail "param not named: $(cat "$TMP/body")"
bad 400 "temperature out of range" /v1/completions '{"prompt":"x","temperature":5}'
bad 400 "top_p zero" /v1/completions '{"prompt":"x","top_p":0}'
bad 400 "negative max_tokens" /v1/completions '{"prompt":"x","max_tokens":-1}'
bad 400 "max_tokens over the cap" /v1/completions '{"prompt":"x","max_tokens":100000000}'
bad 400 "n > 1" /v1/completions '{"prompt":"x","n":2}'
bad 400 "missing prompt" /v1/completions '{"max_tokens":3}'
bad 400 "token id out of range" /v1/completions '{"prompt":[1,99999999]}'
bad 400 "stop wrong type" /v1/completions '{"prompt":"x","stop":[1]}'
bad 400 "stream wrong type" /v1/completions '{"prompt":"x","stream":"yes"}'
bad 400 "empty messages" /v1/chat/completions '{"messages":[]}'
bad 400 "missing messages" /v1/chat/completions '{"prompt":"x"}'
bad 400 "unknown role" /v1/chat/completions '{"messages":[{"role":"wizard","content":"x"}]}'
bad 400 "content wrong type" /v1/chat/completions '{"messages":[{"role":"user","content":5}]}'
bad 400 "image part" /v1/chat/completions '{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}'
bad 400 "top_logprobs without logprobs" /v1/chat/completions '{"messages":[{"role":"user","content":"x"}],"top_logprobs":2}'
bad 400 "embeddings without input" /v1/embeddings '{}'
bad 400 "embeddings empty list" /v1/embeddings '{"input":[]}'
bad 400 "tokenize without content" /tokenize '{}'
bad 400 "detokenize bad id" /detokenize '{"tokens":[-1]}'
printf '{"prompt":"\xff\xfe"}' >"$TMP/badutf8"
req POST /v1/completions "$(cat "$TMP/badutf8")"
want_error 400 "invalid UTF-8"
long=$(head -c 20000 /dev/zero | tr '\0' 'a' | sed 's/a/a b /g')
req POST /v1/completions "{\"prompt\":\"$long\",\"max_tokens\":1}"
want_error 400 "prompt longer than the context"
grep -q 'context' "$TMP/body" || fail "long prompt message: $(cat "$TMP/body")"
req GET /nope; want_error 404 "unknown route"
req DELETE /v1/models; want_error 405 "wrong method"
req GET /v1/completions; want_error 405 "GET on a POST route"
healthy "after bad input"

# ---- metrics: promtool accepts them, the model label is everywhere, counters moved
req GET /metrics; want_code 200 "/metrics"
cp "$TMP/body" "$TMP/metrics.txt"
# promtool comes with Debian's prometheus package, which scripts/setup.sh installs.
promtool check metrics <"$TMP/metrics.txt" >"$TMP/promtool" 2>&1 || fail "promtool: $(head -c 600 "$TMP/promtool")"
grep -v '^#' "$TMP/metrics.txt" | grep -vq 'model="tiny-test"' && fail "a series without the model label"
for m in anneal_time_to_first_token_seconds_bucket anneal_inter_token_latency_seconds_count \
         anneal_e2e_request_latency_seconds_sum anneal_request_queue_time_seconds_count \
         anneal_request_prompt_tokens_count anneal_request_generation_tokens_count \
         anneal_requests_running anneal_requests_waiting anneal_kv_blocks_used anneal_kv_blocks_free \
         anneal_batch_size anneal_prompt_tokens_total anneal_generation_tokens_total; do
    grep -q "^$m{" "$TMP/metrics.txt" || fail "metric $m missing"
done
grep -q '^anneal_requests_total{model="tiny-test",route="/v1/completions",status="400"} [1-9]' "$TMP/metrics.txt" ||
    fail "requests_total by status: $(grep requests_total "$TMP/metrics.txt")"
grep -q '^anneal_request_finish_total{model="tiny-test",reason="length"} [1-9]' "$TMP/metrics.txt" || fail "finish reasons"

# ---- the access log: one JSON line per request
n=$(grep -c '^{"ts"' "$TMP/server.err")
[ "$n" -gt 40 ] || fail "access log has $n lines"
grep '^{"ts"' "$TMP/server.err" | jq -se 'map(select(.route == "/v1/completions" and .status == 200)) |
    length > 5 and all(.request_id and .key_id == "anonymous" and .model == "tiny-test" and .prompt_tokens > 0 and .completion_tokens > 0 and .duration_ms >= 0 and .finish_reason)' >/dev/null ||
    fail "access log fields: $(grep '^{"ts"' "$TMP/server.err" | head -n 3)"

stop_server
[ "$SERVER_RC" = 0 ] || fail "server exit status $SERVER_RC after SIGTERM"
[ "$FAILS" -eq 0 ] || { echo "$FAILS failure(s)" >&2; exit 1; }
echo "serve api: all checks passed"
