#!/usr/bin/env bash
# netns_run.sh MTU PROGRAM [ARGS...]: runs PROGRAM in a private network namespace whose loopback
# has the given MTU. Exits 77 (ctest: skipped) where namespaces are not available.
set -euo pipefail
mtu=$1
shift
if ! unshare -n true 2>/dev/null || ! command -v ip >/dev/null; then
    echo "network namespaces (unshare -n) or iproute2 not available: skipped"
    exit 77
fi
exec unshare -n bash -c 'ip link set lo up && ip link set lo mtu "$0" && exec "$@"' "$mtu" "$@"
