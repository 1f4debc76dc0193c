#!/usr/bin/env bash
# edge_port_taken.sh SYNESIS: the edge listens on UDP and TCP on one port number, also when its
# listen port is 0 and the UDP port the kernel picks is taken on TCP. In a private network
# namespace whose ephemeral port range is two ports (40000-40001), TCP 40000 is held by a
# listener (perl): each of 12 edges started on port 0 must come up, on UDP and TCP 40001 (before
# the fix about half of them failed with "TCP listener ...: Address already in use").
# Exits 77 (ctest: skipped) where network namespaces or perl are missing.
set -euo pipefail
S=$1
if ! command -v perl >/dev/null; then
    echo "perl not installed: skipped"
    exit 77
fi
if ! unshare -n true 2>/dev/null || ! command -v ip >/dev/null; then
    echo "network namespaces (unshare -n) or iproute2 not available: skipped"
    exit 77
fi
if [ -z "${EDGE_PORT_INNER:-}" ]; then
    EDGE_PORT_INNER=1 exec unshare -n "$0" "$@"
fi
ip link set lo up
echo "40000 40001" >/proc/sys/net/ipv4/ip_local_port_range
WORK=$(mktemp -d "${SYNESIS_TEST_TMP:-/tmp}/edge-port-XXXXXX")
"$S" init --test-pki "$WORK/pki" --device-id port-test >/dev/null
perl -MIO::Socket::INET -e 'my $s = IO::Socket::INET->new(LocalAddr => "127.0.0.1:40000",
    Listen => 1, ReuseAddr => 1) or die "listen: $!"; print "ready\n"; $| = 1; sleep 600' \
    >"$WORK/holder.out" &
HOLDER=$!
trap 'kill $HOLDER 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q ready "$WORK/holder.out" 2>/dev/null && break; sleep 0.05; done
grep -q ready "$WORK/holder.out" || { echo "FAIL: the TCP port holder did not start"; exit 1; }
for i in $(seq 12); do
    "$S" edge --listen 127.0.0.1:0 --cert "$WORK/pki/edge.pem" --key "$WORK/pki/edge.key" \
        --ca "$WORK/pki/ca.pem" >"$WORK/edge.log" 2>"$WORK/edge.err" &
    EDGE=$!
    for _ in $(seq 200); do
        grep -q '"listening_tcp"' "$WORK/edge.log" 2>/dev/null && break
        kill -0 $EDGE 2>/dev/null || break
        sleep 0.05
    done
    if ! grep -q '"listening_tcp"' "$WORK/edge.log"; then
        echo "FAIL: edge $i did not listen on TCP"
        cat "$WORK/edge.err"
        kill $EDGE 2>/dev/null || true
        exit 1
    fi
    udp=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$WORK/edge.err")
    tcp=$(grep '"listening_tcp"' "$WORK/edge.log" | sed -n 's/.*:\([0-9]*\)".*/\1/p')
    kill $EDGE
    wait $EDGE 2>/dev/null || true
    if [ "$udp" != 40001 ] || [ "$tcp" != 40001 ]; then
        echo "FAIL: edge $i on UDP $udp and TCP $tcp (want 40001 for both)"
        exit 1
    fi
done
echo "ok: 12 edges on port 0 came up on UDP and TCP 40001 with TCP 40000 taken"
