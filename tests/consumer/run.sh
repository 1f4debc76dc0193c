#!/usr/bin/env bash
# run.sh BUILD_DIR WORK_DIR CONSUMER_SRC CC: installs the build's library components (runtime and
# dev) into WORK_DIR/prefix, then builds and runs the consumer through find_package (shared and
# static) and through pkg-config.
# run.sh --prefix PREFIX WORK_DIR CONSUMER_SRC CC: the same against files already installed under
# PREFIX (tests/package_test.sh: the .deb packages unpacked, PREFIX = ROOT/usr).
set -euo pipefail
if [ "$1" = --prefix ]; then
    prefix=$2 work=$3 src=$4 cc=$5
    rm -rf "$work" && mkdir -p "$work"
else
    build=$1 work=$2 src=$3 cc=$4
    rm -rf "$work" && mkdir -p "$work"
    prefix=$work/prefix
    # Only the library's components: the tools' system files (/etc/synesis, units) are not wanted
    # in a scratch prefix, and with prefix /usr (the release preset) /etc is an absolute path.
    for component in runtime dev; do
        cmake --install "$build" --prefix "$prefix" --component $component >>"$work/install.log"
    done
fi
# lib, or lib/<multiarch> under /usr.
libdir=$(dirname "$(find "$prefix" -name libsynesis_tunnel.so.1 | head -n 1)")
[ -d "$libdir" ] || { echo "no libsynesis_tunnel.so.1 under $prefix" >&2; exit 1; }

cmake -S "$src" -B "$work/cmake" -DCMAKE_C_COMPILER="$cc" -DCMAKE_PREFIX_PATH="$prefix" >"$work/configure.log"
cmake --build "$work/cmake" >"$work/build.log"
LD_LIBRARY_PATH=$libdir "$work/cmake/consumer_shared"
"$work/cmake/consumer_static"
# The shared consumer must resolve the library by its SONAME, from the prefix it was given.
readelf -d "$work/cmake/consumer_shared" | grep -q 'libsynesis_tunnel.so.1'
grep -q "^synesis_tunnel_DIR:PATH=$prefix/" "$work/cmake/CMakeCache.txt"

export PKG_CONFIG_PATH=$libdir/pkgconfig
"$cc" -o "$work/pc_shared" "$src/main.c" $(pkg-config --cflags --libs synesis_tunnel)
LD_LIBRARY_PATH=$libdir "$work/pc_shared"
"$cc" -o "$work/pc_static" "$src/main.c" $(pkg-config --cflags synesis_tunnel) \
    "$libdir/libsynesis_tunnel.a" $(pkg-config --static --libs-only-l synesis_tunnel | sed 's/-lsynesis_tunnel//')
"$work/pc_static"
echo "consumer: find_package shared+static and pkg-config shared+static all ran ($libdir)"
