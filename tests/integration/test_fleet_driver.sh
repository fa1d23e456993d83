#!/usr/bin/env bash
# The driver-compatibility gate through the real broker: espfleetd reads the
# release its host driver accepts from the kernel log (a file here), says so
# in its state document, rejects a job whose image carries another release
# with driver_incompatible before downloading or sending anything to the ESP,
# and runs the same job when it declares driver_update. An unknown driver
# release does not block jobs; esp.driver_release overrides the log.
. "${ESPFLEET_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/integration/lib.sh"
. "$EF_SRC/tests/integration/lib_fleet.sh"
KMSG=$EF_TMP/kmsg # absent at first: the release is unknown
FLEET_CONFIG_UPDATE=".esp.kernel_log = \"$KMSG\""
# The simulated ESP runs ESP-Hosted FG-2.0.0.0.0 (images without their own
# release record carry it too).
fleet_start --fw-version FG-2.0.0.0.0 --erase-ms-per-4k 0

doc=$(wait_state '.online == true') || fail "no state document"
assert_eq null "$(jq -r .driver_release <<<"$doc")" "driver_release without a kernel log"
assert_eq unknown "$(jq -r .driver_release_source <<<"$doc")" "driver_release_source without a kernel log"
grep -q "release is unknown" "$DAEMON_LOG" || fail "the daemon did not say the driver release is unknown"
pass "no kernel log: driver_release null, source unknown"

mkimage "$EF_TMP/v2.bin" 2.0.0 fleet-demo 200K
serve "$EF_TMP/v2.bin" v2.bin

# Unknown release: nothing to compare with, the job runs.
begins=$(sim_get "$FLASH" .counters.ota_begin)
publish_job "$(job_json unknown v2.bin '.expect_fw_version = "FG-2.0.0.0.0"')"
doc=$(wait_final unknown 60) || fail "no final state for the job with an unknown driver release"
assert_eq succeeded "$(jq -r .state <<<"$doc")" "job with an unknown driver release"
assert_eq $((begins + 1)) "$(sim_get "$FLASH" .counters.ota_begin)" "OTA begin with an unknown driver release"
pass "driver release unknown: the job runs"

# The driver logs its release at the ESP's boot (check_esp_version); the
# daemon reads the log again before each job.
printf '%s\n' \
  '6,1,100,-;Linux version 6.1.0' \
  '6,812,4051234,-;esp32_spi: check_esp_version: Driver supports Firmware version: FG-1.0.0.0.0' \
  ' SUBSYSTEM=spi' \
  '6,813,4051300,-;esp32_spi: check_esp_version: ESP Firmware version: FG-1.0.0.0.0' >"$KMSG"

# Same version, other content: the ESP keeps reporting FG-2.0.0.0.0.
mkimage "$EF_TMP/v3.bin" 2.0.0 fleet-demo 210K
serve "$EF_TMP/v3.bin" v3.bin
begins=$(sim_get "$FLASH" .counters.ota_begin)
requests=$(sim_get "$FLASH" .counters.requests)
publish_job "$(job_json gate v3.bin '.expect_fw_version = "FG-2.0.0.0.0"')"
doc=$(wait_final gate 30) || fail "no final state for the incompatible job"
assert_eq rejected "$(jq -r .state <<<"$doc")" "incompatible job state"
assert_eq driver_incompatible "$(jq -r .error.code <<<"$doc")" "incompatible job code"
assert_eq FG-1.0.0.0.0 "$(jq -r .driver_release <<<"$doc")" "driver_release from the kernel log"
assert_eq kernel_log "$(jq -r .driver_release_source <<<"$doc")" "driver_release_source"
assert_eq "$begins" "$(sim_get "$FLASH" .counters.ota_begin)" "no OTA begin for an incompatible job"
assert_eq "$requests" "$(sim_get "$FLASH" .counters.requests)" "nothing sent to the ESP for an incompatible job"
if grep -q "GET /v3.bin" "$NGINX_DIR/access.log"; then fail "the incompatible image was downloaded"; fi
pass "image for another release: rejected driver_incompatible ($(jq -r .error.detail <<<"$doc")), nothing downloaded or sent"

# The same image, with the host driver updated in the same rollout.
publish_job "$(job_json gate-du v3.bin '.expect_fw_version = "FG-2.0.0.0.0" | .driver_update = true')"
doc=$(wait_final gate-du 60) || fail "no final state for the driver_update job"
assert_eq succeeded "$(jq -r .state <<<"$doc")" "driver_update job state ($(jq -c .error <<<"$doc"))"
assert_eq $((begins + 1)) "$(sim_get "$FLASH" .counters.ota_begin)" "OTA begin with driver_update"
assert_eq "$(sha256_of "$EF_TMP/v3.bin")" "$(sim_get "$FLASH" .running.sha256)" "image installed with driver_update"
pass "driver_update: the same image installs"

# A matching release passes the gate.
mkimage "$EF_TMP/v4.bin" 2.0.0 fleet-demo 220K
serve "$EF_TMP/v4.bin" v4.bin
publish_job "$(job_json match v4.bin '.expect_fw_version = "FG-1.0.0.0.0"')"
doc=$(wait_final match 60) || fail "no final state for the matching job"
[ "$(jq -r .state <<<"$doc")" != rejected ] || fail "a job for the driver's own release was rejected: $doc"
assert_eq $((begins + 2)) "$(sim_get "$FLASH" .counters.ota_begin)" "OTA begin for the driver's release"
pass "image for the driver's release passes the gate"

# esp.driver_release wins over the kernel log.
kill_daemon TERM
jq '.esp.driver_release = "FG-2.0.0.0.0"' "$CONFIG" >"$CONFIG.new" && mv "$CONFIG.new" "$CONFIG"
start_daemon
doc=$(wait_state '.online == true and .driver_release_source == "config"' 10) ||
  fail "the state does not say the release comes from the configuration"
assert_eq FG-2.0.0.0.0 "$(jq -r .driver_release <<<"$doc")" "driver_release from the configuration"
pass "esp.driver_release overrides the kernel log"
