#!/usr/bin/env bash
# espfleet-controller keeps an action until the broker acknowledged it: a
# step that starts while the broker is down, followed by a SIGKILL of the
# controller and a broker that lost everything (no persistence), still
# reaches its devices once the controller and the broker are back.
. "${ESPFLEET_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/integration/lib.sh"
. "$EF_SRC/tests/integration/lib_fleet.sh"
. "$EF_SRC/tests/integration/lib_swarm.sh"
N=3
SWARM_GROUP=crash
swarm_start "$N" "$SWARM_GROUP"
controller_start
db() { sqlite3 "$EF_TMP/controller.db" "$1"; }

mkimage "$EF_TMP/v2.bin" 2.0.0 fleet-demo 64K
serve "$EF_TMP/v2.bin" v2.bin
want=$(sha256_of "$EF_TMP/v2.bin")
rollout_publish "$(rollout_json r-crash "$(job_json crash-2.0 v2.bin)" '[{"count":1},{"percent":100}]' '{"soak_s":6}')"
rollout_wait r-crash '.step == 0 and .counts.succeeded == 1' 60 >/dev/null || fail "the canary did not succeed"

# The broker goes away during the soak; the next step starts without it.
broker_kill
wait_for "[ \"\$(db \"select step from rollouts where id = 'r-crash'\")\" = 1 ]" 20 ||
  fail "step 2 did not start while the broker was away"
sleep 1
controller_kill KILL
pending=$(db "select count(*) from rollout_devices where rollout_id = 'r-crash' and step = 1 and send = 1")
assert_eq "$((N - 1))" "$pending" "jobs of step 2 still to be sent, in the store"
pass "a step started while the broker was away keeps its unsent jobs in the store"

broker_restart
controller_start
doc=$(rollout_wait r-crash '.state == "completed"' 120) || fail "r-crash did not complete after the restarts"
assert_eq "$N" "$(jq -r .counts.succeeded <<<"$doc")" "succeeded devices"
for ((i = 0; i < N; i++)); do
  assert_eq "$want" "$(sim_get "$(swarm_flash "$i")" .running.sha256)" "${SWARM_IDS[$i]} runs 2.0"
done
assert_eq 0 "$(db "select count(*) from rollout_devices where send = 1 or cancel = 1")" "actions left"
pass "after the controller and the broker came back, every device got its job"

# Deleting the rollout (an empty retained document) clears what it left on
# the broker: the devices' retained jobs and results, and its status; the
# store forgets the rollout but keeps the history.
mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -r -t "$PREFIX/rollouts/r-crash" -n
wait_for "[ \"\$(db \"select count(*) from rollouts where id = 'r-crash'\")\" = 0 ]" 20 ||
  fail "the deleted rollout is still in the store"
left=$({ mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -v -t "$PREFIX/devices/+/job" -t "$PREFIX/devices/+/jobs/+" \
  -t "$PREFIX/rollouts/r-crash/status" -W 2 2>/dev/null || true; } | grep -c . || true)
assert_eq 0 "$left" "retained documents left by the deleted rollout"
assert_eq "$N" "$(db "select count(*) from history where job_id = 'crash-2.0' and state = 'succeeded'")" "history"
pass "a deleted rollout's jobs, results and status are cleared; its history stays"

# Deleted and created again at once (a script's `rollout delete R; rollout
# create R`): both documents reach the controller together; the new one is
# taken up once the old rollout is gone.
mkimage "$EF_TMP/v3.bin" 3.0.0 fleet-demo 64K
serve "$EF_TMP/v3.bin" v3.bin
rollout_publish "$(rollout_json r-again "$(job_json again-1 v2.bin '.job_id = "again-1"')" '[{"percent":100}]')"
rollout_wait r-again '.state == "completed"' 60 >/dev/null || fail "r-again (job again-1) did not complete"
mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -r -t "$PREFIX/rollouts/r-again" -n &&
  rollout_publish "$(rollout_json r-again "$(job_json again-2 v3.bin)" '[{"percent":100}]')"
doc=$(rollout_wait r-again '.job_id == "again-2" and .state == "completed"' 90) ||
  fail "the rollout created again right after its deletion did not run: $(grep r-again "$CONTROLLER_LOG" | tail -3)"
for ((i = 0; i < N; i++)); do
  assert_eq "$(sha256_of "$EF_TMP/v3.bin")" "$(sim_get "$(swarm_flash "$i")" .running.sha256)" "${SWARM_IDS[$i]} runs 3.0"
done
pass "a rollout deleted and created again at once runs its new document"
