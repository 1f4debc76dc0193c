#!/usr/bin/env bash
# udp_blocked.sh SYNESIS DEMO [PROXY]: issue 16's "Done when", in a private network namespace where
# nftables drops UDP to the edge's port (the input hook: silent, as a firewall on the way does).
#  1. `synesis edge` on 127.0.0.1:PORT (UDP, and TCP on the same port number) and `synesis agent`
#     with its defaults (transport auto): the agent comes up over TCP by itself, heartbeats go
#     over TCP, `synesis request` sends a small and a 1 MB request (a stream each way) over TCP;
#     then the nft rule is deleted: the agent moves back to UDP (its heartbeat lines say so, its
#     stats count udp_returns), still one connection, no heartbeat lost.
#  2. The demo (the README's first command's program) with --port and --wait-udp in the same
#     kind of namespace: up over TCP, the rule deleted, "moved back to UDP", and done.
#  3. With PROXY (the test CONNECT proxy, tests/support/connect_proxy*, when built): the agent
#     through it with https_proxy set, UDP blocked: up over TCP through the proxy.
# Exits 77 (ctest: skipped) with a message where nft or network namespaces are missing.
set -euo pipefail
SYNESIS=$1
DEMO=$2
PROXY=${3:-}
if ! command -v nft >/dev/null; then
    echo "nft (the nftables package) not installed: skipped"
    exit 77
fi
if ! unshare -n true 2>/dev/null || ! command -v ip >/dev/null; then
    echo "network namespaces (unshare -n) or iproute2 not available: skipped"
    exit 77
fi
if [ -z "${UDP_BLOCKED_INNER:-}" ]; then
    UDP_BLOCKED_INNER=1 exec unshare -n "$0" "$@"
fi

ip link set lo up
if ! nft add table inet synesis_test 2>/dev/null; then
    echo "nftables not usable in a network namespace here: skipped"
    exit 77
fi
nft add chain inet synesis_test in '{ type filter hook input priority 0; }'

WORK=$(mktemp -d "${SYNESIS_TEST_TMP:-/tmp}/udp-blocked-XXXXXX")
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT
fail() {
    echo "FAIL: $*"
    for f in "$WORK"/*.out "$WORK"/*.err; do
        [ -f "$f" ] || continue
        echo "--- $f"
        tail -n 40 "$f"
    done
    exit 1
}
pass() { echo "ok: $*"; }
wait_for() { # FILE REGEX SECONDS
    local deadline=$(($(date +%s%N) + ${3%.*} * 1000000000))
    until grep -qE "$2" "$1" 2>/dev/null; do
        [ "$(date +%s%N)" -lt "$deadline" ] || return 1
        sleep 0.05
    done
}
block() { # PORT: drops UDP to PORT; prints the rule's handle
    nft -e -a add rule inet synesis_test in udp dport "$1" drop | sed -n 's/.*# handle \([0-9]*\).*/\1/p'
}
unblock() { nft delete rule inet synesis_test in handle "$1"; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }

"$SYNESIS" init --test-pki "$WORK/pki" --device-id blocked-1 >/dev/null
PORT=24433
H=$(block $PORT)
[ -n "$H" ] || fail "nft rule not added"

"$SYNESIS" edge --config /dev/null --listen 127.0.0.1:$PORT --cert "$WORK/pki/edge.pem" \
    --key "$WORK/pki/edge.key" --ca "$WORK/pki/ca.pem" >"$WORK/edge.out" 2>"$WORK/edge.err" &
PIDS+=($!)
wait_for "$WORK/edge.err" "^listening on .*:$PORT/tcp" 10 || fail "edge: no TCP listener"
D=(--config /dev/null --url quic://127.0.0.1:$PORT --server-name localhost
    --cert "$WORK/pki/device.pem" --key "$WORK/pki/device.key" --ca "$WORK/pki/ca.pem")

# 1. The agent, defaults but for short intervals.
T0=$(now_ms)
"$SYNESIS" agent "${D[@]}" --heartbeat-interval 0.5 --udp-reprobe-interval 1 --log-level info \
    >"$WORK/agent.out" 2>"$WORK/agent.err" &
AGENT=$!
PIDS+=($AGENT)
wait_for "$WORK/agent.out" '"to":"Connected".*"transport":"tcp"' 30 || fail "agent: not Connected over TCP"
T1=$(now_ms)
pass "agent Connected over TCP with UDP blocked, $((T1 - T0)) ms after start"
wait_for "$WORK/agent.out" '"event":"heartbeat".*"transport":"tcp","bytes"' 10 ||
    fail "agent: no heartbeat over TCP"
pass "heartbeats over TCP"
out=$(echo hello | "$SYNESIS" request "${D[@]}")
[ "$out" = hello ] || fail "request over TCP: '$out'"
head -c 1000000 /dev/urandom >"$WORK/big"
"$SYNESIS" request "${D[@]}" <"$WORK/big" >"$WORK/big.back" || fail "1 MB request over TCP"
cmp -s "$WORK/big" "$WORK/big.back" || fail "1 MB request: the echo differs"
pass "requests over TCP (5 bytes, and 1 MB each way)"
grep -q '"event":"tcp_closed"\|"event":"close"' "$WORK/edge.out" || true

unblock "$H"
T2=$(now_ms)
wait_for "$WORK/agent.out" '"event":"heartbeat".*"transport":"udp"' 30 || fail "agent: did not move back to UDP"
T3=$(now_ms)
pass "agent moved back to UDP $((T3 - T2)) ms after the rule was deleted"
sleep 1
kill -INT $AGENT
wait $AGENT || fail "agent exit status $?"
stats=$(grep '"event":"stats"' "$WORK/agent.out") || fail "agent: no stats line"
echo "$stats" | grep -q '"udp_returns":1' || fail "agent stats: udp_returns is not 1: $stats"
echo "$stats" | grep -q '"tcp_fallbacks":1' || fail "agent stats: tcp_fallbacks is not 1"
echo "$stats" | grep -q '"connections":1,' || fail "agent stats: more than one connection"
echo "$stats" | grep -q '"heartbeats_failed":0' || fail "agent stats: heartbeats lost: $stats"
grep -q '"to":"Reconnecting"' "$WORK/agent.out" && fail "agent: a state transition"
pass "one connection throughout, no heartbeat lost, stats count the return"
echo "figures: connected_over_tcp_ms=$((T1 - T0)) moved_back_ms=$((T3 - T2))"

# 2. The demo, on another port, blocked the same way.
DPORT=24434
H=$(block $DPORT)
"$DEMO" --dir "$WORK/demo-pki" --port $DPORT --wait-udp 20 --outage 1 >"$WORK/demo.out" 2>"$WORK/demo.err" &
DEMO_PID=$!
PIDS+=($DEMO_PID)
wait_for "$WORK/demo.out" 'Connected \(latency [0-9]+ ms, over tcp\)' 30 || fail "demo: not Connected over TCP"
pass "demo Connected over TCP"
wait_for "$WORK/demo.out" 'reply echo "hello edge" .*-> 10 bytes' 10 || fail "demo: no reply over TCP"
unblock "$H"
wait $DEMO_PID || fail "demo exit status"
grep -q 'moved back to UDP, still Connected' "$WORK/demo.out" || fail "demo: did not move back to UDP"
grep -q 'demo  done, loop empty' "$WORK/demo.out" || fail "demo: not done"
pass "demo moved back to UDP and finished"

# 3. Through the test CONNECT proxy (Basic authentication), UDP blocked again: the agent with
#    https_proxy set comes up over TCP through it; synesis check says which proxy and that it
#    answered.
if [ -n "$PROXY" ] && [ -x "$PROXY" ]; then
    H=$(block $PORT)
    "$PROXY" --listen 127.0.0.1 --port 23128 --auth dev:s3cret >"$WORK/proxy.out" 2>"$WORK/proxy.err" &
    PIDS+=($!)
    sleep 0.3
    export https_proxy=http://dev:s3cret@127.0.0.1:23128 no_proxy=
    "$SYNESIS" agent "${D[@]}" --heartbeat-interval 0.5 --udp-reprobe-interval 0 \
        >"$WORK/agent-proxy.out" 2>"$WORK/agent-proxy.err" &
    AP=$!
    PIDS+=($AP)
    wait_for "$WORK/agent-proxy.out" '"to":"Connected".*"transport":"tcp"' 30 ||
        fail "agent: not Connected through the proxy"
    wait_for "$WORK/agent-proxy.out" '"event":"heartbeat".*"transport":"tcp","bytes"' 10 ||
        fail "agent: no heartbeat through the proxy"
    kill -INT $AP
    wait $AP || fail "agent through the proxy: exit status"
    pass "agent Connected over TCP through the CONNECT proxy (https_proxy, Basic auth)"
    "$SYNESIS" check "${D[@]}" --timeout 5 >"$WORK/check.out" 2>&1 || fail "check: exit status $?"
    grep -q '^warning udp .*falls back to QUIC over TCP' "$WORK/check.out" || fail "check: udp"
    grep -q '^ok      tcp .*through proxy http://dev:\*\*\*@127.0.0.1:23128' "$WORK/check.out" ||
        fail "check: tcp"
    grep -q '^ok      proxy .*answered' "$WORK/check.out" || fail "check: proxy"
    grep -q s3cret "$WORK/check.out" && fail "check: the password shown"
    pass "synesis check: udp warning, tcp and proxy ok (exit 0)"
    unset https_proxy no_proxy
    unblock "$H"
else
    echo "the test CONNECT proxy is not built: part 3 not run"
fi
echo "PASS"
