#!/usr/bin/env bash
# `anneal gguf show|verify` end to end: output on a fixture and on a hand-built file with
# tensors, JSON validity, exit statuses 0/1/2 and the offset in error messages.
source "$(dirname "$0")/common.bash"

SPM="$SHARED/fixtures/vocab/ggml-vocab-llama-spm.gguf"

# Little-endian writers for building a GGUF by hand.
u32() { printf "$(printf '\\x%02x\\x%02x\\x%02x\\x%02x' $(($1 & 255)) $((($1 >> 8) & 255)) $((($1 >> 16) & 255)) $((($1 >> 24) & 255)))"; }
u64() { u32 $(($1 & 0xffffffff)); u32 $((($1 >> 32) & 0xffffffff)); }
str() { u64 ${#1}; printf '%s' "$1"; }
pad_to() { # pad_to FILE ALIGN
    local n
    n=$(wc -c <"$1")
    head -c $(((($2 - n % $2) % $2))) /dev/zero >>"$1"
}

# ---- show on a fixture ----------------------------------------------------------------
expect 0 "$BIN" gguf show "$SPM"
has "$TMP/out" '^.*: GGUF v3, 22 key/values, 0 tensors, alignment 32'
has "$TMP/out" '^  general\.architecture +str += "llama"$'
has "$TMP/out" '^  tokenizer\.ggml\.tokens +arr\[str,32000\] += \["<unk>", "<s>", "</s>", .*\.\.\. \(32000 items\)\]$'
has "$TMP/out" '^  tokenizer\.ggml\.bos_token_id +u32 += 1$'
has "$TMP/out" '^  tokenizer\.ggml\.add_bos_token +bool += true$'
has "$TMP/out" '^tensors \(0\):$'
expect 0 "$BIN" gguf show --all "$SPM"
has "$TMP/out" '"<0x0A>", "<0x0B>"'
if grep -q 'items)' "$TMP/out"; then fail "--all still cut an array"; fi

# ---- a file with tensors, a nested array and an unknown tensor type -----------------
F="$TMP/t.gguf"
{
    printf 'GGUF'
    u32 3
    u64 3 # tensors
    u64 3 # key/values
    str general.architecture
    u32 8
    str llama
    str test.nested
    u32 9
    u32 9
    u64 2
    u32 4
    u64 2
    u32 1
    u32 2
    u32 8
    u64 1
    str x
    str general.alignment
    u32 4
    u32 32
    str tok.weight
    u32 2
    u64 4
    u64 2
    u32 0 # f32
    u64 0
    str norm
    u32 1
    u64 8
    u32 1 # f16
    u64 32
    str mystery
    u32 1
    u64 4
    u32 99
    u64 64
} >"$F"
pad_to "$F" 32
head -c 64 /dev/zero >>"$F"
expect 0 "$BIN" gguf show "$F"
has "$TMP/out" '3 key/values, 3 tensors'
has "$TMP/out" '^  test\.nested +arr\[arr,2\] += \[\[1, 2\], \["x"\]\]$'
has "$TMP/out" '^ +0  tok\.weight +f32 +0 +32  \[4, 2\]$'
has "$TMP/out" '^ +1  norm +f16 +32 +16  \[8\]$'
has "$TMP/out" '^ +2  mystery +type 99 \(unknown\) +64 +\?  \[4\]$'
expect 0 "$BIN" gguf verify "$F"
has "$TMP/out" 'ok: GGUF v3, 3 key/values, 3 tensors \(48 bytes of data\), alignment 32; 1 tensors of unknown type'

# ---- JSON -------------------------------------------------------------------------------
expect 0 "$BIN" gguf show --json "$SPM"
has "$TMP/out" '"key": "tokenizer.ggml.tokens", "type": "arr", "elem": "str", "n": 32000, "truncated": true'
cp "$TMP/out" "$TMP/spm.json"
expect 0 "$BIN" gguf show --json "$F"
has "$TMP/out" '"name": "mystery", "type": null, "type_id": 99, "dims": \[4\], "offset": 64, "nbytes": null'
cp "$TMP/out" "$TMP/t.json"
expect 0 "$BIN" gguf show --json --all "$SPM"
cp "$TMP/out" "$TMP/all.json"
if command -v python3 >/dev/null 2>&1; then
    for j in spm t all; do
        python3 -m json.tool "$TMP/$j.json" >/dev/null || fail "$j.json is not valid JSON"
    done
    n=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(len([m for m in d["metadata"] if m["key"]=="tokenizer.ggml.tokens"][0]["value"]))' "$TMP/all.json")
    [ "$n" = 32000 ] || fail "--json --all gave $n tokens, expected 32000"
else
    echo "python3 not found: JSON validity not checked" >&2
fi

# ---- lineage --------------------------------------------------------------------------------
# Well-formed lineage is checked in init_quantize_cli.sh (files anneal wrote). A file with a
# partial set of keys is still valid GGUF: show says why the lineage cannot be read.
L="$TMP/lin.gguf"
{
    printf 'GGUF'
    u32 3
    u64 0
    u64 1
    str anneal.lineage.tool
    u32 8
    str 'anneal 0.1.0'
} >"$L"
expect 0 "$BIN" gguf show "$L"
has "$TMP/out" "^lineage: unreadable: key 'anneal\.lineage\.parents' is missing$"
expect 0 "$BIN" gguf show --json "$L"
has "$TMP/out" "^ \"lineage\": \{\"error\": \"lineage: key 'anneal\.lineage\.parents' is missing\"\},$"
has "$TMP/spm.json" '^ "lineage": null,$'
expect 0 "$BIN" gguf show "$SPM"
if grep -q '^lineage' "$TMP/out"; then fail "no lineage keys, yet a lineage section"; fi

# ---- verify -------------------------------------------------------------------------------
expect 0 "$BIN" gguf verify "$SPM"
has "$TMP/out" 'ok: GGUF v3, 22 key/values, 0 tensors \(0 bytes of data\), alignment 32$'
head -c 1000 "$SPM" >"$TMP/cut.gguf"
expect 1 "$BIN" gguf verify "$TMP/cut.gguf"
has "$TMP/err" "^anneal gguf: $TMP/cut.gguf: at offset [0-9]+: "
[ -s "$TMP/out" ] && fail "verify printed to stdout on failure"
expect 1 "$BIN" gguf show "$TMP/cut.gguf"
has "$TMP/err" "at offset 633: key 'tokenizer.ggml.tokens': array of 32000 str elements cannot fit in the 359 bytes that remain$"
head -c 100 "$F" >"$TMP/cut2.gguf"
expect 1 "$BIN" gguf show --json "$TMP/cut2.gguf"
[ -s "$TMP/out" ] && fail "show --json printed to stdout on failure"
expect 1 "$BIN" gguf verify "$TMP/does-not-exist.gguf"
has "$TMP/err" 'does-not-exist.gguf: cannot open'

# ---- usage --------------------------------------------------------------------------------
expect 2 "$BIN" gguf show --bogus "$SPM"
has "$TMP/err" "unknown flag '--bogus'"
expect 2 "$BIN" gguf verify --json "$SPM"
expect 2 "$BIN" gguf show
expect 2 "$BIN" gguf verify "$SPM" "$SPM"
expect 2 "$BIN" gguf frobnicate
expect 2 "$BIN" gguf
for args in "gguf --help" "gguf show --help" "gguf verify -h" "help gguf"; do
    # shellcheck disable=SC2086
    expect 0 "$BIN" $args
    has "$TMP/out" '^usage: anneal gguf'
done

if [ "$FAILS" -ne 0 ]; then
    echo "$FAILS check(s) failed" >&2
    exit 1
fi
echo "gguf_cli: all checks passed"
