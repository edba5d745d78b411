#!/usr/bin/env bash
# `anneal tokenize` end to end: the output formats on the fixture vocabularies, input from
# TEXT / -f / stdin, BOS and special-token flags, and exit statuses 0/1/2 with messages that
# name the missing key or the unknown pre-tokenizer (on hand-built GGUF files).
source "$(dirname "$0")/common.bash"

V="$SHARED/fixtures/vocab"
SPM="$V/ggml-vocab-llama-spm.gguf"
GPT2="$V/ggml-vocab-gpt-2.gguf"

same() { # same FILE EXPECTED-TEXT
    local got
    got=$(cat "$1")
    [ "$got" = "$2" ] || fail "expected '$2', got '$got'"
}

# Little-endian writers for hand-built GGUF files.
u32() { printf "$(printf '\\x%02x\\x%02x\\x%02x\\x%02x' $(($1 & 255)) $((($1 >> 8) & 255)) $((($1 >> 16) & 255)) $((($1 >> 24) & 255)))"; }
u64() { u32 $(($1 & 0xffffffff)); u32 $((($1 >> 32) & 0xffffffff)); }
str() { u64 ${#1}; printf '%s' "$1"; }
kv_str() { str "$1"; u32 8; str "$2"; }          # kv_str KEY VALUE
kv_strs() { # kv_strs KEY S1 S2 ...: an array of strings
    local k=$1
    shift
    str "$k"; u32 9; u32 8; u64 $#
    for s in "$@"; do str "$s"; done
}
header() { printf 'GGUF'; u32 3; u64 0; u64 "$1"; } # header N_KV

for f in "$SPM" "$GPT2"; do
    [ -r "$f" ] || { echo "missing fixture $f (set ANNEAL_SHARED)" >&2; exit 1; }
done

# --- formats ---------------------------------------------------------------------------
expect 0 "$BIN" tokenize -m "$SPM" "Hello world"
same "$TMP/out" "     1 -> '<s>'
 15043 -> ' Hello'
  3186 -> ' world'"

expect 0 "$BIN" tokenize -m "$SPM" --ids --no-bos "Hello world"
same "$TMP/out" "15043 3186"

expect 0 "$BIN" tokenize -m "$SPM" --ids "Hello world"
same "$TMP/out" "1 15043 3186"

expect 0 "$BIN" tokenize -m "$SPM" --pieces --no-bos $'a\tb'
same "$TMP/out" "' a'
'\\t'
'b'"

# byte fallback pieces are escaped bytes
expect 0 "$BIN" tokenize -m "$SPM" --no-bos $'\xf0\x9f\xa6\x99'
same "$TMP/out" " 29871 -> ' '
   243 -> '\\xf0'
   162 -> '\\x9f'
   169 -> '\\xa6'
   156 -> '\\x99'"

expect 0 "$BIN" tokenize -m "$GPT2" --json "Hello world"
same "$TMP/out" '{"n_tokens":2,"ids":[15496,995],"tokens":[{"id":15496,"text":"Hello","piece":"Hello"},{"id":995,"text":"Ġworld","piece":" world"}]}'
if command -v python3 >/dev/null; then
    python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$TMP/out" || fail "--json output is not JSON"
fi

# --- special tokens ---------------------------------------------------------------------
expect 0 "$BIN" tokenize -m "$GPT2" --ids "a<|endoftext|>b"
same "$TMP/out" "64 27 91 437 1659 5239 91 29 65"
expect 0 "$BIN" tokenize -m "$GPT2" --ids --parse-special "a<|endoftext|>b"
same "$TMP/out" "64 50256 65"
expect 0 "$BIN" tokenize -m "$SPM" --ids --no-bos --parse-special "<s>Hi</s>"
same "$TMP/out" "1 6324 2"

# --- input sources --------------------------------------------------------------------------
printf 'Hello world\n' >"$TMP/in.txt"
expect 0 "$BIN" tokenize -m "$SPM" --ids --no-bos -f "$TMP/in.txt"
same "$TMP/out" "15043 3186 13"
printf 'Hello world' | "$BIN" tokenize -m "$SPM" --ids --no-bos >"$TMP/out" 2>"$TMP/err" || fail "stdin input failed"
same "$TMP/out" "15043 3186"
: | "$BIN" tokenize -m "$SPM" --ids >"$TMP/out" 2>"$TMP/err" || fail "empty stdin failed"
same "$TMP/out" "1"
expect 0 "$BIN" tokenize -m "$SPM" --ids --no-bos -- "-dash"
same "$TMP/out" "448 14592"

# --- usage errors (exit 2) -------------------------------------------------------------------
expect 2 "$BIN" tokenize "text"
has "$TMP/err" "missing -m FILE"
expect 2 "$BIN" tokenize -m "$SPM" --bogus
has "$TMP/err" "unknown flag '--bogus'"
expect 2 "$BIN" tokenize -m "$SPM" --ids --json x
has "$TMP/err" "exclude each other"
expect 2 "$BIN" tokenize -m "$SPM" -f "$TMP/in.txt" "text"
has "$TMP/err" "not both"
expect 2 "$BIN" tokenize -m "$SPM" a b
expect 2 "$BIN" tokenize -m
expect 0 "$BIN" tokenize --help
has "$TMP/out" "usage: anneal tokenize -m FILE"
expect 0 "$BIN" help tokenize
has "$TMP/out" "--parse-special"

# --- failures (exit 1) ------------------------------------------------------------------------
expect 1 "$BIN" tokenize -m "$TMP/no-such-file.gguf" x
has "$TMP/err" "no-such-file.gguf"
expect 1 "$BIN" tokenize -m "$SPM" -f "$TMP/no-such-input.txt"
has "$TMP/err" "no-such-input.txt"

# A model file without any tokenizer keys.
{ header 1; kv_str general.architecture llama; } >"$TMP/nokeys.gguf"
expect 1 "$BIN" tokenize -m "$TMP/nokeys.gguf" x
has "$TMP/err" "tokenizer.ggml.model"

# A "gpt2" vocabulary without merges.
{ header 2; kv_str tokenizer.ggml.model gpt2; kv_strs tokenizer.ggml.tokens a b ab; } >"$TMP/nomerges.gguf"
expect 1 "$BIN" tokenize -m "$TMP/nomerges.gguf" x
has "$TMP/err" "tokenizer.ggml.merges"

# An unknown pre-tokenizer is named.
{ header 4; kv_str tokenizer.ggml.model gpt2; kv_str tokenizer.ggml.pre frobnicate-9
  kv_strs tokenizer.ggml.tokens a b ab; kv_strs tokenizer.ggml.merges "a b"; } >"$TMP/badpre.gguf"
expect 1 "$BIN" tokenize -m "$TMP/badpre.gguf" x
has "$TMP/err" "frobnicate-9"

# A merge naming a token that is not in the vocabulary is named by index.
{ header 4; kv_str tokenizer.ggml.model gpt2; kv_str tokenizer.ggml.pre gpt-2
  kv_strs tokenizer.ggml.tokens a b ab; kv_strs tokenizer.ggml.merges "a b" "b c"; } >"$TMP/badmerge.gguf"
expect 1 "$BIN" tokenize -m "$TMP/badmerge.gguf" x
has "$TMP/err" "tokenizer.ggml.merges\[1\] 'b c'"

# The same hand-built vocabulary works when its merges are right.
{ header 4; kv_str tokenizer.ggml.model gpt2; kv_str tokenizer.ggml.pre gpt-2
  kv_strs tokenizer.ggml.tokens a b ab; kv_strs tokenizer.ggml.merges "a b"; } >"$TMP/tiny.gguf"
expect 0 "$BIN" tokenize -m "$TMP/tiny.gguf" --ids "abab"
same "$TMP/out" "2 2"

# An unknown tokenizer model is named.
{ header 2; kv_str tokenizer.ggml.model bert-ish; kv_strs tokenizer.ggml.tokens a; } >"$TMP/badmodel.gguf"
expect 1 "$BIN" tokenize -m "$TMP/badmodel.gguf" x
has "$TMP/err" "'bert-ish' is not supported"

if [ "$FAILS" -ne 0 ]; then
    echo "tokenize_cli: $FAILS failure(s)" >&2
    exit 1
fi
echo "tokenize_cli: ok"
