#!/usr/bin/env bash
# Integration test of the example programs as real processes on loopback (ctest: test_examples).
#
#   examples_test.sh SYNESIS_INIT SYNESIS_EDGE SYNESIS_AGENT SYNESIS_REQUEST STREAM_UPLOAD TMPDIR
#
# Checks: --help and usage errors; a test PKI from synesis-init; synesis-edge on 127.0.0.1:0
# (port read from its "listening on" line); `echo hello | synesis-request` prints hello; a
# request the edge resets fails with status 1; stream_upload of 3 MiB of random bytes; a 2 s
# synesis-agent run with heartbeats; then an agent survives the edge being SIGKILLed and
# restarted on the same port (Reconnecting, then Connected again) and exits 0 on SIGTERM; the
# edge exits 0 on SIGTERM. Every wait is bounded; leftover processes are killed on every exit.
set -u

INIT=$1 EDGE=$2 AGENT=$3 REQUEST=$4 UPLOAD=$5
WORK=$(mktemp -d "${6:-/tmp}/examples.XXXXXX") || exit 1
EDGE_PID='' EDGE6_PID='' AGENT_PID=''
START=$(date +%s.%N)

cleanup() {
    [ "$BASHPID" = "$$" ] || return 0 # only the test itself, never a subshell, cleans up
    for pid in $EDGE_PID $EDGE6_PID $AGENT_PID; do
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

fail() {
    echo "FAIL: $*"
    for f in "$WORK"/*.log "$WORK"/*.err "$WORK"/*.out; do
        [ -s "$f" ] && { echo "--- $(basename "$f")"; tail -n 30 "$f"; }
    done
    exit 1
}
pass() { echo "ok: $*"; }

# wait_for FILE REGEX SECONDS: until a line of FILE matches.
wait_for() {
    local deadline=$(($(date +%s%N) + ${3%.*} * 1000000000))
    until grep -qE "$2" "$1" 2>/dev/null; do
        [ "$(date +%s%N)" -lt "$deadline" ] || return 1
        sleep 0.05
    done
}

# wait_exit PID SECONDS: waits for a background process and returns its exit status; a process
# still running after SECONDS is killed (status 137).
wait_exit() {
    # The watchdog sleeps in short steps so that killing it leaves no long sleep behind.
    (for ((i = 0; i < $2 * 10; i++)); do sleep 0.1; done; kill -KILL "$1") >/dev/null 2>&1 &
    local dog=$! rc=0
    wait "$1" || rc=$?
    # SIGKILL: a signal this script traps could reach the watchdog before it has reset the
    # inherited traps, and the watchdog would then run cleanup().
    kill -KILL "$dog" 2>/dev/null
    wait "$dog" 2>/dev/null
    return $rc
}

# start_edge LISTEN NAME: starts synesis-edge in the background (EDGE_PID is the edge itself,
# not a shell), waits for its "listening on" line and sets PORT.
start_edge() {
    : >"$WORK/$2.err"
    "$EDGE" --listen "$1" --cert "$PKI/edge.pem" --key "$PKI/edge.key" --ca "$PKI/ca.pem" \
        --idle-timeout 5 >"$WORK/$2.log" 2>"$WORK/$2.err" &
    EDGE_PID=$!
    wait_for "$WORK/$2.err" '^listening on ' 10 || fail "$2: no 'listening on' line"
    PORT=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$WORK/$2.err")
    [ -n "$PORT" ] && [ "$PORT" -gt 0 ] || fail "$2: bad listening line: $(cat "$WORK/$2.err")"
}

# 1. --help exits 0 and prints the usage; bad usage exits 2 with one line on stderr.
for prog in "$EDGE" "$AGENT" "$REQUEST" "$UPLOAD"; do
    name=$(basename "$prog")
    timeout 10 "$prog" --help >"$WORK/help.out" 2>&1 || fail "$name --help exited $?"
    grep -q '^usage: ' "$WORK/help.out" || fail "$name --help printed no usage line"
    timeout 10 "$prog" --no-such-option >/dev/null 2>"$WORK/usage.err"
    rc=$?
    [ $rc -eq 2 ] || fail "$name --no-such-option exited $rc, expected 2"
    [ "$(wc -l <"$WORK/usage.err")" -eq 1 ] || fail "$name: usage error is not one line"
    timeout 10 "$prog" >/dev/null 2>&1
    rc=$?
    [ $rc -eq 2 ] || fail "$name without its required options exited $rc, expected 2"
done
pass "--help and usage errors"

# 2. A throwaway PKI: ca, edge (localhost, 127.0.0.1, ::1) and device certificates.
PKI=$WORK/pki
timeout 30 "$INIT" --test-pki "$PKI" --device-id examples-test >"$WORK/init.out" 2>&1 ||
    fail "synesis-init --test-pki: $(cat "$WORK/init.out")"
pass "test PKI"

# 3. The edge on an ephemeral port.
start_edge 127.0.0.1:0 edge
pass "synesis-edge listening on port $PORT"
CLIENT=(--url "quic://127.0.0.1:$PORT" --server-name localhost --cert "$PKI/device.pem"
    --key "$PKI/device.key" --ca "$PKI/ca.pem")

# 3b. IPv6 on [::1] (skipped when the host has no IPv6 loopback).
"$EDGE" --listen '[::1]:0' --cert "$PKI/edge.pem" --key "$PKI/edge.key" --ca "$PKI/ca.pem" \
    >"$WORK/edge6.log" 2>"$WORK/edge6.err" &
EDGE6_PID=$!
if wait_for "$WORK/edge6.err" '^listening on \[::1\]:[1-9][0-9]*$' 5; then
    port6=$(sed -n 's/^listening on \[::1\]:\([0-9]*\)$/\1/p' "$WORK/edge6.err")
    out=$(timeout 15 "$REQUEST" --url "quic://[::1]:$port6" --server-name localhost \
        --cert "$PKI/device.pem" --key "$PKI/device.key" --ca "$PKI/ca.pem" --data v6 \
        2>"$WORK/request6.err") || fail "synesis-request over IPv6 exited $?"
    [ "$out" = v6 ] || fail "synesis-request over IPv6 printed '$out', expected 'v6'"
    kill -INT "$EDGE6_PID"
    wait_exit "$EDGE6_PID" 10 || fail "the IPv6 edge exited $? after SIGINT, expected 0"
    pass "IPv6: synesis-edge --listen [::1]:0 and a request to quic://[::1]:$port6"
else
    kill -KILL "$EDGE6_PID" 2>/dev/null
    wait "$EDGE6_PID" 2>/dev/null
    echo "skipped: IPv6 ($(head -n 1 "$WORK/edge6.err"))"
fi
EDGE6_PID=''

# 4. One request: the edge echoes.
out=$(echo hello | timeout 15 "$REQUEST" "${CLIENT[@]}" --timeout 10 2>"$WORK/request.err") ||
    fail "synesis-request exited $?"
[ "$out" = hello ] || fail "synesis-request printed '$out', expected 'hello'"
wait_for "$WORK/edge.log" 'client disconnect' 5 || fail "synesis-request did not close gracefully"
pass "echo hello | synesis-request -> hello"

# 4b. A request the edge resets (its RESET command) fails with status 1 and names the error.
printf 'RESET 42\n' | timeout 15 "$REQUEST" "${CLIENT[@]}" --timeout 10 >/dev/null \
    2>"$WORK/request-reset.err"
rc=$?
[ $rc -eq 1 ] || fail "reset request exited $rc, expected 1"
grep -q SYNESIS_ERR_STREAM_RESET "$WORK/request-reset.err" || fail "reset request: no error name"
pass "a reset request fails with status 1"

# 5. Streaming upload of 3 MiB of random bytes, echoed back and compared.
head -c 3145728 /dev/urandom >"$WORK/upload.bin"
timeout 20 "$UPLOAD" "${CLIENT[@]}" --file "$WORK/upload.bin" --chunk 50000 \
    >"$WORK/upload.out" 2>"$WORK/upload.err" || fail "stream_upload exited $?"
grep -q '^sent 3145728 bytes, received 3145728 bytes, echo matches' "$WORK/upload.out" ||
    fail "stream_upload: unexpected output"
pass "stream_upload of 3 MiB: $(tail -n 1 "$WORK/upload.out")"

# 6. The agent for 2 s with a heartbeat every 0.2 s.
timeout 15 "$AGENT" "${CLIENT[@]}" --duration 2 --heartbeat-interval 0.2 \
    >"$WORK/agent.out" 2>"$WORK/agent.err" || fail "synesis-agent --duration 2 exited $?"
beats=$(grep -c '"event":"heartbeat".*"bytes"' "$WORK/agent.out")
[ "$beats" -ge 3 ] || fail "synesis-agent printed $beats heartbeat lines, expected >= 3"
grep -q '"to":"Connected"' "$WORK/agent.out" || fail "synesis-agent never connected"
tail -n 1 "$WORK/agent.out" | grep -q '"event":"stats"' || fail "synesis-agent: no stats line last"
pass "synesis-agent: $beats heartbeats in 2 s, exit 0"

# 7. Reconnection: the edge dies (SIGKILL: no CONNECTION_CLOSE) and comes back on the same port.
"$AGENT" "${CLIENT[@]}" --duration 60 --heartbeat-interval 0.2 --reconnect-initial 0.1 \
    --idle-timeout 1 >"$WORK/agent2.out" 2>"$WORK/agent2.err" &
AGENT_PID=$!
wait_for "$WORK/agent2.out" '"to":"Connected"' 10 || fail "agent: not connected"
{ kill -KILL "$EDGE_PID"; wait "$EDGE_PID"; } 2>/dev/null # no "Killed" notice from bash
EDGE_PID=''
wait_for "$WORK/agent2.out" '"to":"Reconnecting"' 10 || fail "agent: no Reconnecting state"
first_port=$PORT
start_edge "127.0.0.1:$first_port" edge2
[ "$PORT" = "$first_port" ] || fail "the edge came back on port $PORT, not $first_port"
reconnected() { # a Connected line after the first Reconnecting line
    awk '/"to":"Reconnecting"/ { r = 1 } r && /"to":"Connected"/ { found = 1 } END { exit !found }' \
        "$WORK/agent2.out"
}
deadline=$(($(date +%s) + 10))
until reconnected; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "agent: did not reconnect to the restarted edge"
    sleep 0.05
done
pass "synesis-agent reconnected after the edge was killed and restarted"
kill -TERM "$AGENT_PID"
wait_exit "$AGENT_PID" 10
rc=$?
AGENT_PID=''
[ $rc -eq 0 ] || fail "synesis-agent exited $rc after SIGTERM, expected 0"
tail -n 1 "$WORK/agent2.out" | grep -q '"event":"stats".*"reconnects":[1-9]' ||
    fail "synesis-agent: the stats line does not count the reconnect"
wait_for "$WORK/edge2.log" 'client disconnect' 5 || fail "the edge did not see the agent's close"
pass "synesis-agent exits 0 on SIGTERM, closing the tunnel"

# 8. The edge stops gracefully on SIGTERM.
kill -TERM "$EDGE_PID"
wait_exit "$EDGE_PID" 10
rc=$?
EDGE_PID=''
[ $rc -eq 0 ] || fail "synesis-edge exited $rc after SIGTERM, expected 0"
grep -q '"event":"stopped"' "$WORK/edge2.log" || fail "synesis-edge: no stopped event"
pass "synesis-edge exits 0 on SIGTERM"

# Sanitizer builds: no report in any program's stderr (most would also have failed the exit
# status checks above).
if grep -l -E 'Sanitizer|runtime error:' "$WORK"/*.err; then
    fail "sanitizer report in the files above"
fi

echo "all passed in $(awk -v a="$START" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"
