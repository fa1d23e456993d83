#!/usr/bin/env bash
# Job policy end to end: wrong chip (no OTA begin), canary percent 0 then
# 100 for the same job, downgrade refused (and allowed when asked), expired
# jobs, group topics, and malformed or oversized payloads (daemon survives).
. "${ESPFLEET_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/integration/lib.sh"
. "$EF_SRC/tests/integration/lib_fleet.sh"
fleet_start

mkimage "$EF_TMP/v2.bin" 2.0.0 fleet-demo 300K
serve "$EF_TMP/v2.bin" v2.bin

# Wrong chip: the image says ESP32-C3, the device is an ESP32-S3.
mkimage "$EF_TMP/c3.bin" 3.0.0 fleet-demo 300K esp32c3
serve "$EF_TMP/c3.bin" c3.bin
begins=$(sim_get "$FLASH" .counters.ota_begin)
publish_job "$(job_json c3 c3.bin)"
doc=$(wait_final c3 30) || fail "no final state for the wrong-chip job"
assert_eq rejected "$(jq -r .state <<<"$doc")" "wrong chip state"
assert_eq chip_mismatch "$(jq -r .error.code <<<"$doc")" "wrong chip code"
assert_eq "$begins" "$(sim_get "$FLASH" .counters.ota_begin)" "no OTA begin for a wrong chip"
pass "wrong chip: rejected chip_mismatch before OTA begin"

# The job itself names another chip: refused before downloading.
publish_job "$(job_json c3b c3.bin '.chip = "esp32c3"')"
doc=$(wait_final c3b 30) || fail "no final state for c3b"
assert_eq chip_mismatch "$(jq -r .error.code <<<"$doc")" "job chip code"
pass "job for another chip: rejected chip_mismatch"

# Canary: percent 0 skips, the same job with 100 runs.
publish_job "$(job_json canary v2.bin '.rollout = {percent: 0}')"
doc=$(wait_final canary 30) || fail "no final state for canary at 0 %"
assert_eq skipped "$(jq -r .state <<<"$doc")" "canary at 0 %"
assert_eq null "$(sim_get "$FLASH" .running)" "nothing installed after a skip"
publish_job "$(job_json canary v2.bin '.rollout = {percent: 100}')" "$PREFIX/groups/canary/job"
doc=$(wait_state '.job_id == "canary" and .state == "succeeded"' 60) || fail "canary at 100 % did not succeed"
assert_eq "$(sha256_of "$EF_TMP/v2.bin")" "$(sim_get "$FLASH" .running.sha256)" "canary image running"
pass "canary: skipped at 0 %, installed when re-published at 100 % on the group topic"

# Downgrade: 1.5.0 after 2.0.0 is refused, unless allowed.
mkimage "$EF_TMP/v15.bin" 1.5.0 fleet-demo 300K
serve "$EF_TMP/v15.bin" v15.bin
begins=$(sim_get "$FLASH" .counters.ota_begin)
publish_job "$(job_json down v15.bin)"
doc=$(wait_final down 30) || fail "no final state for the downgrade"
assert_eq rejected "$(jq -r .state <<<"$doc")" "downgrade state"
assert_eq downgrade_refused "$(jq -r .error.code <<<"$doc")" "downgrade code"
assert_eq "$begins" "$(sim_get "$FLASH" .counters.ota_begin)" "no OTA begin for a refused downgrade"
pass "downgrade refused"
publish_job "$(job_json down-ok v15.bin '.allow_downgrade = true')"
doc=$(wait_final down-ok 60) || fail "no final state for the allowed downgrade"
assert_eq succeeded "$(jq -r .state <<<"$doc")" "allowed downgrade"
assert_eq 1.5.0 "$(sim_get "$FLASH" .running.version)" "downgraded version running"
pass "downgrade with allow_downgrade succeeds"

# Version in the job differs from the image: version_mismatch, no OTA begin.
begins=$(sim_get "$FLASH" .counters.ota_begin)
publish_job "$(job_json vm v2.bin '.version = "9.9.9"')"
doc=$(wait_final vm 30) || fail "no final state for vm"
assert_eq version_mismatch "$(jq -r .error.code <<<"$doc")" "version mismatch code"
assert_eq "$begins" "$(sim_get "$FLASH" .counters.ota_begin)" "no OTA begin on version mismatch"
pass "version mismatch rejected before OTA begin"

# Expired job.
publish_job "$(job_json old v2.bin '.not_after = "2001-01-01T00:00:00Z"')"
doc=$(wait_final old 30) || fail "no final state for the expired job"
assert_eq expired "$(jq -r .error.code <<<"$doc")" "expired code"
pass "expired job rejected"

# Malformed payloads: each gives a rejection; the daemon keeps running.
bad_payloads=(
  'not json'
  '[1,2,3]'
  '{"job_id": "bad-1"}'
  '{"job_id": "bad-2", "url": 5, "sha256": "x", "size": "big", "version": 1}'
  "$(job_json bad-3 v2.bin '.url = "http://127.0.0.1/x.bin"')"
  "$(job_json bad-4 v2.bin '.sha256 = "zz"')"
  "$(job_json bad-5 v2.bin '.size = -1')"
  "$(job_json 'bad id with spaces' v2.bin)"
  '{"job_id": "bad-6", "url": "https://127.0.0.1/x", "sha256": "'"$(printf '%064d' 0)"'", "size": 99999999999, "version": "1"}'
)
# Each rejection is told apart from the previous one by its ts (ms).
for p in "${bad_payloads[@]}"; do
  last=$(wait_state true 5 | jq -r .ts)
  publish_job "$p"
  doc=$(wait_state ".state == \"rejected\" and .ts > \"$last\"" 10) ||
    fail "no rejection for payload: $p"
  code=$(jq -r .error.code <<<"$doc")
  case "$code" in bad_job | too_large) ;; *) fail "payload $p: unexpected code $code" ;; esac
  daemon_alive || fail "espfleetd died on payload: $p"
done
pass "malformed payloads rejected with bad_job/too_large"

# A 40 KB payload (above the daemon's 16 KiB, below the broker's 64 KiB
# max_packet_size): refused unparsed, daemon survives.
head -c 40000 /dev/zero | tr '\0' 'a' >"$EF_TMP/huge.txt"
last=$(wait_state true 5 | jq -r .ts)
mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -t "$JOB_TOPIC" -f "$EF_TMP/huge.txt"
doc=$(wait_state ".state == \"rejected\" and .ts > \"$last\" and (.error.detail // \"\" | test(\"too large\"))" 10) ||
  fail "no rejection for the oversized payload"
daemon_alive || fail "espfleetd died on a 40 KB payload"
pass "oversized payload rejected, daemon alive"

# A 50 MiB one never reaches the daemon: the broker refuses it (as
# config/mosquitto.conf.example does), so the daemon's memory stays put
# (without the limit its MQTT library held it twice: ~100 MiB more).
hwm() { awk '/^VmHWM:/ {print $2}' "/proc/$DAEMON_PID/status"; }
before=$(hwm)
head -c $((50 * 1024 * 1024)) /dev/zero | tr '\0' 'a' >"$EF_TMP/huge.txt"
mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -t "$JOB_TOPIC" -f "$EF_TMP/huge.txt" 2>/dev/null || true
rm -f "$EF_TMP/huge.txt"
sleep 1
after=$(hwm)
daemon_alive || fail "espfleetd died on a 50 MiB publish"
((after - before < 10240)) || fail "espfleetd's peak memory grew by $(((after - before) / 1024)) MiB on a 50 MiB publish"
pass "a 50 MiB publish stops at the broker: espfleetd's peak memory grew by $((after - before)) KiB"

# And it still works.
mkimage "$EF_TMP/v3.bin" 3.0.0 fleet-demo 300K
serve "$EF_TMP/v3.bin" v3.bin
publish_job "$(job_json after v3.bin)"
doc=$(wait_final after 60) || fail "no final state for the last job"
assert_eq succeeded "$(jq -r .state <<<"$doc")" "job after bad input"
pass "daemon still installs after bad input"
