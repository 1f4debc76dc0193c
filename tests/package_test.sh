#!/usr/bin/env bash
# The Debian packages and the source tarball, built and then used as a user would
# (ctest test_packages in Release builds; .ci/run).
#
#   package_test.sh BUILD_DIR [CC] [--system]
#
#  1. builds them (the targets package and package_source of BUILD_DIR, a Release build: prefix
#     /usr) and checks their metadata: names, Depends (dpkg-shlibdeps: libev4, libcjson1, libc6;
#     no OpenSSL: it is linked in), the runtime's shlibs and ldconfig, the tools' conffiles and
#     maintainer scripts, the files of each package (none in two), the tarball without build/
#     and .git;
#  2. unpacks the three .debs with `dpkg -x` into a staging root. That needs no root and changes
#     nothing on the machine, so the test runs anywhere (ctest included) and no other test can
#     come to depend on an installed package;
#  3. builds tests/consumer against the staging root, through find_package and pkg-config, shared
#     and static;
#     then examples/embed.c the same two ways (tests/embed/run.sh), run against the staged
#     `synesis edge` with a PKI from the staged `synesis init`;
#  4. runs tests/cli_test.sh with the staged /usr/bin/synesis and /etc/synesis: synesis init, an
#     edge from a configuration file, requests and an agent through it, exit statuses;
#  5. checks the units' hardening and runs `systemd-analyze verify` on them (skipped, saying so,
#     without systemd-analyze).
# --system (for CI, on a throwaway machine, as root) then also installs the packages for real with
# apt-get, which checks what dpkg -x cannot: Depends resolved from the archive, the maintainer
# scripts (the user synesis, /var/lib/synesis 0700), the conffiles; runs `synesis init` as the
# service user and an edge-to-agent round trip from the installed files with the agent reading
# the default /etc/synesis/agent.conf; builds and runs examples/embed.c against the installed
# library and command, and runs the README's embedding block as written; then purges the packages.
set -u

BUILD=$(cd "$1" && pwd) || exit 1
CC=${2:-cc}
SYSTEM=${3:-}
SRC=$(cd "$(dirname "$0")/.." && pwd)
WORK=$BUILD/package-test
EDGE_PID=''
START=$(date +%s.%N)
rm -rf "$WORK" && mkdir -p "$WORK"

cleanup() {
    [ "$BASHPID" = "$$" ] || return 0
    if [ -n "$EDGE_PID" ]; then
        kill -KILL "$EDGE_PID" 2>/dev/null
        wait "$EDGE_PID" 2>/dev/null
    fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

fail() {
    echo "FAIL: $*"
    exit 1
}
pass() { echo "ok: $* ($(awk -v a="$START" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s)"; }

# 1. Build the packages, check their metadata.
cmake --build "$BUILD" --target package >"$WORK/package.log" 2>&1 ||
    { tail -n 40 "$WORK/package.log"; fail "cmake --build $BUILD --target package"; }
cmake --build "$BUILD" --target package_source >"$WORK/package_source.log" 2>&1 ||
    { tail -n 40 "$WORK/package_source.log"; fail "target package_source"; }
VERSION=$(sed -n 's/^CMAKE_PROJECT_VERSION:STATIC=//p' "$BUILD/CMakeCache.txt")
ARCH=$(dpkg --print-architecture)
PKG=$BUILD/packages
LIB=$PKG/libsynesis-tunnel1_${VERSION}_$ARCH.deb
DEV=$PKG/libsynesis-tunnel-dev_${VERSION}_$ARCH.deb
TOOLS=$PKG/synesis-tools_${VERSION}_$ARCH.deb
TARBALL=$PKG/synesis-tunnel-$VERSION.tar.xz
for f in "$LIB" "$DEV" "$TOOLS" "$TARBALL"; do
    [ -s "$f" ] || fail "not built: $f"
done
pass "built $(cd "$PKG" && echo *.deb *.tar.xz)"

depends() { dpkg-deb -f "$1" Depends; }
has_dep() { # DEB PACKAGE
    depends "$1" | tr ',' '\n' | sed 's/^ *//' | grep -qE "^$2( |$)" ||
        fail "$(basename "$1"): Depends '$(depends "$1")' lacks $2"
}
for p in libc6 libev4 libcjson1; do
    has_dep "$LIB" $p
    has_dep "$TOOLS" $p
done
has_dep "$TOOLS" adduser
depends "$DEV" | grep -q "libsynesis-tunnel1 (= $VERSION)" || fail "the -dev package: $(depends "$DEV")"
for p in libev-dev libcjson-dev pkg-config; do has_dep "$DEV" $p; done
for deb in "$LIB" "$TOOLS"; do
    depends "$deb" | grep -qiE 'libssl|openssl|ngtcp2' && fail "$(basename "$deb") depends on OpenSSL/ngtcp2"
done
for deb in "$LIB" "$DEV" "$TOOLS"; do
    name=$(basename "$deb" | cut -d_ -f1)
    [ "$(dpkg-deb -f "$deb" Package)" = "$name" ] || fail "$deb: Package field"
    [ "$(dpkg-deb -f "$deb" Version)" = "$VERSION" ] || fail "$deb: Version field"
    [ "$(dpkg-deb -f "$deb" Architecture)" = "$ARCH" ] || fail "$deb: Architecture field"
    dpkg-deb -e "$deb" "$WORK/control-$name"
    dpkg-deb -c "$deb" >"$WORK/contents-$name"
    awk '$2 != "root/root" { bad = 1 } END { exit bad }' "$WORK/contents-$name" ||
        fail "$name: a file not owned by root"
    grep -q "usr/share/doc/$name/copyright\$" "$WORK/contents-$name" || fail "$name: no copyright"
done
grep -qx "libsynesis_tunnel 1 libsynesis-tunnel1 (>= $VERSION)" "$WORK/control-libsynesis-tunnel1/shlibs" ||
    fail "libsynesis-tunnel1: shlibs: $(cat "$WORK/control-libsynesis-tunnel1/shlibs")"
grep -q ldconfig "$WORK/control-libsynesis-tunnel1/postinst" || fail "libsynesis-tunnel1: no ldconfig"
printf '/etc/synesis/agent.conf\n/etc/synesis/edge.conf\n' |
    cmp -s - "$WORK/control-synesis-tools/conffiles" || fail "synesis-tools: conffiles"
grep -q 'adduser --system' "$WORK/control-synesis-tools/postinst" || fail "synesis-tools: postinst"
for s in postinst prerm postrm; do
    [ "$(stat -c %a "$WORK/control-synesis-tools/$s")" = 755 ] || fail "synesis-tools: $s mode"
done
expect_files() { # NAME PATH...
    local name=$1
    shift
    for p in "$@"; do
        grep -qE " \./${p#/}( |\$)" "$WORK/contents-$name" || fail "$name lacks $p"
    done
}
MA=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)
expect_files libsynesis-tunnel1 "/usr/lib/$MA/libsynesis_tunnel.so.$VERSION" "/usr/lib/$MA/libsynesis_tunnel.so.1"
expect_files libsynesis-tunnel-dev /usr/include/synesis/synesis.h "/usr/lib/$MA/libsynesis_tunnel.a" \
    "/usr/lib/$MA/libsynesis_tunnel.so" "/usr/lib/$MA/pkgconfig/synesis_tunnel.pc" \
    "/usr/lib/$MA/cmake/synesis_tunnel/synesis_tunnelConfig.cmake"
expect_files synesis-tools /usr/bin/synesis /etc/synesis/agent.conf /etc/synesis/edge.conf \
    /usr/lib/systemd/system/synesis-agent.service /usr/lib/systemd/system/synesis-edge.service \
    /usr/share/man/man1/synesis.1.gz /usr/share/doc/synesis-tools/synesis.md
dup=$(cat "$WORK"/contents-* | awk '$1 !~ /^d/ { print $6 }' | sort | uniq -d)
[ -z "$dup" ] || fail "files in two packages: $dup"
tar -tJf "$TARBALL" >"$WORK/tarball.list" || fail "the tarball does not list"
grep -qE '^[^/]+/(build|\.git)(/|$)' "$WORK/tarball.list" && fail "the tarball holds build/ or .git"
for f in CMakeLists.txt README.md src/cli/main.c tests/package_test.sh cmake/debian/postinst; do
    grep -qx "synesis-tunnel-$VERSION/$f" "$WORK/tarball.list" || fail "the tarball lacks $f"
done
pass "metadata: Depends, shlibs, conffiles, maintainer scripts, files, the source tarball"

# 2. Unpack into a staging root.
ROOT=$WORK/root
for deb in "$LIB" "$DEV" "$TOOLS"; do
    dpkg -x "$deb" "$ROOT" || fail "dpkg -x $deb"
done
S=$ROOT/usr/bin/synesis
# The command carries the library's code (and the internal edge) itself: no libsynesis_tunnel,
# no OpenSSL among its shared libraries.
needed=$(readelf -d "$S" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p' | tr '\n' ' ')
echo "$needed" | grep -qE 'libsynesis|libssl|libcrypto|libngtcp2' && fail "synesis needs: $needed"
needed=$(readelf -d "$ROOT/usr/lib/$MA/libsynesis_tunnel.so.1" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p' | tr '\n' ' ')
echo "$needed" | grep -qE 'libssl|libcrypto|libngtcp2' && fail "libsynesis_tunnel.so.1 needs: $needed"
"$S" --version >"$WORK/version.out" || fail "the staged synesis --version"
grep -q "^synesis $VERSION " "$WORK/version.out" || fail "synesis --version: $(cat "$WORK/version.out")"
zcat "$ROOT/usr/share/man/man1/synesis.1.gz" | grep -q '^\.TH SYNESIS 1' || fail "man page"
cmp -s "$ROOT/usr/share/doc/synesis-tools/synesis.md" "$SRC/docs/synesis.md" || fail "synesis.md differs"
pass "unpacked into $ROOT"

# 3. The consumer against the staged files.
bash "$SRC/tests/consumer/run.sh" --prefix "$ROOT/usr" "$WORK/consumer" "$SRC/tests/consumer" "$CC" ||
    fail "the consumer against the staged packages"
pass "consumer: find_package and pkg-config, shared and static, against the packages"

# 3b. The embedding example (examples/embed.c, the README's "Embedding in 30 seconds") against the
# staged library, run against the staged synesis edge.
bash "$SRC/tests/embed/run.sh" "$ROOT/usr" "$S" "$WORK/embed" "$CC" >"$WORK/embed.log" 2>&1 ||
    { cat "$WORK/embed.log"; fail "tests/embed/run.sh against the staged packages"; }
pass "$(tail -n 1 "$WORK/embed.log")"

# 4. The command and its shipped configuration files, as installed.
bash "$SRC/tests/cli_test.sh" "$S" "$ROOT/etc/synesis" "$WORK" >"$WORK/cli.log" 2>&1 ||
    { cat "$WORK/cli.log"; fail "tests/cli_test.sh on the staged synesis"; }
pass "tests/cli_test.sh on the staged synesis: $(tail -n 1 "$WORK/cli.log")"

# 5. The units: the hardening a service expects, the packaged paths, systemd-analyze verify.
UNITS=$ROOT/usr/lib/systemd/system
for u in agent edge; do
    grep -qx "ExecStart=/usr/bin/synesis $u --config /etc/synesis/$u.conf" "$UNITS/synesis-$u.service" ||
        fail "synesis-$u.service: ExecStart"
done
bash "$SRC/tests/units_test.sh" "$UNITS" "$S" "$WORK" >"$WORK/units.log" 2>&1 ||
    { cat "$WORK/units.log"; fail "tests/units_test.sh on the packaged units"; }
pass "units: $(tail -n 1 "$WORK/units.log")"

# --system: install for real, use, purge.
if [ "$SYSTEM" = --system ]; then
    [ "$(id -u)" = 0 ] || fail "--system needs root"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends "$LIB" "$DEV" "$TOOLS" >"$WORK/apt.log" 2>&1 ||
        { tail -n 30 "$WORK/apt.log"; fail "apt-get install of the packages"; }
    [ "$(command -v synesis)" = /usr/bin/synesis ] || fail "synesis is not /usr/bin/synesis"
    getent passwd synesis | grep -q ':/var/lib/synesis:' || fail "no system user synesis"
    for d in /var/lib/synesis /var/lib/synesis-edge; do
        [ "$(stat -c '%U:%G %a' $d)" = "synesis:synesis 700" ] || fail "$d: $(stat -c '%U:%G %a' $d)"
    done
    dpkg-query -W -f='${Conffiles}\n' synesis-tools | grep -q /etc/synesis/agent.conf ||
        fail "agent.conf is not a registered conffile"
    as_synesis() { runuser -u synesis -- "$@"; }
    P=/var/lib/synesis-edge/pki
    as_synesis synesis init --test-pki $P --device-id ci-test >"$WORK/sys-pki.out" 2>&1 ||
        fail "synesis init --test-pki as synesis: $(cat "$WORK/sys-pki.out")"
    as_synesis synesis init --device-id ci-device --ca-cert $P/ca.pem --ca-key $P/ca.key \
        >"$WORK/sys-init.out" 2>&1 || fail "synesis init as synesis: $(cat "$WORK/sys-init.out")"
    [ "$(stat -c '%U %a' /var/lib/synesis/device.key)" = "synesis 600" ] || fail "device.key owner/mode"
    # setpriv execs the edge itself (runuser would stay its parent and exit 143 on SIGTERM).
    setpriv --reuid=synesis --regid=synesis --init-groups synesis edge --config /dev/null --listen 127.0.0.1:0 --cert $P/edge.pem \
        --key $P/edge.key --ca $P/ca.pem >"$WORK/sys-edge.log" 2>"$WORK/sys-edge.err" &
    EDGE_PID=$!
    for _ in $(seq 100); do grep -q '^listening on' "$WORK/sys-edge.err" && break; sleep 0.1; done
    port=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$WORK/sys-edge.err")
    [ -n "$port" ] || fail "installed edge: $(cat "$WORK/sys-edge.err")"
    # What an operator does: set cloud_url (and the private CA) in the shipped agent.conf.
    printf 'cloud_url = quic://127.0.0.1:%s\nserver_name = localhost\nca = %s/ca.pem\n' "$port" $P \
        >>/etc/synesis/agent.conf
    out=$(echo hi | as_synesis synesis request --timeout 10 2>"$WORK/sys-request.err") ||
        fail "installed request: $(cat "$WORK/sys-request.err")"
    [ "$out" = hi ] || fail "installed request printed '$out'"
    as_synesis synesis agent --duration 1.5 --heartbeat-interval 0.2 >"$WORK/sys-agent.out" \
        2>"$WORK/sys-agent.err" || fail "installed agent: $(cat "$WORK/sys-agent.err")"
    grep -q '"config":"/etc/synesis/agent.conf"' "$WORK/sys-agent.out" || fail "agent: default file"
    grep -q '"event":"heartbeat".*"bytes"' "$WORK/sys-agent.out" || fail "installed agent: no heartbeat"
    kill -TERM "$EDGE_PID"
    wait "$EDGE_PID" || fail "installed edge exited $? after SIGTERM"
    EDGE_PID=''
    if command -v systemd-analyze >/dev/null; then
        systemd-analyze verify --man=no /usr/lib/systemd/system/synesis-agent.service \
            /usr/lib/systemd/system/synesis-edge.service || fail "systemd-analyze verify (installed)"
    fi
    pass "installed with apt-get: user synesis, state 0700, init as synesis, edge + request + agent"
    bash "$SRC/tests/embed/run.sh" /usr /usr/bin/synesis "$WORK/embed-system" "$CC" >"$WORK/embed-system.log" 2>&1 ||
        { cat "$WORK/embed-system.log"; fail "tests/embed/run.sh against the installed packages"; }
    pass "$(tail -n 1 "$WORK/embed-system.log")"
    # The README's "Embedding in 30 seconds", as written, in a scratch directory holding
    # examples/embed.c (its edge listens on port 4433, as the README says).
    bash "$SRC/tests/readme_test.sh" embed "$WORK/readme-embed" examples/embed.c >"$WORK/readme-embed.log" 2>&1 ||
        { cat "$WORK/readme-embed.log"; fail "the README's embedding block against the installed packages"; }
    grep -qx 'response: hello' "$WORK/readme-embed.log" || { cat "$WORK/readme-embed.log"; fail "README embed: no response"; }
    pass "the README's embedding block, as written, against the installed packages"
    apt-get purge -y synesis-tools libsynesis-tunnel-dev libsynesis-tunnel1 >"$WORK/purge.log" 2>&1 ||
        { tail -n 30 "$WORK/purge.log"; fail "apt-get purge"; }
    for p in /usr/bin/synesis /etc/synesis /var/lib/synesis /var/lib/synesis-edge; do
        [ -e $p ] && fail "$p is still there after purge"
    done
    pass "purged: program, /etc/synesis and the state directories removed"
fi
echo "package test passed in $(awk -v a="$START" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"
