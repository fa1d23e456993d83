#!/usr/bin/env bash
# ESP faults seen through espfleetd: OTA begin refused, a write refused, OTA
# end rejected, an ESP that never answers, and no ESP at all. Each job fails
# with its own error code, the running image stays, the daemon keeps going.
. "${ESPFLEET_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/integration/lib.sh"
. "$EF_SRC/tests/integration/lib_fleet.sh"
FLEET_CONFIG_UPDATE='.esp.begin_timeout_s = 3 | .esp.boot_timeout_s = 5'
# Each fault fires once (@1), in the order the jobs below reach them.
fleet_start --fault begin-fail@1 --fault write-fail:10@1 --fault end-reject@1

mkimage "$EF_TMP/v1.bin" 1.0.0 fleet-demo 200K
serve "$EF_TMP/v1.bin" v1.bin

expect_failure() {
  local id=$1 code=$2 doc
  publish_job "$(job_json "$id" v1.bin)"
  doc=$(wait_final "$id" 60) || fail "no final state for $id"
  assert_eq failed "$(jq -r .state <<<"$doc")" "$id state"
  assert_eq "$code" "$(jq -r .error.code <<<"$doc")" "$id error code"
  assert_eq null "$(sim_get "$FLASH" .running)" "$id: nothing installed"
  daemon_alive || fail "espfleetd died on $id"
  pass "$id: failed with $code ($(jq -r .error.detail <<<"$doc"))"
}
expect_failure begin ota_begin_failed
expect_failure write ota_write_failed
expect_failure end ota_end_rejected
assert_eq 1 "$(sim_get "$FLASH" .counters.ota_end)" "only the rejected OTA end reached the ESP"

# The same ESP without faults left: the next job installs.
publish_job "$(job_json good v1.bin)"
doc=$(wait_final good 60) || fail "no final state for the good job"
assert_eq succeeded "$(jq -r .state <<<"$doc")" "good job"
assert_eq "$(sha256_of "$EF_TMP/v1.bin")" "$(sim_get "$FLASH" .running.sha256)" "installed after the faults"
pass "after the faults a job installs"

# The new image fails to boot and the ESP rolls back: with expect_fw_version
# the daemon notices (boot_verify_failed).
stop_sim
start_sim "$LINK" "$FLASH" --reboot-delay-ms 200 --fault boot-fail@1
mkimage "$EF_TMP/v2.bin" 2.0.0 fleet-demo 200K
serve "$EF_TMP/v2.bin" v2.bin
publish_job "$(job_json rollback v2.bin '.expect_fw_version = "FG-2.0.0.0.0"')"
doc=$(wait_final rollback 60) || fail "no final state for the rollback"
assert_eq failed "$(jq -r .state <<<"$doc")" "rollback state"
assert_eq boot_verify_failed "$(jq -r .error.code <<<"$doc")" "rollback code"
assert_eq FG-1.0.0.0.0 "$(jq -r .fw_version <<<"$doc")" "fw_version after the rollback"
assert_eq "$(sha256_of "$EF_TMP/v1.bin")" "$(sim_get "$FLASH" .running.sha256)" "old image runs after the rollback"
pass "new image fails to boot: boot_verify_failed, old image running"

# An ESP that hangs: esp_timeout, reported in the esp_unavailable class.
stop_sim
start_sim "$LINK" "$FLASH" --reboot-delay-ms 200 --fault no-answer
publish_job "$(job_json hang v2.bin)"
doc=$(wait_final hang 60) || fail "no final state for the hanging ESP"
assert_eq failed "$(jq -r .state <<<"$doc")" "hang state"
assert_eq esp_unavailable "$(jq -r .error.code <<<"$doc")" "hang code"
jq -e '.error.detail | startswith("esp_timeout")' <<<"$doc" >/dev/null || fail "hang detail should name esp_timeout"
pass "ESP that never answers: esp_unavailable (esp_timeout)"

# No ESP at all.
stop_sim
publish_job "$(job_json gone v2.bin)"
doc=$(wait_final gone 60) || fail "no final state without an ESP"
assert_eq esp_unavailable "$(jq -r .error.code <<<"$doc")" "no ESP code"
daemon_alive || fail "espfleetd died without an ESP"
assert_eq "$(sha256_of "$EF_TMP/v1.bin")" "$(sim_get "$FLASH" .running.sha256)" "running image unchanged"
pass "no ESP: esp_unavailable, daemon alive"
