#!/usr/bin/env bash
# The ABI check (libabigail: Debian's abigail-tools): the public ABI of a built
# libsynesis_tunnel.so against the committed baseline tests/abi/libsynesis_tunnel.abi.
#
#   check.sh [--headers DIR] [--baseline FILE] LIB            compare (ctest test_abi; .ci/run)
#   check.sh [--headers DIR] [--baseline FILE] --update LIB   regenerate the baseline from LIB
#
# LIB is a build's libsynesis_tunnel.so with debug information (the debug preset's). Only the
# public ABI counts: abidw reads the types through the headers of DIR (default include/synesis of
# this tree) and drops every other type, so the opaque handles stay opaque and a change inside
# src/ is never a change here.
#
# The rule:
#  - no change, or only compatible ones: passes, and prints what changed. Compatible: functions
#    or variables added; members appended at the end of a public struct (the headers' evolution
#    rule: every public struct carries its size, set by the program, so the library touches only
#    the members the program was built with; and no public struct is passed by value or embedded
#    in another public struct); and what abidiff itself files as harmless (an enumerator
#    appended, a typedef renamed...);
#  - anything else is incompatible: a function or variable removed, and any change to the type of
#    an existing one (a member moved, retyped or removed, a struct shrunk...). abidiff sets its
#    ABIDIFF_ABI_INCOMPATIBLE_CHANGE bit only for removals: two members of a struct swapped give
#    only the ABI_CHANGE bit (a type change must be judged). So the ABI_CHANGE bit is read with
#    the leaf-changes report: it passes only when that report holds additions and structs grown
#    at their end, nothing else. An incompatible change fails, unless the SONAME of LIB differs
#    from the baseline's: a new SONAME says the break is intentional, and the check passes,
#    printing the changes and that the baseline must now be regenerated (--update) and
#    committed with the SONAME bump;
#  - abidiff itself failing (unreadable input, usage): fails.
# Exit status 0 passed, 1 failed, 77 skipped (no abidw/abidiff, or LIB built for another
# architecture than the baseline's).
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
HEADERS=$SRC/include/synesis
BASELINE=$SRC/tests/abi/libsynesis_tunnel.abi
UPDATE=0
while [ $# -gt 1 ]; do
    case $1 in
    --headers) HEADERS=$2; shift 2 ;;
    --baseline) BASELINE=$2; shift 2 ;;
    --update) UPDATE=1; shift ;;
    *) break ;;
    esac
done
[ $# -eq 1 ] || { sed -n '5,6p' "$0" | sed 's/^# *//' >&2; exit 1; }
LIB=$1
[ -f "$LIB" ] || { echo "abi: no library at $LIB" >&2; exit 1; }
for tool in abidw abidiff; do
    command -v $tool >/dev/null || { echo "abi: skipped, $tool not found (apt-get install abigail-tools)"; exit 77; }
done

# The same options for the baseline and for every library compared with it: public types only,
# no paths of the machine that built it, hashed type ids (a smaller diff when the baseline is
# regenerated).
abi_dump() { # LIB OUT
    abidw --headers-dir "$HEADERS" --drop-private-types --no-corpus-path --no-comp-dir-path \
        --no-show-locs --type-id-style hash --out-file "$2" "$1"
}
attr() { # FILE NAME: an attribute of the abi-corpus element
    sed -n "s/^<abi-corpus .*$2='\([^']*\)'.*/\1/p" "$1" | head -n 1
}

if [ $UPDATE = 1 ]; then
    abi_dump "$LIB" "$BASELINE"
    echo "abi: baseline written: $BASELINE (SONAME $(attr "$BASELINE" soname)," \
        "$(grep -c '<elf-symbol name=.*is-defined=.yes.' "$BASELINE") exported symbols)"
    exit 0
fi

[ -f "$BASELINE" ] || { echo "abi: no baseline at $BASELINE (check.sh --update LIB writes it)" >&2; exit 1; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
abi_dump "$LIB" "$WORK/current.abi"
old_soname=$(attr "$BASELINE" soname)
new_soname=$(attr "$WORK/current.abi" soname)
old_arch=$(attr "$BASELINE" architecture)
new_arch=$(attr "$WORK/current.abi" architecture)
if [ "$old_arch" != "$new_arch" ]; then
    echo "abi: skipped, the baseline is for $old_arch and $LIB for $new_arch"
    exit 77
fi

set +e
abidiff "$BASELINE" "$WORK/current.abi" >"$WORK/report" 2>&1
rc=$?
set -e
echo "abi: $LIB (SONAME $new_soname) against $(basename "$BASELINE") (SONAME $old_soname):" \
    "abidiff exit status $rc"
# abidiff's exit status is a bit field: 1 error, 2 usage error, 4 an ABI change, 8 an
# incompatible ABI change (libabigail's abidiff manual, "Return values").
if [ $((rc & 3)) -ne 0 ]; then
    cat "$WORK/report"
    echo "abi: FAIL: abidiff could not compare (exit status $rc)"
    exit 1
fi
if [ $rc -eq 0 ]; then
    echo "abi: ok, no change to the public ABI"
    [ "$old_soname" = "$new_soname" ] ||
        echo "abi: the SONAME changed ($old_soname -> $new_soname): regenerate the baseline (tests/abi/check.sh --update)"
    exit 0
fi
cat "$WORK/report"
# Compatible only: the leaf-changes report (each changed type once, with its own changes) holds
# no removed or changed function or variable, and every changed type is a struct that only grew
# at its end (its new members at offsets at or beyond its old size).
abidiff --leaf-changes-only "$BASELINE" "$WORK/current.abi" >"$WORK/leaf" 2>&1 || true
additions_only=0
echo "abi: incompatible: abidiff's ABI_INCOMPATIBLE_CHANGE bit (a removed symbol or declaration, a SONAME change)" >"$WORK/verdict"
if [ $((rc & 8)) -eq 0 ] && awk '
    function bad(why) { print "abi: incompatible: " why ": " $0; ok = 0 }
    BEGIN { ok = 1; intype = 0 }
    /^Removed\/Changed\/Added (functions|variables) summary: / {
        if ($0 !~ /summary: 0 Removed, 0 Changed/) bad("a removed or changed declaration")
        next
    }
    /^(Function|Variable) symbols changes summary: / {
        if ($0 !~ /summary: 0 Removed/) bad("a removed symbol")
        next
    }
    /^\x27struct [^\x27]*\x27 changed:$/ { intype = 1; oldsize = -1; next }
    /^\x27.*\x27 changed:$/ { bad("a changed type that is not a struct"); intype = 1; next }
    /^[^ ]/ || /^$/ { intype = 0; next }
    intype && /^  type size changed from [0-9]+ to [0-9]+ \(in bits\)$/ {
        oldsize = $5 + 0
        if ($7 + 0 <= oldsize) bad("a struct that did not grow")
        next
    }
    intype && /^  [0-9]+ data member insertions?:$/ { next }
    intype && /^    \x27.*\x27, at offset [0-9]+ \(in bits\)$/ {
        off = $(NF - 2) + 0
        if (oldsize < 0 || off < oldsize) bad("a member inserted before the end")
        next
    }
    intype { bad("a change to an existing member or type") }
    END { exit ok ? 0 : 1 }' "$WORK/leaf" >"$WORK/verdict"; then
    additions_only=1
fi
if [ $additions_only = 0 ]; then
    if [ "$old_soname" != "$new_soname" ]; then
        cat "$WORK/verdict"
        echo "abi: ok, an incompatible change with a new SONAME ($old_soname -> $new_soname): intentional."
        echo "abi: the baseline must now be regenerated and committed: tests/abi/check.sh --update $LIB"
        exit 0
    fi
    cat "$WORK/verdict"
    echo "abi: FAIL: an incompatible change to the public ABI (listed above) with the same SONAME ($new_soname)."
    echo "abi: keep the old layout (append members, add functions), or bump the SONAME (the project's" \
        "major version) and regenerate the baseline (tests/abi/check.sh --update)"
    exit 1
fi
echo "abi: ok, compatible changes only (listed above)"
[ "$old_soname" = "$new_soname" ] ||
    echo "abi: the SONAME changed ($old_soname -> $new_soname): regenerate the baseline (tests/abi/check.sh --update)"
