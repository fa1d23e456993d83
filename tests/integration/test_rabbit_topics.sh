#!/usr/bin/env bash
# What RabbitMQ's MQTT plugin (3.x, as Debian ships it) does to espfleet's
# topics, with a device id and job ids that contain dots (allowed:
# [A-Za-z0-9._:-]). RabbitMQ maps an MQTT topic to an AMQP routing key by
# turning each `/` into `.`; a `.` already in a level stays, so it becomes a
# separator too, and on delivery every `.` comes back as `/`: a message
# published on espfleet/devices/dev.1/state reaches its subscribers with the
# topic espfleet/devices/dev/1/state. And retained messages are sent to
# exact subscriptions only, never to wildcard ones (docs/brokers.md).
#
# Checked: the exact-topic subscriptions of the daemon and of the tests
# still work (online state, job, result, retained job to a new session);
# wildcard subscriptions get no retained message; topics come back
# rewritten. Then what needs the topic a message came on to be read back:
# a cancel on the device's cancel topic, `espfleet-console status --device`.
# Both read the delivered topic back (ef_topic_same, ef_topic_parse); a
# regression fails the test, naming what went wrong. Skips without
# rabbitmq-server.
. "${ESPFLEET_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/integration/lib.sh"
. "$EF_SRC/tests/integration/lib_rabbitmq.sh"
rabbitmq_installed || skip "rabbitmq-server is not installed (tools/deps.sh installs it)"
export EF_BROKER=rabbitmq
DEV=dev.1
. "$EF_SRC/tests/integration/lib_fleet.sh"
# 300 KiB/s of flash writes: 100 KiB images take a third of a second, the
# 1.5 MiB one for the cancel about 5 s.
fleet_start --flash-kbps 300
pass "a device id with a dot: the daemon's retained online state arrives on its exact state topic"
known=()

# Retained messages are not sent to wildcard subscriptions.
retained=$(mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -t "$PREFIX/devices/#" -t "$PREFIX/devices/+/state" -W 2 2>/dev/null || true)
assert_eq "" "$retained" "retained messages on wildcard subscriptions"
pass "no retained message reaches a wildcard subscription (P/devices/#, P/devices/+/state)"

# A job whose id has dots; every message under P/devices/ recorded live, with topics.
mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -v -t "$PREFIX/devices/#" >"$EF_TMP/live.log" 2>/dev/null &
track_pid $!
sleep 0.5
mkimage "$EF_TMP/v1.bin" 1.1.0 fleet-demo 100K
serve "$EF_TMP/v1.bin" v1.bin
publish_job "$(job_json rel-1.1.0 v1.bin)"
doc=$(wait_final rel-1.1.0 30) || fail "no final state for rel-1.1.0"
assert_eq succeeded "$(jq -r .state <<<"$doc")" "rel-1.1.0 state"
assert_eq "$(sha256_of "$EF_TMP/v1.bin")" "$(sim_get "$FLASH" .running.sha256)" "simulator runs v1"
result=$(mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -v -t "$PREFIX/devices/$DEV/jobs/rel-1.1.0" -C 1 -W 5) ||
  fail "no retained result for rel-1.1.0 on its exact topic"
assert_eq "$PREFIX/devices/dev/1/jobs/rel-1/1/0" "${result%% *}" "the topic the result is delivered with"
assert_eq succeeded "$(jq -r .state <<<"${result#* }")" "rel-1.1.0's result"
pass "a job with dots in its id succeeds; its retained result arrives on the exact topic"
wait_for "grep -q '^$PREFIX/devices/dev/1/state .*\"succeeded\"' '$EF_TMP/live.log'" 5 ||
  fail "no live state under the rewritten topic $PREFIX/devices/dev/1/state"
if grep -q "^$PREFIX/devices/dev\.1/" "$EF_TMP/live.log"; then fail "a topic kept its dot"; fi
pass "live messages come with every '.' of the topic turned into '/' (espfleet/devices/dev/1/state)"

# A retained job reaches a daemon with a new session (nothing queued for
# it): the daemon subscribes to exact topics, which get retained messages.
kill_daemon TERM
mkimage "$EF_TMP/v2.bin" 1.2.0 fleet-demo 100K
serve "$EF_TMP/v2.bin" v2.bin
mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -r -t "$JOB_TOPIC" -m "$(job_json rel-1.2.0 v2.bin)"
jq '.mqtt.client_id = "dev.1-second-session"' "$CONFIG" >"$CONFIG.new" && mv "$CONFIG.new" "$CONFIG"
start_daemon
doc=$(wait_final rel-1.2.0 30) || fail "the retained job did not reach the new session"
assert_eq succeeded "$(jq -r .state <<<"$doc")" "retained job"
assert_eq "$(sha256_of "$EF_TMP/v2.bin")" "$(sim_get "$FLASH" .running.sha256)" "simulator runs v2"
mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -r -t "$JOB_TOPIC" -n # clear it
pass "a retained job reaches a daemon that connects with a new session"

# The console reads a device's state on its exact topic (--device).
out=$("$EF_BIN/espfleet-console" status --broker "mqtt://127.0.0.1:$MQTT_PORT" --device "$DEV" --json) ||
  fail "espfleet-console status failed"
state=$(jq -r '.[0].state' <<<"$out")
if [ "$state" = succeeded ]; then
  pass "espfleet-console status --device $DEV reads the device's state"
elif [ "$state" = null ]; then
  known+=("espfleet-console status --device $DEV shows no state: the state arrives as $PREFIX/devices/dev/1/state, which ef_topic_parse does not take for $DEV's")
else
  fail "espfleet-console status --device $DEV: state '$state', want succeeded"
fi

# A cancel on the device's cancel topic, which arrives as P/devices/dev/1/cancel.
mkimage "$EF_TMP/slow.bin" 2.0.0 fleet-demo 1500K
serve "$EF_TMP/slow.bin" slow.bin
publish_job "$(job_json slow-2.0.0 slow.bin)"
wait_for "sim_get '$FLASH' .counters.ota_write | jq -e '. > 5' >/dev/null" 20 || fail "transfer did not start"
ends=$(sim_get "$FLASH" .counters.ota_end)
publish_cancel slow-2.0.0
doc=$(wait_final slow-2.0.0 30) || fail "no final state for slow-2.0.0"
state=$(jq -r .state <<<"$doc")
if [ "$state" = canceled ]; then
  assert_eq "$ends" "$(sim_get "$FLASH" .counters.ota_end)" "no OTA end after cancel"
  assert_eq "$(sha256_of "$EF_TMP/v2.bin")" "$(sim_get "$FLASH" .running.sha256)" "running image unchanged"
  pass "a cancel on $DEV's cancel topic cancels"
elif [ "$state" = rejected ] && grep -q "job slow-2.0.0: rejected: bad_job: url: required" "$DAEMON_LOG"; then
  # The cancel document was taken for a job; the transfer goes on.
  doc=$(wait_state '.job_id == "slow-2.0.0" and .state == "succeeded"' 30) || fail "slow-2.0.0 did not end"
  known+=("espfleetd takes a cancel for a device id with a dot for a job document: the cancel arrives as $PREFIX/devices/dev/1/cancel, which is not the cancel topic it compares with, so it is parsed as a job ('job slow-2.0.0: rejected: bad_job: url: required', a rejected state for the running job) and the transfer goes on to succeeded")
else
  fail "slow-2.0.0 after its cancel: state '$state' ($(jq -c .error <<<"$doc"))"
fi

if [ ${#known[@]} -gt 0 ]; then
  for k in "${known[@]}"; do echo "KNOWN: $k" >&2; done
  # Both were fixed (ef_topic_same, and ef_topic_parse reading the dotted
  # ids back): seeing one again is a regression.
  fail "${#known[@]} misbehaviour(s) with dotted ids on RabbitMQ (above)"
fi
