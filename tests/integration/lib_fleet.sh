# shellcheck shell=bash
# The whole fleet on loopback for espfleetd's integration tests: mosquitto,
# nginx over HTTPS with a throwaway CA, the ESP simulator and espfleetd.
# Source after lib.sh:
#   . "$ESPFLEET_SOURCE_DIR/tests/integration/lib.sh"
#   . "$ESPFLEET_SOURCE_DIR/tests/integration/lib_fleet.sh"
#   fleet_start [SIM_ARGS...]      everything up; device id $DEV
#   serve IMAGE NAME               put an image on the web server
#   job_json ID NAME [JQ_UPDATE]   a job document for a served image
#   publish_job JSON [--retain]    on the device's job topic
#   wait_state JQ_CONDITION [TIMEOUT_S]  prints the state document once the
#                                  condition holds (retained state counts)
#   start_daemon / kill_daemon SIGNAL / daemon_alive
#   journal_job current|waiting    job_id of that journal record
#   broker_kill / broker_restart   crash / restart the broker (same port)
# EF_BROKER=mosquitto (default) or rabbitmq picks the broker (docs/brokers.md).
. "$EF_SRC/tests/integration/lib_mosquitto.sh"
. "$EF_SRC/tests/integration/lib_rabbitmq.sh"
. "$EF_SRC/tests/integration/lib_nginx.sh"

DEV=${DEV:-dev-1}
PREFIX=espfleet
STATE_TOPIC=$PREFIX/devices/$DEV/state
PROGRESS_TOPIC=$PREFIX/devices/$DEV/progress
JOB_TOPIC=$PREFIX/devices/$DEV/job
CANCEL_TOPIC=$PREFIX/devices/$DEV/cancel

# fleet_start [SIM_ARGS...]: starts broker, web server, simulator and daemon.
# FLEET_CONFIG_UPDATE, when set, is a jq filter applied to the daemon's
# config (e.g. '.esp.window = 4'); FLEET_MQTT_TLS=1 connects the daemon to
# the broker over TLS (mqtts://); NGINX_RATE (bytes/s) slows the web server
# and NGINX_SERVER_CONF adds directives to its server block (e.g.
# 'max_ranges 0;'). Sets LINK, FLASH, WWW, PKI, URL_BASE, CONFIG, DAEMON_PID, DAEMON_LOG.
fleet_start() {
  require_bin espfleet espfleet-sim espfleetd
  require_cmd mosquitto_pub mosquitto_sub nginx openssl jq
  LINK=$EF_TMP/esp0
  FLASH=$EF_TMP/flash.bin
  WWW=$EF_TMP/www
  PKI=$EF_TMP/pki
  mkdir -p "$WWW" "$EF_TMP/mqtt" "$EF_TMP/state"
  nginx_make_certs "$PKI" >/dev/null
  [ "${FLEET_MQTT_TLS:-0}" != 1 ] || [ "${EF_BROKER:-mosquitto}" = mosquitto ] ||
    skip "FLEET_MQTT_TLS: the TLS tests run on mosquitto only"
  broker_start "$EF_TMP/mqtt"
  local uri=mqtt://127.0.0.1:$MQTT_PORT
  if [ "${FLEET_MQTT_TLS:-0}" = 1 ]; then
    # The daemon talks TLS on a second listener; the test's own tools stay
    # on the plain one. The server certificate is the web server's (127.0.0.1).
    MQTT_TLS_PORT=$(free_port)
    printf 'listener %s 127.0.0.1\ncafile %s\ncertfile %s\nkeyfile %s\n' \
      "$MQTT_TLS_PORT" "$PKI/ca.pem" "$PKI/server.pem" "$PKI/server.key" >>"$EF_TMP/mqtt/mosquitto.conf"
    restart_mosquitto "$EF_TMP/mqtt"
    uri=mqtts://127.0.0.1:$MQTT_TLS_PORT
  fi
  nginx_start --dir "$EF_TMP/nginx" --root "$WWW" --certs "$PKI" ${NGINX_RATE:+--rate "$NGINX_RATE"} \
    ${NGINX_SERVER_CONF:+--server-conf "$NGINX_SERVER_CONF"}
  at_exit "nginx_stop"
  URL_BASE=https://127.0.0.1:$NGINX_PORT
  start_sim "$LINK" "$FLASH" --reboot-delay-ms 200 --slot-size 16777216 "$@"
  CONFIG=$EF_TMP/espfleetd.json
  jq -n --arg dev "$DEV" --arg state "$EF_TMP/state" --arg uri "$uri" \
    --arg link "$LINK" --arg ca "$PKI/ca.pem" \
    '{device_id: $dev, groups: ["canary"], state_dir: $state,
      mqtt: ({uri: $uri, keepalive_s: 5} + (if ($uri | startswith("mqtts")) then {ca_file: $ca} else {} end)),
      esp: {device: $link, chip: "esp32s3", boot_timeout_s: 20, max_image_size: 16777216},
      download: {ca_file: $ca, connect_timeout_s: 5, stall_timeout_s: 10, max_attempts: 3}}
     | '"${FLEET_CONFIG_UPDATE:-.}" >"$CONFIG"
  "$EF_BIN/espfleetd" --config "$CONFIG" --check-config >/dev/null || fail "generated config is invalid"
  start_daemon
}

# broker_start DIR: the broker EF_BROKER names on loopback (sets MQTT_PORT),
# stopped when the test exits. Skips when that broker is not installed.
broker_start() {
  case ${EF_BROKER:=mosquitto} in
  mosquitto)
    require_cmd mosquitto
    start_mosquitto "$1" || fail "mosquitto did not start"
    at_exit "stop_mosquitto '$1'"
    ;;
  rabbitmq)
    rabbitmq_installed || skip "rabbitmq-server is not installed"
    at_exit "stop_rabbitmq '$1'"
    start_rabbitmq "$1" || fail "rabbitmq did not start"
    ;;
  *) fail "EF_BROKER: unknown broker '$EF_BROKER' (mosquitto or rabbitmq)" ;;
  esac
}

# broker_kill: kills the broker with SIGKILL, like a crash.
# broker_restart: starts it again on the same port (stops it first if it runs).
broker_kill() {
  case ${EF_BROKER:-mosquitto} in
  rabbitmq) crash_rabbitmq "$EF_TMP/mqtt" ;;
  *) crash_mosquitto "$EF_TMP/mqtt" ;;
  esac
}
broker_restart() {
  case ${EF_BROKER:-mosquitto} in
  rabbitmq) restart_rabbitmq "$EF_TMP/mqtt" ;;
  *) restart_mosquitto "$EF_TMP/mqtt" ;;
  esac
}

# start_daemon: starts espfleetd on $CONFIG and waits for its online state.
_ef_daemons=0
start_daemon() {
  _ef_daemons=$((_ef_daemons + 1))
  DAEMON_LOG=$EF_TMP/espfleetd.$_ef_daemons.log
  # ESPFLEET_DAEMON_WRAPPER runs the daemon under a tool, e.g. valgrind.
  ${ESPFLEET_DAEMON_WRAPPER:-} "$EF_BIN/espfleetd" --config "$CONFIG" --log-level debug >"$DAEMON_LOG" 2>&1 &
  DAEMON_PID=$!
  track_pid "$DAEMON_PID"
  at_exit "_fleet_dump_log '$DAEMON_LOG'"
  wait_state '.online == true' 10 >/dev/null || fail "espfleetd did not come online"
}

# Prints a daemon log when the test failed, for the ctest output. Runs as an
# at_exit hook, inside lib.sh's cleanup, whose local `status` is the test's
# exit status.
_fleet_dump_log() {
  [ "${status:-0}" != 0 ] || return 0
  echo "---- $1" >&2
  tail -n 40 "$1" >&2
}

# kill_daemon SIGNAL: sends SIGNAL to espfleetd and waits for it to exit.
kill_daemon() {
  kill -"$1" "$DAEMON_PID" 2>/dev/null || true
  wait_for "! _ef_alive $DAEMON_PID" 10 || fail "espfleetd did not exit on SIG$1"
  wait "$DAEMON_PID" 2>/dev/null || true
}

# journal_job current|waiting: the job_id of that record of the daemon's
# journal ("" when there is none). The journal has one record per line
# (docs/protocol.md, "Crash safety"); a job is kept as its document's text.
journal_job() {
  jq -r --arg kind "$1" 'select(.kind == $kind) | .data.job | fromjson | .job_id' \
    "$EF_TMP/state/journal.json" 2>/dev/null || true
}

# daemon_alive: true while espfleetd runs.
daemon_alive() { _ef_alive "$DAEMON_PID"; }

# serve IMAGE NAME: copies IMAGE to the web root as NAME.
serve() { cp "$1" "$WWW/$2"; }

# job_json ID NAME [JQ_UPDATE]: prints a job document for the served NAME
# (url, sha256, size and version read from the file), changed by JQ_UPDATE.
job_json() {
  local id=$1 name=$2 update=${3:-.} file=$WWW/$2 version
  version=$(espfleet inspect "$file" --json 2>/dev/null | jq -r '.app_desc.version // .app.version // empty')
  jq -cn --arg id "$id" --arg url "$URL_BASE/$name" --arg sha "$(sha256_of "$file")" \
    --argjson size "$(stat -c %s "$file")" --arg version "$version" \
    '{job_id: $id, url: $url, sha256: $sha, size: $size, version: $version}' | jq -c "$update"
}

# publish_job JSON [TOPIC]: publishes a job document (QoS 1, not retained).
publish_job() {
  mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -t "${2:-$JOB_TOPIC}" -m "$1"
}

# publish_cancel JOB_ID
publish_cancel() {
  mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -t "$CANCEL_TOPIC" -m "{\"job_id\":\"$1\"}"
}

# wait_state JQ_CONDITION [TIMEOUT_S]: prints the first state document for
# which the condition holds (the retained one counts).
wait_state() {
  mqtt_wait_for "$STATE_TOPIC" "$1" "${2:-30}"
}

# wait_final JOB_ID [TIMEOUT_S]: prints the job's final state document.
wait_final() {
  wait_state ".job_id == \"$1\" and (.state | IN(\"succeeded\",\"failed\",\"rejected\",\"canceled\",\"skipped\"))" "${2:-30}"
}
