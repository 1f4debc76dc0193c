#!/usr/bin/env bash
# The synesis command as real processes on loopback (ctest: test_cli; tests/package_test.sh runs
# it again on the program installed from the .deb).
#
#   cli_test.sh SYNESIS ETC_DIR [TMPDIR]
#
# SYNESIS is the program, ETC_DIR holds the shipped agent.conf and edge.conf. Checks: help and
# usage exit statuses of every subcommand; `synesis init` (test PKI, a device identity, refusing
# to overwrite: 4); configuration errors naming file, line and key (3), flag errors (2); the
# shipped files parse, and so does every default they show once uncommented, and they mention
# every key; an edge started from a configuration file, requests through agent.conf with flags
# overriding it (0; a reset: 6; nothing listening: 5; an untrusted edge: 5), an agent with
# heartbeats that stops on SIGTERM (0); an edge refused a port in use (5) or a bad address (3);
# the synesis-init alias. Every wait is bounded; leftover processes are killed on exit.
set -u

SYNESIS=$1 ETC=$2
WORK=$(mktemp -d "${3:-/tmp}/cli.XXXXXX") || exit 1
EDGE_PID='' AGENT_PID=''
START=$(date +%s.%N)

cleanup() {
    [ "$BASHPID" = "$$" ] || return 0
    for pid in $EDGE_PID $AGENT_PID; do
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

fail() {
    echo "FAIL: $*"
    for f in "$WORK"/*.log "$WORK"/*.err "$WORK"/*.out; do
        [ -s "$f" ] && { echo "--- $(basename "$f")"; tail -n 30 "$f"; }
    done
    exit 1
}
pass() { echo "ok: $*"; }

wait_for() { # FILE REGEX SECONDS
    local deadline=$(($(date +%s%N) + ${3%.*} * 1000000000))
    until grep -qE "$2" "$1" 2>/dev/null; do
        [ "$(date +%s%N)" -lt "$deadline" ] || return 1
        sleep 0.05
    done
}

wait_exit() { # PID SECONDS: its exit status; killed (137) after SECONDS
    (for ((i = 0; i < $2 * 10; i++)); do sleep 0.1; done; kill -KILL "$1") >/dev/null 2>&1 &
    local dog=$! rc=0
    wait "$1" || rc=$?
    kill -KILL "$dog" 2>/dev/null
    wait "$dog" 2>/dev/null
    return $rc
}

# expect STATUS NAME CMD...: runs CMD (stdout to NAME.out, stderr to NAME.err), checks the status.
expect() {
    local want=$1 name=$2 rc=0
    shift 2
    timeout 30 "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" </dev/null || rc=$?
    [ "$rc" -eq "$want" ] || fail "$name: '$*' exited $rc, expected $want"
}

# expect_err PATTERN NAME: the stderr of NAME matches.
expect_err() { grep -qE -- "$1" "$WORK/$2.err" || fail "$2: stderr lacks /$1/: $(cat "$WORK/$2.err")"; }

S=$SYNESIS

# 1. The top level, and help and usage for each subcommand.
expect 2 top "$S"
expect 0 top-help "$S" --help
grep -q '^  6  request' "$WORK/top-help.out" || fail "synesis --help has no exit status table"
expect 0 version "$S" --version
grep -qE '^synesis [0-9]+\.[0-9]+\.[0-9]+ \(OpenSSL 3\.' "$WORK/version.out" || fail "--version"
expect 2 unknown-cmd "$S" frobnicate
expect_err "^synesis: unknown command 'frobnicate' \(see --help\)$" unknown-cmd
expect 0 help-config "$S" help config
expect 0 help-codes "$S" help exit-codes
expect 2 help-bad "$S" help nothing
for cmd in init agent request check edge; do
    expect 0 "help-$cmd" "$S" "$cmd" --help
    head -n 1 "$WORK/help-$cmd.out" | grep -q "^usage: synesis $cmd" || fail "$cmd --help: usage line"
    expect 0 "help2-$cmd" "$S" help "$cmd"
    cmp -s "$WORK/help-$cmd.out" "$WORK/help2-$cmd.out" || fail "synesis help $cmd differs"
    expect 2 "badopt-$cmd" "$S" "$cmd" --no-such-option
    [ "$(wc -l <"$WORK/badopt-$cmd.err")" -eq 1 ] || fail "$cmd: usage error is not one line"
    expect_err "^synesis $cmd: unknown option '--no-such-option' \(see --help\)$" "badopt-$cmd"
    expect 2 "extra-$cmd" "$S" "$cmd" stray
    expect_err "unexpected argument 'stray'" "extra-$cmd"
done
expect 2 needs-value "$S" agent --config
expect_err "option '--config' needs a value" needs-value
pass "help, --version and usage errors (status 2)"

# 2. synesis init.
PKI=$WORK/pki
expect 0 pki "$S" init --test-pki "$PKI" --device-id cli-test
expect 4 pki-again "$S" init --test-pki "$PKI" --device-id cli-test
expect_err "SYNESIS_ERR_FILE_EXISTS" pki-again
expect 0 init "$S" init --out "$WORK/id" --device-id dev-7 --csr --days 30
grep -q 'device id:   dev-7' "$WORK/init.out" || fail "init: no device id line"
[ "$(stat -c %a "$WORK/id/device.key")" = 600 ] || fail "init: the key is not mode 0600"
[ -s "$WORK/id/device.csr" ] || fail "init: no CSR"
expect 4 init-again "$S" init --out "$WORK/id" --device-id dev-7
expect 0 init-force "$S" init --out "$WORK/id" --device-id dev-7 --force
expect 2 init-bad-id "$S" init --out "$WORK/id2" --device-id 'bad id'
expect 2 init-days "$S" init --out "$WORK/id2" --days 0
expect 2 init-both "$S" init --out "$WORK/id2" --test-pki "$WORK/p2"
expect 2 init-ca "$S" init --out "$WORK/id2" --ca-cert "$PKI/ca.pem"
expect 0 init-ca-signed "$S" init --out "$WORK/id3" --device-id dev-8 --ca-cert "$PKI/ca.pem" \
    --ca-key "$PKI/ca.key"
grep -q 'issuer:      CN=Synesis Test CA' "$WORK/init-ca-signed.out" || fail "init: not CA-signed"
pass "synesis init: test PKI, identity with CSR, CA-signed, no overwrite without --force (4)"

# 3. Configuration errors: file, line and key on stderr, status 3; flag errors: status 2.
DEV=(--cert "$PKI/device.pem" --key "$PKI/device.key" --ca "$PKI/ca.pem")
printf '# agent\ncloud_url = quic://127.0.0.1:9\n\nheartbeat_interval = soon\n' >"$WORK/bad1.conf"
expect 3 conf-value "$S" agent --config "$WORK/bad1.conf" --check-config
expect_err "^synesis agent: $WORK/bad1.conf:4: heartbeat_interval: wants seconds from 0 to" conf-value
printf 'cloud_url = quic://127.0.0.1:9\nheartbeat_intreval = 5\n' >"$WORK/bad2.conf"
expect 3 conf-unknown "$S" agent --config "$WORK/bad2.conf"
expect_err "bad2.conf:2: unknown key 'heartbeat_intreval' \(did you mean 'heartbeat_interval'\?\)" \
    conf-unknown
printf 'listen 127.0.0.1:1\n' >"$WORK/bad3.conf"
expect 3 conf-syntax "$S" edge --config "$WORK/bad3.conf"
expect_err "bad3.conf:1: expected 'key = value', not 'listen 127.0.0.1:1'" conf-syntax
printf 'idle_timeout = 5\nidle_timeout = 6\n' >"$WORK/bad4.conf"
expect 3 conf-dup "$S" edge --config "$WORK/bad4.conf"
expect_err "bad4.conf:2: idle_timeout: set twice \(first on line 1\)" conf-dup
expect 3 conf-missing "$S" agent --config "$WORK/nonexistent.conf"
expect_err "cannot open $WORK/nonexistent.conf: No such file or directory" conf-missing
expect 3 no-url "$S" agent --config /dev/null "${DEV[@]}"
expect_err "cloud_url is not set" no-url
expect 3 bad-url "$S" agent --config /dev/null "${DEV[@]}" --url 'ftp://x'
expect_err "SYNESIS_ERR_INVALID_URL" bad-url
expect 3 max-below "$S" agent --config /dev/null "${DEV[@]}" --url quic://127.0.0.1:9 \
    --reconnect-initial-delay 2m
expect_err "reconnect_max_delay \(60 s\) is below reconnect_initial_delay \(120 s\)" max-below
expect 2 flag-value "$S" agent --config /dev/null --heartbeat-interval=-1
expect_err "^synesis agent: --heartbeat-interval: wants seconds from 0 to .* not '-1' \(see --help\)$" \
    flag-value
expect 2 flag-choice "$S" edge --config /dev/null --congestion-control fast
expect 3 edge-missing "$S" edge --config /dev/null --listen 127.0.0.1:0
expect_err "cert is not set" edge-missing
expect 4 no-key "$S" agent --config /dev/null --url quic://127.0.0.1:9 --cert "$PKI/device.pem" \
    --key "$WORK/none.key" --ca "$PKI/ca.pem" --check-config
expect_err "SYNESIS_ERR_FILE_NOT_FOUND" no-key
cp "$PKI/device.key" "$WORK/open.key" && chmod 644 "$WORK/open.key"
expect 4 key-perms "$S" agent --config /dev/null --url quic://127.0.0.1:9 --cert "$PKI/device.pem" \
    --key "$WORK/open.key" --ca "$PKI/ca.pem" --check-config
expect_err "SYNESIS_ERR_KEY_PERMISSIONS" key-perms
pass "configuration errors (3) name file, line and key; flag errors (2); identity errors (4)"

# 4. The shipped files: as they are, every default they show uncommented, every key mentioned.
keys_of() { # the keys of a subcommand, from its --help
    "$S" "$1" --help | sed -n '/^Every key/,$p' | sed -n 's/^  --\([a-z-]*\) .*/\1/p' | tr - _
}
for cmd in agent edge; do
    conf=$ETC/$cmd.conf
    [ -f "$conf" ] || fail "no $conf"
    for k in $(keys_of $cmd); do
        grep -qE "^#$k = " "$conf" || fail "$conf does not show the key $k"
    done
    sed -E 's/^#([a-z_]+ = )/\1/' "$conf" >"$WORK/$cmd-defaults.conf"
done
expect 3 shipped-agent "$S" agent --config "$ETC/agent.conf" "${DEV[@]}"
expect_err "cloud_url is not set" shipped-agent
expect 0 shipped-agent-defaults "$S" agent --config "$WORK/agent-defaults.conf" "${DEV[@]}" \
    --ca-dir "$PKI" --check-config
grep -q '^cloud_url = quic://edge.example.com:443$' "$WORK/shipped-agent-defaults.out" ||
    fail "agent --check-config does not show the file's cloud_url"
grep -q "^cert = $PKI/device.pem$" "$WORK/shipped-agent-defaults.out" ||
    fail "agent --check-config: the flag did not override the file's cert"
expect 3 shipped-edge "$S" edge --config "$ETC/edge.conf"
expect_err "listen is not set" shipped-edge
expect 0 shipped-edge-defaults "$S" edge --config "$WORK/edge-defaults.conf" \
    --cert "$PKI/edge.pem" --key "$PKI/edge.key" --ca "$PKI/ca.pem" --check-config
grep -q '^listen = 0.0.0.0:443$' "$WORK/shipped-edge-defaults.out" || fail "edge --check-config"
# What --check-config prints is a configuration file that gives the same settings again.
tail -n +2 "$WORK/shipped-edge-defaults.out" >"$WORK/printed.conf"
expect 0 printed-edge "$S" edge --config "$WORK/printed.conf" --check-config
diff <(tail -n +2 "$WORK/printed-edge.out") "$WORK/printed.conf" >/dev/null ||
    fail "edge --check-config output does not read back the same"
pass "the shipped agent.conf and edge.conf parse, show every key, and their defaults are valid"

# 5. An edge from a configuration file (a flag overrides one key), requests and an agent.
cat >"$WORK/edge.conf" <<EOF
# the test edge
listen = 127.0.0.1:0
cert = $PKI/edge.pem
key = $PKI/edge.key
ca = $PKI/ca.pem
idle_timeout = 60s
retry_threshold = never
EOF
"$S" edge --config "$WORK/edge.conf" --idle-timeout 5 >"$WORK/edge.log" 2>"$WORK/edge.err" &
EDGE_PID=$!
wait_for "$WORK/edge.err" '^listening on ' 10 || fail "edge: no 'listening on' line"
PORT=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$WORK/edge.err")
[ -n "$PORT" ] || fail "edge: bad listening line"
cat >"$WORK/agent.conf" <<EOF
cloud_url = quic://127.0.0.1:1
server_name = localhost
cert = $PKI/device.pem
key = $PKI/device.key
ca = $PKI/ca.pem   # only this CA
heartbeat_interval = 200ms
EOF
A=(--config "$WORK/agent.conf" --url "quic://127.0.0.1:$PORT")
out=$(echo hello | timeout 15 "$S" request "${A[@]}" --timeout 10 2>"$WORK/request.err") ||
    fail "request exited $?"
[ "$out" = hello ] || fail "request printed '$out', expected 'hello'"
expect 6 request-reset "$S" request "${A[@]}" --data $'RESET 9\n' --timeout 10
expect_err "SYNESIS_ERR_STREAM_RESET" request-reset
expect 6 request-large "$S" request "${A[@]}" --data $'SRC 100000\n' --max-response 1000
expect_err "SYNESIS_ERR_RESPONSE_TOO_LARGE" request-large
expect 5 request-refused "$S" request --config "$WORK/agent.conf" --data x --timeout 10
expect_err "SYNESIS_ERR_(SOCKET|HANDSHAKE_TIMEOUT)" request-refused
"$S" init --test-pki "$WORK/other" --device-id other >/dev/null 2>&1 || fail "second PKI"
expect 5 request-untrusted "$S" request "${A[@]}" --ca "$WORK/other/ca.pem" --data x --timeout 10
expect_err "SYNESIS_ERR_PEER_UNTRUSTED" request-untrusted
pass "requests through agent.conf and flags: 0, reset 6, too large 6, refused 5, untrusted 5"

"$S" agent "${A[@]}" >"$WORK/agent.out" 2>"$WORK/agent.err" &
AGENT_PID=$!
wait_for "$WORK/agent.out" '"event":"heartbeat".*"bytes"' 10 || fail "agent: no heartbeat"
head -n 1 "$WORK/agent.out" | grep -q "^{\"event\":\"start\",.*\"config\":\"$WORK/agent.conf\"" ||
    fail "agent: no start line naming its file"
kill -TERM "$AGENT_PID"
wait_exit "$AGENT_PID" 10
rc=$?
AGENT_PID=''
[ $rc -eq 0 ] || fail "agent exited $rc after SIGTERM, expected 0"
tail -n 1 "$WORK/agent.out" | grep -q '"event":"stats"' || fail "agent: no stats line last"
# SIGTERM drains (synesis_tunnel_drain): the tunnel ends Disconnected, not cut.
grep -q 'SIGTERM, draining' "$WORK/agent.err" || fail "agent: SIGTERM did not drain"
grep -q '"to":"Disconnected"' "$WORK/agent.out" || fail "agent: the drain did not end Disconnected"
expect 0 agent-duration "$S" agent "${A[@]}" --duration 0.5
# An edge that does not trust the device (another CA): the agent gives up after its attempts.
expect 5 agent-refused "$S" agent "${A[@]}" --cert "$WORK/other/device.pem" \
    --key "$WORK/other/device.key" --reconnect-max-attempts 1 --reconnect-initial-delay 0.1
grep -q '"to":"Failed"' "$WORK/agent-refused.out" || fail "agent-refused: no Failed state"
pass "agent: heartbeats, SIGTERM 0, --duration 0, a refused device 5"

# resume_file: the first run saves the edge's session ticket (mode 0600), a restarted agent
# resumes with it; a file others can read, or garbage, is ignored with a warning (a full handshake).
resumed_at_edge() { grep -c '"event":"connection".*"resumed":true' "$WORK/edge.log" || true; }
expect 0 agent-resume1 "$S" agent "${A[@]}" --resume-file "$WORK/resume" --duration 0.5
[ -s "$WORK/resume" ] || fail "agent: no resume_file written"
[ "$(stat -c %a "$WORK/resume")" = 600 ] || fail "agent: resume_file mode $(stat -c %a "$WORK/resume")"
n=$(resumed_at_edge)
expect 0 agent-resume2 "$S" agent "${A[@]}" --resume-file "$WORK/resume" --duration 0.5
[ "$(resumed_at_edge)" -gt "$n" ] || fail "agent: the restarted agent did not resume"
tail -n 1 "$WORK/agent-resume2.out" | grep -q '"resumed_connections":1' ||
    fail "agent: the restarted agent's stats show no resumed connection"
n=$(resumed_at_edge)
cp "$WORK/resume" "$WORK/resume-open"
chmod 644 "$WORK/resume-open"
expect 0 agent-resume-open "$S" agent "${A[@]}" --resume-file "$WORK/resume-open" --duration 0.5
expect_err "readable by group or others" agent-resume-open
head -c 300 /dev/urandom >"$WORK/resume-bad"
chmod 600 "$WORK/resume-bad"
expect 0 agent-resume-bad "$S" agent "${A[@]}" --resume-file "$WORK/resume-bad" --duration 0.5
expect_err "resume_data ignored" agent-resume-bad
[ "$(resumed_at_edge)" -eq "$n" ] || fail "agent: a resume_file it should ignore resumed"
pass "agent: resume_file written with mode 0600, a restarted agent resumes, bad files ignored"
# synesis check: 0 only when the tunnel can come up; the class of the first failed check else.
expect 0 check-ok "$S" check "${A[@]}" --timeout 5
grep -q '^ok      udp         QUIC handshake with 127.0.0.1:' "$WORK/check-ok.out" || fail "check: udp"
grep -q '^ok      trust ' "$WORK/check-ok.out" || fail "check: trust"
tail -n 1 "$WORK/check-ok.out" | grep -q '^the tunnel can come up$' || fail "check: verdict"
[ "$(wc -l <"$WORK/check-ok.out")" -eq 10 ] || fail "check: not one line per check"
expect 0 check-json "$S" check "${A[@]}" --timeout 5 --json
[ "$(wc -l <"$WORK/check-json.out")" -eq 1 ] || fail "check --json: not one line"
grep -q '^{"can_connect":true,"checks":\[{"id":"files","status":"ok","error":null,' \
    "$WORK/check-json.out" || fail "check --json: $(cat "$WORK/check-json.out")"
expect 5 check-untrusted "$S" check "${A[@]}" --ca "$WORK/other/ca.pem" --timeout 5
grep -q '^failed  trust .*-- fix: set the CA .*agent.conf: ca' "$WORK/check-untrusted.out" ||
    fail "check: an untrusted edge"
expect 5 check-untrusted-json "$S" check "${A[@]}" --ca "$WORK/other/ca.pem" --json
grep -q '"can_connect":false' "$WORK/check-untrusted-json.out" || fail "check --json: verdict"
grep -q '"id":"trust","status":"failed","error":"SYNESIS_ERR_PEER_UNTRUSTED"' \
    "$WORK/check-untrusted-json.out" || fail "check --json: the trust item"
expect 5 check-refused "$S" check --config "$WORK/agent.conf" --timeout 5
grep -q '^failed  udp         ICMP port unreachable' "$WORK/check-refused.out" ||
    fail "check: nothing listens"
expect 4 check-key "$S" check "${A[@]}" --key "$WORK/open.key"
grep -q '^failed  files .*-- fix: chmod 600 ' "$WORK/check-key.out" || fail "check: key mode"
expect 2 check-timeout "$S" check "${A[@]}" --timeout 0
pass "check: ok 0 (one line per check, --json), untrusted 5, nothing listens 5, key mode 4"
# Rotation: synesis init --renew (a new key, the same device id), SIGHUP: the agent moves to it
# make before break (the edge logs the new certificate); a bad pair is refused, the old one stays.
expect 0 init-id "$S" init --out "$WORK/rot" --device-id rot1 --ca-cert "$PKI/ca.pem" \
    --ca-key "$PKI/ca.key"
"$S" agent "${A[@]}" --cert "$WORK/rot/device.pem" --key "$WORK/rot/device.key" \
    >"$WORK/agent3.out" 2>"$WORK/agent3.err" &
AGENT_PID=$!
wait_for "$WORK/agent3.out" '"to":"Connected"' 10 || fail "agent3: not Connected"
old_key=$(md5sum <"$WORK/rot/device.key")
expect 0 init-renew "$S" init --renew --out "$WORK/rot" --ca-cert "$PKI/ca.pem" \
    --ca-key "$PKI/ca.key"
grep -q 'device id rot1' "$WORK/init-renew.out" || fail "init --renew: not the same device id"
[ "$(md5sum <"$WORK/rot/device.key")" != "$old_key" ] || fail "init --renew: the same key"
expect 2 init-renew-id "$S" init --renew --out "$WORK/rot" --device-id other
kill -HUP "$AGENT_PID"
wait_for "$WORK/agent3.out" '"event":"identity","status":"rotated"' 10 || fail "agent3: no rotation"
[ "$(grep '"device_id":"rot1"' "$WORK/edge.log" | grep -o '"cert_sha256":"[0-9a-f]*"' |
    sort -u | wc -l)" -eq 2 ] || fail "edge: did not see the renewed certificate"
cp "$WORK/other/device.key" "$WORK/rot/device.key"
kill -HUP "$AGENT_PID"
wait_for "$WORK/agent3.out" '"status":"SYNESIS_ERR_KEY_MISMATCH"' 10 || fail "agent3: bad pair taken"
! grep -q '"to":"Reconnecting"' "$WORK/agent3.out" || fail "agent3: the rotation cut the tunnel"
kill -TERM "$AGENT_PID"
wait_exit "$AGENT_PID" 10 || fail "agent3: exit status after SIGTERM"
AGENT_PID=''
pass "init --renew keeps the device id; SIGHUP rotates make before break; a bad pair is refused"

# 6. The edge: a port in use (5), a bad address (3); SIGTERM stops it gracefully (0).
expect 5 edge-busy "$S" edge --config "$WORK/edge.conf" --listen "127.0.0.1:$PORT"
expect_err "SYNESIS_ERR_SOCKET: bind" edge-busy
expect 3 edge-addr "$S" edge --config "$WORK/edge.conf" --listen "localhost:1"
expect 4 edge-cert "$S" edge --config "$WORK/edge.conf" --cert "$WORK/none.pem"
# SIGTERM drains: a request in flight is answered, the agent connected is asked to move (and
# comes back at once: attempt 1), then the edge exits 0.
"$S" agent "${A[@]}" >"$WORK/agent2.out" 2>"$WORK/agent2.err" &
AGENT_PID=$!
wait_for "$WORK/agent2.out" '"to":"Connected"' 10 || fail "agent2: not Connected"
conns=$(grep -c '"event":"connection"' "$WORK/edge.log")
"$S" request "${A[@]}" --data $'SLEEP 700\ndrained' --timeout 10 >"$WORK/drain-req.out" \
    2>"$WORK/drain-req.err" &
REQ_PID=$!
for ((i = 0; i < 100; i++)); do # the request's connection is up (its request then in flight)
    [ "$(grep -c '"event":"connection"' "$WORK/edge.log")" -gt "$conns" ] && break
    sleep 0.05
done
sleep 0.2
kill -TERM "$EDGE_PID"
wait_exit "$REQ_PID" 10 || fail "the request in flight at SIGTERM failed: $(cat "$WORK/drain-req.err")"
[ "$(cat "$WORK/drain-req.out")" = drained ] || fail "the request in flight at SIGTERM: wrong answer"
wait_exit "$EDGE_PID" 15
rc=$?
EDGE_PID=''
[ $rc -eq 0 ] || fail "edge exited $rc after SIGTERM, expected 0"
grep -q 'SIGTERM, draining' "$WORK/edge.err" || fail "edge: SIGTERM did not drain"
grep -q '"event":"drain"' "$WORK/edge.log" || fail "edge: no drain event"
grep -q '"event":"move"' "$WORK/edge.log" || fail "edge: no move event"
grep -q '"event":"drained"' "$WORK/edge.log" || fail "edge: no drained event"
grep -q '"event":"stopped"' "$WORK/edge.log" || fail "edge: no stopped event"
wait_for "$WORK/agent2.out" '"to":"Reconnecting".*"attempt":1' 10 || fail "agent2: not moved"
kill -INT "$AGENT_PID"
wait_exit "$AGENT_PID" 10
AGENT_PID=''
pass "edge: port in use 5, bad address 3, bad certificate 4, SIGTERM drains (a request in flight answered, the device moved) then 0"

# 7. Called as synesis-init (a link), it is `synesis init`.
ln -s "$S" "$WORK/synesis-init"
expect 0 alias "$WORK/synesis-init" --help
head -n 1 "$WORK/alias.out" | grep -q '^usage: synesis init' || fail "synesis-init alias"
pass "the synesis-init alias"

if grep -l -E 'Sanitizer|runtime error:' "$WORK"/*.err; then
    fail "sanitizer report in the files above"
fi
echo "all passed in $(awk -v a="$START" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"
