#!/usr/bin/env bash
# The embedding example (examples/embed.c) against an installed library and the installed
# `synesis` command (tests/package_test.sh: the packages unpacked into a staging root, and with
# --system installed for real):
#
#   run.sh PREFIX SYNESIS WORK_DIR CC
#   run.sh --binary EMBED SYNESIS WORK_DIR    (ctest test_embed: the build tree's own embed and
#                                              synesis, nothing compiled)
#
# builds embed.c against PREFIX (PREFIX/include, PREFIX/lib[/<multiarch>]) with
# `pkg-config --cflags --libs synesis_tunnel` and with a find_package CMake project
# (tests/embed/CMakeLists.txt), both linked to the shared library; creates a PKI with
# `SYNESIS init --test-pki`, starts `SYNESIS edge` on loopback, and runs both programs against it:
# exit status 0, the states Connecting, Connected, Disconnected in that order, the response
# echoed, the statistics line with one request succeeded. Then one program against an edge it
# must not trust (the device certificate given as the CA): exit status 1, PEER_UNTRUSTED.
set -euo pipefail
binary=''
if [ "$1" = --binary ]; then
    binary=$2 synesis=$3 work=$4
else
    prefix=$1 synesis=$2 work=$3 cc=$4
fi
src=$(cd "$(dirname "$0")/../.." && pwd)
rm -rf "$work" && mkdir -p "$work"
edge_pid=''
cleanup() {
    local rc=$?
    set +e
    [ -z "$edge_pid" ] || { kill -KILL "$edge_pid" 2>/dev/null; wait "$edge_pid" 2>/dev/null; }
    exit $rc
}
trap cleanup EXIT
fail() {
    echo "FAIL: embed: $*"
    exit 1
}

run_env=()
programs=("$binary")
if [ -z "$binary" ]; then
    lib=$(find "$prefix/lib" -name 'libsynesis_tunnel.so.*' -type f 2>/dev/null | head -n 1)
    [ -n "$lib" ] || fail "no libsynesis_tunnel.so under $prefix"
    libdir=$(dirname "$lib")
    # Outside /usr the loader needs to be told where the library is.
    [ "$prefix" = /usr ] || run_env=(env "LD_LIBRARY_PATH=$libdir")

    # pkg-config, as the example's own comment says (plus -lev: the program calls libev itself).
    PKG_CONFIG_PATH=$libdir/pkgconfig pkg-config --exists synesis_tunnel || fail "pkg-config finds no synesis_tunnel"
    # shellcheck disable=SC2046
    "$cc" -Wall -Wextra -Werror -o "$work/embed_pc" "$src/examples/embed.c" \
        $(PKG_CONFIG_PATH=$libdir/pkgconfig pkg-config --cflags --libs synesis_tunnel) -lev ||
        fail "cc embed.c \$(pkg-config --cflags --libs synesis_tunnel) -lev"
    # find_package.
    cmake -S "$src/tests/embed" -B "$work/cmake" -DCMAKE_C_COMPILER="$cc" -DCMAKE_PREFIX_PATH="$prefix" \
        -DEMBED_SOURCE="$src/examples/embed.c" -DCMAKE_C_FLAGS="-Wall -Wextra -Werror" \
        >"$work/configure.log" 2>&1 || { cat "$work/configure.log"; fail "cmake configure (find_package)"; }
    cmake --build "$work/cmake" >"$work/build.log" 2>&1 || { cat "$work/build.log"; fail "cmake build (find_package)"; }
    grep -q "^synesis_tunnel_DIR:PATH=$prefix/" "$work/cmake/CMakeCache.txt" || fail "find_package found another synesis_tunnel"
    for p in "$work/embed_pc" "$work/cmake/embed"; do
        readelf -d "$p" | grep -q 'NEEDED.*libsynesis_tunnel\.so\.' || fail "$p is not linked to the shared library"
    done
    programs=("$work/embed_pc" "$work/cmake/embed")
fi

# A PKI and an edge, with the installed command.
"$synesis" init --test-pki "$work/pki" --device-id embed-test >"$work/pki.log" 2>&1 ||
    { cat "$work/pki.log"; fail "synesis init --test-pki"; }
P=$work/pki
"$synesis" edge --config /dev/null --listen 127.0.0.1:0 --cert "$P/edge.pem" --key "$P/edge.key" \
    --ca "$P/ca.pem" >"$work/edge.log" 2>"$work/edge.err" &
edge_pid=$!
for _ in $(seq 300); do grep -q '^listening on' "$work/edge.err" && break; sleep 0.1; done
port=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$work/edge.err")
[ -n "$port" ] || fail "the edge: $(cat "$work/edge.err")"

for p in "${programs[@]}"; do
    name=$(basename "$p")
    msg="hello from $name"
    set +e
    "${run_env[@]}" "$p" "quic://127.0.0.1:$port" "$P/device.pem" "$P/device.key" "$P/ca.pem" "$msg" \
        >"$work/$name.out" 2>"$work/$name.err"
    rc=$?
    set -e
    [ $rc -eq 0 ] || fail "$name exited $rc: $(cat "$work/$name.out" "$work/$name.err")"
    [ "$(grep '^state: ' "$work/$name.out" | tr '\n' ' ')" = "state: Connecting state: Connected state: Disconnected " ] ||
        fail "$name: states: $(cat "$work/$name.out")"
    grep -qx "response: $msg" "$work/$name.out" || fail "$name: no echoed response: $(cat "$work/$name.out")"
    grep -qE '^stats: requests_succeeded=1 bytes_sent=[1-9][0-9]* bytes_received=[1-9]' "$work/$name.out" ||
        fail "$name: stats: $(cat "$work/$name.out")"
done
# Trusting the wrong CA: the program must fail, and say why.
set +e
"${run_env[@]}" "${programs[0]}" "quic://127.0.0.1:$port" "$P/device.pem" "$P/device.key" "$P/device.pem" \
    >"$work/untrusted.out" 2>"$work/untrusted.err"
rc=$?
set -e
[ $rc -eq 1 ] || fail "against an untrusted edge: exit status $rc (want 1)"
grep -q 'SYNESIS_ERR_PEER_UNTRUSTED' "$work/untrusted.err" || fail "untrusted: $(cat "$work/untrusted.err")"
grep -q '^state: Failed' "$work/untrusted.out" || fail "untrusted: $(cat "$work/untrusted.out")"
kill -TERM "$edge_pid"
wait "$edge_pid" || fail "the edge exited $? after SIGTERM"
edge_pid=''
if [ -z "$binary" ]; then
    echo "embed: built with pkg-config and find_package against $prefix, both ran against $(basename "$synesis") edge; an untrusted edge refused"
else
    echo "embed: $binary ran against $synesis edge; an untrusted edge refused"
fi
