#!/usr/bin/env bash
# test_fleet_broker_restart.sh's scenario with RabbitMQ's MQTT plugin as the
# broker (EF_BROKER=rabbitmq, lib_rabbitmq.sh): the node is killed (SIGKILL)
# in the middle of an update and started again on the same port. The OTA
# continues, espfleetd reconnects, the final state arrives on the restarted
# node, and a new job goes through.
#
# Unlike the test's mosquitto (persistence off), a RabbitMQ node keeps its
# database across a restart: the daemon's persistent session (clean_session
# false) is a durable queue, mqtt-subscription-<client id>qos1, which comes
# back with its bindings. So also checked: the queue is there after the
# crash, and a job published (not retained) while the daemon is stopped
# waits in it and runs when the daemon starts again. And espfleet-console
# status, whose P/devices/+/state gets no retained state from RabbitMQ,
# finds the device by its announce request. Skips (77) without
# rabbitmq-server. Not named test_fleet_*: CI runs those under valgrind.
. "${ESPFLEET_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/integration/lib.sh"
. "$EF_SRC/tests/integration/lib_rabbitmq.sh"
rabbitmq_installed || skip "rabbitmq-server is not installed (tools/deps.sh installs it)"
export EF_BROKER=rabbitmq
. "$EF_SRC/tests/integration/lib_fleet.sh"
fleet_start --flash-kbps 150
QUEUE=mqtt-subscription-${DEV}qos1

# session_queue: prints the daemon's session queue's line (name, durable) or nothing.
session_queue() {
  rabbitmqctl_in "$EF_TMP/mqtt" list_queues name durable 2>/dev/null | awk -v q="$QUEUE" '$1 == q'
}

[ -n "$(session_queue)" ] || fail "no session queue $QUEUE on the RabbitMQ node"
assert_eq "$QUEUE true" "$(session_queue | awk '{print $1, $2}')" "the daemon's session is a durable queue"
pass "the daemon's persistent session is the durable queue $QUEUE"

# The console's status subscribes to P/devices/+/state: RabbitMQ sends no
# retained state there, so only its announce request brings the device in.
status=$("$EF_BIN/espfleet-console" status --broker "mqtt://127.0.0.1:$MQTT_PORT" --json) || fail "console status failed"
assert_eq "[[\"$DEV\",\"idle\"]]" "$(jq -c '[.[] | [.device_id, .state]]' <<<"$status")" "console status (announce)"
status=$("$EF_BIN/espfleet-console" status --broker "mqtt://127.0.0.1:$MQTT_PORT" --no-announce --json) ||
  fail "console status --no-announce failed"
assert_eq '[]' "$(jq -c '[.[] | .device_id]' <<<"$status")" "console status --no-announce (retained only)"
pass "espfleet-console status finds the device through its announce request, and nothing without it"

mkimage "$EF_TMP/v2.bin" 2.0.0 fleet-demo 600K
serve "$EF_TMP/v2.bin" v2.bin
publish_job "$(job_json across v2.bin)"
wait_for "sim_get '$FLASH' .counters.ota_write | jq -e '. > 5' >/dev/null" 20 || fail "transfer did not start"
broker_kill
sleep 1
t0=$SECONDS
broker_restart || fail "the RabbitMQ node did not start again"
log "RabbitMQ node back after $((SECONDS - t0)) s"
doc=$(wait_final across 60) || fail "final state never arrived after the broker restart"
assert_eq succeeded "$(jq -r .state <<<"$doc")" "final state"
assert_eq "$(sha256_of "$EF_TMP/v2.bin")" "$(sim_get "$FLASH" .running.sha256)" "image installed"
assert_eq 2.0.0 "$(sim_get "$FLASH" .running.version)" "running version"
result=$(mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -t "$PREFIX/devices/$DEV/jobs/across" -C 1 -W 10) ||
  fail "no retained result for across after the restart"
assert_eq succeeded "$(jq -r .state <<<"$result")" "across's result"
grep -q "reconnected to the broker" "$DAEMON_LOG" || fail "no reconnect in the daemon log"
pass "broker killed mid-update: OTA continued, final state and result delivered by the restarted node"

[ -n "$(session_queue)" ] || fail "the session queue $QUEUE did not survive the crash"
pass "the session queue survived the crash"

# The session works after the restart: a new job goes through.
mkimage "$EF_TMP/v3.bin" 3.0.0 fleet-demo 100K
serve "$EF_TMP/v3.bin" v3.bin
publish_job "$(job_json after v3.bin)"
doc=$(wait_final after 60) || fail "no job after the broker restart"
assert_eq succeeded "$(jq -r .state <<<"$doc")" "job after restart"
assert_eq "$(sha256_of "$EF_TMP/v3.bin")" "$(sim_get "$FLASH" .running.sha256)" "v3 installed"
pass "jobs are received after the broker restart"

# A job published while the daemon is stopped (not retained) waits in the
# session queue and runs when the daemon is back.
kill_daemon TERM
mkimage "$EF_TMP/v4.bin" 4.0.0 fleet-demo 100K
serve "$EF_TMP/v4.bin" v4.bin
publish_job "$(job_json queued v4.bin)"
start_daemon
doc=$(wait_final queued 60) || fail "the job queued in the session did not run"
assert_eq succeeded "$(jq -r .state <<<"$doc")" "queued job"
assert_eq "$(sha256_of "$EF_TMP/v4.bin")" "$(sim_get "$FLASH" .running.sha256)" "v4 installed"
pass "a job sent while the daemon was stopped waited in its session and ran"
