#!/usr/bin/env bash
# state_dir, checked by espfleetd --check-config and at start (issue 9,
# finding 2: a read-only state_dir was called valid, and every journal save
# then failed with only a log line; finding 7: a FIFO at the journal's path
# hung the daemon in open()). A missing state_dir is fine for
# --check-config (the daemon creates it); one that exists must be a
# directory that takes a write and has room, with no FIFO, link or device
# at journal.json. The read-only and full cases mount a small tmpfs in a
# private mount namespace (root only; skipped otherwise).
. "${ESPFLEET_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/integration/lib.sh"
require_bin espfleetd
d=$EF_TMP

# config_for STATE_DIR: a configuration whose broker is never reached (the
# state_dir problems stop the daemon before it connects).
config_for() {
  jq -n --arg s "$1" --arg dev "$d/no-esp" \
    '{device_id: "dev-s", state_dir: $s, mqtt: {uri: "mqtt://127.0.0.1:9"}, esp: {device: $dev}}' >"$d/cfg.json"
}
# check_config: runs --check-config (at most 10 s: nothing may hang), sets
# status, leaves stdout and stderr in $d/out and $d/err.
check_config() {
  status=0
  timeout 10 "$EF_BIN/espfleetd" --config "$d/cfg.json" --check-config >"$d/out" 2>"$d/err" || status=$?
}
# start: runs the daemon, which must exit at once (at most 10 s), status and $d/err set.
start() {
  status=0
  timeout 10 "$EF_BIN/espfleetd" --config "$d/cfg.json" >/dev/null 2>"$d/err" || status=$?
  [ "$status" != 124 ] || fail "espfleetd hung: $(cat "$d/err")"
}

# Missing: valid, and created (0700) at start.
config_for "$d/state"
check_config
assert_eq 0 "$status" "--check-config with a missing state_dir"
grep -q "state_dir $d/state does not exist yet: espfleetd creates it at start" "$d/out" || fail "out: $(cat "$d/out")"
"$EF_BIN/espfleetd" --config "$d/cfg.json" 2>"$d/daemon.log" &
pid=$!
track_pid $pid
wait_for "grep -q 'starting for device' '$d/daemon.log'" 10 || fail "the daemon did not start: $(cat "$d/daemon.log")"
assert_eq 700 "$(stat -c %a "$d/state")" "state_dir mode"
sleep 1
stop_pid $pid || true
check_config
assert_eq 0 "$status" "--check-config with the state_dir the daemon made"
pass "a missing state_dir passes --check-config and is created at start (mode 0700)"

# A regular file where the directory should be.
echo x >"$d/plain"
config_for "$d/plain"
check_config
assert_eq 2 "$status" "--check-config with a file as state_dir"
grep -q "cfg.json: state_dir: state_dir $d/plain is a regular file, not a directory" "$d/err" || fail "err: $(cat "$d/err")"
start
assert_eq 1 "$status" "start with a file as state_dir"
grep -q "is a regular file, not a directory" "$d/err" || fail "err: $(cat "$d/err")"
pass "a file as state_dir: --check-config exit 2, the daemon does not start"

# A FIFO at the journal's path: refused at once, never opened blocking.
config_for "$d/state"
mkfifo "$d/state/journal.json"
check_config
assert_eq 2 "$status" "--check-config with a FIFO as journal"
grep -q "journal.json is a FIFO, not a regular file" "$d/err" || fail "err: $(cat "$d/err")"
start
assert_eq 1 "$status" "start with a FIFO as journal"
grep -q "journal.json is a FIFO, not a regular file" "$d/err" || fail "err: $(cat "$d/err")"
rm "$d/state/journal.json"
# a link is not followed either
echo precious >"$d/victim"
ln -s "$d/victim" "$d/state/journal.json"
start
assert_eq 1 "$status" "start with a link as journal"
grep -q "journal.json is a symbolic link" "$d/err" || fail "err: $(cat "$d/err")"
assert_eq precious "$(cat "$d/victim")" "the link's target"
rm "$d/state/journal.json"
pass "a FIFO or a link at journal.json: refused at once by --check-config and at start"

# Read-only and full: a tmpfs in a mount namespace of our own.
if [ "$(id -u)" != 0 ] || ! unshare -m true 2>/dev/null; then
  log "not run: read-only and full state_dir (they need root and mount namespaces)"
  exit 0
fi
cat >"$d/ns.sh" <<EOF
set -e
mkdir -p "$d/ro" "$d/full"
mount -t tmpfs -o ro,size=8m tmpfs "$d/ro"
mount -t tmpfs -o size=512k tmpfs "$d/full"
jq '.state_dir = "$d/ro"' "$d/cfg.json" >"$d/ro.json"
jq '.state_dir = "$d/full"' "$d/cfg.json" >"$d/full.json"
s=0; "$EF_BIN/espfleetd" --config "$d/ro.json" --check-config 2>"$d/ro.err" >/dev/null || s=\$?; echo \$s >"$d/ro.status"
s=0; timeout 10 "$EF_BIN/espfleetd" --config "$d/ro.json" 2>"$d/ro.start" >/dev/null || s=\$?; echo \$s >"$d/ro.start.status"
s=0; "$EF_BIN/espfleetd" --config "$d/full.json" --check-config 2>"$d/full.err" >/dev/null || s=\$?; echo \$s >"$d/full.status"
s=0; timeout 10 "$EF_BIN/espfleetd" --config "$d/full.json" 2>"$d/full.start" >/dev/null || s=\$?; echo \$s >"$d/full.start.status"
EOF
unshare -m bash "$d/ns.sh" || fail "the mount namespace test did not run"
assert_eq 2 "$(cat "$d/ro.status")" "--check-config with a read-only state_dir"
grep -q "state_dir: state_dir $d/ro is not writable: Read-only file system" "$d/ro.err" || fail "err: $(cat "$d/ro.err")"
assert_eq 1 "$(cat "$d/ro.start.status")" "start with a read-only state_dir"
grep -q "is not writable: Read-only file system" "$d/ro.start" || fail "start: $(cat "$d/ro.start")"
pass "a read-only state_dir: --check-config exit 2, the daemon does not start"
assert_eq 2 "$(cat "$d/full.status")" "--check-config with a full state_dir"
grep -Eq "state_dir: state_dir $d/full has [0-9]+ KiB free, the journal needs at least 2048 KiB" "$d/full.err" ||
  fail "err: $(cat "$d/full.err")"
assert_eq 1 "$(cat "$d/full.start.status")" "start with a full state_dir"
pass "a state_dir without room: --check-config exit 2, the daemon does not start"
