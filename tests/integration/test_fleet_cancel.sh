#!/usr/bin/env bash
# Cancel while transferring: the job ends canceled, no OTA end is sent, the
# running image is unchanged. A cancel for a waiting job drops it; the newest
# waiting job replaces an older one.
. "${ESPFLEET_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/integration/lib.sh"
. "$EF_SRC/tests/integration/lib_fleet.sh"
# 100 KiB/s of flash writes: a 600 KiB image takes about 6 s.
fleet_start --flash-kbps 100

mkimage "$EF_TMP/slow.bin" 2.0.0 fleet-demo 600K
serve "$EF_TMP/slow.bin" slow.bin
mkimage "$EF_TMP/w1.bin" 2.1.0 fleet-demo 100K
serve "$EF_TMP/w1.bin" w1.bin
mkimage "$EF_TMP/w2.bin" 2.2.0 fleet-demo 100K
serve "$EF_TMP/w2.bin" w2.bin

mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -q 0 -t "$PROGRESS_TOPIC" >"$EF_TMP/progress.log" 2>/dev/null &
track_pid $!
sleep 0.3
publish_job "$(job_json slow slow.bin)"
wait_for "sim_get '$FLASH' .counters.ota_write | jq -e '. > 5' >/dev/null" 20 || fail "transfer did not start"
# Two jobs arrive while it runs: only the newest waits.
publish_job "$(job_json wait-1 w1.bin)"
publish_job "$(job_json wait-2 w2.bin)"
sleep 2.5 # let it report some progress (the transfer takes about 6 s)
publish_cancel slow
# The job's own result topic: the state topic moves on to the waiting job at
# once, and a late subscriber would see only that.
doc=$(mqtt_wait_for "$PREFIX/devices/$DEV/jobs/slow" '.state' 20) || fail "no final state for the canceled job"
assert_eq canceled "$(jq -r .state <<<"$doc")" "state after cancel"
assert_eq 0 "$(sim_get "$FLASH" .counters.ota_end)" "no OTA end after cancel"
assert_eq null "$(sim_get "$FLASH" .running)" "running image unchanged"
pass "cancel while transferring: canceled, no OTA end"

# Progress while it ran: at most two documents a second, never 5 s apart,
# bytes growing.
jq -s '[.[] | select(.job_id == "slow")]' "$EF_TMP/progress.log" >"$EF_TMP/slow-progress.json"
n=$(jq length "$EF_TMP/slow-progress.json")
[ "$n" -ge 3 ] || fail "only $n progress documents during a transfer of several seconds"
jq -e '[.[].ts | sub("\\.[0-9]+Z$"; "Z") | fromdate] as $t |
       ($t[-1] - $t[0]) as $span | (length <= ($span * 2 + 2))' "$EF_TMP/slow-progress.json" >/dev/null ||
  fail "more than two progress documents a second"
jq -e '[.[].bytes] as $b | ($b == ($b | sort))' "$EF_TMP/slow-progress.json" >/dev/null || fail "progress bytes went down"
jq -e '[.[].ts | sub("\\.[0-9]+Z$"; "Z") | fromdate] | [range(1; length) as $i | .[$i] - .[$i-1]] | all(. <= 5)' \
  "$EF_TMP/slow-progress.json" >/dev/null || fail "progress documents more than 5 s apart"
pass "$n progress documents, at most 2/s, never 5 s apart"

doc=$(wait_final wait-2 30) || fail "newest waiting job did not run"
assert_eq succeeded "$(jq -r .state <<<"$doc")" "waiting job"
assert_eq "$(sha256_of "$EF_TMP/w2.bin")" "$(sim_get "$FLASH" .running.sha256)" "newest waiting job installed"
grep -q "wait-2 replaces waiting job wait-1" "$DAEMON_LOG" || fail "wait-1 was not replaced by wait-2"
pass "only the newest waiting job ran"
# The replaced job has an outcome of its own: canceled, with the reason.
result=$(mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -t "$PREFIX/devices/$DEV/jobs/wait-1" -C 1 -W 5) ||
  fail "no result for the replaced job wait-1"
assert_eq canceled "$(jq -r .state <<<"$result")" "replaced job's result"
assert_eq "job_replaced: replaced by job wait-2 while it waited" "$(jq -r .error.detail <<<"$result")" "why"
pass "the replaced waiting job reports canceled with job_replaced"

# A cancel for a job that already finished changes nothing.
publish_cancel wait-2
sleep 1
doc=$(wait_final wait-2 5) || fail "state lost"
assert_eq succeeded "$(jq -r .state <<<"$doc")" "finished job is not canceled"
pass "cancel after the end is ignored"

# A cancel on the group's topic reaches every device of the group (this
# one is in "canary"): a running job ends canceled.
mkimage "$EF_TMP/g.bin" 2.3.0 fleet-demo 600K
serve "$EF_TMP/g.bin" g.bin
publish_job "$(job_json grp g.bin)"
wait_for "sim_get '$FLASH' .counters.ota_write | jq -e '. > 5' >/dev/null" 20 || fail "grp transfer did not start"
mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -t "$PREFIX/groups/canary/cancel" -m '{"job_id":"grp"}'
doc=$(wait_final grp 20) || fail "no final state after the group cancel"
assert_eq canceled "$(jq -r .state <<<"$doc")" "state after group cancel"
assert_eq "$(sha256_of "$EF_TMP/w2.bin")" "$(sim_get "$FLASH" .running.sha256)" "running image unchanged"
pass "a cancel on the group topic cancels the running job"
