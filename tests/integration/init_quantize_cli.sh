#!/usr/bin/env bash
# `anneal init` and `anneal quantize` end to end: a tiny random model, verified, quantized
# to q4_K_M (tensor types checked with `gguf show`), the JSON summary, the lineage keys and
# `gguf show`'s parsed lineage, byte-identical reruns, progress lines, and the exit statuses
# 0/1/2.
source "$(dirname "$0")/common.bash"
export ANNEAL_LINEAGE_TIME=2026-11-29T12:00:00Z

# Little-endian writers for building a GGUF by hand.
u32() { printf "$(printf '\\x%02x\\x%02x\\x%02x\\x%02x' $(($1 & 255)) $((($1 >> 8) & 255)) $((($1 >> 16) & 255)) $((($1 >> 24) & 255)))"; }
u64() { u32 $(($1 & 0xffffffff)); u32 $((($1 >> 32) & 0xffffffff)); }
str() { u64 ${#1}; printf '%s' "$1"; }

# A 512-token vocabulary (the model's embedding and output rows follow its size; the
# 32000-token fixtures would make every step here 60 times slower under the sanitizers).
VOCAB="$TMP/vocab.gguf"
{
    printf GGUF
    u32 3
    u64 0
    u64 2
    str tokenizer.ggml.model
    u32 8
    str llama
    str tokenizer.ggml.tokens
    u32 9
    u32 8
    u64 512
    for i in $(seq 0 511); do str "t$i"; done
} >"$VOCAB"

# same_data A B: the two files have the same data section (their headers differ in the
# recorded command).
same_data() {
    local a b
    a=$("$BIN" gguf show "$1" | sed -n 's/.*data section at \([0-9]*\),.*/\1/p')
    b=$("$BIN" gguf show "$2" | sed -n 's/.*data section at \([0-9]*\),.*/\1/p')
    [ -n "$a" ] && [ "$a" = "$b" ] && cmp -s <(tail -c +$((a + 1)) "$1") <(tail -c +$((b + 1)) "$2")
}

# The type of tensor NAME in `gguf show` output FILE.
type_of() {
    awk -v n="$2" '$2 == n { print $3 }' "$1"
}

INIT=(init --arch llama --dim 256 --layers 8 --heads 4 --kv-heads 2 --ffn 512 --seed 3
      --vocab-from "$VOCAB")

expect 0 "$BIN" gguf verify "$VOCAB"

# ---- init --------------------------------------------------------------------------------
expect 0 "$BIN" "${INIT[@]}" "$TMP/m.gguf"
has "$TMP/out" '^wrote .*m\.gguf: 75 tensors, '
has "$TMP/err" '^\[1/75\] token_embd\.weight f32$'
has "$TMP/err" '^\[75/75\] output\.weight f32$'
expect 0 "$BIN" gguf verify "$TMP/m.gguf"
has "$TMP/out" 'ok: GGUF v3, .* 75 tensors'
expect 0 "$BIN" gguf show "$TMP/m.gguf"
cp "$TMP/out" "$TMP/m.show"
has "$TMP/m.show" 'llama\.attention\.head_count_kv +u32 += 2'
has "$TMP/m.show" 'llama\.vocab_size +u32 += 512'
has "$TMP/m.show" 'tokenizer\.ggml\.model +str += "llama"'
has "$TMP/m.show" 'anneal\.lineage\.created +str += "2026-11-29T12:00:00Z"'
has "$TMP/m.show" 'anneal\.lineage\.tool +str += "anneal '
has "$TMP/m.show" 'blk\.0\.attn_k\.weight +f32 .*\[256, 128\]'
# Same flags, same bytes (the creation time is fixed above).
expect 0 "$BIN" "${INIT[@]}" "$TMP/m2.gguf"
# The output path is part of the recorded command, so compare the data sections.
same_data "$TMP/m.gguf" "$TMP/m2.gguf" ||
    fail "init with the same seed wrote different tensor data"
expect 0 "$BIN" "${INIT[@]}" --seed 4 "$TMP/m3.gguf"
! same_data "$TMP/m.gguf" "$TMP/m3.gguf" || fail "init with another seed wrote the same data"
expect 0 "$BIN" "${INIT[@]}" --json "$TMP/m2.gguf"
python3 -m json.tool "$TMP/out" >/dev/null || fail "init --json is not valid JSON"
has "$TMP/out" '"tensors":75'

# ---- quantize ----------------------------------------------------------------------------
expect 0 "$BIN" quantize "$TMP/m.gguf" "$TMP/q.gguf" q4_K_M
has "$TMP/out" '\(q4_K_M\): .* 75 tensors \(f32 17, q4_K 49, q6_K 9\)'
has "$TMP/err" '^\[1/75\] token_embd\.weight f32 -> q4_K$'
has "$TMP/err" '^\[75/75\] output\.weight f32 -> q6_K$'
[ "$(grep -c '^\[[0-9]*/75\] ' "$TMP/err")" -eq 75 ] || fail "quantize did not print one line per tensor"
expect 0 "$BIN" gguf verify "$TMP/q.gguf"
expect 0 "$BIN" gguf show "$TMP/q.gguf"
cp "$TMP/out" "$TMP/q.show"
has "$TMP/q.show" 'general\.file_type +u32 += 15'
has "$TMP/q.show" 'anneal\.lineage\.parents +arr\[str,1\] += \["sha256:'
# The mix: attn_v and ffn_down of layers 0, 3, 6, 7 and output.weight in q6_K.
for l in 0 1 2 3 4 5 6 7; do
    case $l in 0 | 3 | 6 | 7) want=q6_K ;; *) want=q4_K ;; esac
    for t in attn_v ffn_down; do
        got=$(type_of "$TMP/q.show" "blk.$l.$t.weight")
        [ "$got" = "$want" ] || fail "blk.$l.$t.weight is $got, expected $want"
    done
    got=$(type_of "$TMP/q.show" "blk.$l.attn_q.weight")
    [ "$got" = q4_K ] || fail "blk.$l.attn_q.weight is $got, expected q4_K"
    got=$(type_of "$TMP/q.show" "blk.$l.ffn_norm.weight")
    [ "$got" = f32 ] || fail "blk.$l.ffn_norm.weight is $got, expected f32"
done
[ "$(type_of "$TMP/q.show" output.weight)" = q6_K ] || fail "output.weight is not q6_K"
[ "$(type_of "$TMP/q.show" token_embd.weight)" = q4_K ] || fail "token_embd.weight is not q4_K"
# The parent hash is the input's.
want=$(sha256sum "$TMP/m.gguf" | cut -d' ' -f1)
expect 0 "$BIN" gguf show --json "$TMP/q.gguf"
got=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))
print([m for m in d["metadata"] if m["key"]=="anneal.lineage.parents"][0]["value"][0])' "$TMP/out")
case $got in "sha256:$want input $TMP/m.gguf") ;; *) fail "parent is '$got', expected sha256:$want" ;; esac
# `gguf show` parses the lineage: a section in text, an object in JSON (null without it).
has "$TMP/q.show" '^lineage:$'
has "$TMP/q.show" "^  parent   input    sha256:$want  $TMP/m\.gguf\$"
has "$TMP/q.show" "^  command  anneal quantize $TMP/m\.gguf $TMP/q\.gguf q4_K_M\$"
has "$TMP/q.show" '^  config   \{"type":"q4_K_M","file_type":15\}$'
has "$TMP/q.show" '^  tool     anneal [0-9]'
has "$TMP/q.show" '^  created  2026-11-29T12:00:00Z$'
python3 - "$TMP/out" "$want" "$TMP" <<'PY' || fail "gguf show --json: wrong lineage object"
import json, sys
lin = json.load(open(sys.argv[1]))["lineage"]
tmp = sys.argv[3]
assert lin["parents"] == [{"role": "input", "sha256": sys.argv[2], "path": tmp + "/m.gguf"}], lin
assert lin["command"] == "anneal quantize %s/m.gguf %s/q.gguf q4_K_M" % (tmp, tmp), lin
assert lin["config"] == {"type": "q4_K_M", "file_type": 15}, lin
assert lin["tool"].startswith("anneal ") and lin["created"] == "2026-11-29T12:00:00Z", lin
PY
vwant=$(sha256sum "$VOCAB" | cut -d' ' -f1)
expect 0 "$BIN" gguf show "$TMP/m.gguf"
has "$TMP/out" "^  parent   vocab    sha256:$vwant  $TMP/vocab\.gguf\$"
has "$TMP/out" '^  config   \{"arch":"llama","dim":256,'
expect 0 "$BIN" gguf show "$VOCAB"
if grep -q '^lineage' "$TMP/out"; then fail "a file without lineage keys shows a lineage section"; fi
expect 0 "$BIN" gguf show --json "$VOCAB"
python3 -c 'import json,sys; assert json.load(open(sys.argv[1]))["lineage"] is None' "$TMP/out" ||
    fail "gguf show --json of a file without lineage: \"lineage\" is not null"

# --json summary, and a rerun with other threads gives the same bytes.
expect 0 "$BIN" quantize "$TMP/m.gguf" "$TMP/q2.gguf" Q4_K_M --threads 1 --json
python3 -m json.tool "$TMP/out" >/dev/null || fail "quantize --json is not valid JSON"
has "$TMP/out" '"type":"q4_K_M","file_type":15,'
has "$TMP/out" '"types":\{"f32":17,"q4_K":49,"q6_K":9\}'
expect 0 "$BIN" quantize "$TMP/m.gguf" "$TMP/q3.gguf" Q4_K_M --threads 3 --json
same_data "$TMP/q2.gguf" "$TMP/q3.gguf" ||
    fail "quantize with 1 and 3 threads wrote different tensor data"

# ---- errors ------------------------------------------------------------------------------
expect 1 "$BIN" quantize "$TMP/q.gguf" "$TMP/x.gguf" q8_0
has "$TMP/err" "already quantized \(tensor 'token_embd\.weight' is q4_K\)"
expect 1 "$BIN" quantize "$TMP/m.gguf" "$TMP/x.gguf" q3_K
has "$TMP/err" "unknown type 'q3_K' \(valid: f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q4_K, q5_K, q6_K, q4_K_M, q5_K_M\)"
expect 1 "$BIN" quantize "$TMP/none.gguf" "$TMP/x.gguf" q8_0
has "$TMP/err" 'none\.gguf: cannot open'
[ ! -e "$TMP/x.gguf" ] || fail "a failed quantize left $TMP/x.gguf"
expect 2 "$BIN" quantize "$TMP/m.gguf" "$TMP/x.gguf"
expect 2 "$BIN" quantize "$TMP/m.gguf" "$TMP/x.gguf" q8_0 --threads 0
expect 2 "$BIN" quantize "$TMP/m.gguf" "$TMP/x.gguf" q8_0 --bogus
has "$TMP/err" "unknown flag '--bogus'"
expect 2 "$BIN" init --arch llama --dim 100 --layers 2 --heads 4 --ffn 64 --vocab-from "$VOCAB" "$TMP/x.gguf"
has "$TMP/err" '--dim 100 must be a multiple of 32|--dim 100 / --heads 4'
expect 2 "$BIN" init --arch llama --dim 128 --layers 2 --heads 4 --ffn 256 --type q6_K --vocab-from "$VOCAB" "$TMP/x.gguf"
has "$TMP/err" '--dim 128 must be a multiple of 256 for --type q6_K'
expect 1 "$BIN" init --arch llama --dim 64 --layers 1 --heads 2 --ffn 64 --vocab-from "$TMP/m.gguf.none" "$TMP/x.gguf"
for args in "init --help" "quantize --help" "help quantize"; do
    # shellcheck disable=SC2086
    expect 0 "$BIN" $args
    has "$TMP/out" '^usage: anneal (init|quantize)'
done

if [ "$FAILS" -ne 0 ]; then
    echo "$FAILS check(s) failed" >&2
    exit 1
fi
echo "init_quantize_cli: all checks passed"
