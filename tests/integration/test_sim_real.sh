#!/usr/bin/env bash
# The real ESP32-S3 application image from shared/ (ESP-IDF 4.4.7, 1.4 MB)
# flashed into the simulator: the simulator's own OTA end accepts it, and the
# running image is exactly the file. Skips when shared/firmware is absent.
. "${ESPFLEET_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/integration/lib.sh"
require_bin espfleet espfleet-sim
require_cmd jq sha256sum
fw=$(real_firmware)

link=$EF_TMP/esp0
flash=$EF_TMP/flash.bin
start_sim "$link" "$flash" --reboot-delay-ms 200 --down-ms 100 --fw-version FG-1.0.3.0.0

espfleet flash --device "$link" --chip esp32s3 --timeout-ms 3000 --boot-timeout-ms 10000 "$fw" \
  >"$EF_TMP/flash.out" 2>"$EF_TMP/flash.err" || fail "espfleet flash: $(tail -n1 "$EF_TMP/flash.err")"
sim_wait "$flash" '.counters.boots == 2' 10 || fail "the simulator did not reboot"

assert_eq "$(sha256_of "$fw")" "$(sim_get "$flash" .running.sha256)" "running sha256"
assert_eq 1488032 "$(sim_get "$flash" .running.size)" "running size"
assert_eq "esp-idf: v4.4.7 38eeba213a" "$(sim_get "$flash" .running.version)" "running version"
assert_eq arduino-lib-builder "$(sim_get "$flash" .running.project)" "running project"
assert_eq esp32s3 "$(sim_get "$flash" .running.chip)" "running chip"
assert_eq 0 "$(sim_get "$flash" .running.secure_version)" "secure_version"
assert_eq 0 "$(sim_get "$flash" .counters.ota_end_rejected)" "rejected OTA ends"
pass "real image installed; sha256 $(sha256_of "$fw")"

# GetFwVersion reports the ESP-Hosted release compiled into the firmware,
# not the app description's version; this image carries no release record,
# so it counts as built from the simulator's own release.
assert_eq FG-1.0.3.0.0 "$(espfleet info --device "$link" --timeout-ms 2000)" "release after the update"
assert_eq null "$(sim_get "$flash" .running.release)" "release record"
pass "GetFwVersion reports the release, not the app version"
