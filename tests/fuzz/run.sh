#!/usr/bin/env bash
# Runs one fuzz target for a bounded time and prints its final figures.
#
#   tests/fuzz/run.sh TARGET SECONDS [BUILD_DIR]
#
# TARGET is a name from tests/fuzz/CMakeLists.txt (url, spki_pin, pem, report, edge_heartbeat,
# edge_command, stream_delivery, client_packet, edge_packet, proxy, tcplink_frames,
# edge_tcp); BUILD_DIR
# defaults to build/fuzz (the fuzz preset: `cmake --preset fuzz && cmake --build --preset fuzz`). The run starts from the
# seed corpus tests/fuzz/corpus/TARGET (read only) and a fresh working corpus in
# BUILD_DIR/tests/fuzz/work/TARGET/corpus (FUZZ_KEEP=1 keeps the previous one); crashes, leaks
# and timeouts are written to .../artifacts/. Extra libFuzzer flags may be given in FUZZ_FLAGS.
# The exit status is libFuzzer's: non-zero when it found something.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
target=${1:?usage: run.sh TARGET SECONDS [BUILD_DIR]}
seconds=${2:?usage: run.sh TARGET SECONDS [BUILD_DIR]}
build=${3:-$here/../../build/fuzz}
bin=$build/tests/fuzz/fuzz_$target
seeds=$here/corpus/$target
work=$build/tests/fuzz/work/$target
[ -x "$bin" ] || { echo "run.sh: $bin not built (cmake --build --preset fuzz)" >&2; exit 2; }
[ -d "$seeds" ] || { echo "run.sh: no seed corpus $seeds" >&2; exit 2; }

# The live-connection targets keep state across inputs (the connection, what ngtcp2 tracks), so
# libFuzzer's per-input leak check (an LSan pass whenever an input allocated more than it freed)
# would run on almost every input and cost milliseconds each: they run without it, and
# LeakSanitizer still checks the whole run when the process exits.
leaks=1
case $target in
    url | spki_pin) max_len=512 ;;
    pem) max_len=16384 ;;
    proxy | tcplink_frames) max_len=4096 ;;
    *) max_len=4096 leaks=0 ;;
esac

if [ "${FUZZ_KEEP:-0}" != 1 ]; then rm -rf "$work"; fi
mkdir -p "$work/corpus" "$work/artifacts"
log=$work/log
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

set +e
t0=$(date +%s)
# shellcheck disable=SC2086
"$bin" -max_total_time="$seconds" -print_final_stats=1 -timeout="${FUZZ_TIMEOUT:-25}" \
    -rss_limit_mb="${FUZZ_RSS_MB:-2560}" -max_len="$max_len" -detect_leaks="$leaks" -artifact_prefix="$work/artifacts/" \
    ${FUZZ_FLAGS:-} "$work/corpus" "$seeds" >"$log" 2>&1
rv=$?
elapsed=$(($(date +%s) - t0))
set -e

# The last status line (#N ... cov: C ft: F corp: ...) and libFuzzer's final statistics.
status=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
stat() { grep -E "^stat::$1:" "$log" | awk '{print $2}' | tail -n 1; }
cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$status")
ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$status")
corp=$(sed -nE 's/.* corp: ([0-9]+\/[0-9a-zA-Z]+).*/\1/p' <<<"$status")
artifacts=$(find "$work/artifacts" -type f | wc -l)
summary=$(printf 'fuzz_%s: %s s, %s executions (%s exec/s), cov %s, ft %s, corpus %s, new units %s, peak RSS %s MB, artifacts %s, exit %s' \
    "$target" "$elapsed" "$(stat number_of_executed_units)" "$(stat average_exec_per_sec)" \
    "${cov:-?}" "${ft:-?}" "${corp:-?}" "$(stat new_units_added)" "$(stat peak_rss_mb)" \
    "$artifacts" "$rv")
echo "$summary" | tee "$work/summary"
if [ "$rv" != 0 ]; then
    echo "---- last 60 lines of $log ----"
    tail -n 60 "$log"
fi
exit "$rv"
