# shellcheck shell=bash
# Mosquitto on loopback for integration tests. Source it (bash); standalone.
#
#   port=$(free_port)
#   start_mosquitto DIR [PORT]            plain listener on 127.0.0.1 (free port when omitted)
#   start_mosquitto_tls DIR CA CERT KEY [PORT]   TLS listener instead
#   stop_mosquitto DIR / crash_mosquitto DIR (SIGKILL)
#   restart_mosquitto DIR                 stop if running, start on the same port and config
#   mqtt_wait_for TOPIC JQ_FILTER TIMEOUT_S [PORT]  prints the first matching message
#
# start_mosquitto* set MQTT_PORT (and write DIR/mosquitto.port); mqtt_wait_for
# uses it by default. Everything the broker writes stays in DIR: config,
# pid, log (DIR/mosquitto.log, every packet logged, handy for assertions).
# Persistence is off: a restart loses retained messages and sessions, like a
# broker that crashed.

. "$(dirname "${BASH_SOURCE[0]}")/lib_net.sh"

_mosq_write_config() {
  local dir=$1 port=$2 ca=${3:-} cert=${4:-} key=${5:-}
  {
    echo "listener $port 127.0.0.1"
    echo "allow_anonymous true"
    echo "persistence false"
    echo "log_dest file $dir/mosquitto.log"
    echo "log_type all"
    echo "connection_messages true"
    # As config/mosquitto.conf.example: no packet above 64 KiB reaches a
    # client (the daemon's MQTT library would hold it whole, twice).
    echo "max_packet_size 65536"
    # As root, mosquitto drops to user 'mosquitto', which cannot write our
    # private (0700) directory; stay as the current user instead.
    if [[ $(id -u) -eq 0 ]]; then echo "user root"; fi
    if [[ -n "$ca" ]]; then
      echo "cafile $ca"
      echo "certfile $cert"
      echo "keyfile $key"
    fi
  } >"$dir/mosquitto.conf"
}

# Starts the broker from DIR/mosquitto.conf and waits for its port.
_mosq_launch() {
  local dir=$1 port
  port=$(cat "$dir/mosquitto.port")
  mosquitto -c "$dir/mosquitto.conf" >>"$dir/mosquitto.out" 2>&1 &
  echo $! >"$dir/mosquitto.pid"
  if ! wait_for_port "$port" 10 "$!"; then
    echo "mosquitto did not start on port $port:" >&2
    tail -n 20 "$dir/mosquitto.out" "$dir/mosquitto.log" >&2 2>/dev/null
    return 1
  fi
  MQTT_PORT=$port
}

start_mosquitto() {
  local dir=$1 port=${2:-}
  [[ -n "$port" ]] || port=$(free_port) || return 1
  mkdir -p "$dir"
  echo "$port" >"$dir/mosquitto.port"
  _mosq_write_config "$dir" "$port"
  _mosq_launch "$dir"
}

# start_mosquitto_tls DIR CA_FILE CERT_FILE KEY_FILE [PORT]
start_mosquitto_tls() {
  local dir=$1 ca=$2 cert=$3 key=$4 port=${5:-}
  [[ -n "$port" ]] || port=$(free_port) || return 1
  mkdir -p "$dir"
  echo "$port" >"$dir/mosquitto.port"
  _mosq_write_config "$dir" "$port" "$ca" "$cert" "$key"
  _mosq_launch "$dir"
}

# Stops the broker of DIR (SIGTERM, then SIGKILL after 5 s). Safe to repeat.
stop_mosquitto() {
  local dir=$1 pid i
  [[ -f "$dir/mosquitto.pid" ]] || return 0
  pid=$(cat "$dir/mosquitto.pid")
  rm -f "$dir/mosquitto.pid"
  kill "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  return 0
}

# Kills the broker of DIR with SIGKILL, like a crash: nothing is flushed, and
# packets still in its socket buffers are lost.
crash_mosquitto() {
  local dir=$1 pid i
  [[ -f "$dir/mosquitto.pid" ]] || return 0
  pid=$(cat "$dir/mosquitto.pid")
  rm -f "$dir/mosquitto.pid"
  kill -9 "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  wait "$pid" 2>/dev/null || true
  return 0
}

# Stops and starts the broker of DIR again on the same port and config.
restart_mosquitto() {
  local dir=$1
  stop_mosquitto "$dir"
  _mosq_launch "$dir"
}

# mqtt_wait_for TOPIC JQ_FILTER TIMEOUT_S [PORT]
# Subscribes to TOPIC and prints the first message (one line of JSON) for
# which `jq -e JQ_FILTER` holds; returns 1 when none came within TIMEOUT_S.
# Retained messages count.
mqtt_wait_for() {
  local topic=$1 filter=$2 timeout=$3 port=${4:-$MQTT_PORT} line fd pid rc=1
  exec {fd}< <(exec mosquitto_sub -h 127.0.0.1 -p "$port" -q 1 -t "$topic" -W "$timeout" 2>/dev/null)
  pid=$!
  while IFS= read -r -u "$fd" line; do
    if jq -e "$filter" >/dev/null 2>&1 <<<"$line"; then
      printf '%s\n' "$line"
      rc=0
      break
    fi
  done
  kill "$pid" 2>/dev/null || true
  exec {fd}<&-
  return $rc
}
