#!/usr/bin/env bash
# check_blocked.sh PROGRAM: runs `PROGRAM blocked` (test_check's case of UDP dropped on the way) in
# a private network namespace where 192.0.2.0/24 is routed over a veth pair to a neighbour that
# does not exist (a static, permanent neighbour entry: no ARP, no ICMP): every datagram and TCP
# segment to the "edge" is silently dropped, as a firewall that drops UDP does. No nftables or
# iptables needed. Exits 77 (ctest: skipped) where namespaces, veth or iproute2 are not available.
set -euo pipefail
if ! unshare -n true 2>/dev/null || ! command -v ip >/dev/null; then
    echo "network namespaces (unshare -n) or iproute2 not available: skipped"
    exit 77
fi
# shellcheck disable=SC2016 # the inner script expands its own variables
exec unshare -n bash -c '
set -e
ip link set lo up
if ! ip link add v0 type veth peer name v1 2>/dev/null; then
    echo "veth interfaces not available: skipped"
    exit 77
fi
ip link set v0 up
ip link set v1 up
ip addr add 10.1.0.1/24 dev v0
ip neigh add 10.1.0.2 lladdr 02:00:00:00:00:02 dev v0 nud permanent
ip route add 192.0.2.0/24 via 10.1.0.2 dev v0
exec "$0" blocked' "$1"
