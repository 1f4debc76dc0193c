#!/usr/bin/env bash
# ctest test_abi_old_app: runs tests/abi/old_app.c (built against the frozen 1.0 headers, linked
# against today's shared library) against the reference edge on loopback.
#
#   old_app_test.sh SYNESIS OLD_APP TMPDIR
set -u
S=$1 APP=$2
WORK=$(mktemp -d "${3:-/tmp}/abi.XXXXXX") || exit 1
EDGE_PID=''
cleanup() {
    [ -n "$EDGE_PID" ] && { kill -KILL "$EDGE_PID" 2>/dev/null; wait "$EDGE_PID" 2>/dev/null; }
    rm -rf "$WORK"
}
trap cleanup EXIT
fail() {
    echo "FAIL: $*"
    for f in "$WORK"/*.err "$WORK"/*.out; do [ -s "$f" ] && { echo "--- $(basename "$f")"; tail -n 30 "$f"; }; done
    exit 1
}
# The program must not have been built against the live headers: it needs the shared library.
readelf -d "$APP" | grep -q 'libsynesis_tunnel.so.1' || fail "old_app is not linked against libsynesis_tunnel.so.1"
PKI=$WORK/pki
timeout 30 "$S" init --test-pki "$PKI" --device-id old-app >"$WORK/init.out" 2>&1 || fail "synesis init --test-pki"
"$S" edge --config /dev/null --listen 127.0.0.1:0 --cert "$PKI/edge.pem" --key "$PKI/edge.key" \
    --ca "$PKI/ca.pem" --idle-timeout 5 >"$WORK/edge.out" 2>"$WORK/edge.err" &
EDGE_PID=$!
for _ in $(seq 200); do grep -q '^listening on ' "$WORK/edge.err" && break; sleep 0.05; done
PORT=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$WORK/edge.err")
[ -n "$PORT" ] || fail "the edge did not start"
timeout 60 "$APP" "$PORT" "$PKI" old-app >"$WORK/app.out" 2>"$WORK/app.err" || fail "old_app exited $?"
cat "$WORK/app.out"
# Its second connection resumed, as the edge saw it too (the 1.1 defaults it never set).
grep -h '"event":"connection"' "$WORK/edge.out" "$WORK/edge.err" | grep -q '"resumed":true' ||
    fail "the edge logged no resumed connection"
