#!/usr/bin/env bash
# Plots of one synesis-bench run (bash, awk and gnuplot; no jq, no python).
#
#   tests/bench/plot.sh RESULTS.jsonl [LATENCY_SAMPLES] [OUTDIR]
#
#   RESULTS.jsonl    synesis-bench --out FILE (JSON lines, tests/bench/README.md)
#   LATENCY_SAMPLES  synesis-bench --latency-samples FILE (us, one per line); FILE.tls-tcp, when
#                    present, is TLS 1.3 over TCP's (baseline_tls_tcp)
#   OUTDIR           where the PNGs go (default: .)
#
# Writes rate_vs_inflight.png (req/s against requests in flight, synesis and OpenSSL QUIC, log x),
# latency_cdf.png (CDF of 1 KiB request latency at 1 in flight; needs LATENCY_SAMPLES) and
# bulk_vs_gso.png (bulk Gbit/s per figure against the UDP-with-GSO loopback limit).
# Without gnuplot it says so and exits 0.
set -euo pipefail

usage() {
    echo "usage: $0 RESULTS.jsonl [LATENCY_SAMPLES] [OUTDIR]" >&2
    exit 2
}
if [ $# -lt 1 ] || [ $# -gt 3 ]; then usage; fi
results=$1
samples=${2:-}
outdir=${3:-.}
[ -r "$results" ] || { echo "plot.sh: cannot read $results" >&2; exit 2; }
if ! command -v gnuplot >/dev/null 2>&1; then
    echo "plot.sh: gnuplot is not installed; no plots made (Debian: apt-get install gnuplot-nox)"
    exit 0
fi
mkdir -p "$outdir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# awk helpers: the string or number value of "key" in a compact JSON line (first occurrence).
AWK_LIB='
function jstr(line, key,   m) {
    if (match(line, "\"" key "\":\"[^\"]*\"")) {
        m = substr(line, RSTART, RLENGTH); sub("^\"" key "\":\"", "", m); sub("\"$", "", m)
        return m
    }
    return ""
}
function jnum(line, key,   m) {
    if (match(line, "\"" key "\":-?[0-9.eE+-]+")) {
        m = substr(line, RSTART, RLENGTH); sub("^\"" key "\":", "", m)
        return m + 0
    }
    return ""
}'

# (a) rate against requests in flight: "inflight median min max" per implementation.
for impl in synesis openssl-quic tls-tcp; do
    awk -v impl="$impl" "$AWK_LIB"'
        jstr($0, "bench") == "rate" && jstr($0, "impl") == impl {
            print jnum($0, "inflight"), jnum($0, "median"), jnum($0, "min"), jnum($0, "max")
        }' "$results" | sort -n >"$tmp/rate-$impl.dat"
done
plots=()
for impl in synesis openssl-quic tls-tcp; do
    [ -s "$tmp/rate-$impl.dat" ] || continue
    case $impl in
    synesis) title="synesis-tunnel" ;;
    openssl-quic) title="OpenSSL 3.5 QUIC" ;;
    tls-tcp) title="TLS 1.3 / TCP (ping-pong)" ;;
    esac
    pt=7
    [ "$impl" = tls-tcp ] && pt=5
    plots+=("'$tmp/rate-$impl.dat' using 1:2:3:4 with yerrorlines lw 2 pt $pt ps 1.3 title '$title'")
done
if [ ${#plots[@]} -gt 0 ]; then
    {
        echo "set terminal pngcairo size 800,500 font ',10'"
        echo "set output '$outdir/rate_vs_inflight.png'"
        echo "set title '1 KiB echo requests: rate against requests in flight (median, min-max)'"
        echo "set logscale x 2"
        echo "set xlabel 'requests in flight'"
        echo "set ylabel 'requests per second'"
        echo "set format y '%.0s%c'"
        echo "set yrange [0:*]"
        echo "set grid"
        echo "set key top left"
        echo "plot $(IFS=,; echo "${plots[*]}")"
    } >"$tmp/rate.gp"
    gnuplot "$tmp/rate.gp"
    echo "plot.sh: $outdir/rate_vs_inflight.png"
else
    echo "plot.sh: no rate lines in $results; rate_vs_inflight.png not made"
fi

# (b) CDF of the latency samples: "us fraction", sorted.
cdf() {
    sort -n "$1" | awk '{ v[NR] = $1 } END { for (i = 1; i <= NR; i++) print v[i], i / NR }' >"$2"
}
if [ -n "$samples" ] && [ -s "$samples" ]; then
    cdf "$samples" "$tmp/lat-synesis.dat"
    plots=("'$tmp/lat-synesis.dat' using 1:2 with lines lw 2 title 'synesis-tunnel ($(wc -l <"$samples") requests)'")
    if [ -s "$samples.tls-tcp" ]; then
        cdf "$samples.tls-tcp" "$tmp/lat-tls.dat"
        plots+=("'$tmp/lat-tls.dat' using 1:2 with lines lw 2 title 'TLS 1.3 / TCP ($(wc -l <"$samples.tls-tcp") requests)'")
    fi
    {
        echo "set terminal pngcairo size 800,500 font ',10'"
        echo "set output '$outdir/latency_cdf.png'"
        echo "set title 'Latency of 1 KiB echo requests, 1 in flight (all runs): CDF'"
        echo "set logscale x 10"
        echo "set xlabel 'latency (us, log)'"
        echo "set ylabel 'fraction of requests'"
        echo "set yrange [0:1]"
        echo "set ytics 0.1"
        echo "set grid"
        echo "set key bottom right"
        echo "plot $(IFS=,; echo "${plots[*]}")"
    } >"$tmp/lat.gp"
    gnuplot "$tmp/lat.gp"
    echo "plot.sh: $outdir/latency_cdf.png"
else
    echo "plot.sh: no latency samples given (synesis-bench --latency-samples FILE); latency_cdf.png not made"
fi

# (c) bulk Gbit/s per figure against the UDP-with-GSO limit: "label median min max".
gso=$(awk "$AWK_LIB"'jstr($0, "bench") == "udp_gso" { print jnum($0, "median"); exit }' "$results")
awk "$AWK_LIB"'
    jstr($0, "bench") == "bulk" && jstr($0, "unit") == "Gbit/s" {
        impl = jstr($0, "impl")
        name = impl == "synesis" ? "synesis" : impl == "openssl-quic" ? "OpenSSL QUIC" : impl == "tls-tcp" ? "TLS/TCP" : impl
        dir = jstr($0, "direction"); if (dir == "") dir = "down"
        st = jnum($0, "streams"); if (st == "") st = 1
        mib = jnum($0, "bytes") / 1048576
        size = mib >= 1024 ? sprintf("%g GiB", mib / 1024) : sprintf("%g MiB", mib)
        label = sprintf("%s\\n%s %s, %d stream%s", name, size, dir, st, st == 1 ? "" : "s")
        printf "\"%s\" %s %s %s\n", label, jnum($0, "median"), jnum($0, "min"), jnum($0, "max")
    }' "$results" >"$tmp/bulk.dat"
if [ -s "$tmp/bulk.dat" ]; then
    {
        echo "set terminal pngcairo size 900,500 font ',10'"
        echo "set output '$outdir/bulk_vs_gso.png'"
        echo "set title 'Bulk transfer on loopback (median, min-max)'"
        echo "set ylabel 'Gbit/s'"
        echo "set style data histogram"
        echo "set style fill solid 0.6 border -1"
        echo "set boxwidth 0.6"
        echo "set xtics font ',8'"
        echo "set bmargin 5"
        echo "set grid ytics"
        echo "set key top left"
        if [ -n "$gso" ]; then
            echo "set yrange [0:$gso * 1.15]"
            echo "plot '$tmp/bulk.dat' using 0:2:xtic(1) with boxes title 'bulk (median)', \\"
            echo "     '' using 0:2:3:4 with yerrorbars lc black pt -1 notitle, \\"
            echo "     $gso with lines lw 2 dt 2 lc rgb 'red' title sprintf('UDP with GSO, loopback: %.1f Gbit/s', $gso)"
        else
            echo "set yrange [0:*]"
            echo "plot '$tmp/bulk.dat' using 0:2:xtic(1) with boxes title 'bulk (median)', \\"
            echo "     '' using 0:2:3:4 with yerrorbars lc black pt -1 notitle"
        fi
    } >"$tmp/bulk.gp"
    gnuplot "$tmp/bulk.gp"
    echo "plot.sh: $outdir/bulk_vs_gso.png${gso:+ (UDP-with-GSO limit $gso Gbit/s)}"
else
    echo "plot.sh: no bulk lines in $results; bulk_vs_gso.png not made"
fi
