#!/usr/bin/env bash
# espfleet-console cancel reaches the daemon: with a throttled simulator a
# job published by `job` is still transferring when `cancel` arrives; the job
# ends canceled (no OTA end, old image kept), `watch --until-final` exits 1
# with the canceled code and prints progress while it waits; `cancel --group`
# reaches the device through its group.
. "${ESPFLEET_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/integration/lib.sh"
. "$EF_SRC/tests/integration/lib_fleet.sh"
require_bin espfleet-console
# 100 KiB/s of flash writes: a 600 KiB image takes about 6 s.
fleet_start --flash-kbps 100

BROKER=mqtt://127.0.0.1:$MQTT_PORT
console() { "$EF_BIN/espfleet-console" "$1" --broker "$BROKER" "${@:2}"; }
console_code() { sed -n 's/^espfleet-console: error: \([a-z_]*\):.*/\1/p' "$1" | tail -n1; }

mkimage "$EF_TMP/slow.bin" 2.0.0 fleet-demo 600K
serve "$EF_TMP/slow.bin" slow.bin

# Usage errors exit 2.
rc=0
console cancel c-slow >/dev/null 2>&1 || rc=$?
assert_eq 2 "$rc" "cancel without --device or --group"
rc=0
console cancel c-slow --device "$DEV" --group canary >/dev/null 2>&1 || rc=$?
assert_eq 2 "$rc" "cancel with --device and --group"

console watch --device "$DEV" --job c-slow --until-final --timeout 60 >"$EF_TMP/watch.out" 2>"$EF_TMP/watch.err" &
watch_pid=$!
track_pid "$watch_pid"
# Its subscriptions are in place once the broker logged them.
wait_for "grep -q 'SUBSCRIBE from espfleet-console' '$EF_TMP/mqtt/mosquitto.log'" 10 || fail "watch did not subscribe"
console job "$EF_TMP/slow.bin" --url "$URL_BASE/slow.bin" --device "$DEV" --job-id c-slow >/dev/null ||
  fail "job publish failed"
wait_for "sim_get '$FLASH' .counters.ota_write | jq -e '. > 5' >/dev/null" 20 || fail "transfer did not start"
wait_for "grep -q ' progress ' '$EF_TMP/watch.out'" 10 || fail "watch printed no progress: $(cat "$EF_TMP/watch.out")"
console cancel c-slow --device "$DEV" >"$EF_TMP/cancel.out" || fail "cancel failed"
grep -q "c-slow" "$EF_TMP/cancel.out" || fail "cancel did not say what it published"

rc=0
wait "$watch_pid" || rc=$?
assert_eq 1 "$rc" "watch exit status for a canceled job ($(cat "$EF_TMP/watch.err"))"
assert_eq canceled "$(console_code "$EF_TMP/watch.err")" "watch error code"
grep -q " $DEV canceled job=c-slow" "$EF_TMP/watch.out" || fail "watch did not print the canceled state"
grep -q " $DEV downloading job=c-slow" "$EF_TMP/watch.out" || fail "watch did not print downloading"
grep -Eq " $DEV progress [0-9]+% \([0-9]+/$(stat -c %s "$EF_TMP/slow.bin")\) job=c-slow" "$EF_TMP/watch.out" ||
  fail "watch did not print progress: $(cat "$EF_TMP/watch.out")"
assert_eq 0 "$(sim_get "$FLASH" .counters.ota_end)" "no OTA end after cancel"
assert_eq null "$(sim_get "$FLASH" .running)" "running image unchanged"
doc=$(wait_final c-slow 5) || fail "no final state"
assert_eq canceled "$(jq -r .state <<<"$doc")" "final state"
pass "cancel reaches the daemon: canceled, no OTA end; watch exits 1"

# watch --json prints the documents as received (the retained state first).
timeout 10 "$EF_BIN/espfleet-console" watch --broker "$BROKER" --device "$DEV" --json --timeout 1 >"$EF_TMP/watch.json" ||
  fail "watch --json failed"
jq -e -s 'length >= 1 and (.[0].device_id == "'"$DEV"'") and (.[0].state == "canceled")' "$EF_TMP/watch.json" >/dev/null ||
  fail "watch --json: $(cat "$EF_TMP/watch.json")"
pass "watch --json prints the retained state document"

# cancel --group: the daemon follows its groups' cancel topics too.
console job "$EF_TMP/slow.bin" --url "$URL_BASE/slow.bin" --device "$DEV" --job-id c-slow-2 >/dev/null ||
  fail "second job publish failed"
wait_state '.job_id == "c-slow-2" and .state == "downloading"' 20 >/dev/null || fail "c-slow-2 did not start"
console cancel c-slow-2 --group canary >"$EF_TMP/cancel2.out" || fail "cancel --group failed"
grep -q "to espfleet/groups/canary/cancel" "$EF_TMP/cancel2.out" || fail "cancel --group: $(cat "$EF_TMP/cancel2.out")"
doc=$(wait_final c-slow-2 20) || fail "no final state for c-slow-2"
assert_eq canceled "$(jq -r .state <<<"$doc")" "final state after cancel --group"
assert_eq 0 "$(sim_get "$FLASH" .counters.ota_end)" "no OTA end after cancel --group"
pass "cancel --group reaches the device through its group"
