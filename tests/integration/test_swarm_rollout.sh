#!/usr/bin/env bash
# Staged rollouts over 20 real espfleetd + espfleet-sim pairs, run by
# espfleet-controller: a broken release fails its canary and the rollout
# aborts before any other device gets it; the fixed release completes step by
# step; a controller killed (SIGKILL) in the middle of a rollout resumes it
# after a restart without repeating or skipping a step.
. "${ESPFLEET_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/integration/lib.sh"
. "$EF_SRC/tests/integration/lib_fleet.sh"
. "$EF_SRC/tests/integration/lib_swarm.sh"
N=${SWARM_N:-20}
SWARM_GROUP=swarm
swarm_start "$N" "$SWARM_GROUP"
controller_start

mkimage "$EF_TMP/v2.bin" 2.0.0 fleet-demo 64K
serve "$EF_TMP/v2.bin" v2.bin
mkimage "$EF_TMP/v3.bin" 3.0.0 fleet-demo 64K
serve "$EF_TMP/v3.bin" v3.bin

count_running() { # count_running SHA: devices whose simulator runs that image
  local k=0 i
  for ((i = 0; i < N; i++)); do
    [ "$(sim_get "$(swarm_flash "$i")" .running.sha256)" = "$1" ] && k=$((k + 1))
  done
  echo "$k"
}

# 1. A broken release: the job's sha256 is not the file's. The canary fails
#    hash_mismatch, the abort threshold (default: 10 % of finished devices)
#    is crossed at once, and nobody else ever gets the job.
bad_job=$(job_json broken-2-0 v2.bin '.sha256 = ("0" * 64)')
rollout_publish "$(rollout_json r-broken "$bad_job" '[{"count":1},{"percent":50},{"percent":100}]')"
doc=$(rollout_wait r-broken '.state == "aborted"' 90) || fail "the broken rollout did not abort"
assert_eq 1 "$(jq -r .step_devices <<<"$doc")" "devices the broken job reached"
assert_eq 1 "$(jq -r .counts.failed <<<"$doc")" "failed devices"
jq -r .reason <<<"$doc" | grep -q "abort threshold" || fail "reason: $(jq -r .reason <<<"$doc")"
# Who has a result for the broken job: every device is asked (an announce
# with the job), and only the canary answers with one. Asked rather than
# read from retained messages, which a broker such as RabbitMQ does not give
# to wildcard subscriptions. (mosquitto_sub -W ends with status 27.)
{ mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -R -v -t "$PREFIX/devices/+/jobs/broken-2-0" -W 4 2>/dev/null ||
  true; } >"$EF_TMP/broken-results.log" &
collector=$!
sleep 1
mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -t "$PREFIX/announce" -m '{"scope":"devices","job_id":"broken-2-0"}'
wait "$collector"
results=$(cut -d' ' -f1 "$EF_TMP/broken-results.log" | sort -u | grep -c . || true)
assert_eq 1 "$results" "devices with a result for the broken job"
assert_eq 0 "$(count_running "$(sha256_of "$EF_TMP/v2.bin")")" "devices running the broken release"
pass "a failing canary aborts the rollout; no other device got the job"

# 2. The fixed release: canary, half, everyone; each step waits for the one
#    before it to succeed.
good_job=$(job_json fixed-2-0 v2.bin)
rollout_publish "$(rollout_json r-fixed "$good_job" '[{"count":1},{"percent":50},{"percent":100}]')"
mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -t "$PREFIX/rollouts/r-fixed/status" >"$EF_TMP/r-fixed.log" 2>/dev/null &
track_pid $!
doc=$(rollout_wait r-fixed '.state == "completed"' 240) || fail "the fixed rollout did not complete: $(tail -n 3 "$EF_TMP/r-fixed.log")"
assert_eq "$N" "$(jq -r .counts.succeeded <<<"$doc")" "succeeded devices"
assert_eq "$N" "$(count_running "$(sha256_of "$EF_TMP/v2.bin")")" "devices running the fixed release"
# The steps reached 1, half of N (rounded up) and N devices, in order, and each step started
# only after every device of the steps before it had succeeded (the store
# records when each device's job was sent and when its row last changed).
db() { sqlite3 "$EF_TMP/controller.db" "$1"; }
half=$(((N + 1) / 2)) # 50 % of N devices, rounded up
assert_eq "1 $((half - 1)) $((N - half))" \
  "$(db "select count(*) from rollout_devices where rollout_id = 'r-fixed' group by step order by step" | xargs)" \
  "devices per step"
for k in 1 2; do
  started=$(db "select min(sent_ms) from rollout_devices where rollout_id = 'r-fixed' and step = $k")
  done_before=$(db "select max(updated_ms) from rollout_devices where rollout_id = 'r-fixed' and step < $k")
  [ "$started" -ge "$done_before" ] || fail "step $((k + 1)) started at $started, before step $k was done at $done_before"
done
jq -e -s '[.[] | .step] | . == (. | sort)' "$EF_TMP/r-fixed.log" >/dev/null || fail "the status went back a step"
pass "the fixed rollout completed step by step on all $N devices"

# 3. The controller is killed in the middle of a rollout and restarted: it
#    resumes where it was; every device installs exactly once.
declare -A begins
for ((i = 0; i < N; i++)); do begins[$i]=$(sim_get "$(swarm_flash "$i")" .counters.ota_begin); done
next_job=$(job_json next-3-0 v3.bin)
rollout_publish "$(rollout_json r-next "$next_job" '[{"count":2},{"percent":50},{"percent":100}]' '{"soak_s":3}')"
rollout_wait r-next '.state == "running" and .step == 1' 120 >/dev/null || fail "r-next did not reach step 2"
controller_kill KILL
step_at_kill=$(sqlite3 "$EF_TMP/controller.db" "select step from rollouts where id = 'r-next'")
sleep 2
controller_start
doc=$(rollout_wait r-next '.state == "completed"' 240) || fail "r-next did not complete after the restart"
assert_eq "$N" "$(jq -r .counts.succeeded <<<"$doc")" "succeeded devices after the restart"
for ((i = 0; i < N; i++)); do
  b=$(sim_get "$(swarm_flash "$i")" .counters.ota_begin)
  assert_eq "$((begins[$i] + 1))" "$b" "OTA begins on ${SWARM_IDS[$i]} during r-next"
done
assert_eq "$N" "$(count_running "$(sha256_of "$EF_TMP/v3.bin")")" "devices running 3.0"
grep -q "rollout r-next resumed: running, step $((step_at_kill + 1))" "$CONTROLLER_LOG" ||
  fail "the restarted controller did not resume r-next at step $((step_at_kill + 1)): $(grep r-next "$CONTROLLER_LOG" | head -3)"
pass "a controller killed mid-rollout resumed at step $((step_at_kill + 1)); every device installed once"

# History: who ran what, and how it ended, queryable after the fact.
# (read beside the running controller: the history opens the database read-only)
hist=$("$EF_BIN/espfleet-controller" history --database "$EF_TMP/controller.db" --job next-3-0 2>&1) ||
  fail "history failed: $hist"
assert_eq "$N" "$(grep -c ' succeeded ' <<<"$hist")" "history lines for next-3-0"
pass "the history names every device that ran next-3-0"
