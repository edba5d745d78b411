#!/usr/bin/env bash
# `anneal tokenizer train` end to end: the hand-derived tiny vocabulary through `anneal
# tokenize`, both types on tinyshakespeare (gguf verify), --json, directories, invalid UTF-8
# lines reported as PATH:LINE, byte-identical reruns, and exit statuses 1/2 with messages
# that name the flag or file.
source "$(dirname "$0")/common.bash"

TS="$SHARED/corpora/tinyshakespeare.txt"
[ -r "$TS" ] || { echo "missing $TS (set ANNEAL_SHARED)" >&2; exit 1; }
export ANNEAL_LINEAGE_TIME=2026-01-02T03:04:05Z

same() { # same FILE EXPECTED-TEXT
    local got
    got=$(cat "$1")
    [ "$got" = "$2" ] || fail "expected '$2', got '$got'"
}

# --- help ------------------------------------------------------------------------------
expect 0 "$BIN" tokenizer --help
has "$TMP/out" "train +learn a BPE vocabulary"
expect 0 "$BIN" tokenizer train --help
has "$TMP/out" "usage: anneal tokenizer train --vocab-size N --type bpe\|spm-bpe"
expect 2 "$BIN" tokenizer
expect 2 "$BIN" tokenizer frobnicate
has "$TMP/err" "unknown subcommand 'frobnicate'"
expect 0 "$BIN" help
has "$TMP/out" "tokenizer +train a BPE vocabulary"

# --- the tiny corpus: merges derived by hand (tests/unit/test_tokenizer_train.c) -------
printf 'low low low low low lower lower newest newest newest newest newest newest widest widest widest' >"$TMP/tiny.txt"
expect 0 "$BIN" tokenizer train --vocab-size 270 --type bpe "$TMP/tiny.txt" -o "$TMP/tiny.gguf"
has "$TMP/out" "^wrote .*tiny.gguf: bpe, 270 tokens \(13 merges\) from 1 file, 94 bytes, 1 lines \(0 skipped\), 5 distinct words"
expect 0 "$BIN" gguf verify "$TMP/tiny.gguf"
expect 0 "$BIN" tokenize -m "$TMP/tiny.gguf" --ids " newest lowest lower"
same "$TMP/out" "264 261 257 261 101 114"
expect 0 "$BIN" gguf show "$TMP/tiny.gguf"
has "$TMP/out" 'tokenizer.ggml.merges +arr\[str,13\] += \["e s", "es t", "l o", "lo w"'
has "$TMP/out" "parent +corpus +sha256:[0-9a-f]{64} +.*tiny.txt"

expect 0 "$BIN" tokenizer train --vocab-size 400 --type spm-bpe --character-coverage 1 \
    "$TMP/tiny.txt" -o "$TMP/tiny-spm.gguf"
has "$TMP/out" "spm-bpe, 285 tokens \(15 merges\)"
expect 0 "$BIN" tokenize -m "$TMP/tiny-spm.gguf" --ids "lowest"
same "$TMP/out" "1 263 260"

# --- tinyshakespeare, both types, JSON summary ------------------------------------------
for t in bpe spm-bpe; do
    expect 0 "$BIN" tokenizer train --vocab-size 1000 --type "$t" --json "$TS" -o "$TMP/ts-$t.gguf"
    has "$TMP/out" "^\{\"output\":\".*ts-$t.gguf\",\"type\":\"$t\",\"vocab_size\":1000,"
    has "$TMP/out" "\"files\":1,\"bytes\":1115394,\"lines\":40000,\"skipped_lines\":0,"
    # The trainer's count of tokens equals the encoder's on the whole file (same merges,
    # same order; the CLI's 1 MiB blocks end at line ends).
    tokens=$(grep -o '"tokens":[0-9]*' "$TMP/out" | cut -d: -f2)
    expect 0 "$BIN" gguf verify "$TMP/ts-$t.gguf"
    expect 0 "$BIN" tokenize -m "$TMP/ts-$t.gguf" --ids --no-bos -f "$TS"
    ids=$(wc -w <"$TMP/out")
    [ "$tokens" = "$ids" ] || fail "$t: trainer counted $tokens tokens, the encoder gives $ids"
    expect 0 "$BIN" tokenize -m "$TMP/ts-$t.gguf" --ids --no-bos "To be, or not to be"
    [ -s "$TMP/out" ] || fail "no ids from the $t vocabulary"
done
expect 0 "$BIN" gguf show "$TMP/ts-spm-bpe.gguf"
has "$TMP/out" 'tokenizer.ggml.model +str += "llama"'
has "$TMP/out" 'tokenizer.ggml.add_space_prefix +bool += true'

# --- determinism: the same command gives the same bytes ---------------------------------
cp "$TMP/ts-bpe.gguf" "$TMP/first.gguf"
expect 0 "$BIN" tokenizer train --vocab-size 1000 --type bpe --json "$TS" -o "$TMP/ts-bpe.gguf"
cmp -s "$TMP/first.gguf" "$TMP/ts-bpe.gguf" || fail "two runs gave different files"

# --- specials, --pre, --min-frequency ----------------------------------------------------
for i in $(seq 30); do printf '<|im_start|>user hello there<|im_end|>\n'; done >"$TMP/chat.txt"
expect 0 "$BIN" tokenizer train --vocab-size 300 --type bpe --pre llama-bpe --special '<|im_start|>' \
    --special '<|im_end|>' --min-frequency 5 "$TMP/chat.txt" -o "$TMP/chat.gguf"
expect 0 "$BIN" tokenize -m "$TMP/chat.gguf" --pieces --no-bos --parse-special "<|im_end|> hello"
same "$TMP/out" "'<|im_end|>'
' hello'"
expect 0 "$BIN" gguf show "$TMP/chat.gguf"
has "$TMP/out" 'tokenizer.ggml.pre +str += "llama-bpe"'

# --- directories and invalid UTF-8 ------------------------------------------------------
mkdir -p "$TMP/dir/sub"
printf 'alpha beta\n' >"$TMP/dir/b.txt"
printf 'gamma\n\xff\xfe broken\ndelta\n' >"$TMP/dir/sub/a.txt"
printf 'hidden\n' >"$TMP/dir/.hidden"
expect 0 "$BIN" tokenizer train --vocab-size 300 --type spm-bpe --json "$TMP/dir" -o "$TMP/dir.gguf"
has "$TMP/err" "dir/sub/a.txt:2: invalid UTF-8 at byte 1, line skipped"
has "$TMP/out" "\"files\":2,\"bytes\":23,\"lines\":4,\"skipped_lines\":1,"
expect 0 "$BIN" gguf show "$TMP/dir.gguf"
has "$TMP/out" "parent +corpus +sha256:[0-9a-f]{64} +.*dir/b.txt"
has "$TMP/out" "parent +corpus +sha256:[0-9a-f]{64} +.*dir/sub/a.txt"

# Past 20 invalid lines, the rest are counted.
for i in $(seq 25); do printf 'ok line\n\xc3\n'; done >"$TMP/many-bad.txt"
expect 0 "$BIN" tokenizer train --vocab-size 300 --type bpe "$TMP/many-bad.txt" -o "$TMP/many.gguf"
[ "$(grep -c 'line skipped' "$TMP/err")" = 20 ] || fail "expected 20 reported lines"
has "$TMP/err" "many-bad.txt:40: invalid UTF-8 at byte 1, line skipped"
grep -q "many-bad.txt:42:" "$TMP/err" && fail "line 42 reported past the limit"
has "$TMP/err" "5 more lines skipped \(not listed\)"
has "$TMP/out" "50 lines \(25 skipped\)"

# --- failures (exit 1) -----------------------------------------------------------------
expect 1 "$BIN" tokenizer train --vocab-size 300 --type bpe "$TMP/missing.txt" -o "$TMP/x.gguf"
has "$TMP/err" "cannot read '.*missing.txt': No such file or directory"
[ -e "$TMP/x.gguf" ] && fail "a file was written after a failure"
if [ "$(id -u)" != 0 ]; then
    printf 'x\n' >"$TMP/noperm.txt"
    chmod 000 "$TMP/noperm.txt"
    expect 1 "$BIN" tokenizer train --vocab-size 300 --type bpe "$TMP/noperm.txt" -o "$TMP/x.gguf"
    has "$TMP/err" "cannot read '.*noperm.txt': Permission denied"
fi
expect 1 "$BIN" tokenizer train --vocab-size 300 --type bpe "$TMP/tiny.txt" -o "$TMP/nodir/x.gguf"
has "$TMP/err" "nodir/x.gguf"

# --- usage errors (exit 2), each naming its flag ----------------------------------------
expect 2 "$BIN" tokenizer train --vocab-size 300 --type bpe "$TMP/tiny.txt"
has "$TMP/err" "missing -o VOCAB.gguf"
expect 2 "$BIN" tokenizer train --type bpe "$TMP/tiny.txt" -o "$TMP/x.gguf"
has "$TMP/err" "missing --vocab-size N"
expect 2 "$BIN" tokenizer train --vocab-size 300 "$TMP/tiny.txt" -o "$TMP/x.gguf"
has "$TMP/err" "missing --type bpe\|spm-bpe"
expect 2 "$BIN" tokenizer train --vocab-size 300 --type bpe -o "$TMP/x.gguf"
has "$TMP/err" "missing CORPUS"
expect 2 "$BIN" tokenizer train --vocab-size 300 --vocab-size 400 --type bpe "$TMP/tiny.txt" -o "$TMP/x.gguf"
has "$TMP/err" "--vocab-size given twice"
expect 2 "$BIN" tokenizer train --vocab-size 300 --type bpe --type bpe "$TMP/tiny.txt" -o "$TMP/x.gguf"
has "$TMP/err" "--type given twice"
expect 2 "$BIN" tokenizer train --vocab-size 300 --type wordpiece "$TMP/tiny.txt" -o "$TMP/x.gguf"
has "$TMP/err" "--type 'wordpiece' is not bpe or spm-bpe"
expect 2 "$BIN" tokenizer train --vocab-size lots --type bpe "$TMP/tiny.txt" -o "$TMP/x.gguf"
has "$TMP/err" "--vocab-size 'lots' is not a whole number"
expect 2 "$BIN" tokenizer train --vocab-size 257 --type bpe --special '<a>' "$TMP/tiny.txt" -o "$TMP/x.gguf"
has "$TMP/err" "--vocab-size 257 is too small: bpe needs at least 258 \(2 special tokens \+ 256 byte tokens\)"
expect 2 "$BIN" tokenizer train --vocab-size 259 --type spm-bpe "$TMP/tiny.txt" -o "$TMP/x.gguf"
has "$TMP/err" "--vocab-size 259 is too small: spm-bpe needs at least 260"
expect 2 "$BIN" tokenizer train --vocab-size 300 --type spm-bpe --pre gpt-2 "$TMP/tiny.txt" -o "$TMP/x.gguf"
has "$TMP/err" "--pre applies to --type bpe only"
expect 2 "$BIN" tokenizer train --vocab-size 300 --type bpe --character-coverage 0.9 "$TMP/tiny.txt" -o "$TMP/x.gguf"
has "$TMP/err" "--character-coverage applies to --type spm-bpe only"
expect 2 "$BIN" tokenizer train --vocab-size 300 --type spm-bpe --character-coverage 2 "$TMP/tiny.txt" -o "$TMP/x.gguf"
has "$TMP/err" "--character-coverage '2' is not a number in \(0, 1\]"
expect 2 "$BIN" tokenizer train --vocab-size 300 --type bpe --pre klingon "$TMP/tiny.txt" -o "$TMP/x.gguf"
has "$TMP/err" "--pre: unknown pre-tokenizer 'klingon'"
expect 2 "$BIN" tokenizer train --vocab-size 300 --type bpe --special '<a>' --special '<a>' "$TMP/tiny.txt" -o "$TMP/x.gguf"
has "$TMP/err" "--special: specials\[1\] '<a>' is given twice"
expect 2 "$BIN" tokenizer train --vocab-size 300 --type spm-bpe --special '<s>' "$TMP/tiny.txt" -o "$TMP/x.gguf"
has "$TMP/err" "default special token"
expect 2 "$BIN" tokenizer train --vocab-size 300 --type bpe --min-frequency 0 "$TMP/tiny.txt" -o "$TMP/x.gguf"
has "$TMP/err" "--min-frequency '0' is not a whole number >= 1"
expect 2 "$BIN" tokenizer train --vocab-size 300 --type bpe --bogus "$TMP/tiny.txt" -o "$TMP/x.gguf"
has "$TMP/err" "unknown flag '--bogus'"
expect 2 "$BIN" tokenizer train --vocab-size 300 --type bpe "$TMP/tiny.txt" -o
has "$TMP/err" "-o needs a value"
expect 2 "$BIN" tokenizer train --json --json --vocab-size 300 --type bpe "$TMP/tiny.txt" -o "$TMP/x.gguf"
has "$TMP/err" "--json given twice"
[ -e "$TMP/x.gguf" ] && fail "a file was written after a usage error"

if [ "$FAILS" -ne 0 ]; then
    echo "tokenizer_train_cli: $FAILS failure(s)" >&2
    exit 1
fi
echo "tokenizer_train_cli: ok"
