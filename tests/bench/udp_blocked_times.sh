#!/usr/bin/env bash
# udp_blocked_times.sh SYNESIS [UNBLOCK_AFTER]: the fallback's figures with the defaults
# (transport auto, udp_fallback_timeout 3 s, udp_reprobe_interval 30 s), in a private network
# namespace where nftables drops UDP to the edge's port: the time from the agent's start to
# Connected (over TCP), and, with the rule deleted UNBLOCK_AFTER seconds (default 5) after
# Connected, the time from the deletion to the move back to UDP (the first probe comes 30 s after
# Connected, so about 30 - UNBLOCK_AFTER s). Prints one JSON line. Root and nft needed (77
# otherwise). Run it on a Release build: flock /tmp/bench.lock bash udp_blocked_times.sh ...
set -euo pipefail
SYNESIS=$1
AFTER=${2:-5}
command -v nft >/dev/null || { echo "nft not installed"; exit 77; }
unshare -n true 2>/dev/null || { echo "no network namespaces"; exit 77; }
if [ -z "${UDP_TIMES_INNER:-}" ]; then
    UDP_TIMES_INNER=1 exec unshare -n "$0" "$@"
fi
ip link set lo up
nft add table inet synesis_bench
nft add chain inet synesis_bench in '{ type filter hook input priority 0; }'
H=$(nft -e -a add rule inet synesis_bench in udp dport 24443 drop | sed -n 's/.*# handle \([0-9]*\).*/\1/p')
WORK=$(mktemp -d /tmp/udp-times-XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
"$SYNESIS" init --test-pki "$WORK/pki" --device-id times-1 >/dev/null
"$SYNESIS" edge --config /dev/null --listen 127.0.0.1:24443 --cert "$WORK/pki/edge.pem" \
    --key "$WORK/pki/edge.key" --ca "$WORK/pki/ca.pem" >/dev/null 2>"$WORK/edge.err" &
until grep -q '/tcp$' "$WORK/edge.err" 2>/dev/null; do sleep 0.05; done
ms() { echo $(($(date +%s%N) / 1000000)); }
T0=$(ms)
"$SYNESIS" agent --config /dev/null --url quic://127.0.0.1:24443 --server-name localhost \
    --cert "$WORK/pki/device.pem" --key "$WORK/pki/device.key" --ca "$WORK/pki/ca.pem" \
    --heartbeat-interval 1 --log-level info >"$WORK/agent.out" 2>"$WORK/agent.err" &
until grep -q '"to":"Connected".*"transport":"tcp"' "$WORK/agent.out" 2>/dev/null; do sleep 0.01; done
T1=$(ms)
sleep "$AFTER"
nft delete rule inet synesis_bench in handle "$H"
T2=$(ms)
until grep -q 'moved back from TCP to UDP' "$WORK/agent.err" 2>/dev/null; do
    sleep 0.01
    [ $(($(ms) - T2)) -lt 120000 ] || { echo '{"error":"no move back in 120 s"}'; exit 1; }
done
T3=$(ms)
echo "{\"connected_over_tcp_ms\":$((T1 - T0)),\"unblocked_after_connected_s\":$AFTER,\"moved_back_after_unblock_ms\":$((T3 - T2))}"
