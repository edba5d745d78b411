#!/usr/bin/env bash
# Installs the Debian packages anneal needs that are missing, by name.
# Usage: scripts/setup.sh [--bench]   (--bench adds the peers the benchmarks compare against)
set -euo pipefail

# package: why (keep README.md's table in step with this list)
PACKAGES=(
  gcc            # C11 compiler
  make           # the front-end Makefile
  cmake          # the build (3.25 on Debian 12)
  pkg-config     # finds the libraries below
  libjansson-dev # JSON: strict parsing, clear error positions
  libpcre2-dev   # regex with Unicode classes: tokenizer pre-tokenizers
  libssl-dev     # OpenSSL libcrypto: SHA-256, constant-time compare
  libutf8proc-dev # Unicode NFKC and categories: data cleaning, dedup normalization
  zlib1g-dev     # .gz inputs of the data pipeline
  libzstd-dev    # .zst inputs of the data pipeline
  libopenblas-dev # f32 GEMM for training (the quantized kernels are our own)
  libopenmpi-dev # data-parallel training (mpirun -np N anneal train)
  openmpi-bin    # mpirun, for the 2-rank training test
  libmicrohttpd-dev # the HTTP server of anneal serve
  jq             # the server's integration tests read JSON answers
  prometheus     # promtool: the tests check /metrics with promtool check metrics
  curl           # the server's integration tests are HTTP clients
  python3        # the LoRA test writes its adapter with an independent GGUF writer
  clang          # libFuzzer fuzz targets (make fuzz)
  libclang-rt-14-dev # clang's sanitizer and fuzzer runtimes
)
BENCH_PACKAGES=(
  libsentencepiece-dev # the reference SentencePiece library, for the tokenizer benchmark
  g++                  # builds the SentencePiece reference program (C++)
  python3-torch        # the training benchmark's PyTorch side; tests/reference/train_ref.py
  python3-numpy        # (with torch) the training reference fixtures
  python3-jinja2       # tests/reference/chat_render.py: the chat-template fixtures
)

if [ "${1:-}" = "--bench" ]; then PACKAGES+=("${BENCH_PACKAGES[@]}"); fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "setup: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "setup: need root (or sudo) to install: ${missing[*]}" >&2; exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq || echo "setup: apt-get update failed; trying the install with the current lists" >&2
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
