#!/usr/bin/env bash
# espfleetd end to end: a job published on the broker is downloaded from nginx
# over HTTPS, flashed into the simulator and reported succeeded; the running
# image in the simulator is the served file. Also: progress documents, the
# state document's fields, and duplicate delivery of a finished job.
. "${ESPFLEET_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/integration/lib.sh"
. "$EF_SRC/tests/integration/lib_fleet.sh"
fleet_start

mkimage "$EF_TMP/v1.bin" 1.1.0 fleet-demo 600K
serve "$EF_TMP/v1.bin" v1.bin
want_sha=$(sha256_of "$EF_TMP/v1.bin")

# Record progress documents while the job runs.
mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -q 0 -t "$PROGRESS_TOPIC" >"$EF_TMP/progress.log" 2>/dev/null &
track_pid $!
sleep 0.3
publish_job "$(job_json job-1 v1.bin '.project = "fleet-demo" | .chip = "esp32s3"')"

doc=$(wait_final job-1 60) || fail "no final state for job-1"
assert_eq succeeded "$(jq -r .state <<<"$doc")" "final state"
assert_eq "$want_sha" "$(sim_get "$FLASH" .running.sha256)" "simulator runs the served image"
assert_eq 1.1.0 "$(sim_get "$FLASH" .running.version)" "running version"
assert_eq "$want_sha" "$(jq -r .app.sha256 <<<"$doc")" "state app.sha256"
assert_eq 1.1.0 "$(jq -r .app.version <<<"$doc")" "state app.version"
assert_eq FG-1.1.0.0.0 "$(jq -r .fw_version <<<"$doc")" "state fw_version after reboot"
assert_eq 1 "$(jq -r .attempt <<<"$doc")" "attempt"
assert_eq "$DEV" "$(jq -r .device_id <<<"$doc")" "device_id"
assert_eq true "$(jq -r .online <<<"$doc")" "online"
assert_eq '["canary"]' "$(jq -c .groups <<<"$doc")" "groups"
pass "job-1 succeeded and the simulator runs the image"

wait_for "grep -q '\"percent\":100' '$EF_TMP/progress.log'" 5 || fail "no 100 % progress document"
pass "progress reached 100 % ($(wc -l <"$EF_TMP/progress.log") documents)"

# The same job delivered again: not run twice, its final state re-published.
ends=$(sim_get "$FLASH" .counters.ota_begin)
publish_job "$(job_json job-1 v1.bin '.project = "fleet-demo" | .chip = "esp32s3"')"
sleep 1
doc=$(wait_final job-1 10) || fail "no state after the duplicate"
assert_eq succeeded "$(jq -r .state <<<"$doc")" "state after duplicate delivery"
assert_eq "$ends" "$(sim_get "$FLASH" .counters.ota_begin)" "no second OTA for a finished job"
pass "duplicate delivery of a finished job does not flash again"

# The job's own result, retained on P/devices/ID/jobs/JOB_ID.
RESULT_TOPIC=$PREFIX/devices/$DEV/jobs/job-1
result=$(mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -t "$RESULT_TOPIC" -C 1 -W 5) || fail "no retained result for job-1"
assert_eq succeeded "$(jq -r .state <<<"$result")" "job-1 result"
assert_eq job-1 "$(jq -r .job_id <<<"$result")" "job-1 result job_id"
pass "the job's result is retained on its own topic"

# Same job_id, different content: job_conflict, said to whoever listens, but
# the first result stands in the retained state and in the job's result.
mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -t "$STATE_TOPIC" >"$EF_TMP/conflict.log" 2>/dev/null &
track_pid $!
sleep 0.3
mkimage "$EF_TMP/v2.bin" 1.2.0 fleet-demo 500K
serve "$EF_TMP/v2.bin" v2.bin
publish_job "$(job_json job-1 v2.bin)"
wait_for "grep -q job_conflict '$EF_TMP/conflict.log'" 10 || fail "no rejection for a conflicting job"
doc=$(grep job_conflict "$EF_TMP/conflict.log" | head -n 1)
assert_eq rejected "$(jq -r .state <<<"$doc")" "conflict state"
assert_eq job_conflict "$(jq -r .error.code <<<"$doc")" "error code"
assert_eq "$want_sha" "$(sim_get "$FLASH" .running.sha256)" "running image unchanged"
retained=$(mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -t "$STATE_TOPIC" -C 1 -W 5)
assert_eq succeeded "$(jq -r .state <<<"$retained")" "retained state after the conflict"
result=$(mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -t "$RESULT_TOPIC" -C 1 -W 5)
assert_eq succeeded "$(jq -r .state <<<"$result")" "job-1 result after the conflict"
pass "a conflicting re-send is rejected job_conflict and the first result stands"

# An announce request: the device says its state and the asked job's result again.
# -R: not the retained copies a new subscription gets, only what the device sends now.
mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -R -v -t "$STATE_TOPIC" -t "$RESULT_TOPIC" \
  >"$EF_TMP/announce.log" 2>/dev/null &
track_pid $!
sleep 0.3
mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -t "$PREFIX/announce" -m '{"scope":"devices","job_id":"job-1"}'
wait_for "grep -q '^$RESULT_TOPIC ' '$EF_TMP/announce.log' && grep -q '^$STATE_TOPIC ' '$EF_TMP/announce.log'" 5 ||
  fail "no answer to the announce request: $(cat "$EF_TMP/announce.log")"
pass "an announce request re-publishes the state and the job's result"

# A second job with a newer version goes through; then a job with the
# version that is installed succeeds at once without flashing.
publish_job "$(job_json job-2 v2.bin)"
doc=$(wait_final job-2 60) || fail "no final state for job-2"
assert_eq succeeded "$(jq -r .state <<<"$doc")" "job-2 state"
assert_eq "$(sha256_of "$EF_TMP/v2.bin")" "$(sim_get "$FLASH" .running.sha256)" "simulator runs v2"
begins=$(sim_get "$FLASH" .counters.ota_begin)
publish_job "$(job_json job-3 v2.bin)"
doc=$(wait_final job-3 10) || fail "no final state for job-3"
assert_eq succeeded "$(jq -r .state <<<"$doc")" "already installed job"
assert_eq "$begins" "$(sim_get "$FLASH" .counters.ota_begin)" "no OTA for an installed image"
pass "an already installed image succeeds without flashing"

kill_daemon TERM
doc=$(wait_state '.online == false' 5) || fail "no offline state after SIGTERM"
assert_eq job-3 "$(jq -r .job_id <<<"$doc")" "offline state keeps the last job"
pass "clean stop publishes online=false"
