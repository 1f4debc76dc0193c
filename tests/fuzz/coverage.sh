#!/usr/bin/env bash
# What a fuzz target's corpus reaches: source-based line, function and region coverage.
#
#   tests/fuzz/coverage.sh TARGET [CORPUS_DIR]
#
# Needs the coverage build (`cmake --preset fuzz-coverage && cmake --build --preset fuzz-coverage`:
# the same targets, and ngtcp2, compiled with -fprofile-instr-generate -fcoverage-mapping instead of
# the sanitizers). Replays CORPUS_DIR (default: the working corpus run.sh left in
# build/fuzz/tests/fuzz/work/TARGET/corpus) and the seeds once through build/fuzz-coverage's
# fuzz_TARGET, then prints llvm-cov's report for the library's sources and for ngtcp2's packet and
# connection code, and, for ngtcp2_conn.c and ngtcp2_pkt.c, the coverage of each frame handler
# (conn_recv_*, conn_on_*) and frame decoder (ngtcp2_pkt_decode_*_frame).
#
# The figures count everything the process ran while replaying, including the live fixture's
# handshakes (live.c) for the targets that use it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
target=${1:?usage: coverage.sh TARGET [CORPUS_DIR]}
corpus=${2:-$root/build/fuzz/tests/fuzz/work/$target/corpus}
cov=${FUZZ_COVERAGE_BUILD:-$root/build/fuzz-coverage}
bin=$cov/tests/fuzz/fuzz_$target
[ -x "$bin" ] || { echo "coverage.sh: $bin missing: cmake --preset fuzz-coverage && cmake --build --preset fuzz-coverage" >&2; exit 2; }
out=$cov/tests/fuzz/work/$target
mkdir -p "$out"
rm -f "$out"/*.profraw
dirs=("$here/corpus/$target")
[ -d "$corpus" ] && dirs=("$corpus" "${dirs[@]}")
LLVM_PROFILE_FILE="$out/%p.profraw" "$bin" -runs=0 -artifact_prefix="$out/" "${dirs[@]}" >"$out/replay.log" 2>&1 || true
llvm-profdata merge -sparse -o "$out/cov.profdata" "$out"/*.profraw
ninputs=$(grep -hoE 'INITED.*|Done [0-9]+ runs' "$out/replay.log" | tail -n 1)

ng=$(find "$cov/ngtcp2-instrumented-build/src/synesis_ngtcp2_instrumented/lib" -maxdepth 1 \
    -name 'ngtcp2_*.c' 2>/dev/null | sort)
lib=$(cd "$root" && ls src/*.c src/edge/*.c | sed "s|^|$root/|")
echo "fuzz_$target: source coverage of ${dirs[*]} ($ninputs)"
echo
# llvm-cov's columns: Filename Regions Missed Cover Functions Missed Executed Lines Missed Cover ...
llvm-cov report "$bin" -instr-profile="$out/cov.profdata" $lib $ng 2>/dev/null |
    sed -E "s|^[^ ]*/synesis_ngtcp2_instrumented/lib/|ngtcp2/|; s|$root/||" |
    awk 'BEGIN { printf "%-30s %20s %12s %14s\n", "file (reached)", "lines", "functions",
                        "branches" }
         NF >= 13 && $1 != "Filename" && ($8 - $9) > 0 {
             printf "%-30s %6d/%-5d %7s %5d/%-5d %6d/%-6d\n", $1, $8 - $9, $8, $10, $5 - $6, $5,
                    $11 - $12, $11 }'

for f in ngtcp2_conn.c ngtcp2_pkt.c; do
    src=$(grep -E "/$f\$" <<<"$ng" || true)
    [ -n "$src" ] || continue
    echo
    echo "$f: frame handlers and decoders (lines covered/total; 0 = not reached)"
    llvm-cov report -show-functions "$bin" -instr-profile="$out/cov.profdata" "$src" 2>/dev/null |
        awk '{ name = $1; sub(/^[^:]*:/, "", name) }
             name ~ /^(conn_recv_|conn_on_|ngtcp2_pkt_decode_.*_frame$)/ {
                 # Name Regions Miss Cover Lines Miss Cover Branches Miss Cover
                 printf "  %-40s %5d/%-5d\n", name, $5 - $6, $5 }'
done
