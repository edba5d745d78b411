#!/usr/bin/env bash
# Side-by-side tokenizer benchmark: anneal's SentencePiece-BPE encoder against the reference library.
# Usage: bench/run.sh BUILD_DIR   (BUILD_DIR is a configured CMake build; `make bench` passes "build")
#
# Encodes tinyshakespeare line by line with the llama-spm vocabulary, 7 runs each, pinned to
# one core; the ids of both must be identical. The reference is first checked against
# llama.cpp's expected ids for the same vocabulary, so a wrongly built .model cannot pass.
# Env: ANNEAL_SHARED (default: ../shared beside the repo), BENCH_RUNS (default 7),
#      BENCH_CORE (default 0).
set -euo pipefail

die() { echo "bench/run.sh: $*" >&2; exit 1; }

[ $# -eq 1 ] || { echo "usage: bench/run.sh BUILD_DIR" >&2; exit 2; }
REPO="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="$(cd "$1" 2>/dev/null && pwd)" || die "build directory $1 does not exist (configure it: cmake -S . -B $1)"
[ -f "$BUILD/CMakeCache.txt" ] || die "$BUILD is not a configured CMake build (run: cmake -S . -B $1)"
SHARED="${ANNEAL_SHARED:-$REPO/../shared}"
RUNS="${BENCH_RUNS:-7}"
CORE="${BENCH_CORE:-0}"

CORPUS="$SHARED/corpora/tinyshakespeare.txt"
VOCAB="$SHARED/fixtures/vocab/ggml-vocab-llama-spm.gguf"
for f in "$CORPUS" "$VOCAB" "$VOCAB.inp" "$VOCAB.out"; do
    [ -r "$f" ] || die "missing $f (set ANNEAL_SHARED to the shared data directory)"
done

SETUP_HINT="install the benchmark prerequisites with: scripts/setup.sh --bench"
for tool in cmake g++ python3; do
    command -v "$tool" >/dev/null || die "$tool not found; $SETUP_HINT"
done
[ -f /usr/include/sentencepiece_processor.h ] || [ -f /usr/local/include/sentencepiece_processor.h ] ||
    die "SentencePiece headers not found (package libsentencepiece-dev); $SETUP_HINT"

PIN=()
if command -v taskset >/dev/null; then
    PIN=(taskset -c "$CORE")
    PINNED="core $CORE (taskset)"
else
    PINNED="not pinned (taskset not found)"
    echo "bench/run.sh: taskset not found; running unpinned" >&2
fi

OUT="$BUILD/bench"
mkdir -p "$OUT"

echo "== building bench_tokenize"
cmake --build "$BUILD" --target bench_tokenize >"$OUT/build.log" 2>&1 ||
    { tail -n 30 "$OUT/build.log" >&2; die "building bench_tokenize failed (log: $OUT/build.log)"; }
ANNEAL_BIN="$BUILD/bench_tokenize"
[ -x "$ANNEAL_BIN" ] || die "bench_tokenize was built but $ANNEAL_BIN is missing"

echo "== building spm_ref against libsentencepiece"
SPM_LIBS="-lsentencepiece"
if command -v pkg-config >/dev/null && pkg-config --exists sentencepiece; then
    SPM_LIBS="$(pkg-config --cflags --libs sentencepiece)"
fi
# shellcheck disable=SC2086 # SPM_LIBS is a list of flags
g++ -std=c++17 -O2 -Wall -Wextra -o "$OUT/spm_ref" "$REPO/bench/spm_ref.cpp" $SPM_LIBS ||
    die "compiling bench/spm_ref.cpp failed; $SETUP_HINT"

echo "== writing the SentencePiece model from $(basename "$VOCAB")"
MODEL="$OUT/llama-spm.model"
python3 "$REPO/bench/spm_model_from_gguf.py" "$VOCAB" "$MODEL" || die "writing $MODEL failed"

echo "== checking the reference against llama.cpp's expected ids"
rc=0
"$OUT/spm_ref" "$MODEL" --check-fixture "$VOCAB.inp" "$VOCAB.out" || rc=$?
[ $rc -eq 0 ] || die "the reference does not reproduce the fixture ids (above); its figures would mean nothing"

mbps() { grep -oE '[0-9]+(\.[0-9]+)? MB/s' | tail -n 1 | cut -d' ' -f1; }

echo "== reference: SentencePiece, $RUNS runs, $PINNED"
REF_LOG="$("${PIN[@]}" "$OUT/spm_ref" "$MODEL" "$CORPUS" --runs "$RUNS" --ids-out "$OUT/ids-spm.txt")" ||
    die "spm_ref failed"
echo "$REF_LOG"
REF_MBPS="$(echo "$REF_LOG" | mbps)"
[ -n "$REF_MBPS" ] || die "spm_ref printed no MB/s figure"

echo "== anneal: bench_tokenize, $RUNS runs, $PINNED"
ANN_LOG="$("${PIN[@]}" "$ANNEAL_BIN" "$VOCAB" "$CORPUS" --runs "$RUNS" --ids-out "$OUT/ids-anneal.txt")" ||
    die "bench_tokenize failed"
echo "$ANN_LOG"
ANN_MBPS="$(echo "$ANN_LOG" | mbps)"
[ -n "$ANN_MBPS" ] || die "bench_tokenize printed no MB/s figure"

echo "== comparing ids"
# Compares token lists line by line (spacing ignored); shows the first line that differs.
python3 - "$CORPUS" "$OUT/ids-spm.txt" "$OUT/ids-anneal.txt" <<'EOF' || die "ids differ"
import sys
corpus, ref_path, ann_path = sys.argv[1:4]
with open(corpus, "rb") as f:
    text = f.read().split(b"\n")
if text and text[-1] == b"":
    text.pop()
with open(ref_path) as f:
    ref = [line.split() for line in f]
with open(ann_path) as f:
    ann = [line.split() for line in f]
for i in range(max(len(ref), len(ann))):
    r = ref[i] if i < len(ref) else None
    a = ann[i] if i < len(ann) else None
    if r != a:
        shown = text[i] if i < len(text) else b"(no such input line)"
        print(f"line {i + 1}: input {shown!r}")
        print(f"  spm:    {' '.join(r) if r is not None else '(missing line)'}")
        print(f"  anneal: {' '.join(a) if a is not None else '(missing line)'}")
        sys.exit(1)
if len(ref) != len(text):
    print(f"reference wrote {len(ref)} lines for {len(text)} input lines")
    sys.exit(1)
print(f"identical ids on all {len(ref)} lines ({sum(map(len, ref))} ids)")
EOF

RATIO="$(python3 -c "import sys; print(f'{float(sys.argv[2]) / float(sys.argv[1]):.2f}')" "$REF_MBPS" "$ANN_MBPS")"
echo
echo "tokenizer encoding, tinyshakespeare ($(wc -c <"$CORPUS") bytes) line by line, llama-spm vocabulary, median of $RUNS, $PINNED"
printf '| %-34s | %8s |\n' "encoder" "MB/s"
printf '|%s|%s|\n' "------------------------------------" "----------"
printf '| %-34s | %8s |\n' "SentencePiece $(pkg-config --modversion sentencepiece 2>/dev/null || echo '(version unknown)')" "$REF_MBPS"
printf '| %-34s | %8s |\n' "anneal" "$ANN_MBPS"
printf '| %-34s | %7sx |\n' "ratio anneal / SentencePiece" "$RATIO"
