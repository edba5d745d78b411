# Shared set-up for the serve_*.sh integration scripts (sourced, not a test itself): a tiny
# random model, starting `anneal serve` on a free loopback port (--port 0; the bound port is
# read from its "listening on" line), always stopping it at exit, and curl/jq helpers.
source "$(dirname "$0")/common.bash"

command -v curl >/dev/null || { echo "serve tests need curl" >&2; exit 1; }
command -v jq >/dev/null || { echo "serve tests need jq" >&2; exit 1; }

VOCAB="$SHARED/fixtures/vocab/ggml-vocab-llama-spm.gguf"
M="$TMP/tiny.gguf"
"$BIN" init --arch llama --dim 64 --layers 2 --heads 4 --kv-heads 2 --ffn 128 \
    --vocab-from "$VOCAB" --type q8_0 --seed 3 "$M" >/dev/null 2>&1 || { echo "anneal init failed" >&2; exit 1; }

SERVER_PID=
trap 'stop_server; rm -rf "$TMP"' EXIT

# start_server [FLAGS...]: starts the server, waits (up to 60 s) until /health answers;
# sets PORT and URL. Its stderr (log and access log) goes to $TMP/server.err.
start_server() {
    "$BIN" serve -m "$M" --port 0 -t 2 "$@" >"$TMP/server.out" 2>"$TMP/server.err" &
    SERVER_PID=$!
    PORT=
    for _ in $(seq 1 600); do
        PORT=$(sed -n 's/.*listening on http:\/\/[^:]*:\([0-9][0-9]*\).*/\1/p' "$TMP/server.err")
        [ -n "$PORT" ] && break
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    if [ -z "$PORT" ]; then
        fail "server ($*) did not start: $(head -c 2000 "$TMP/server.err")"
        exit 1
    fi
    URL="http://127.0.0.1:$PORT"
    for _ in $(seq 1 600); do
        curl -s -m 5 -o /dev/null "$URL/health" && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    fail "server ($*) never answered /health: $(grep -v '^{"ts"' "$TMP/server.err" | tail -c 2000)"
    exit 1
}

# stop_server: SIGTERM and wait; sets SERVER_RC.
stop_server() {
    SERVER_RC=
    [ -n "$SERVER_PID" ] || return 0
    kill -TERM "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
    SERVER_RC=$?
    SERVER_PID=
}

# req METHOD PATH [BODY] [curl args...]: body to $TMP/body, HTTP status to $TMP/code.
req() {
    local method=$1 path=$2 body=${3:-}
    shift 3 2>/dev/null || shift $#
    if [ -n "$body" ]; then
        curl -s -m 60 -X "$method" -o "$TMP/body" -w '%{http_code}' -H 'Content-Type: application/json' \
            --data-binary "$body" "$@" "$URL$path" >"$TMP/code"
    else
        curl -s -m 60 -X "$method" -o "$TMP/body" -w '%{http_code}' "$@" "$URL$path" >"$TMP/code"
    fi
}

# want_code CODE WHAT: the last req answered CODE.
want_code() {
    local got
    got=$(cat "$TMP/code")
    [ "$got" = "$1" ] || fail "$2: HTTP $got, expected $1: $(head -c 400 "$TMP/body")"
}

# want_error CODE WHAT: an OpenAI error object with that status.
want_error() {
    want_code "$1" "$2"
    jq -e '.error.message | type == "string"' "$TMP/body" >/dev/null 2>&1 ||
        fail "$2: no error object: $(head -c 400 "$TMP/body")"
    jq -e '.error | has("type") and has("param") and has("code")' "$TMP/body" >/dev/null 2>&1 ||
        fail "$2: incomplete error object: $(head -c 400 "$TMP/body")"
}

# jqb FILTER: jq -r on the last body.
jqb() { jq -r "$1" "$TMP/body" 2>/dev/null; }

# healthy WHAT: the server still answers /health.
healthy() {
    curl -s -m 10 "$URL/health" | grep -q '"ok"' || fail "$1: server no longer healthy"
}

# sse_text FILE: the concatenated text of a completions or chat stream.
sse_text() {
    sed -n 's/^data: //p' "$1" | grep -v '^\[DONE\]$' |
        jq -j '.choices[0] | (.text // .delta.content // "")' 2>/dev/null
}
