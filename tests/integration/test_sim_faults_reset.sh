#!/usr/bin/env bash
# Simulator faults that take the ESP away: each leaves the running image as
# it was.
#   reset-after:BYTES -> esp_unavailable (the link goes away mid-OTA and
#                        comes back with the old image)
#   boot-fail         -> the new image is selected but fails to boot: the
#                        ESP rolls back to the old one
#   no-answer         -> esp_timeout (the ESP hangs)
. "${ESPFLEET_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/integration/lib.sh"
require_bin espfleet espfleet-sim
require_cmd jq sha256sum

sim_fault_fixture

try_flash() {
  espfleet flash --device "$link" --chip esp32s3 --timeout-ms 1000 --begin-timeout-ms 2000 --boot-timeout-ms 5000 \
    "$EF_TMP/new.bin" >/dev/null 2>"$EF_TMP/err"
}

# reset-after: the chip resets in the middle of the transfer.
start_sim "$link" "$flash" "${sim_args[@]}" --fault reset-after:64K
boots=$(sim_get "$flash" .counters.boots)
ends=$(sim_get "$flash" .counters.ota_end)
try_flash && fail "reset-after: espfleet flash succeeded"
assert_eq esp_unavailable "$(cli_error_code "$EF_TMP/err")" "reset-after: error code"
sim_wait "$flash" ".counters.boots == $((boots + 1))" 5 || fail "reset-after: no reboot"
assert_eq "$base_sha" "$(sim_get "$flash" .running.sha256)" "reset-after: running image"
assert_eq writing "$(sim_get "$flash" '.slots[1].state')" "reset-after: slot state"
assert_eq "$ends" "$(sim_get "$flash" .counters.ota_end)" "reset-after: OTA ends"
wait_for "[ -e '$link' ]" 5 || fail "reset-after: the link did not come back"
assert_eq FG-1.0.0.0.0 "$(espfleet info --device "$link" --timeout-ms 2000)" "reset-after: version after the reset"
stop_sim
pass "reset-after:64K -> esp_unavailable; the ESP comes back with the old image"

# boot-fail: OTA end succeeds, the reboot falls back to the old slot.
start_sim "$link" "$flash" "${sim_args[@]}" --fault boot-fail
boots=$(sim_get "$flash" .counters.boots)
ends=$(sim_get "$flash" .counters.ota_end)
if try_flash; then
  log "boot-fail: espfleet flash reported success (it does not verify the version)"
else
  log "boot-fail: espfleet flash: $(tail -n1 "$EF_TMP/err")"
fi
assert_eq $((ends + 1)) "$(sim_get "$flash" .counters.ota_end)" "boot-fail: OTA ends"
# one boot attempt of the new image, one of the old
sim_wait "$flash" ".counters.boots == $((boots + 2))" 5 || fail "boot-fail: no reboot"
assert_eq "$base_sha" "$(sim_get "$flash" .running.sha256)" "boot-fail: running image"
assert_eq boot_failed "$(sim_get "$flash" '.slots[1].state')" "boot-fail: state of the new slot"
assert_eq 0 "$(sim_get "$flash" .boot_slot)" "boot-fail: boot slot after the rollback"
wait_for "[ -e '$link' ]" 5 || fail "boot-fail: the link did not come back"
assert_eq FG-1.0.0.0.0 "$(espfleet info --device "$link" --timeout-ms 2000)" "boot-fail: version after the rollback"
stop_sim
pass "boot-fail -> rolled back to the old image"

# no-answer: the ESP hangs.
start_sim "$link" "$flash" "${sim_args[@]}" --fault no-answer
before=$(sim_show "$flash")
try_flash && fail "no-answer: espfleet flash succeeded"
assert_eq esp_timeout "$(cli_error_code "$EF_TMP/err")" "no-answer: error code"
if espfleet info --device "$link" --timeout-ms 500 >/dev/null 2>"$EF_TMP/err"; then
  fail "no-answer: espfleet info succeeded"
fi
assert_eq esp_timeout "$(cli_error_code "$EF_TMP/err")" "no-answer: info error code"
assert_eq "$(jq -c '.running, .counters.ota_begin, .counters.ota_write' <<<"$before")" \
  "$(sim_show "$flash" | jq -c '.running, .counters.ota_begin, .counters.ota_write')" "no-answer: state"
stop_sim
pass "no-answer -> esp_timeout, nothing changed"
