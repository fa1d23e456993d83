#!/usr/bin/env bash
# test_fleet_cancel.sh's scenario with RabbitMQ's MQTT plugin as the broker
# (EF_BROKER=rabbitmq, lib_rabbitmq.sh): a cancel while transferring ends the
# job canceled with no OTA end and the old image running; of two waiting jobs
# only the newest runs and is installed, the replaced one reports canceled;
# a late cancel is ignored; a cancel on the group topic cancels.
#
# What differs from the mosquitto test: a job's final state is read from its
# retained result topic (P/devices/ID/jobs/JOB_ID) and from a recording of
# the state topic made from the start, not by subscribing to the state topic
# after the cancel. The waiting job starts at once after the cancel, so the
# retained state has moved on to it by then; a RabbitMQ subscription takes
# long enough to set up (a queue and a binding) that the canceled state is
# never caught that way. Only exact topics are subscribed: RabbitMQ sends
# retained messages to exact subscriptions only. Skips (77) without
# rabbitmq-server. Not named test_fleet_*: CI runs those under valgrind.
. "${ESPFLEET_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/integration/lib.sh"
. "$EF_SRC/tests/integration/lib_rabbitmq.sh"
rabbitmq_installed || skip "rabbitmq-server is not installed (tools/deps.sh installs it)"
export EF_BROKER=rabbitmq
. "$EF_SRC/tests/integration/lib_fleet.sh"
# 100 KiB/s of flash writes: a 600 KiB image takes about 6 s.
fleet_start --flash-kbps 100

# job_result JOB_ID: the job's retained result document.
job_result() {
  mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -t "$PREFIX/devices/$DEV/jobs/$1" -C 1 -W 10
}

mkimage "$EF_TMP/slow.bin" 2.0.0 fleet-demo 600K
serve "$EF_TMP/slow.bin" slow.bin
mkimage "$EF_TMP/w1.bin" 2.1.0 fleet-demo 100K
serve "$EF_TMP/w1.bin" w1.bin
mkimage "$EF_TMP/w2.bin" 2.2.0 fleet-demo 100K
serve "$EF_TMP/w2.bin" w2.bin

mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -t "$STATE_TOPIC" >"$EF_TMP/states.log" 2>/dev/null &
track_pid $!
mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -q 0 -t "$PROGRESS_TOPIC" >"$EF_TMP/progress.log" 2>/dev/null &
track_pid $!
# Both subscriptions in place (the recorder got the retained online state).
wait_for "grep -q '\"online\":true' '$EF_TMP/states.log'" 10 || fail "the state recorder got nothing"
sleep 0.5
publish_job "$(job_json slow slow.bin)"
wait_for "sim_get '$FLASH' .counters.ota_write | jq -e '. > 5' >/dev/null" 20 || fail "transfer did not start"
# Two jobs arrive while it runs: only the newest waits.
publish_job "$(job_json wait-1 w1.bin)"
publish_job "$(job_json wait-2 w2.bin)"
sleep 2.5 # let it report some progress (the transfer takes about 6 s)
publish_cancel slow
result=$(job_result slow) || fail "no result for the canceled job"
assert_eq canceled "$(jq -r .state <<<"$result")" "slow's result after cancel"
wait_for "jq -s -e 'any(.[]; .job_id == \"slow\" and .state == \"canceled\")' '$EF_TMP/states.log'" 10 ||
  fail "no canceled state for slow on the state topic"
assert_eq 0 "$(sim_get "$FLASH" .counters.ota_end)" "no OTA end after cancel"
assert_eq null "$(sim_get "$FLASH" .running)" "running image unchanged"
pass "cancel while transferring: canceled (result and state topic), no OTA end"

# Progress while it ran, as the mosquitto test checks it.
jq -s '[.[] | select(.job_id == "slow")]' "$EF_TMP/progress.log" >"$EF_TMP/slow-progress.json"
n=$(jq length "$EF_TMP/slow-progress.json")
[ "$n" -ge 3 ] || fail "only $n progress documents during a transfer of several seconds"
jq -e '[.[].bytes] as $b | ($b == ($b | sort))' "$EF_TMP/slow-progress.json" >/dev/null || fail "progress bytes went down"
pass "$n progress documents for the canceled transfer, bytes growing"

doc=$(wait_final wait-2 30) || fail "newest waiting job did not run"
assert_eq succeeded "$(jq -r .state <<<"$doc")" "waiting job"
assert_eq "$(sha256_of "$EF_TMP/w2.bin")" "$(sim_get "$FLASH" .running.sha256)" "newest waiting job installed"
assert_eq 2.2.0 "$(sim_get "$FLASH" .running.version)" "running version"
grep -q "wait-2 replaces waiting job wait-1" "$DAEMON_LOG" || fail "wait-1 was not replaced by wait-2"
result=$(job_result wait-1) || fail "no result for the replaced job wait-1"
assert_eq canceled "$(jq -r .state <<<"$result")" "replaced job's result"
assert_eq "job_replaced: replaced by job wait-2 while it waited" "$(jq -r .error.detail <<<"$result")" "why"
pass "only the newest waiting job ran; the replaced one reports canceled job_replaced"

# A cancel for a job that already finished changes nothing.
publish_cancel wait-2
sleep 1
doc=$(wait_final wait-2 5) || fail "state lost"
assert_eq succeeded "$(jq -r .state <<<"$doc")" "finished job is not canceled"
assert_eq succeeded "$(job_result wait-2 | jq -r .state)" "wait-2's result"
pass "cancel after the end is ignored"

# A cancel on the group's topic (this device is in "canary").
mkimage "$EF_TMP/g.bin" 2.3.0 fleet-demo 600K
serve "$EF_TMP/g.bin" g.bin
publish_job "$(job_json grp g.bin)"
wait_for "sim_get '$FLASH' .counters.ota_write | jq -e '. > 5' >/dev/null" 20 || fail "grp transfer did not start"
mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -t "$PREFIX/groups/canary/cancel" -m '{"job_id":"grp"}'
doc=$(wait_final grp 20) || fail "no final state after the group cancel"
assert_eq canceled "$(jq -r .state <<<"$doc")" "state after group cancel"
assert_eq "$(sha256_of "$EF_TMP/w2.bin")" "$(sim_get "$FLASH" .running.sha256)" "running image unchanged"
pass "a cancel on the group topic cancels the running job"
