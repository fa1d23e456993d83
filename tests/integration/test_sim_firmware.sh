#!/usr/bin/env bash
# Conformance of the simulator with ESP-Hosted-FG's firmware and Linux
# driver (docs/simulator.md cites the source of each point): request frames
# exactly as Espressif's host library writes them are answered; msg_type is
# not needed; answers are 0/-1; unhandled ids and truncated messages get no
# answer; a request without its payload member resets the chip; nothing is
# queued for a host that has the device closed; a second opener is refused
# (EBUSY) where a pty allows it; the receive task stalls when more than two
# requests are in flight.
. "${ESPFLEET_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/integration/lib.sh"
require_bin espfleet espfleet-sim
require_cmd jq python3
wire() { python3 "$EF_SRC/tests/integration/sim_conformance.py" "$@"; }

link=$EF_TMP/esp0
flash=$EF_TMP/flash.bin
start_sim "$link" "$flash" --reboot-delay-ms 200 --down-ms 100

# answer CASE JQ DESC: runs CASE and checks its answers with JQ
answer() {
  local out
  out=$(wire "$link" "$1") || fail "$3: the wire client failed"
  jq -se "$2" <<<"$out" >/dev/null || fail "$3: got $out"
}

answer get_fw_version '.[0] | .id == 223 and .uid == 2 and .resp == 0 and .name == "FG" and .type == 2' \
  "golden GetFwVersion (no msg_type)"
answer bt_off '.[0] | .id == 222 and .uid == 3 and .resp == 0' "golden EnableDisable(Bluetooth off)"
answer split_query '.[0] | .id == 222 and .resp == -1' "network-split query (off in sdkconfig.defaults)"
answer heartbeat_20 '.[0] | .id == 221 and .uid == 1 and .resp == 0' "golden ConfigHeartbeat"
answer write_without_begin '.[0] | .id == 217 and .resp == -1' "OTA write without OTA begin"
answer end_without_begin '.[0] | .id == 218 and .uid == 377 and .resp == -1' "OTA end without OTA begin"
pass "golden frames of the reference host are answered; refusals are resp -1, not esp_err_t"

answer unknown_id '.[0].none == true' "request id 150"
assert_eq 1 "$(sim_get "$flash" .counters.unanswered)" "unanswered messages"
answer oversize_then_legal '.[0].none == true and .[1].id == 217 and .[1].uid == 6' "a 4125-byte message"
assert_eq 1 "$(sim_get "$flash" .counters.truncated)" "truncated messages"
pass "an unhandled id and a message above 4096 bytes get no answer; the next message is answered"

boots=$(sim_get "$flash" .counters.boots)
answer write_no_member '.[0].none == true' "OTA write without its payload member"
sim_wait "$flash" ".counters.boots == $((boots + 1)) and .counters.panics == 1" 5 ||
  fail "the firmware's NULL dereference did not reset the chip"
wait_for "[ -e '$link' ]" 5 || fail "the link did not come back"
pass "a request without its payload member resets the chip, as the firmware's NULL dereference does"

# Nothing waits for a host that has the device closed (esp_serial_data_received).
dropped=$(sim_get "$flash" .counters.dropped_closed)
answer get_fw_version '.[0].id == 223' "GetFwVersion after the reset"
boots=$(sim_get "$flash" .counters.boots)
espfleet flash --device "$link" --chip esp32s3 --no-wait "$(mkimage "$EF_TMP/a.bin" 1.0.1 demo 100K; echo "$EF_TMP/a.bin")" \
  >/dev/null 2>"$EF_TMP/err" || fail "flash: $(cat "$EF_TMP/err")"
sim_wait "$flash" ".counters.boots == $((boots + 1))" 5 || fail "no reboot after OTA end"
sleep 0.3 # ESPInit went out 50 ms after the link came back, to nobody
[ "$(sim_get "$flash" .counters.dropped_closed)" -gt "$dropped" ] || fail "ESPInit was not dropped"
answer get_fw_version '.[0] | .id == 223 and .uid == 2' "the first answer after opening"
pass "what the ESP sends while nobody has the device open is dropped, not queued"

# The window: with a flash cost per write, a third request in flight makes
# the receive task wait in 10 ms steps; two in flight never stall it.
stop_sim
start_sim "$link" "$flash" --reboot-delay-ms 200 --down-ms 100 --latency-us 4000
stalls=$(sim_get "$flash" .counters.rx_stalls)
w2=$(wire "$link" window:2:40) || fail "window 2"
assert_eq "$stalls" "$(sim_get "$flash" .counters.rx_stalls)" "receive stalls with two requests in flight"
w3=$(wire "$link" window:3:40) || fail "window 3"
[ "$(sim_get "$flash" .counters.rx_stalls)" -gt "$stalls" ] || fail "no receive stall with three in flight"
assert_eq 40 "$(jq .answered <<<"$w3")" "answers with three in flight"
log "window 2: $w2; window 3: $w3"
pass "two requests in flight never stall the receive task; a third does"

# One program at a time (esp_serial_open: EBUSY). A pty lets root in anyway,
# so the refusal is checked with an unprivileged second opener.
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
  chmod o+x "$EF_TMP" # the unprivileged program must reach the link
  wire "$link" hold 3 &
  holder=$!
  sleep 0.5
  status=0
  setpriv --reuid=65534 --regid=65534 --clear-groups "$EF_BIN/espfleet" info --device "$link" \
    >/dev/null 2>"$EF_TMP/busy.err" || status=$?
  wait "$holder"
  assert_eq 1 "$status" "second opener's exit status"
  assert_eq esp_busy "$(cli_error_code "$EF_TMP/busy.err")" "second opener's error"
  grep -qi 'another program holds the ESP control device' "$EF_TMP/busy.err" ||
    fail "the error does not name the cause: $(cat "$EF_TMP/busy.err")"
  setpriv --reuid=65534 --regid=65534 --clear-groups "$EF_BIN/espfleet" info --device "$link" >/dev/null ||
    fail "the device is not free again after the first program closed it"
  pass "a second program gets esp_busy while one holds the device; afterwards it opens"
else
  log "not root or no setpriv: the EBUSY case is not run"
fi
stop_sim
