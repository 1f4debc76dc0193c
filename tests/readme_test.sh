#!/usr/bin/env bash
# Runs a quick-start block of README.md as written: the first fenced block after the line
# `<!-- quick-start: NAME -->` (a note may follow NAME), every line as it stands, with
# bash -e -o pipefail, so any command that fails fails the test (a command left running in the
# background is the block's to stop). A block that is missing fails too.
#
#   readme_test.sh NAME DIR [FILE...]
#
# DIR is the working directory, as the README assumes it: the source tree itself (.ci/run runs
# the demo block there: "Quick start (fresh Debian 12, as root)"), or a scratch directory into
# which each FILE, a path relative to the source tree, is copied first (tests/package_test.sh
# --system runs the embed block in one holding examples/embed.c, after installing the
# packages). At most 20 minutes per block (the demo block builds the Release tree).
set -euo pipefail
[ $# -ge 2 ] || { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
name=$1 dir=$2
shift 2
src=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$dir"
for f in "$@"; do
    mkdir -p "$dir/$(dirname "$f")"
    cp "$src/$f" "$dir/$f"
done
block=$(mktemp)
trap 'rm -f "$block"' EXIT
# The marker line: `<!-- quick-start: NAME -->`, or with a note after NAME.
awk -v name="$name" '
    $0 == "<!-- quick-start: " name " -->" || index($0, "<!-- quick-start: " name " ") == 1 { armed = 1; next }
    armed && !inside && /^```/ { inside = 1; next }
    inside && /^```/ { exit }
    inside { print }' "$src/README.md" >"$block"
[ -s "$block" ] || { echo "FAIL: README.md has no block after <!-- quick-start: $name -->"; exit 1; }
echo "== README quick start '$name', in $dir:"
sed 's/^/   | /' "$block"
set +e
(cd "$dir" && timeout 1200 bash -e -o pipefail "$block")
rc=$?
set -e
[ $rc -eq 0 ] || { echo "FAIL: README quick start '$name' exited $rc"; exit 1; }
echo "ok: README quick start '$name' ran as written"
