#!/usr/bin/env bash
# Another program holds the ESP control device (the Linux driver lets one
# program open it; a second open() gets EBUSY): espfleetd says so once,
# waits and installs when the device is free again; it fails the job with
# esp_busy when the device stays held past esp.begin_timeout_s; a cancel
# stops the wait. The simulator sets TIOCEXCL on its pty while a host has it
# open, which refuses a second open() with EBUSY, except for root: so the
# daemon runs as an unprivileged user here.
. "${ESPFLEET_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/integration/lib.sh"
. "$EF_SRC/tests/integration/lib_fleet.sh"

if [ "$(id -u)" = 0 ]; then
  require_cmd setpriv
  # Replaces any wrapper (valgrind): memcheck is not what this test is about,
  # and its log folder is not writable by the unprivileged user.
  as_user() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
  ESPFLEET_DAEMON_WRAPPER="setpriv --reuid=65534 --regid=65534 --clear-groups"
  # The daemon must reach its config, the CA and its state folder.
  chmod 755 "$EF_TMP"
  mkdir -p "$EF_TMP/state" && chmod 777 "$EF_TMP/state"
else
  as_user() { "$@"; }
fi
FLEET_CONFIG_UPDATE='.esp.begin_timeout_s = 3'
fleet_start --erase-ms-per-4k 0

mkimage "$EF_TMP/v1.bin" 1.0.0 fleet-demo 200K
serve "$EF_TMP/v1.bin" v1.bin
mkimage "$EF_TMP/v2.bin" 2.0.0 fleet-demo 200K
serve "$EF_TMP/v2.bin" v2.bin

# try_open_as_user: an open() of the device by the daemon's user.
try_open_as_user() { as_user sh -c 'exec 8<>"$1"' sh "$LINK" 2>"$EF_TMP/open.err"; }

# hold: a background process opens the device and keeps it until release.
# (Not this shell: a session leader opening a terminal would make it its
# controlling terminal, and the simulator's reboot would hang it up.)
hold() {
  sleep 1000 7<>"$LINK" &
  HOLDER=$!
  track_pid "$HOLDER"
  # The simulator makes the pty exclusive once it sees the open.
  wait_for "! try_open_as_user" 5 || fail "the device did not become exclusive while held"
  grep -qi "busy" "$EF_TMP/open.err" || fail "a second open() did not fail with EBUSY: $(cat "$EF_TMP/open.err")"
}
release() { stop_pid "$HOLDER" || true; }

# Held while the job starts, released 1.5 s later: the job waits and installs.
hold
begins=$(sim_get "$FLASH" .counters.ota_begin)
publish_job "$(job_json wait-1 v1.bin)"
wait_for "grep -q 'control device busy: another program holds it' '$DAEMON_LOG'" 10 ||
  fail "the daemon did not say the control device is busy"
sleep 1.5
assert_eq downloading "$(wait_state true 5 | jq -r .state)" "state while waiting for the device"
assert_eq "$begins" "$(sim_get "$FLASH" .counters.ota_begin)" "no OTA begin while the device is held"
release
doc=$(wait_final wait-1 60) || fail "no final state after the device was released"
assert_eq succeeded "$(jq -r .state <<<"$doc")" "job after the device was released ($(jq -c .error <<<"$doc"))"
assert_eq "$(sha256_of "$EF_TMP/v1.bin")" "$(sim_get "$FLASH" .running.sha256)" "installed after the wait"
assert_eq 1 "$(grep -c 'control device busy: another program holds it' "$DAEMON_LOG")" "busy said once"
pass "device held by another program: the job waits, says so once, then installs"

# Held past esp.begin_timeout_s: failed, esp_busy, nothing sent.
hold
begins=$(sim_get "$FLASH" .counters.ota_begin)
publish_job "$(job_json wait-2 v2.bin)"
doc=$(wait_final wait-2 30) || fail "no final state while the device stays held"
release
assert_eq failed "$(jq -r .state <<<"$doc")" "job while the device stays held"
assert_eq esp_unavailable "$(jq -r .error.code <<<"$doc")" "error class"
jq -e '.error.detail | startswith("esp_busy: ")' <<<"$doc" >/dev/null ||
  fail "detail should start with esp_busy: $(jq -r .error.detail <<<"$doc")"
assert_eq "$begins" "$(sim_get "$FLASH" .counters.ota_begin)" "no OTA begin"
pass "device held past esp.begin_timeout_s: failed with esp_busy ($(jq -r .error.detail <<<"$doc"))"

# A cancel ends the wait.
hold
publish_job "$(job_json wait-3 v2.bin)"
wait_state '.job_id == "wait-3" and .state == "downloading"' 10 >/dev/null || fail "wait-3 did not start"
publish_cancel wait-3
doc=$(wait_final wait-3 10) || fail "no final state after the cancel"
release
assert_eq canceled "$(jq -r .state <<<"$doc")" "canceled while waiting for the device"
assert_eq "$begins" "$(sim_get "$FLASH" .counters.ota_begin)" "no OTA begin after the cancel"
pass "a cancel stops the wait for the device"
