#!/usr/bin/env bash
# Data-parallel `anneal train` under `mpirun -np 2`: the loss trace and the final weights
# equal a single process with the same global batch (within 1e-5), also with gradient
# accumulation; rank 0 alone writes; a resumed 2-rank run ends with the same bytes as an
# uninterrupted one; a batch that does not split over the ranks fails on every rank.
# mpirun is required: without it the test fails.
source "$(dirname "$0")/common.bash"
export ANNEAL_LINEAGE_TIME=2026-11-29T12:00:00Z
# Containers often forbid the cross-memory-attach copies of OpenMPI's shared-memory transport.
export OMPI_MCA_btl_vader_single_copy_mechanism=none

MPIRUN=$(command -v mpirun) || { echo "FAIL: mpirun not found (apt install openmpi-bin)" >&2; exit 1; }
# Under the sanitizers, OpenMPI's own allocations (its plug-ins, unloaded at MPI_Finalize)
# are reported as leaks, so leak checking is off for the MPI runs alone; the single-process
# runs here (and train_cli.sh) keep it.
mpi2() {
    ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 \
        timeout 120 "$MPIRUN" --allow-run-as-root --oversubscribe -np 2 "$BIN" "$@"
}

# The byte vocabulary of train_cli.sh keeps the model tiny.
u32() { printf "$(printf '\\x%02x\\x%02x\\x%02x\\x%02x' $(($1 & 255)) $((($1 >> 8) & 255)) $((($1 >> 16) & 255)) $((($1 >> 24) & 255)))"; }
u64() { u32 $(($1 & 0xffffffff)); u32 $((($1 >> 32) & 0xffffffff)); }
str() { u64 ${#1}; printf '%s' "$1"; }
VOCAB="$TMP/vocab.gguf"
{
    printf GGUF; u32 3; u64 0; u64 2
    str tokenizer.ggml.model; u32 8; str llama
    str tokenizer.ggml.tokens; u32 9; u32 8; u64 259
    str "<unk>"; str "<s>"; str "</s>"
    for i in $(seq 0 255); do str "$(printf '<0x%02X>' "$i")"; done
} >"$VOCAB"
head -c 20000 "$SHARED/corpora/tinyshakespeare.txt" >"$TMP/text.txt"
COMMON=(--init dim=32,layers=2,heads=4,kv_heads=2,ffn=64,tied=1 --vocab-from "$VOCAB"
        --data "$TMP/text.txt" --seq 16 --lr 3e-3 --warmup 2 --threads 1 --quiet)

# same_trace A B: metrics.jsonl of two runs have the same records, and loss, grad_norm, lr
# and val_loss agree within 1e-5 relative.
same_trace() {
    local a=$1/metrics.jsonl b=$2/metrics.jsonl
    [ "$(wc -l <"$a")" = "$(wc -l <"$b")" ] || { fail "$a and $b differ in length"; return; }
    paste -d'\n' "$a" "$b" | awk '
        function num(line, key,   r) {
            if (!match(line, "\"" key "\":[-0-9.e+]+")) return "none"
            r = substr(line, RSTART + length(key) + 3, RLENGTH - length(key) - 3); return r + 0 }
        NR % 2 == 1 { prev = $0; next }
        { n = split("step loss grad_norm lr val_loss", k, " ")
          for (i = 1; i <= n; i++) {
              x = num(prev, k[i]); y = num($0, k[i])
              if ((x == "none") != (y == "none")) { print "record " NR / 2 ": " k[i] " in one only"; bad = 1; continue }
              if (x == "none") continue
              d = x - y; if (d < 0) d = -d; m = x < 0 ? -x : x
              if (d > 1e-5 * m) { print "record " NR / 2 ": " k[i] " " x " vs " y; bad = 1 }
              if (d > worst * m && m > 0) worst = d / m } }
        END { printf "trace: worst relative difference %.2g\n", worst; exit bad }' ||
        fail "loss traces of $1 and $2 differ"
}

# floats CKPT: the tensor data of a checkpoint's model.gguf as one float per line.
floats() {
    local off
    off=$("$BIN" gguf show "$1" | sed -n 's/.*data section at \([0-9]*\),.*/\1/p')
    [ -n "$off" ] || { fail "$1: no data section"; return; }
    tail -c +$((off + 1)) "$1" | od -An -v -tf4 -w4
}

# same_weights A B: every weight agrees within 1e-5 of the largest weight's magnitude (the
# norm weights, about 1), and the tensor layouts are identical.
same_weights() {
    cmp -s <("$BIN" gguf show "$1" | grep -E '^ *blk|token_embd|output') \
           <("$BIN" gguf show "$2" | grep -E '^ *blk|token_embd|output') ||
        fail "$1 and $2 list different tensors"
    paste <(floats "$1") <(floats "$2") | awk '
        { a = $1 + 0; b = $2 + 0; d = a - b; if (d < 0) d = -d; if (d > worst) worst = d
          m = a < 0 ? -a : a; if (m > big) big = m; n++ }
        END { printf "weights: %d floats, largest %.3g, worst difference %.3g\n", n, big, worst
              exit !(n > 1000 && worst <= 1e-5 * big) }' || fail "weights of $1 and $2 differ"
}

# data_sum CKPT_DIR: SHA-256 of the model's tensor data and of the Adam moments.
data_sum() {
    { floats "$1/model.gguf" | sha256sum; tail -c +129 "$1/optim.bin" | head -c -32 | sha256sum; } |
        tr -d ' \n-'
}

# ---- 2 ranks x batch 2 each = one process with batch 4 -------------------------------------
RUN=(--batch 4 --steps 6 --val-every 3 --ckpt-every 3)
expect 0 "$BIN" train --out "$TMP/one" "${COMMON[@]}" "${RUN[@]}" --json
expect 0 mpi2 train --out "$TMP/two" "${COMMON[@]}" "${RUN[@]}" --json
# Rank 0 alone prints the summary and writes metrics and checkpoints.
[ "$(grep -c '^{"steps":6,' "$TMP/out")" = 1 ] || fail "summary lines: $(cat "$TMP/out")"
[ "$(grep -c '"loss"' "$TMP/two/metrics.jsonl")" = 6 ] || fail "metrics: $(cat "$TMP/two/metrics.jsonl")"
[ "$(grep -c 'val_loss' "$TMP/two/metrics.jsonl")" = 2 ] || fail "validation records"
[ "$(cat "$TMP/two/latest")" = "ckpt-00000006" ] || fail "latest: $(cat "$TMP/two/latest")"
ls "$TMP/two" | grep -q '\.tmp\.' && fail "temporary files left"
same_trace "$TMP/one" "$TMP/two"
same_weights "$TMP/one/ckpt-00000006/model.gguf" "$TMP/two/ckpt-00000006/model.gguf"
# The engine loads the data-parallel checkpoint.
expect 0 "$BIN" perplexity -m "$TMP/two/ckpt-00000006/model.gguf" -f "$TMP/text.txt" --ctx 32 --chunks 2 -t 1
has "$TMP/out" 'PPL = [0-9.]+'

# ---- with gradient accumulation: 2 micro-batches of 2, one sequence per rank each ---------
ACC=(--batch 2 --accum 2 --steps 4 --val-every 4 --ckpt-every 4)
expect 0 "$BIN" train --out "$TMP/acc1" "${COMMON[@]}" "${ACC[@]}"
expect 0 mpi2 train --out "$TMP/acc2" "${COMMON[@]}" "${ACC[@]}"
same_trace "$TMP/acc1" "$TMP/acc2"
same_weights "$TMP/acc1/ckpt-00000004/model.gguf" "$TMP/acc2/ckpt-00000004/model.gguf"

# ---- a 2-rank run resumed from its step-3 checkpoint ends with the same bytes --------------
expect 0 mpi2 train --out "$TMP/res" "${COMMON[@]}" --batch 4 --steps 3 --val-every 3 --ckpt-every 3
expect 0 mpi2 train --out "$TMP/res" "${COMMON[@]}" "${RUN[@]}" --resume
[ "$(data_sum "$TMP/two/ckpt-00000006")" = "$(data_sum "$TMP/res/ckpt-00000006")" ] ||
    fail "the resumed 2-rank run differs from the uninterrupted one"
[ "$(grep -c '"step":4,"loss"' "$TMP/res/metrics.jsonl")" = 1 ] || fail "metrics after resume"

# ---- a batch that does not split over the ranks ---------------------------------------------
expect 1 mpi2 train --out "$TMP/bad" "${COMMON[@]}" --batch 3 --steps 2
has "$TMP/err" 'a batch of 3 sequences does not split evenly over 2 MPI ranks'

[ "$FAILS" -eq 0 ] || { echo "$FAILS failure(s)" >&2; exit 1; }
echo "train_mpi: ok"
