# shellcheck shell=bash
# RabbitMQ with its MQTT plugin on loopback, for integration tests: a second
# broker next to lib_mosquitto.sh, with the same interface. Source it (bash);
# standalone (needs only lib_net.sh and the mosquitto clients).
#
#   rabbitmq_installed                    true when Debian's rabbitmq-server is there
#   start_rabbitmq DIR [PORT]             one node, MQTT on 127.0.0.1:PORT (free port when omitted)
#   stop_rabbitmq DIR                     clean stop (then SIGKILL), and its private epmd
#   crash_rabbitmq DIR                    SIGKILL, like a crash (its epmd stays)
#   restart_rabbitmq DIR                  stop if running, start again: same node, ports, data
#   rabbitmqctl_in DIR ARGS...            rabbitmqctl against the node of DIR
#   start_rabbitmq_cluster DIR [N]        N nodes (default 3) in DIR/n1..nN, one cluster
#   stop_rabbitmq_cluster DIR
#
# start_rabbitmq sets MQTT_PORT (and writes DIR/rabbitmq.ports), as
# start_mosquitto does, so mqtt_wait_for and the mosquitto clients work
# unchanged. start_rabbitmq_cluster sets MQTT_PORT to node 1's port and
# MQTT_PORTS to every node's, in order.
#
# Everything the node writes stays in DIR: configuration (rabbitmq.conf,
# enabled_plugins, an empty rabbitmq-env.conf so /etc/rabbitmq is not read),
# the Erlang cookie (HOME=DIR), the database (mnesia/, which survives a
# restart: retained messages, durable session queues), logs (log/), and the
# server's output (rabbitmq.out). It runs as the current user (root too),
# listens on 127.0.0.1 only (MQTT, AMQP, Erlang distribution) and registers
# with an epmd of its own on a private port, so it never meets a system
# RabbitMQ or another test's node. The node is named ef<mqtt-port>@localhost.
#
# Versions: written against Debian 12's rabbitmq-server 3.10.8 (MQTT 3.1.1
# plugin, before the 3.12 rewrite); the keys used exist in later versions too.
# A node takes about 10 s to start on this project's machines (docs/brokers.md).

. "$(dirname "${BASH_SOURCE[0]}")/lib_net.sh"

RABBITMQ_BIN_DIR=${RABBITMQ_BIN_DIR:-/usr/lib/rabbitmq/bin}
# How long a start may take before it counts as failed (seconds).
RABBITMQ_START_TIMEOUT=${RABBITMQ_START_TIMEOUT:-60}

rabbitmq_installed() {
  [[ -x "$RABBITMQ_BIN_DIR/rabbitmq-server" && -x "$RABBITMQ_BIN_DIR/rabbitmqctl" ]] &&
    command -v erl >/dev/null 2>&1 && command -v epmd >/dev/null 2>&1
}

# _rmq_free_ports N: prints N distinct free ports, one a line.
_rmq_free_ports() {
  local n=$1 got=() p i
  for ((i = 0; i < 50 && ${#got[@]} < n; i++)); do
    p=$(free_port) || return 1
    [[ " ${got[*]} " == *" $p "* ]] || got+=("$p")
  done
  ((${#got[@]} == n)) || return 1
  printf '%s\n' "${got[@]}"
}

# _rmq_env DIR: sets the array _rmq_envv to the environment (VAR=value words,
# for env(1)) that makes the server and its CLI tools use DIR's node. Reads
# DIR/rabbitmq.ports: MQTT AMQP DIST EPMD CTL_DIST.
_rmq_env() {
  local dir=$1 mqtt amqp dist epmd ctl
  read -r mqtt amqp dist epmd ctl <"$dir/rabbitmq.ports"
  _rmq_envv=(
    HOME="$dir"
    RABBITMQ_NODENAME="ef$mqtt@localhost"
    RABBITMQ_USE_LONGNAME=false
    RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
    RABBITMQ_NODE_PORT="$amqp"
    RABBITMQ_DIST_PORT="$dist"
    ERL_EPMD_PORT="$epmd"
    ERL_EPMD_ADDRESS=127.0.0.1
    RABBITMQ_CTL_DIST_PORT_MIN="$ctl"
    RABBITMQ_CTL_DIST_PORT_MAX="$((ctl + 10))"
    RABBITMQ_CONF_ENV_FILE="$dir/rabbitmq-env.conf"
    RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf"
    RABBITMQ_ADVANCED_CONFIG_FILE="$dir/advanced.config"
    RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins"
    RABBITMQ_MNESIA_BASE="$dir/mnesia"
    RABBITMQ_LOG_BASE="$dir/log"
    RABBITMQ_PID_FILE="$dir/beam.pid"
    # Distribution on loopback only (epmd is, by ERL_EPMD_ADDRESS).
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
  )
}

# _rmq_write_config DIR MQTT_PORT AMQP_PORT [CLUSTER_NODE...]
_rmq_write_config() {
  local dir=$1 mqtt=$2 amqp=$3 i=0 n
  shift 3
  mkdir -p "$dir/log" "$dir/mnesia"
  {
    echo "listeners.tcp.default = 127.0.0.1:$amqp"
    echo "mqtt.listeners.tcp.default = 127.0.0.1:$mqtt"
    # Anonymous MQTT connections log in as guest, who may connect from
    # loopback only (loopback_users, the default).
    echo "mqtt.allow_anonymous = true"
    echo "mqtt.default_user = guest"
    echo "mqtt.default_pass = guest"
    echo "mqtt.vhost = /"
    echo "mqtt.exchange = amq.topic"
    # As lib_mosquitto.sh's max_packet_size: no message above 64 KiB reaches
    # a subscriber (3.10 has no MQTT packet limit of its own; this one is
    # the core's, which refuses such a publish, docs/brokers.md).
    echo "max_message_size = 65536"
    echo "log.file = $dir/log/rabbit.log"
    echo "log.file.level = info"
    echo "log.console = false"
    for n in "$@"; do
      if ((i == 0)); then echo "cluster_formation.peer_discovery_backend = classic_config"; fi
      i=$((i + 1))
      echo "cluster_formation.classic_config.nodes.$i = $n"
    done
  } >"$dir/rabbitmq.conf"
  echo '[rabbitmq_mqtt].' >"$dir/enabled_plugins"
  : >"$dir/rabbitmq-env.conf"
  echo '[].' >"$dir/advanced.config"
}

# _rmq_cookie DIR [COOKIE]: writes DIR/.erlang.cookie (random unless given).
_rmq_cookie() {
  local dir=$1 cookie=${2:-}
  [[ -n "$cookie" ]] || cookie=$(head -c 15 /dev/urandom | od -An -tx1 | tr -d ' \n' | tr a-f A-F)
  rm -f "$dir/.erlang.cookie"
  (umask 077 && printf '%s' "$cookie" >"$dir/.erlang.cookie")
  chmod 400 "$dir/.erlang.cookie"
}

# _rmq_epmd DIR PORT: starts a private epmd on 127.0.0.1:PORT (pid in
# DIR/epmd.pid) unless one of ours runs there already.
_rmq_epmd() {
  local dir=$1 port=$2 pid
  if [[ -f "$dir/epmd.pid" ]] && kill -0 "$(cat "$dir/epmd.pid")" 2>/dev/null; then return 0; fi
  epmd -port "$port" -address 127.0.0.1 >>"$dir/epmd.out" 2>&1 &
  pid=$!
  echo "$pid" >"$dir/epmd.pid"
  wait_for_port "$port" 10 "$pid" || {
    echo "epmd did not start on port $port" >&2
    return 1
  }
}

# _rmq_ready PORT PID: true once PORT takes an MQTT connection and a QoS 1
# publish (acknowledged); false after RABBITMQ_START_TIMEOUT or when PID died.
_rmq_ready() {
  local port=$1 pid=$2 deadline=$((SECONDS + RABBITMQ_START_TIMEOUT))
  while ((SECONDS < deadline)); do
    if mosquitto_pub -h 127.0.0.1 -p "$port" -q 1 -i "ef-ready-$port-$$" \
      -t espfleet-probe/ready -m ready >/dev/null 2>&1; then
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.2
  done
  return 1
}

# _rmq_launch DIR [EPMD_DIR]: starts the node of DIR in the background (its
# epmd in EPMD_DIR, default DIR) without waiting. Sets _rmq_pid.
_rmq_launch() {
  local dir=$1 edir=${2:-$1} mqtt amqp dist epmd ctl
  read -r mqtt amqp dist epmd ctl <"$dir/rabbitmq.ports"
  _rmq_epmd "$edir" "$epmd" || return 1
  _rmq_env "$dir"
  rm -f "$dir/beam.pid"
  # setsid: the node and everything it spawns form their own group, which
  # stop_rabbitmq can kill whole if the clean stop fails.
  (cd "$dir" && exec setsid -w env "${_rmq_envv[@]}" "$RABBITMQ_BIN_DIR/rabbitmq-server") \
    >>"$dir/rabbitmq.out" 2>&1 </dev/null &
  _rmq_pid=$!
  echo "$_rmq_pid" >"$dir/rabbitmq.pid"
  date +%s.%N >"$dir/rabbitmq.started"
}

# _rmq_wait DIR: waits for the node of DIR to take MQTT; prints the start
# time on stderr. Sets MQTT_PORT.
_rmq_wait() {
  local dir=$1 mqtt pid t0 t1
  read -r mqtt _ <"$dir/rabbitmq.ports"
  pid=$(cat "$dir/rabbitmq.pid")
  if ! _rmq_ready "$mqtt" "$pid"; then
    echo "rabbitmq did not start (MQTT port $mqtt) within ${RABBITMQ_START_TIMEOUT}s:" >&2
    tail -n 20 "$dir/rabbitmq.out" "$dir/log/rabbit.log" >&2 2>/dev/null
    return 1
  fi
  t0=$(cat "$dir/rabbitmq.started")
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" -v p="$mqtt" 'BEGIN { printf "rabbitmq: node ef%s@localhost took MQTT after %.1f s\n", p, b - a }' |
    tee -a "$dir/rabbitmq.times" >&2
  MQTT_PORT=$mqtt
}

# start_rabbitmq DIR [PORT]
start_rabbitmq() {
  local dir=$1 port=${2:-} ports
  rabbitmq_installed || {
    echo "rabbitmq-server is not installed" >&2
    return 1
  }
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  ports=$(_rmq_free_ports 5) || return 1
  # shellcheck disable=SC2086
  set -- $ports
  [[ -n "$port" ]] || port=$1
  echo "$port $2 $3 $4 $5" >"$dir/rabbitmq.ports"
  _rmq_write_config "$dir" "$port" "$2"
  _rmq_cookie "$dir"
  _rmq_launch "$dir" && _rmq_wait "$dir"
}

# _rmq_stop_node DIR SIGNAL: stops the node of DIR (TERM: clean stop, up to
# 30 s; KILL: the VM at once, like a crash); then kills whatever is left of
# its process group. Never fails (callers run under set -e).
_rmq_stop_node() {
  local dir=$1 sig=$2 pid beam pgid i
  [[ -f "$dir/rabbitmq.pid" ]] || return 0
  pid=$(cat "$dir/rabbitmq.pid")
  beam=$(cat "$dir/beam.pid" 2>/dev/null || true)
  rm -f "$dir/rabbitmq.pid"
  # The group setsid made: the start script leads it (or, had setsid to
  # fork, its child does); the VM is in it.
  pgid=$pid
  if [[ -n "$beam" ]]; then pgid=$(ps -o pgid= -p "$beam" 2>/dev/null | tr -d ' ') || pgid=$pid; fi
  [[ -n "$pgid" ]] || pgid=$pid
  # Never our own group (had setsid not made one).
  [[ "$pgid" != "$(ps -o pgid= -p $$ | tr -d ' ')" ]] || pgid=$pid
  if [[ $sig == TERM ]]; then
    # The start script turns SIGTERM into a clean stop of the VM.
    kill -TERM "$pgid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 300; i++)); do
      kill -0 "$pid" 2>/dev/null || { [[ -n "$beam" ]] && kill -0 "$beam" 2>/dev/null; } || break
      sleep 0.1
    done
  fi
  # The VM first: the start script then exits by itself.
  [[ -z "$beam" ]] || kill -KILL "$beam" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL -- "-$pgid" 2>/dev/null || true
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
  # What is left of the group: erl_child_setup, inet_gethost, the disk
  # monitor's shell (they end with the VM, mostly).
  if [[ "$pgid" == "$pid" ]]; then kill -KILL -- "-$pgid" 2>/dev/null || true; fi
  # Gone before we return (a restart takes the same ports again).
  for ((i = 0; i < 50; i++)); do
    if [[ -z "$beam" ]] || ! kill -0 "$beam" 2>/dev/null; then break; fi
    sleep 0.1
  done
  return 0
}

_rmq_stop_epmd() {
  local dir=$1 pid
  [[ -f "$dir/epmd.pid" ]] || return 0
  pid=$(cat "$dir/epmd.pid")
  rm -f "$dir/epmd.pid"
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  return 0
}

# stop_rabbitmq DIR: clean stop (SIGKILL after 30 s) and its epmd. Safe to repeat.
stop_rabbitmq() {
  _rmq_stop_node "$1" TERM
  _rmq_stop_epmd "$1"
}

# crash_rabbitmq DIR: SIGKILL, nothing flushed. The epmd stays for a restart.
crash_rabbitmq() { _rmq_stop_node "$1" KILL; }

# restart_rabbitmq DIR: stops the node if it runs and starts it again on the
# same ports, name and data (it recovers its database: durable queues of
# persistent MQTT sessions and the retained messages it had written).
restart_rabbitmq() {
  local dir=$1
  dir=$(cd "$dir" && pwd)
  _rmq_stop_node "$dir" TERM
  _rmq_launch "$dir" && _rmq_wait "$dir"
}

# rabbitmqctl_in DIR ARGS...: rabbitmqctl against DIR's node (same cookie,
# epmd and node name), e.g. rabbitmqctl_in "$dir" list_queues name messages
rabbitmqctl_in() {
  local dir=$1
  shift
  _rmq_env "$dir"
  env "${_rmq_envv[@]}" "$RABBITMQ_BIN_DIR/rabbitmqctl" -q "$@"
}

# start_rabbitmq_cluster DIR [N]: N nodes (default 3) on loopback in
# DIR/n1..nN, one cluster formed at boot (classic_config peer discovery),
# sharing one private epmd (in DIR) and one cookie. Node 1 starts first, the
# others then together. Checks that every node lists N running nodes. Sets
# MQTT_PORT (node 1) and MQTT_PORTS (all).
start_rabbitmq_cluster() {
  local dir=$1 n=${2:-3} i ports cookie epmd nodes=() d
  rabbitmq_installed || {
    echo "rabbitmq-server is not installed" >&2
    return 1
  }
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  cookie=$(head -c 15 /dev/urandom | od -An -tx1 | tr -d ' \n' | tr a-f A-F)
  epmd=$(free_port) || return 1
  MQTT_PORTS=()
  for ((i = 1; i <= n; i++)); do
    d=$dir/n$i
    mkdir -p "$d"
    ports=$(_rmq_free_ports 4) || return 1
    # shellcheck disable=SC2086
    set -- $ports
    echo "$1 $2 $3 $epmd $4" >"$d/rabbitmq.ports"
    MQTT_PORTS+=("$1")
    nodes+=("ef$1@localhost")
  done
  for ((i = 1; i <= n; i++)); do
    d=$dir/n$i
    _rmq_write_config "$d" "${MQTT_PORTS[i - 1]}" "$(awk '{print $2}' "$d/rabbitmq.ports")" "${nodes[@]}"
    _rmq_cookie "$d" "$cookie"
  done
  _rmq_launch "$dir/n1" "$dir" && _rmq_wait "$dir/n1" || return 1
  for ((i = 2; i <= n; i++)); do _rmq_launch "$dir/n$i" "$dir" || return 1; done
  for ((i = 2; i <= n; i++)); do _rmq_wait "$dir/n$i" || return 1; done
  for ((i = 1; i <= n; i++)); do
    d=$dir/n$i
    local running
    running=$(rabbitmqctl_in "$d" cluster_status --formatter json | jq '.running_nodes | length') || running=0
    if [[ "$running" != "$n" ]]; then
      echo "rabbitmq cluster: node $i sees $running running nodes, want $n" >&2
      rabbitmqctl_in "$d" cluster_status >&2
      return 1
    fi
  done
  # shellcheck disable=SC2034 # for the caller, as start_rabbitmq's
  MQTT_PORT=${MQTT_PORTS[0]}
}

# stop_rabbitmq_cluster DIR: stops every node of DIR, then the shared epmd.
stop_rabbitmq_cluster() {
  local dir=$1 d
  for d in "$dir"/n*; do
    [[ -d "$d" ]] && _rmq_stop_node "$d" TERM
  done
  _rmq_stop_epmd "$dir"
}
