#!/usr/bin/env bash
# Records one synesis-prof workload with perf and writes the two sides' flat profiles as text.
#
#   docs/perf/profiles/record.sh SYNESIS_PROF OUT_PREFIX WORKLOAD...
#   e.g. docs/perf/profiles/record.sh build/release/tests/bench/synesis-prof \
#            docs/perf/profiles/after-bulk bulk 1024
#
# Writes OUT_PREFIX-client.txt and OUT_PREFIX-edge.txt (top of `perf report --no-children --sort
# dso,symbol --percent-limit 1`), keeps perf.data in $TMPDIR (never in the tree). Events are on
# only during the measured phase (synesis-prof drives perf's control fifo). Run it alone on the
# machine (other helpers: flock /tmp/bench.lock).
set -euo pipefail
prof=$1 out=$2
shift 2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/synesis-perf.XXXXXX")
mkfifo "$tmp/ctl" "$tmp/ack"
load=$(cut -d' ' -f1-3 /proc/loadavg)
freq=${PERF_FREQ:-999}
perf record -q -F "$freq" -e cpu-clock -D -1 --control "fifo:$tmp/ctl,$tmp/ack" -o "$tmp/perf.data" \
    -- "$prof" --ctl "$tmp/ctl" --ack "$tmp/ack" "$@" | tee "$tmp/figure.txt"
for side in client edge; do
    perf report -i "$tmp/perf.data" --comm "prof-$side" --no-children --percentage relative \
        -n --stdio --sort dso,symbol 2>/dev/null | grep -v '^#' | grep -v '^$' |
        sed -E 's/ +- +- *$//' > "$tmp/$side.txt"
    {
        echo "# synesis-prof $* -- $side side (comm prof-$side)"
        echo "# $(cat "$tmp/figure.txt")"
        echo "# perf record -F $freq -e cpu-clock, measured phase only; load average before: $load"
        echo "# perf report --comm prof-$side --no-children --percentage relative --sort dso,symbol"
        echo "# (percent of this side's samples)"
        awk '{ n += $2 } END { printf "# %d samples\n", n }' "$tmp/$side.txt"
        echo "## by object (sum of the symbols)"
        awk '{ sub("%", "", $1); s[$3] += $1 } END { for (d in s) printf "%8.2f%%  %s\n", s[d], d }' \
            "$tmp/$side.txt" | sort -rn | sed -n '1,6p'
        echo "## by symbol (top 30; overhead, samples, object, symbol)"
        sed -n '1,30p' "$tmp/$side.txt"
    } > "$out-$side.txt"
done
echo "perf.data: $tmp/perf.data"
