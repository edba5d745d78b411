#!/usr/bin/env bash
# `anneal data` end to end: every step and a whole pipeline on a noisy sample, byte-identical
# reruns, verify catching tampering, and bad input (empty files, a 100 MB line, invalid
# UTF-8, NUL bytes, broken JSON, a missing input, a file-size limit standing in for a full
# disk, bad flags and configs) with the exit status saying what happened.
source "$(dirname "$0")/common.bash"

TS="$SHARED/corpora/tinyshakespeare.txt"
[ -r "$TS" ] || { echo "missing $TS (set ANNEAL_SHARED)" >&2; exit 1; }
cd "$TMP" || exit 1

# --- help and usage ----------------------------------------------------------------------
expect 0 "$BIN" data --help
has out "anneal data <step> \[options\] INPUT... -o OUTDIR"
expect 2 "$BIN" data
expect 2 "$BIN" data frobnicate x -o y
has err "unknown step 'frobnicate'"
expect 2 "$BIN" data clean -o y
has err "no inputs given"
expect 2 "$BIN" data clean x.txt
has err "no output directory"
expect 2 "$BIN" data clean --bands 3 x.txt -o y
has err "unknown flag '--bands' for clean"
expect 2 "$BIN" data dedup --bands x in -o y
has err "--bands: expected an integer"

# --- a small noisy sample ----------------------------------------------------------------
mkdir raw raw/sub
head -c 200000 "$TS" >raw/play.txt
cat >raw/sub/posts.jsonl <<'JSON'
{"id":"p1","text":"Contact me at jane.doe@example.com or call (555) 234-5678 about the cat. It sat on the mat all day long, watching the birds outside the window and waiting for dinner to arrive.","lang":"en"}
{"id":"p2","text":"Contact me at jane.doe@example.com or call (555) 234-5678 about the cat. It sat on the mat all day long, watching the birds outside the window and waiting for dinner to arrive.","lang":"en"}
{"id":"p3","text":"<div><p>The server at 192.168.1.20 stores the card 4111 1111 1111 1111 &amp; more.</p></div> It is a plain sentence that has enough words to pass the filters, as the others do here."}
{"id":"p4","text":
JSON
printf '' >raw/empty.txt
printf 'caf\xc3\xa9 ok\n\xff\xfe broken\n' >raw/bad.txt
printf 'a\0b\n' >raw/nul.txt
ln -s nowhere.txt raw/gone.txt # unreadable: a dangling link

expect 3 "$BIN" data ingest raw -o ing
has err "raw/sub/posts.jsonl:4: skipped \(bad_json\)"
has err "raw/bad.txt:.*invalid_utf8"
has err "raw/nul.txt:.*nul"
has err "raw/gone.txt:0: skipped \(unreadable\)"
has out "4 input records skipped"
[ -f ing/manifest.json ] && [ -f ing/docs/00000.jsonl ] || fail "ingest wrote no dataset"
has ing/report.json '"bad_json"'
[ "$(wc -l <ing/docs/00000.jsonl)" -eq 4 ] || fail "ingest: expected 4 documents (play, p1-p3)"

# Each step on the previous dataset; parents chain by version. With the published
# thresholds the short posts are too short (gopher_min_words) and the play repeats its
# speaker names (fineweb_char_dup); those rules and c4_min_sentences are off for the rest.
expect 0 "$BIN" data clean ing -o cl0
has cl0/removed.jsonl '"id":"p1".*"reason":"gopher_min_words".*"value":31'
has cl0/removed.jsonl '"reason":"fineweb_char_dup"'
has cl0/report.md '\| gopher_min_words \| 3 \|'
printf '{"quality": {"gopher_min_words": false, "fineweb_char_dup": false, "c4_min_sentences": false}}' >keep.json
expect 0 "$BIN" data clean ing --config keep.json -o cl --json
has out '"step":"clean"'
has out '"documents_out":4'
has cl/docs/00000.jsonl '"text":"The server at 192.168.1.20 stores the card 4111 1111 1111 1111 & more.'
v_ing=$("$BIN" data verify ing --json | sed -n 's/.*"version":"\([0-9a-f]*\)".*/\1/p')
has cl/manifest.json "\"parent\": \"$v_ing\""
expect 0 "$BIN" data pii cl -o pi
has pi/docs/00000.jsonl '<EMAIL>'
has pi/docs/00000.jsonl '<CARD>'
has pi/docs/00000.jsonl '<IPV4>'
grep -q 'jane.doe@example.com' pi/docs/00000.jsonl && fail "pii left an e-mail address"
has pi/report.json '"email": 2'
expect 0 "$BIN" data dedup pi -o dd
has dd/removed.jsonl '"id":"p2".*"reason":"exact".*"duplicate_of":"p1"'
[ "$(wc -l <dd/docs/00000.jsonl)" -eq 3 ] || fail "dedup: expected 3 documents left"
expect 0 "$BIN" data audit dd -o au
has au/audit.md "gender"
expect 0 "$BIN" data audit --print-lexicon
has out '"categories"'
"$BIN" tokenizer train --vocab-size 600 --type bpe "$TS" -o tok.gguf >/dev/null 2>&1 ||
    fail "tokenizer train"
expect 0 "$BIN" data shard dd --tokenizer tok.gguf --val-fraction 0.5 -o sh
ls sh/shards/train-00000.bin sh/shards/val-00000.bin >/dev/null 2>&1 || fail "shard: no shards"
expect 2 "$BIN" data shard dd --val-fraction 2 -o sh2
expect 1 "$BIN" data shard dd -o sh2
has err "tokenizer"
[ -e sh2 ] && fail "a failed shard step left sh2"

# Verify: all good, then tampering is found.
expect 0 "$BIN" data verify dd
has out "ok"
printf 'x' >>dd/docs/00000.jsonl
expect 1 "$BIN" data verify dd
has out "changed: docs/00000.jsonl"
rm dd/report.md
expect 1 "$BIN" data verify dd
has out "missing: report.md"

# Same inputs and config: byte-identical output. An existing OUTDIR is refused unless
# --replace.
expect 0 "$BIN" data clean ing --config keep.json -o cl2
diff -r cl cl2 >/dev/null || fail "clean is not byte-identical on a rerun"
expect 1 "$BIN" data clean ing --config keep.json -o cl2
has err "already exists"
expect 0 "$BIN" data clean ing --config keep.json -o cl2 --replace

# A whole pipeline (paths relative to the file).
cat >pipe.json <<'JSON'
{"inputs": ["raw"], "output": "pout",
 "steps": [{"step": "clean", "reader": {"unit": "paragraph"},
            "quality": {"gopher_min_words": false, "fineweb_char_dup": false, "c4_min_sentences": false}}, {"step": "pii"},
           {"step": "dedup", "dedup": {"bands": 20, "rows": 5}}, {"step": "audit"},
           {"step": "shard", "tokenizer": "tok.gguf"}]}
JSON
expect 3 "$BIN" data run pipe.json
for d in 01-clean 02-pii 03-dedup 04-audit 05-shard; do
    [ -f "pout/$d/manifest.json" ] || fail "pipeline: no pout/$d"
done
expect 0 "$BIN" data verify pout
expect 1 "$BIN" data run pipe.json
has err "exists"
printf '{"inputs": ["raw"], "output": "o2", "steps": [{"step": "clean"}, {"step": "dedup", "dedup": {"bands": 0}}]}' >bad.json
expect 1 "$BIN" data run bad.json
has err "bands"
[ -e o2 ] && fail "a failed pipeline left o2"
printf '{"inputs": ["raw"], "output": "o3", "steps": [{"step": "clean", "frob": 1}]}' >bad2.json
expect 1 "$BIN" data run bad2.json
has err "steps\[0\]: unknown key 'frob'"

# The same pipeline as TOML gives the same documents at every step.
cat >pipe.toml <<'TOML'
inputs = ["raw"]
output = "pout-toml"

[[steps]]
step = "clean"
reader = { unit = "paragraph" }
[steps.quality]
gopher_min_words = false
fineweb_char_dup = false
c4_min_sentences = false

[[steps]]
step = "pii"

[[steps]]
step = "dedup"
dedup.bands = 20
dedup.rows = 5

[[steps]]
step = "audit"

[[steps]]
step = "shard"
tokenizer = "tok.gguf"
TOML
expect 3 "$BIN" data run pipe.toml
for d in 01-clean 02-pii 03-dedup; do
    diff -r "pout/$d/docs" "pout-toml/$d/docs" >/dev/null || fail "pipeline: TOML $d docs differ from JSON"
done
diff -r pout/05-shard/shards pout-toml/05-shard/shards >/dev/null || fail "pipeline: TOML shards differ"
expect 0 "$BIN" data verify pout-toml
printf 'inputs = ["raw"]\noutput = "o4"\n[[steps]]\nstep = "clean"\nstep = "pii"\n' >dup.toml
expect 1 "$BIN" data run dup.toml
has err "dup.toml:5:1: duplicate key 'step'"
[ -e o4 ] && fail "a failed TOML pipeline left o4"

# Bad configs name the key.
printf '{"quality": {"gopher_min_words": "many"}}' >q.json
expect 1 "$BIN" data clean ing --config q.json -o q
has err "gopher_min_words"
printf '{"pii": {"fax": true}}' >p.json
expect 1 "$BIN" data pii ing --config p.json -o p
has err "unknown key 'fax'"

# A missing input fails before anything is written.
expect 1 "$BIN" data ingest nothere.txt -o m
has err "nothere.txt"
[ -e m ] && fail "a failed ingest left m"

# One 100 MB line: skipped as too large, with bounded memory: peak RSS grows by well under
# the line's size over a run without it (the reader holds at most one record's cap).
head -c 104857600 /dev/zero | tr '\0' 'a' >big.txt
/usr/bin/time -f '%M' -o rss0.txt "$BIN" data ingest raw/play.txt --max-doc-bytes 4000000 \
    -o bg0 >/dev/null 2>&1
/usr/bin/time -f '%M' -o rss.txt "$BIN" data ingest big.txt raw/play.txt --max-doc-bytes 4000000 \
    -o bg >/dev/null 2>err.txt
rc=$?
[ "$rc" -eq 3 ] || fail "100 MB line: exit $rc, expected 3"
has err.txt "big.txt:1: skipped \(too_large\)"
grow=$(($(tail -1 rss.txt) - $(tail -1 rss0.txt)))
[ "$grow" -lt 40000 ] || fail "100 MB line: peak RSS grew by ${grow} KiB"
cmp -s bg0/docs/00000.jsonl bg/docs/00000.jsonl || fail "100 MB line: other documents changed"
rm -f big.txt

# A full disk (a file-size limit): clear error, exit 1, no dataset and no temp directory.
( ulimit -f 64; "$BIN" data ingest raw/play.txt "$TS" -o full >out 2>err )
rc=$?
[ "$rc" -eq 1 ] || fail "file-size limit: exit $rc, expected 1"
has err "File too large|EFBIG|too large"
ls -d full* 2>/dev/null && fail "file-size limit left a directory behind"

# pii on one string and on stdin.
expect 0 "$BIN" data pii --text "write to a@b.co or (555) 234-5678"
has out "^write to <EMAIL> or <PHONE>$"
printf 'ip 10.0.0.1\n' | "$BIN" data pii - >out 2>err || fail "pii - failed"
has out "^ip <IPV4>$"

exit $((FAILS > 0))
