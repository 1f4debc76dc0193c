#!/usr/bin/env bash
# The systemd units of the synesis command (ctest test_units on the build tree's units;
# tests/package_test.sh on the packaged ones).
#
#   units_test.sh UNIT_DIR SYNESIS [WORK_DIR]
#
# Checks the hardening a service expects in synesis-agent.service and synesis-edge.service, then
# runs `systemd-analyze verify` on them with SYNESIS in place of the ExecStart program (which
# need not be installed). Without systemd-analyze the verification is skipped, saying so.
set -u
UNITS=$1 S=$2
WORK=$(mktemp -d "${3:-/tmp}/units.XXXXXX") || exit 1
trap 'rm -rf "$WORK"' EXIT
fail() {
    echo "FAIL: $*"
    exit 1
}

for u in agent edge; do
    f=$UNITS/synesis-$u.service
    [ -f "$f" ] || fail "no $f"
    for d in 'User=synesis' 'Group=synesis' 'ProtectSystem=strict' 'ProtectHome=yes' \
        'PrivateTmp=yes' 'NoNewPrivileges=yes' 'StateDirectory=synesis' 'StateDirectoryMode=0700' \
        'ConfigurationDirectory=synesis' 'CapabilityBoundingSet=' 'Restart=on-failure' \
        'RestartPreventExitStatus=2 3' 'UMask=0077' \
        "ExecStart=[^ ]*/synesis $u --config [^ ]*/synesis/$u.conf\$"; do
        grep -qE "^$d" "$f" || fail "synesis-$u.service lacks $d"
    done
done
grep -qx 'CapabilityBoundingSet=' "$UNITS/synesis-agent.service" || fail "agent: capabilities"
grep -qx 'AmbientCapabilities=' "$UNITS/synesis-agent.service" || fail "agent: ambient capabilities"
grep -qx 'CapabilityBoundingSet=CAP_NET_BIND_SERVICE' "$UNITS/synesis-edge.service" ||
    fail "edge: capability bounding set"
grep -qx 'AmbientCapabilities=CAP_NET_BIND_SERVICE' "$UNITS/synesis-edge.service" ||
    fail "edge: CAP_NET_BIND_SERVICE for port 443"
echo "ok: the units have the expected hardening"

if ! command -v systemd-analyze >/dev/null; then
    echo "skipped: systemd-analyze verify (no systemd-analyze on this machine)"
    exit 0
fi
for u in agent edge; do
    sed -E "s|^ExecStart=[^ ]*/synesis |ExecStart=$S |" "$UNITS/synesis-$u.service" \
        >"$WORK/synesis-$u.service"
done
if ! systemd-analyze verify --man=no "$WORK"/synesis-*.service >"$WORK/verify.log" 2>&1 ||
    [ -s "$WORK/verify.log" ]; then
    cat "$WORK/verify.log"
    fail "systemd-analyze verify"
fi
echo "ok: systemd-analyze verify: no complaint"
