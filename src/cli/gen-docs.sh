#!/usr/bin/env bash
# The synesis command's reference, made from the program's own help texts, so the two never
# disagree:
#   gen-docs.sh markdown SYNESIS        docs/synesis.md on stdout
#   gen-docs.sh man SYNESIS             the manual page synesis(1) (roff) on stdout
#   gen-docs.sh check SYNESIS DOC       exit 1 with the difference when DOC is not `markdown`'s
# CMake: the target synesis-docs rewrites docs/synesis.md; ctest test_cli_docs runs `check`.
set -euo pipefail
mode=$1 bin=$2
export LC_ALL=C

# title|arguments of one help text each.
topics=(
    "synesis|--help"
    "synesis init|init --help"
    "synesis agent|agent --help"
    "synesis request|request --help"
    "synesis check|check --help"
    "synesis edge|edge --help"
    "Configuration files|help config"
)

help_of() { # runs the program for one topic; a failing help is an error
    local args=$1
    # shellcheck disable=SC2086
    "$bin" $args
}

markdown() {
    cat <<'HEAD'
# The `synesis` command

<!-- Generated from the program's own --help texts by src/cli/gen-docs.sh: do not edit. After a
     change of a help text run `cmake --build --preset debug --target synesis-docs`; ctest
     test_cli_docs fails while this file is out of date. -->

`synesis` is the operator's command of synesis-tunnel (package `synesis-tools`, sources in
`src/cli/`): `synesis init` creates the device identity, `synesis agent` keeps the tunnel up (the
`synesis-agent` service), `synesis request` sends one request, `synesis check` diagnoses why the
tunnel cannot connect, `synesis edge` runs the reference edge (the `synesis-edge` service). The packages, the systemd units and a first setup are in
[operations.md](operations.md#the-synesis-command-and-its-services); the same text as this file is
the manual page `man synesis`.

HEAD
    local t
    for t in "${topics[@]}"; do
        echo "- [${t%%|*}](#$(echo "${t%%|*}" | tr 'A-Z ' 'a-z-'))"
    done
    for t in "${topics[@]}"; do
        printf '\n## %s\n\n`synesis %s`\n\n```text\n' "${t%%|*}" "${t#*|}"
        help_of "${t#*|}"
        printf '```\n'
    done
}

roff_escape() { sed -e 's/\\/\\e/g' -e "s/^[.']/\\\\\\&&/" -e 's/-/\\-/g'; }

man() {
    local version
    version=$("$bin" --version | awk '{ print $2 }')
    cat <<HEAD
.TH SYNESIS 1 "" "synesis-tunnel $version" "synesis-tunnel"
.SH NAME
synesis \\- the synesis-tunnel device and edge tools
.SH SYNOPSIS
.B synesis
.I COMMAND
.RI [ OPTION ...]
.br
.B synesis help
.RI [ COMMAND " | " config " | " exit-codes ]
.SH DESCRIPTION
HEAD
    local t
    for t in "${topics[@]}"; do
        printf '.SS "%s"\n.nf\n' "${t%%|*}"
        help_of "${t#*|}" | roff_escape
        printf '.fi\n'
    done
    cat <<'TAIL'
.SH FILES
.TP
.I /etc/synesis/agent.conf
settings of \fBsynesis agent\fR and \fBsynesis request\fR
.TP
.I /etc/synesis/edge.conf
settings of \fBsynesis edge\fR
.TP
.I /var/lib/synesis
the device identity (\fBsynesis init\fR), owned by the user synesis
.TP
.I /usr/lib/systemd/system/synesis-agent.service, synesis-edge.service
the services
.SH SEE ALSO
.BR systemctl (1),
.BR journalctl (1),
/usr/share/doc/synesis-tools/synesis.md
TAIL
}

case $mode in
markdown) markdown ;;
man) man ;;
check)
    doc=$3
    if ! diff -u "$doc" <(markdown) >&2; then
        echo "$doc is out of date: run cmake --build <build dir> --target synesis-docs" >&2
        exit 1
    fi
    echo "$doc matches the help texts of $bin"
    ;;
*)
    echo "usage: gen-docs.sh markdown|man SYNESIS, or gen-docs.sh check SYNESIS DOC" >&2
    exit 2
    ;;
esac
