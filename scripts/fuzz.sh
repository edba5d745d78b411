#!/usr/bin/env bash
# Runs every libFuzzer target in BUILD_DIR for SECONDS each, seeded from
# tests/fuzz/corpus/<target>/. New inputs go to a scratch copy, not the repository.
# Usage: scripts/fuzz.sh BUILD_DIR SECONDS
set -euo pipefail
build=${1:?usage: scripts/fuzz.sh BUILD_DIR SECONDS}
seconds=${2:?usage: scripts/fuzz.sh BUILD_DIR SECONDS}
root=$(cd "$(dirname "$0")/.." && pwd)
export ANNEAL_SHARED=${ANNEAL_SHARED:-$root/../shared}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
found=0
for bin in "$build"/fuzz_*; do
  [ -x "$bin" ] || continue
  found=1
  name=$(basename "$bin")
  mkdir -p "$scratch/$name"
  if [ -d "$root/tests/fuzz/corpus/$name" ]; then cp -r "$root/tests/fuzz/corpus/$name/." "$scratch/$name/"; fi
  echo "fuzz: $name for ${seconds}s"
  # -rss_limit_mb guards against inputs that make us allocate too much; a crash, leak,
  # timeout or OOM fails the run and leaves the reproducer in $build/crash-*.
  rc=0
  ASAN_OPTIONS=detect_leaks=1 "$bin" "$scratch/$name" -max_total_time="$seconds" \
    -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$build/" \
    >"$scratch/$name.log" 2>&1 || rc=$?
  grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|==[0-9]+==ERROR|SUMMARY)' "$scratch/$name.log" || true
  if [ $rc -ne 0 ]; then
    tail -n 40 "$scratch/$name.log" >&2
    echo "fuzz: $name FAILED (reproducer in $build/crash-* or leak-* or timeout-*)" >&2
    exit 1
  fi
done
[ $found -eq 1 ] || { echo "fuzz: no fuzz_* targets in $build" >&2; exit 1; }
echo "fuzz: all targets clean"
