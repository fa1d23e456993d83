#!/usr/bin/env bash
# A device (or anyone who may publish its state) cannot drive the operator's
# terminal: `espfleet-console status` and `watch` print control characters
# from state documents escaped (\x1b, \u009b), never raw; a state on a topic
# whose device id is not a device id is not shown at all; the live table of
# `watch` on a terminal keeps them escaped too.
. "${ESPFLEET_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/integration/lib.sh"
. "$EF_SRC/tests/integration/lib_mosquitto.sh"
require_bin espfleet-console
require_cmd mosquitto mosquitto_pub jq

start_mosquitto "$EF_TMP/mqtt"
at_exit "stop_mosquitto '$EF_TMP/mqtt'"
BROKER=mqtt://127.0.0.1:$MQTT_PORT
console() { "$EF_BIN/espfleet-console" "$1" --broker "$BROKER" "${@:2}"; }

# Clear screen, set the window title, blink, a C1 CSI, a right-to-left
# override: in every field the console prints.
doc='{"device_id":"evil","online":true,"state":"failed\u001b[2J","job_id":"j\u001b]0;pwned\u0007",
 "fw_version":"\u009b31m","app":{"version":"1\u202e0"},
 "error":{"code":"bad_job\u001b[5m","detail":"see\u001b[8m hidden"},"ts":"2025-01-01T00:00:00Z\r"}'
mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -r -t espfleet/devices/evil/state -m "$doc"
mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -r -t "espfleet/devices/ev il/state" \
  -m '{"device_id":"ev il","online":true,"state":"idle"}'

# raw_controls FILE: true when FILE holds a C0 control other than newline,
# DEL, or a UTF-8 C1 control or direction override.
raw_controls() {
  LC_ALL=C grep -qP '[\x00-\x09\x0b-\x1f\x7f]|\xc2[\x80-\x9f]|\xe2\x80[\xaa-\xae]' "$1"
}

console status >"$EF_TMP/status.txt" || fail "status failed"
! raw_controls "$EF_TMP/status.txt" || fail "status printed raw control characters: $(od -c "$EF_TMP/status.txt" | head)"
grep -qF 'failed\x1b[2J' "$EF_TMP/status.txt" || fail "status does not show the escaped state: $(cat "$EF_TMP/status.txt")"
grep -qF 'j\x1b]0;pwned\x07' "$EF_TMP/status.txt" || fail "status does not show the escaped job_id"
grep -qF '\u009b31m' "$EF_TMP/status.txt" || fail "status does not show the escaped C1 control"
grep -qF '1\u202e0' "$EF_TMP/status.txt" || fail "status does not show the escaped override"
! grep -q "ev il" "$EF_TMP/status.txt" || fail "status shows a device id that is not one"
pass "status escapes control characters from a state document"

rc=0
console watch --timeout 2 >"$EF_TMP/watch.txt" 2>"$EF_TMP/watch.err" || rc=$?
[ "$rc" = 0 ] || [ "$rc" = 3 ] || fail "watch exit status $rc: $(cat "$EF_TMP/watch.err")"
! raw_controls "$EF_TMP/watch.txt" || fail "watch printed raw control characters: $(od -c "$EF_TMP/watch.txt" | head)"
grep -qF 'error=bad_job\x1b[5m (see\x1b[8m hidden)' "$EF_TMP/watch.txt" ||
  fail "watch does not show the escaped error: $(cat "$EF_TMP/watch.txt")"
grep -qF '2025-01-01T00:00:00Z\x0d evil' "$EF_TMP/watch.txt" || fail "watch does not show the escaped ts"
! grep -q "ev il" "$EF_TMP/watch.txt" || fail "watch shows a device id that is not one"
pass "watch escapes control characters from a state document"

# On a terminal `watch` redraws a table in place: the only escape sequences
# are its own (cursor, clear, colours), the device's text stays escaped, and
# the terminal is given back (cursor shown, line wrap on) when it ends.
if command -v script >/dev/null 2>&1; then
  TERM=xterm script -qec "'$EF_BIN/espfleet-console' watch --broker '$BROKER' --timeout 1.5" /dev/null \
    >"$EF_TMP/live.raw" 2>&1 || true
  grep -qF $'\033[?25l' "$EF_TMP/live.raw" || fail "the live view did not hide the cursor: $(od -c "$EF_TMP/live.raw" | head)"
  tail -c 40 "$EF_TMP/live.raw" | grep -qF $'\033[?7h\033[?25h' || fail "the terminal was not given back"
  [ "$(grep -o $'\033\\[H' "$EF_TMP/live.raw" | wc -l)" -ge 2 ] || fail "the live view was not redrawn"
  grep -qF 'failed\x1b[2J' "$EF_TMP/live.raw" || fail "the live view does not show the escaped state"
  grep -qF 'bad_job\x1b[5m: see\x1b[8m hidden' "$EF_TMP/live.raw" || fail "the live view does not show the escaped error"
  # without its own sequences (and the pty's CR), nothing that drives a terminal is left
  sed -E $'s/\033\\[(\\?25[lh]|\\?7[lh]|H|2J|K|J|[0-9]*m)//g; s/\r//g' "$EF_TMP/live.raw" >"$EF_TMP/live.txt"
  ! raw_controls "$EF_TMP/live.txt" || fail "the live view printed other control characters: $(od -c "$EF_TMP/live.txt" | head -20)"
  grep -Eq '^DEVICE +STATE +JOB +PROGRESS +% +LEFT +ERROR' "$EF_TMP/live.txt" || fail "live table: $(cat "$EF_TMP/live.txt")"
  pass "watch on a terminal redraws a table, keeps texts escaped and gives the terminal back"
fi
