#!/usr/bin/env bash
# Runs synesis-soak under valgrind memcheck (the device process and the edge's child process, each
# with its own log) and checks every log: no errors, nothing definitely or indirectly lost.
# Not a ctest test (valgrind is slow and CI does not install it); docs/reliability.md has the
# figures of a run. Usage:
#   tests/soak/valgrind_soak.sh BUILD_DIR [synesis-soak arguments...]
# e.g. tests/soak/valgrind_soak.sh build/debug --requests 5000 --cycles 100 --timeout-scale 10
# Exit status: 0 clean, 1 errors or leaks, 77 valgrind is not installed.
set -u
build=${1:?usage: valgrind_soak.sh BUILD_DIR [synesis-soak arguments...]}
shift
if ! command -v valgrind >/dev/null 2>&1; then
    echo "valgrind_soak.sh: SKIPPED: valgrind is not installed (apt-get install valgrind)" >&2
    exit 77
fi
soak="$build/tests/soak/synesis-soak"
[ -x "$soak" ] || { echo "valgrind_soak.sh: $soak not built" >&2; exit 1; }
logs=$(mktemp -d "${TMPDIR:-/tmp}/synesis-valgrind-XXXXXX")
export SYNESIS_TEST_TMP="$logs"
echo "valgrind_soak.sh: logs in $logs"
valgrind --tool=memcheck --leak-check=full --show-leak-kinds=all --errors-for-leak-kinds=definite,indirect \
    --track-origins=yes --num-callers=30 --log-file="$logs/vg.%p.log" \
    "$soak" "$@" | tee "$logs/soak.out"
rc=${PIPESTATUS[0]}
status=0
[ "$rc" -eq 0 ] || { echo "valgrind_soak.sh: synesis-soak exited with $rc" >&2; status=1; }
for f in "$logs"/vg.*.log; do
    echo "== $f"
    grep -E "ERROR SUMMARY|definitely lost|indirectly lost|possibly lost|still reachable|suppressed|All heap blocks were freed" "$f"
    grep -q "ERROR SUMMARY: 0 errors" "$f" || { echo "valgrind_soak.sh: errors in $f" >&2; status=1; }
    if grep -Eq "(definitely|indirectly) lost: [1-9]" "$f"; then
        echo "valgrind_soak.sh: leaks in $f" >&2
        status=1
    fi
done
echo "valgrind_soak.sh: $([ $status -eq 0 ] && echo PASS || echo FAIL)"
exit $status
