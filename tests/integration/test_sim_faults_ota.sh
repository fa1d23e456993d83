#!/usr/bin/env bash
# Simulator faults during the OTA itself: each gives `espfleet flash` its
# specific error and leaves the running image as it was.
#   begin-fail -> ota_begin_failed     write-fail:3 -> ota_write_failed
#   end-reject -> ota_end_rejected     drop-response:5 -> esp_timeout
. "${ESPFLEET_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/integration/lib.sh"
require_bin espfleet espfleet-sim
require_cmd jq sha256sum

sim_fault_fixture

# with_fault SPEC WANT_CODE: restarts the simulator with the fault, flashes
# new.bin, and checks the error code and that base.bin still runs.
# Leaves the counters before the attempt in $before.
with_fault() {
  local spec=$1 want=$2 code
  start_sim "$link" "$flash" "${sim_args[@]}" --fault "$spec"
  before=$(sim_show "$flash")
  if espfleet flash --device "$link" --chip esp32s3 --timeout-ms 1000 --begin-timeout-ms 2000 --boot-timeout-ms 3000 \
    "$EF_TMP/new.bin" >/dev/null 2>"$EF_TMP/err"; then
    fail "--fault $spec: espfleet flash succeeded"
  fi
  code=$(cli_error_code "$EF_TMP/err")
  assert_eq "$want" "$code" "--fault $spec: error code"
  sleep 0.4 # past the reboot delay: a wrong activation would show now
  assert_eq "$base_sha" "$(sim_get "$flash" .running.sha256)" "--fault $spec: running image"
  assert_eq "$(jq .counters.boots <<<"$before")" "$(sim_get "$flash" .counters.boots)" "--fault $spec: boots"
}
counter() { echo $(($(sim_get "$flash" ".counters.$1") - $(jq ".counters.$1" <<<"$before"))); }

with_fault begin-fail ota_begin_failed
assert_eq 1 "$(counter ota_begin)" "begin-fail: OTA begins"
assert_eq 0 "$(counter ota_write)" "begin-fail: OTA writes"
stop_sim
pass "begin-fail -> ota_begin_failed, no write, image unchanged"

with_fault write-fail:3 ota_write_failed
# the default window (2) may have sent the fourth before the third's answer
writes=$(counter ota_write)
[ "$writes" -ge 3 ] && [ "$writes" -le 4 ] || fail "write-fail:3: $writes OTA writes, want 3 or 4"
assert_eq 0 "$(counter ota_end)" "write-fail:3: OTA ends"
assert_eq writing "$(sim_get "$flash" '.slots[1].state')" "write-fail:3: slot state"
stop_sim
pass "write-fail:3 -> ota_write_failed after the third write, no OTA end"

with_fault end-reject ota_end_rejected
assert_eq 1 "$(counter ota_end)" "end-reject: OTA ends"
assert_eq 1 "$(counter ota_end_rejected)" "end-reject: rejected OTA ends"
assert_eq rejected "$(sim_get "$flash" '.slots[1].state')" "end-reject: slot state"
stop_sim
pass "end-reject -> ota_end_rejected, image unchanged"

with_fault drop-response:5 esp_timeout
assert_eq 0 "$(counter ota_end)" "drop-response:5: OTA ends"
grep -q "fault drop-response: response #5" "$SIM_LOG" || fail "drop-response:5: the simulator did not drop #5"
stop_sim
pass "drop-response:5 -> esp_timeout, no OTA end"

# The same simulator, faults gone, still installs the new image.
start_sim "$link" "$flash" "${sim_args[@]}"
sim_install "$link" "$flash" "$EF_TMP/new.bin" --chip esp32s3
pass "after the faults, new.bin installs normally"
