# Shared set-up for the integration scripts (sourced, not a test itself): the binary and
# fixtures from ctest's environment, a scratch directory removed on exit, and checks that
# count failures instead of stopping at the first.
set -u
export LC_ALL=C

BIN=${ANNEAL_BIN:?ANNEAL_BIN must name the anneal binary}
SHARED=${ANNEAL_SHARED:-../shared}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
FAILS=0

fail() {
    echo "FAIL: $*" >&2
    FAILS=$((FAILS + 1))
}

# expect STATUS CMD... : runs CMD with stdout in $TMP/out and stderr in $TMP/err.
expect() {
    local want=$1
    shift
    "$@" >"$TMP/out" 2>"$TMP/err"
    local got=$?
    [ "$got" -eq "$want" ] || fail "$* exited $got, expected $want: $(head -c 400 "$TMP/err")"
}

has() { # has FILE PATTERN (extended regex)
    grep -Eq -- "$2" "$1" || fail "$1 lacks /$2/: $(head -c 400 "$1")"
}
