# shellcheck shell=bash
# A swarm on loopback for the rollout tests: one broker, nginx over HTTPS,
# N pairs of espfleet-sim + espfleetd, and espfleet-controller. Source after
# lib.sh and lib_fleet.sh (it reuses serve, job_json, broker_start):
#   swarm_start N GROUP            devices sw-00 .. sw-(N-1), all in GROUP
#   controller_start / controller_kill SIGNAL
#   rollout_publish JSON           retained on P/rollouts/<rollout_id>
#   rollout_wait ID JQ_CONDITION [TIMEOUT_S]   prints the first status doc that matches
#   swarm_flash I                  the flash file of device I
SWARM_IDS=()

swarm_start() {
  local n=$1 group=$2 i id
  require_bin espfleet espfleet-sim espfleetd espfleet-controller
  require_cmd mosquitto_pub mosquitto_sub nginx openssl jq sqlite3
  WWW=$EF_TMP/www
  PKI=$EF_TMP/pki
  mkdir -p "$WWW" "$EF_TMP/mqtt"
  nginx_make_certs "$PKI" >/dev/null
  broker_start "$EF_TMP/mqtt"
  nginx_start --dir "$EF_TMP/nginx" --root "$WWW" --certs "$PKI"
  at_exit "nginx_stop"
  URL_BASE=https://127.0.0.1:$NGINX_PORT
  for ((i = 0; i < n; i++)); do
    id=$(printf 'sw-%02d' "$i")
    SWARM_IDS+=("$id")
    mkdir -p "$EF_TMP/$id/state"
    start_sim "$EF_TMP/$id/esp" "$EF_TMP/$id/flash.bin" --reboot-delay-ms 200 --slot-size 16777216
    jq -n --arg dev "$id" --arg group "$group" --arg state "$EF_TMP/$id/state" \
      --arg uri "mqtt://127.0.0.1:$MQTT_PORT" --arg link "$EF_TMP/$id/esp" --arg ca "$PKI/ca.pem" \
      '{device_id: $dev, groups: [$group], state_dir: $state, mqtt: {uri: $uri, keepalive_s: 5},
        esp: {device: $link, chip: "esp32s3", boot_timeout_s: 20, max_image_size: 16777216},
        download: {ca_file: $ca, connect_timeout_s: 5, stall_timeout_s: 10, max_attempts: 3}}' \
      >"$EF_TMP/$id/espfleetd.json"
    "$EF_BIN/espfleetd" --config "$EF_TMP/$id/espfleetd.json" >"$EF_TMP/$id/espfleetd.log" 2>&1 &
    track_pid $!
  done
  # every device online, each read on its exact topic (a broker such as
  # RabbitMQ gives retained messages to exact subscriptions only)
  for id in "${SWARM_IDS[@]}"; do
    mqtt_wait_for "$PREFIX/devices/$id/state" '.online == true' 60 >/dev/null || fail "$id did not come online"
  done
  CONTROLLER_CONFIG=$EF_TMP/controller.json
  jq -n --arg uri "mqtt://127.0.0.1:$MQTT_PORT" --arg db "$EF_TMP/controller.db" \
    '{mqtt: {uri: $uri, keepalive_s: 5}, controller: {database: $db, discovery_s: 2, tick_ms: 250},
      http: {listen: ""}} | '"${CONTROLLER_CONFIG_UPDATE:-.}" \
    >"$CONTROLLER_CONFIG"
  "$EF_BIN/espfleet-controller" --config "$CONTROLLER_CONFIG" --check-config >/dev/null ||
    fail "generated controller config is invalid"
}

swarm_flash() { echo "$EF_TMP/${SWARM_IDS[$1]}/flash.bin"; }

_ef_controllers=0
controller_start() {
  _ef_controllers=$((_ef_controllers + 1))
  CONTROLLER_LOG=$EF_TMP/controller.$_ef_controllers.log
  "$EF_BIN/espfleet-controller" --config "$CONTROLLER_CONFIG" --log-level debug >"$CONTROLLER_LOG" 2>&1 &
  CONTROLLER_PID=$!
  track_pid "$CONTROLLER_PID"
  at_exit "_fleet_dump_log '$CONTROLLER_LOG'"
}

controller_kill() {
  kill -"$1" "$CONTROLLER_PID" 2>/dev/null || true
  wait_for "! _ef_alive $CONTROLLER_PID" 10 || fail "espfleet-controller did not exit on SIG$1"
  wait "$CONTROLLER_PID" 2>/dev/null || true
}

rollout_publish() {
  local id
  id=$(jq -r .rollout_id <<<"$1")
  mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -r -t "$PREFIX/rollouts/$id" -m "$1"
}

rollout_wait() {
  mqtt_wait_for "$PREFIX/rollouts/$1/status" "$2" "${3:-60}"
}

# rollout_json ID JOB_JSON STEPS_JSON [POLICY_JSON] (target: the swarm's group)
rollout_json() {
  jq -cn --arg id "$1" --argjson job "$2" --argjson steps "$3" --argjson policy "${4:-{\}}" \
    --arg group "$SWARM_GROUP" \
    '{rollout_id: $id, job: $job, target: {groups: [$group]}, steps: $steps, policy: $policy}'
}
