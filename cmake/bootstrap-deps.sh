#!/usr/bin/env bash
# Builds the two dependencies Debian 12 ships too old (OpenSSL >= 3.5 with its QUIC TLS API, and
# ngtcp2 >= 1.12 with the ngtcp2_crypto_ossl backend) from the upstream source inside Debian's
# source packages of newer suites, fetched with `apt-get source --download-only` against the
# archive this machine is already configured for. apt verifies every file it downloads against the
# signed Sources index. The result is a static, position-independent install prefix in a per-user
# cache keyed by a hash of the build options below and the versions, reused on the next run.
#
# Usage: bootstrap-deps.sh [--refresh] [--small]
#   prints, as its last line on stdout, `SYNESIS_DEPS_PREFIX=<dir>`.
#   --refresh  rebuild even if the cache holds a build
#   --small    optimise for size (CMake passes it for CMAKE_BUILD_TYPE=MinSizeRel): -Os and no
#              unwind tables; a separate build in the cache
# Environment:
#   SYNESIS_DEPS_CACHE   cache root (default: ${XDG_CACHE_HOME:-$HOME/.cache}/synesis-tunnel)
#   SYNESIS_DEPS_JOBS    parallel build jobs (default: nproc)
#   SYNESIS_DEPS_SUITES  suites to look in (default: "trixie forky sid")
#   SYNESIS_DEPS_MIRROR  archive URL (default: read from the machine's apt sources)
set -euo pipefail

OPENSSL_MIN=3.5.0
NGTCP2_MIN=1.16.0 # ngtcp2_conn_info packet counters appeared in 1.16
# OpenSSL 3.5 is the LTS line: prefer it; later lines are used only if no 3.5 downloads.
OPENSSL_PREFERRED_LINE=3.5.

home=${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}
cache_root=${SYNESIS_DEPS_CACHE:-${XDG_CACHE_HOME:-$home/.cache}/synesis-tunnel}
jobs=${SYNESIS_DEPS_JOBS:-$(nproc 2>/dev/null || echo 2)}
suites=${SYNESIS_DEPS_SUITES:-"trixie forky sid"}

step() { printf '[synesis-deps] %s\n' "$*" >&2; }
die() { printf '[synesis-deps] ERROR: %s\n' "$*" >&2; exit 1; }

refresh=0 small=0
for arg in "$@"; do
    case $arg in
        --refresh) refresh=1 ;;
        --small) small=1 ;;
        *) die "unknown argument '$arg' (usage: bootstrap-deps.sh [--refresh] [--small])" ;;
    esac
done

# Compiler flags of both: every function and object in its own section, so that our link drops
# what nothing references. --small: -Os instead of -O3 (ML-KEM and X25519 get slower; the assembly
# stays) and no unwind tables (debuggers, profilers and sanitizers cannot walk through OpenSSL's and
# ngtcp2's frames): docs/performance.md, "Binary size".
dep_cflags=(-ffunction-sections -fdata-sections)
ngtcp2_build_type=Release
if [ $small -eq 1 ]; then
    dep_cflags+=(-Os -fno-asynchronous-unwind-tables -fno-unwind-tables)
    ngtcp2_build_type=MinSizeRel
fi

# OpenSSL's Configure options. Besides the products we do not need, everything the tunnel, its
# tests, examples and benchmarks never use is left out (docs/performance.md, "Binary size", says
# why each is safe). Kept on purpose: TLS 1.3, QUIC (OpenSSL's own stack: baseline_ossl_quic) and
# the QUIC TLS API; TLS 1.2 (test_tls refuses a TLS 1.2 peer); EC P-256/P-384/P-521, RSA,
# X25519/X448/Ed25519/Ed448, ML-KEM (X25519MLKEM768 is the default group) and ML-DSA; AES
# (GCM, CBC for encrypted keys), ChaCha20-Poly1305, DES-EDE3 (keys encrypted by `openssl ... -des3`),
# scrypt and PBKDF2 (PKCS#8); SHA-1/2/3; PEM, PKCS#8, OSSL_STORE with the provider loading
# (provider-based key stores) and the config autoload; the assembly.
openssl_options=(
    no-shared no-module no-tests no-docs no-apps no-legacy no-comp
    # protocols and TLS features
    no-ssl3 no-tls1 no-tls1_1 no-dtls no-srp no-srtp no-nextprotoneg no-ct no-ocsp no-http
    no-ssl-trace no-unstable-qlog no-engine no-cms no-ts no-cmp
    # algorithms
    no-idea no-rc2 no-rc4 no-rc5 no-md4 no-mdc2 no-whirlpool no-rmd160 no-blake2 no-seed no-bf
    no-cast no-camellia no-aria no-sm2 no-sm3 no-sm4 no-gost no-ec2m no-dsa no-dh no-slh-dsa
    no-siv no-ocb no-multiblock no-rfc3779
    -fPIC "${dep_cflags[@]}"
)
# ngtcp2's CMake options (the install prefix and OpenSSL's location are added below).
ngtcp2_options=(
    "-DCMAKE_BUILD_TYPE=$ngtcp2_build_type" -DCMAKE_POSITION_INDEPENDENT_CODE=ON -DENABLE_LIB_ONLY=ON
    -DENABLE_SHARED_LIB=OFF -DENABLE_STATIC_LIB=ON -DBUILD_TESTING=OFF -DENABLE_OPENSSL=ON
    -DENABLE_GNUTLS=OFF -DOPENSSL_USE_STATIC_LIBS=ON "-DCMAKE_C_FLAGS=${dep_cflags[*]}"
)
# The cache key includes a hash of the options (and of this recipe's revision), so changing them
# builds anew and a build made with other options is never picked up.
recipe=2
options_hash=$(printf '%s\n' "recipe=$recipe" "${openssl_options[@]}" -- "${ngtcp2_options[@]}" |
    sha256sum | cut -c1-12)

# run_logged LOG DESCRIPTION CMD...: runs CMD with its output in LOG; on failure prints the tail.
run_logged() {
    local log=$1 what=$2
    shift 2
    step "$what (log: $log)"
    if ! "$@" >"$log" 2>&1; then
        printf '[synesis-deps] ---- last 40 lines of %s ----\n' "$log" >&2
        tail -n 40 "$log" >&2
        printf '[synesis-deps] ----\n' >&2
        die "$what failed. Read $log; fix the cause (missing build tool? disk full?), then re-run the build. \
Remove $cache_root to start from scratch."
    fi
}

# Builds live in deps/cfg-<options hash>/openssl-<v>_ngtcp2-<v>. (Earlier revisions of this script
# kept them in deps/openssl-<v>_ngtcp2-<v>: those are never used here.)
cfg_dir=$cache_root/deps/cfg-$options_hash

# cached_build: the newest complete build made with these options, if any.
cached_build() {
    ls -1d "$cfg_dir"/openssl-*_ngtcp2-* 2>/dev/null | sort -V | while read -r d; do
        [ -f "$d/.complete" ] && echo "$d"; done | tail -n 1 || true
}

# A cached, complete build is used without touching the network.
if [ $refresh -eq 0 ]; then
    cached=$(cached_build)
    if [ -n "$cached" ]; then
        step "using cached build cfg-$options_hash/$(basename "$cached") (run with --refresh, or remove it, to rebuild)"
        echo "SYNESIS_DEPS_PREFIX=$cached/prefix"
        exit 0
    fi
fi

for tool in apt-get apt-cache tar xz make perl cmake cc; do
    command -v "$tool" >/dev/null || die "'$tool' is not installed (see the README's install command)"
done

# The archive address comes from the machine's own apt sources (deb822 or one-line format).
mirror=${SYNESIS_DEPS_MIRROR:-}
if [ -z "$mirror" ]; then
    mirror=$( { grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}';
                grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
                    sed -E 's/\[[^]]*\]//' | awk '{print $2}'; } |
              grep -E '/debian/?$' | grep -v security | head -n 1 || true)
fi
[ -n "$mirror" ] || die "no Debian archive found in /etc/apt/sources.list*; set SYNESIS_DEPS_MIRROR"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
[ -r "$keyring" ] || die "$keyring missing: install debian-archive-keyring"

# Private apt state: the system's lists, cache and sources are left untouched.
apt_dir=$cache_root/apt
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$cache_root/src" "$cfg_dir" \
    "$cache_root/logs"

# One bootstrap at a time per cache (several build trees may configure at once); whoever waited
# finds the build the other one made.
if command -v flock >/dev/null; then
    exec 9>"$cache_root/.lock"
    flock -n 9 || { step "waiting for another bootstrap in $cache_root"; flock 9; }
    if [ $refresh -eq 0 ]; then
        cached=$(cached_build)
        if [ -n "$cached" ]; then
            step "using cached build cfg-$options_hash/$(basename "$cached")"
            echo "SYNESIS_DEPS_PREFIX=$cached/prefix"
            exit 0
        fi
    fi
fi
: >"$apt_dir/sources.list"
for s in $suites; do
    echo "deb-src [signed-by=$keyring] $mirror $s main" >>"$apt_dir/sources.list"
done
apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o "Dir::Etc::SourceParts=$apt_dir/none"
          -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache"
          -o "Dir::State::Status=/dev/null" -o Debug::NoLocking=1 -o APT::Sandbox::User="$(id -un)"
          -o Acquire::Retries=2 -q)

run_logged "$cache_root/logs/apt-update.log" "reading source indexes of: $suites from $mirror" \
    apt-get "${apt_opts[@]}" update

# versions PKG: every version the indexes list, newest first, one per line.
versions() {
    apt-cache "${apt_opts[@]}" showsrc "$1" 2>/dev/null | awk '/^Version:/ {print $2}' | sort -Vr -u
}
upstream() { local v=${1#*:}; echo "${v%-*}"; }
ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n 1)" = "$2" ]; }

# fetch PKG MIN [PREFERRED_PREFIX]: downloads the newest listed version that really downloads
# (the archive can list a version whose files are missing) and prints "version tarball".
fetch() {
    local pkg=$1 min=$2 pref=${3:-} v up list=() dir
    while read -r v; do
        up=$(upstream "$v")
        ge "$up" "$min" || continue
        list+=("$v")
    done < <(versions "$pkg")
    [ ${#list[@]} -gt 0 ] || die "no $pkg >= $min is listed in $suites at $mirror"
    if [ -n "$pref" ]; then # preferred line first, keeping newest-first order inside each group
        local a=() b=()
        for v in "${list[@]}"; do
            if [[ $(upstream "$v") == "$pref"* ]]; then a+=("$v"); else b+=("$v"); fi
        done
        list=("${a[@]}" "${b[@]}")
    fi
    for v in "${list[@]}"; do
        dir=$cache_root/src/$pkg-$v
        if [ -f "$dir/.downloaded" ]; then
            echo "$v $(cat "$dir/.downloaded")"
            return 0
        fi
        rm -rf "$dir" && mkdir -p "$dir"
        step "downloading $pkg $v (apt-get source --download-only, verified by apt)"
        if (cd "$dir" && apt-get "${apt_opts[@]}" source --download-only "$pkg=$v" \
                >"$cache_root/logs/download-$pkg-$v.log" 2>&1); then
            local tarball
            tarball=$(ls "$dir/${pkg}_$(upstream "$v").orig.tar."* 2>/dev/null | grep -v '\.asc$' | head -n 1)
            [ -n "$tarball" ] || die "$pkg $v downloaded but has no upstream tarball"
            echo "$tarball" >"$dir/.downloaded"
            echo "$v $tarball"
            return 0
        fi
        step "$pkg $v is listed but its files could not be downloaded; trying the next version"
        rm -rf "$dir"
    done
    die "none of the listed $pkg versions (${list[*]}) could be downloaded from $mirror"
}

read -r ossl_v ossl_tar < <(fetch openssl "$OPENSSL_MIN" "$OPENSSL_PREFERRED_LINE")
read -r ng_v ng_tar < <(fetch ngtcp2 "$NGTCP2_MIN")
ossl_up=$(upstream "$ossl_v")
ng_up=$(upstream "$ng_v")

key=cfg-$options_hash/openssl-${ossl_up}_ngtcp2-${ng_up}
out=$cache_root/deps/$key
prefix=$out/prefix
if [ -f "$out/.complete" ]; then
    step "using cached build $key"
    echo "SYNESIS_DEPS_PREFIX=$prefix"
    exit 0
fi
rm -rf "$out" && mkdir -p "$out/build"
logs=$out/logs
mkdir -p "$logs"
t0=$(date +%s)

step "OpenSSL $ossl_up (Debian source $ossl_v), ngtcp2 $ng_up (Debian source $ng_v) -> $prefix"
run_logged "$logs/openssl-unpack.log" "unpacking OpenSSL $ossl_up" tar -C "$out/build" -xf "$ossl_tar"
ossl_src=$(find "$out/build" -maxdepth 1 -type d -name 'openssl-*' | head -n 1)
# Libraries only, static and position-independent so they can be linked into our shared library.
# OPENSSLDIR is Debian's, so the default verify paths find the system trust store (/etc/ssl/certs).
run_logged "$logs/openssl-configure.log" "configuring OpenSSL $ossl_up" \
    bash -c 'cd "$1" && shift && ./Configure "$@"' configure "$ossl_src" --prefix="$prefix" --libdir=lib \
        --openssldir=/usr/lib/ssl "${openssl_options[@]}"
run_logged "$logs/openssl-build.log" "building OpenSSL $ossl_up libraries with $jobs jobs (takes minutes)" \
    make -C "$ossl_src" -j"$jobs" build_libs
run_logged "$logs/openssl-install.log" "installing OpenSSL $ossl_up" make -C "$ossl_src" install_dev
t1=$(date +%s)
step "OpenSSL done in $((t1 - t0)) s"

run_logged "$logs/ngtcp2-unpack.log" "unpacking ngtcp2 $ng_up" tar -C "$out/build" -xf "$ng_tar"
ng_src=$(find "$out/build" -maxdepth 1 -type d -name 'ngtcp2-*' | head -n 1)
run_logged "$logs/ngtcp2-configure.log" "configuring ngtcp2 $ng_up" \
    cmake -S "$ng_src" -B "$out/build/ngtcp2-build" "${ngtcp2_options[@]}" \
        -DCMAKE_INSTALL_PREFIX="$prefix" -DCMAKE_INSTALL_LIBDIR=lib -DOPENSSL_ROOT_DIR="$prefix"
run_logged "$logs/ngtcp2-build.log" "building ngtcp2 $ng_up" \
    cmake --build "$out/build/ngtcp2-build" -j"$jobs"
run_logged "$logs/ngtcp2-install.log" "installing ngtcp2 $ng_up" cmake --install "$out/build/ngtcp2-build"
[ -f "$prefix/lib/libngtcp2_crypto_ossl.a" ] || die "ngtcp2 built without libngtcp2_crypto_ossl.a: see $logs"
t2=$(date +%s)
step "ngtcp2 done in $((t2 - t1)) s; total $((t2 - t0)) s"

rm -rf "$out/build"
printf 'openssl=%s\nngtcp2=%s\nopenssl_debian=%s\nngtcp2_debian=%s\nseconds=%s\noptions_hash=%s\nopenssl_options=%s\nngtcp2_options=%s\n' \
    "$ossl_up" "$ng_up" "$ossl_v" "$ng_v" "$((t2 - t0))" "$options_hash" "${openssl_options[*]}" \
    "${ngtcp2_options[*]}" >"$out/.complete"
echo "SYNESIS_DEPS_PREFIX=$prefix"
