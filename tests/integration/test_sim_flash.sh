#!/usr/bin/env bash
# espfleet flash against the simulator, twice in a row through the same
# link (each OTA end reboots the simulated ESP: the link goes away and comes
# back), then a simulator restart: the flash file keeps its state.
# Every outcome is read back from the simulator's own --show.
. "${ESPFLEET_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/integration/lib.sh"
require_bin espfleet espfleet-sim
require_cmd jq sha256sum

link=$EF_TMP/esp0
flash=$EF_TMP/flash.bin
sim_args=(--reboot-delay-ms 200 --down-ms 100)
start_sim "$link" "$flash" "${sim_args[@]}"

assert_eq null "$(sim_get "$flash" .running)" "running image of a new flash file"
assert_eq 1 "$(sim_get "$flash" .counters.boots)" "boots after power-on"
# the release in esp_fw_version.h of the ESP-Hosted source the simulator follows
assert_eq FG-1.0.0.0.0 "$(espfleet info --device "$link" --timeout-ms 2000)" "factory version"
pass "a new flash file boots the factory app"

# flash_ok IMAGE VERSION_STRING [FLASH_ARGS...]: flashes IMAGE, waits for the
# reboot, and checks the running image and the counters.
flash_ok() {
  local image=$1 want_version=$2 boots ends slot
  shift 2
  boots=$(sim_get "$flash" .counters.boots)
  ends=$(sim_get "$flash" .counters.ota_end)
  slot=$(sim_get "$flash" '.running.slot // -1')
  espfleet flash --device "$link" --chip esp32s3 --timeout-ms 3000 --boot-timeout-ms 10000 \
    "$@" "$image" >"$EF_TMP/flash.out" 2>"$EF_TMP/flash.err" ||
    fail "espfleet flash $image: $(tail -n1 "$EF_TMP/flash.err")"
  sim_wait "$flash" ".counters.boots == $((boots + 1))" 10 ||
    fail "the simulator did not reboot after flashing $image"
  assert_eq "$(sha256_of "$image")" "$(sim_get "$flash" .running.sha256)" "running sha256 after flashing $image"
  assert_eq "$want_version" "$(sim_get "$flash" .running.version)" "running version"
  assert_eq $((ends + 1)) "$(sim_get "$flash" .counters.ota_end)" "ota_end counter"
  assert_eq $((slot == 0 ? 1 : 0)) "$(sim_get "$flash" .running.slot)" "the OTA went to the other slot"
  assert_eq "$(stat -c %s "$image")" "$(sim_get "$flash" .running.size)" "running image size"
}

mkimage "$EF_TMP/a.bin" 1.2.3 demo 300K
flash_ok "$EF_TMP/a.bin" 1.2.3
assert_eq esp32s3 "$(sim_get "$flash" .running.chip)" "running chip"
assert_eq demo "$(sim_get "$flash" .running.project)" "running project"
# the link came back after the reboot: the same path answers with the new version
wait_for "espfleet info --device '$link' --timeout-ms 1000" 5 || fail "no answer after the reboot"
assert_eq FG-1.2.3.0.0 "$(espfleet info --device "$link" --timeout-ms 2000)" "version after the first OTA"
pass "first OTA: running image is the file, GetFwVersion reports its release FG-1.2.3.0.0"

# Second OTA right away, through the same link, with writes in flight.
mkimage "$EF_TMP/b.bin" v2.5.7-rc4 demo 200K esp32s3 --hosted-release FG-2.5.7.4.0
flash_ok "$EF_TMP/b.bin" v2.5.7-rc4 --window 4 --chunk-size 4067
assert_eq FG-2.5.7.4.0 "$(espfleet info --device "$link" --timeout-ms 2000)" "version after the second OTA"
assert_eq valid "$(sim_get "$flash" '.slots[0].state')" "the previous image stays in its slot"
pass "second OTA through the same link (window 4): slot switched, FG-2.5.7.4.0"

# A restart of the simulator (a power cycle) keeps everything.
before=$(sim_show "$flash")
stop_sim
[ ! -e "$link" ] || fail "the link is still there after SIGTERM"
start_sim "$link" "$flash" "${sim_args[@]}"
after=$(sim_show "$flash")
assert_eq "$(jq -c .running <<<"$before")" "$(jq -c .running <<<"$after")" "running image across a restart"
assert_eq "$(jq -c '.counters | del(.boots)' <<<"$before")" "$(jq -c '.counters | del(.boots)' <<<"$after")" \
  "counters across a restart"
assert_eq $(($(jq .counters.boots <<<"$before") + 1)) "$(jq .counters.boots <<<"$after")" "power-on counts as a boot"
assert_eq FG-2.5.7.4.0 "$(espfleet info --device "$link" --timeout-ms 2000)" "version after a restart"
pass "simulator restart keeps the flash state"
