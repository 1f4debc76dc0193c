#!/usr/bin/env bash
# run.sh BUILD_DIR WORK_DIR CONSUMER_SRC CC: installs the build into WORK_DIR/prefix, then builds and
# runs the consumer through find_package (shared and static) and through pkg-config.
set -euo pipefail
build=$1 work=$2 src=$3 cc=$4
rm -rf "$work" && mkdir -p "$work"
prefix=$work/prefix
cmake --install "$build" --prefix "$prefix" >"$work/install.log"

cmake -S "$src" -B "$work/cmake" -DCMAKE_C_COMPILER="$cc" -DCMAKE_PREFIX_PATH="$prefix" >"$work/configure.log"
cmake --build "$work/cmake" >"$work/build.log"
LD_LIBRARY_PATH=$prefix/lib "$work/cmake/consumer_shared"
"$work/cmake/consumer_static"
# The shared consumer must resolve the library by its SONAME.
readelf -d "$work/cmake/consumer_shared" | grep -q 'libsynesis_tunnel.so.0'

export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
"$cc" -o "$work/pc_shared" "$src/main.c" $(pkg-config --cflags --libs synesis_tunnel)
LD_LIBRARY_PATH=$prefix/lib "$work/pc_shared"
"$cc" -o "$work/pc_static" "$src/main.c" $(pkg-config --cflags synesis_tunnel) \
    "$prefix/lib/libsynesis_tunnel.a" $(pkg-config --static --libs-only-l synesis_tunnel | sed 's/-lsynesis_tunnel//')
"$work/pc_static"
echo "consumer: find_package shared+static and pkg-config shared+static all ran"
