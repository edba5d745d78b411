#!/usr/bin/env bash
# `anneal lora merge` and `--lora FILE[:scale]` on generate and perplexity, with an adapter
# written here by an independent GGUF writer in the layout gguf-py gives llama.cpp adapters.
source "$(dirname "$0")/common.bash"

# python3 (installed by scripts/setup.sh) writes the adapter.
command -v python3 >/dev/null 2>&1 || { echo "FAIL: python3 not found (scripts/setup.sh installs it)" >&2; exit 1; }

VOCAB="$SHARED/fixtures/vocab/ggml-vocab-llama-spm.gguf"
M="$TMP/base.gguf"
MQ="$TMP/base_q8.gguf"
expect 0 "$BIN" init --arch llama --dim 64 --layers 2 --heads 4 --kv-heads 2 --ffn 128 \
    --vocab-from "$VOCAB" --type f32 --seed 3 "$M"
expect 0 "$BIN" init --arch llama --dim 64 --layers 2 --heads 4 --kv-heads 2 --ffn 128 \
    --vocab-from "$VOCAB" --type q8_0 --seed 3 "$MQ"

# adapter.py OUT GENERAL_TYPE: rank 4, alpha 8, F32 pairs on attn_q and ffn_down of both
# layers, F16 on attn_v; dims as GGUF stores them: lora_a [n_in, r], lora_b [r, n_out].
cat >"$TMP/adapter.py" <<'EOF'
import random, struct, sys
out, gtype = sys.argv[1], sys.argv[2]
rng = random.Random(11)
def s(x):
    b = x.encode()
    return struct.pack("<Q", len(b)) + b
kvs = [("general.architecture", 8, s("llama")), ("general.type", 8, s(gtype)),
       ("adapter.type", 8, s("lora")), ("adapter.lora.alpha", 6, struct.pack("<f", 8.0))]
r = 4
tensors = []  # (name, dims, type, bytes)
for l in range(2):
    for base, n_in, n_out, ty in (("attn_q", 64, 64, 0), ("ffn_down", 128, 64, 0), ("attn_v", 64, 32, 1)):
        for suffix, dims in (("lora_a", (n_in, r)), ("lora_b", (r, n_out))):
            n = dims[0] * dims[1]
            vals = [rng.uniform(-0.4, 0.4) for _ in range(n)]
            data = struct.pack("<%d%s" % (n, "f" if ty == 0 else "e"), *vals)
            tensors.append(("blk.%d.%s.weight.%s" % (l, base, suffix), dims, ty, data))
head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs))
for k, t, v in kvs:
    head += s(k) + struct.pack("<I", t) + v
off = 0
offs = []
for name, dims, ty, data in tensors:
    offs.append(off)
    head += s(name) + struct.pack("<I", 2) + struct.pack("<QQ", *dims) + struct.pack("<IQ", ty, off)
    off += (len(data) + 31) // 32 * 32
head += b"\0" * (-len(head) % 32)
body = b""
for (name, dims, ty, data), o in zip(tensors, offs):
    body += data + b"\0" * (-len(data) % 32)
open(out, "wb").write(head + body)
EOF
A="$TMP/adapter.gguf"
python3 "$TMP/adapter.py" "$A" adapter || fail "adapter.py failed"
python3 "$TMP/adapter.py" "$TMP/notadapter.gguf" model || fail "adapter.py failed"

# merge: exit 0, lineage names the base and the adapter, same tensor table as the base.
export ANNEAL_LINEAGE_TIME=2026-01-01T00:00:00Z
expect 0 "$BIN" lora merge "$M" "$A" "$TMP/merged.gguf"
has "$TMP/err" "merged 1 adapter"
expect 0 "$BIN" gguf show "$TMP/merged.gguf" --all
has "$TMP/out" "anneal.lineage.parents"
has "$TMP/out" "sha256:[0-9a-f]{64} base "
has "$TMP/out" "sha256:[0-9a-f]{64} adapter "
has "$TMP/out" 'lora_scales'
expect 0 "$BIN" gguf verify "$TMP/merged.gguf"

# --lora at load gives exactly the merged model's output; scale 0 gives the base's.
P="Once upon a time"
expect 0 "$BIN" generate -m "$M" -p "$P" -n 8 --temp 0 -t 2
cp "$TMP/out" "$TMP/base.txt"
expect 0 "$BIN" generate -m "$TMP/merged.gguf" -p "$P" -n 8 --temp 0 -t 2
cp "$TMP/out" "$TMP/merged.txt"
expect 0 "$BIN" generate -m "$M" --lora "$A" -p "$P" -n 8 --temp 0 -t 2
cmp -s "$TMP/out" "$TMP/merged.txt" || fail "--lora output differs from the merged model's"
cmp -s "$TMP/out" "$TMP/base.txt" && fail "--lora did not change the output"
expect 0 "$BIN" generate -m "$M" --lora "$A:0" -p "$P" -n 8 --temp 0 -t 2
cmp -s "$TMP/out" "$TMP/base.txt" || fail "--lora FILE:0 changed the output"
# merge --scale 0.5 twice over equals --lora A:0.5 --lora A:0.5 at load.
expect 0 "$BIN" lora merge "$M" "$A" "$TMP/half2.gguf" --scale 0.5 --lora "$A:0.5"
expect 0 "$BIN" generate -m "$TMP/half2.gguf" -p "$P" -n 8 --temp 0 -t 2
cp "$TMP/out" "$TMP/half2.txt"
expect 0 "$BIN" generate -m "$M" --lora "$A:0.5" --lora "$A:0.5" -p "$P" -n 8 --temp 0 -t 2
cmp -s "$TMP/out" "$TMP/half2.txt" || fail "two --lora A:0.5 differ from the merged file"

# perplexity: --lora equals the merged file, to the last digit.
head -c 2000 "$SHARED/corpora/tinyshakespeare.txt" >"$TMP/text.txt"
expect 0 "$BIN" perplexity -m "$TMP/merged.gguf" -f "$TMP/text.txt" --ctx 64 --chunks 1 --json
sed 's/"seconds":[0-9.]*//' "$TMP/out" >"$TMP/ppl_merged"
expect 0 "$BIN" perplexity -m "$M" --lora "$A" -f "$TMP/text.txt" --ctx 64 --chunks 1 --json
sed 's/"seconds":[0-9.]*//' "$TMP/out" >"$TMP/ppl_lora"
cmp -s "$TMP/ppl_merged" "$TMP/ppl_lora" || fail "perplexity with --lora differs from the merged file"

# A quantized base keeps its types (requantized rows).
expect 0 "$BIN" lora merge "$MQ" "$A" "$TMP/merged_q8.gguf"
expect 0 "$BIN" gguf show "$TMP/merged_q8.gguf"
has "$TMP/out" "blk.0.attn_q.weight.*q8_0"

# Errors: not an adapter, missing file, usage.
expect 1 "$BIN" generate -m "$M" --lora "$TMP/notadapter.gguf" -p "$P" -n 2
has "$TMP/err" "not a LoRA adapter"
expect 1 "$BIN" lora merge "$M" "$TMP/none.gguf" "$TMP/x.gguf"
has "$TMP/err" "none.gguf"
[ -e "$TMP/x.gguf" ] && fail "a failed merge left its output"
expect 2 "$BIN" lora merge "$M" "$A"
expect 2 "$BIN" lora split
expect 2 "$BIN" generate -m "$M" --lora "" -p "$P"
expect 0 "$BIN" lora --help
has "$TMP/out" "usage: anneal lora merge"

# serve: a bad adapter stops the start; repeated --lora flags equal the merged file.
expect 1 "$BIN" serve -m "$M" --port 0 --lora "$TMP/notadapter.gguf"
has "$TMP/err" "not a LoRA adapter"
SERVER_PID=
trap '[ -n "$SERVER_PID" ] && kill -TERM "$SERVER_PID" 2>/dev/null; rm -rf "$TMP"' EXIT
# complete MODEL [FLAGS...]: greedy completion text of "$P" from a server on a free port.
complete() {
    "$BIN" serve -m "$@" --port 0 -t 2 >/dev/null 2>"$TMP/server.err" &
    SERVER_PID=$!
    local port=
    for _ in $(seq 1 300); do
        port=$(sed -n 's/.*listening on http:\/\/[^:]*:\([0-9][0-9]*\).*/\1/p' "$TMP/server.err")
        [ -n "$port" ] && break
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    [ -n "$port" ] || fail "serve $* did not start: $(head -c 400 "$TMP/server.err")"
    curl -s -m 60 -H 'Content-Type: application/json' \
        --data-binary '{"prompt":"Once upon a time","max_tokens":8,"temperature":0}' \
        "http://127.0.0.1:$port/v1/completions" | sed 's/"id":"[^"]*"//; s/"created":[0-9]*//'
    kill -TERM "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
    SERVER_PID=
}
if command -v curl >/dev/null 2>&1; then
    complete "$TMP/half2.gguf" >"$TMP/serve_merged"
    complete "$M" --lora "$A:0.5" --lora "$A:0.5" >"$TMP/serve_lora"
    complete "$M" >"$TMP/serve_base"
    grep -q '"text"' "$TMP/serve_merged" || fail "serve gave no completion: $(head -c 400 "$TMP/serve_merged")"
    sed -i 's/"model":"[^"]*"//' "$TMP/serve_merged" "$TMP/serve_lora" "$TMP/serve_base"
    cmp -s "$TMP/serve_merged" "$TMP/serve_lora" || fail "serve --lora differs from the merged file"
    cmp -s "$TMP/serve_base" "$TMP/serve_lora" && fail "serve --lora did not change the completion"
else
    echo "curl not found: serve --lora not checked" >&2
fi

exit $((FAILS > 0))
