#!/usr/bin/env bash
# The answer to OTA end is lost. The firmware restarts (5 s later, a timer)
# only after a successful OTA end, so espfleetd decides from the restart:
# the ESP took the image and restarts -> succeeded, even though GetFwVersion
# reports the same ESP-Hosted release as before (an application update does
# not change it); the ESP refused the image and does not restart ->
# boot_verify_failed, and the old image still runs.
. "${ESPFLEET_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/integration/lib.sh"
. "$EF_SRC/tests/integration/lib_fleet.sh"
CHUNK=4000
FLEET_CONFIG_UPDATE=".esp.chunk_size = $CHUNK | .esp.window = 1 | .esp.boot_timeout_s = 5"
SIM_ARGS=(--reboot-delay-ms 200 --slot-size 16777216 --erase-ms-per-4k 0)
fleet_start --erase-ms-per-4k 0

# Three images of the same version: the ESP reports the same firmware
# version whichever runs.
mkimage "$EF_TMP/a.bin" 1.0.0 fleet-demo 200K
mkimage "$EF_TMP/b.bin" 1.0.0 fleet-demo 210K
mkimage "$EF_TMP/c.bin" 1.0.0 fleet-demo 220K
serve "$EF_TMP/a.bin" a.bin
serve "$EF_TMP/b.bin" b.bin
serve "$EF_TMP/c.bin" c.bin

publish_job "$(job_json base a.bin)"
doc=$(wait_final base 60) || fail "no final state for the first image"
assert_eq succeeded "$(jq -r .state <<<"$doc")" "first image"
fw_before=$(jq -r .fw_version <<<"$doc")

# end_response IMAGE: the number of OTA end's response in a job for IMAGE,
# counted from a simulator start: OTA begin, one per chunk, OTA end.
end_response() { echo $((1 + ($(stat -c %s "$1") + CHUNK - 1) / CHUNK + 1)); }

# The ESP takes the image; its answer to OTA end is lost; it restarts.
stop_sim
start_sim "$LINK" "$FLASH" "${SIM_ARGS[@]}" --fault "drop-response:$(end_response "$EF_TMP/b.bin")"
publish_job "$(job_json taken b.bin)"
doc=$(wait_final taken 60) || fail "no final state when the answer to OTA end is lost"
grep -q "fault drop-response" "$SIM_LOG" || fail "the simulator did not drop a response"
grep -q "no answer to OTA end" "$DAEMON_LOG" || fail "the daemon did not miss the answer to OTA end"
assert_eq succeeded "$(jq -r .state <<<"$doc")" "image taken, answer lost ($(jq -c .error <<<"$doc"))"
assert_eq "$fw_before" "$(jq -r .fw_version <<<"$doc")" "the firmware version did not change"
assert_eq "$(sha256_of "$EF_TMP/b.bin")" "$(sim_get "$FLASH" .running.sha256)" "the new image runs"
pass "answer to OTA end lost, ESP restarted: succeeded with an unchanged firmware version"

# The ESP refuses the image; the answer is lost too; it does not restart.
stop_sim
start_sim "$LINK" "$FLASH" "${SIM_ARGS[@]}" --fault end-reject \
  --fault "drop-response:$(end_response "$EF_TMP/c.bin")"
publish_job "$(job_json refused c.bin)"
doc=$(wait_final refused 90) || fail "no final state when a refused OTA end is not answered"
assert_eq failed "$(jq -r .state <<<"$doc")" "image refused, answer lost"
assert_eq boot_verify_failed "$(jq -r .error.code <<<"$doc")" "image refused, answer lost: code"
jq -e '.error.detail | test("did not restart")' <<<"$doc" >/dev/null ||
  fail "the detail should say the ESP did not restart: $(jq -r .error.detail <<<"$doc")"
assert_eq "$(sha256_of "$EF_TMP/b.bin")" "$(sim_get "$FLASH" .running.sha256)" "the old image still runs"
pass "answer to OTA end lost, no restart: boot_verify_failed ($(jq -r .error.detail <<<"$doc"))"
