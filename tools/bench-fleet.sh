#!/usr/bin/env bash
# espfleet fleet benchmark (a measurement, not a test): one staged rollout by
# espfleet-controller over 100 to 1,000 devices, on loopback. Builds
# build-bench, then for each size N, from scratch:
#   - mosquitto with its own config (max_connections -1, persistence off,
#     max_queued_messages 10000 (--broker-queue), $SYS every second);
#   - N-R emulated devices in one ef_swarm_emu process
#     (tests/tools/ef_swarm_emu.c: the device contract of docs/protocol.md,
#     no download, no flashing; a job takes --job-ms) and R real espfleetd +
#     espfleet-sim pairs that download a 64 KiB image from nginx over HTTPS;
#     all in group `bench`;
#   - espfleet-controller (discovery_s 2, tick_ms 250), then one rollout of
#     that image to the group, steps 1 %, 10 %, 50 %, 100 %.
# Measures publish -> status "completed", the controller's CPU time (during
# the rollout, from /proc/PID/stat) and peak RSS (VmHWM), the broker's
# messages per device (every PUBLISH on P/# seen by a subscriber during the
# rollout; and mosquitto's $SYS PUBLISH counters in and out), the emulator's
# CPU; checks that the status counts N succeeded devices and that every real
# simulator runs the new image (espfleet-sim --flash F --show). Prints a
# table at the end.
#
#   tools/bench-fleet.sh [--devices 100,300,1000] [--real 5] [--job-ms 2000]
#                        [--broker-queue 10000] [--timeout 600] [--keep]
#     --devices LIST  fleet sizes, comma-separated (each >= --real + 1)
#     --real R        real espfleetd + espfleet-sim pairs in every size
#     --job-ms MS     how long an emulated device takes for a job
#     --broker-queue N  mosquitto's max_queued_messages (its own default is 1000)
#     --timeout S     longest wait for one rollout to finish
#     --keep          keep the work folder (logs, databases) for a look
# Exit status 0 when every size completed with all devices succeeded, 1
# otherwise. Method and results: docs/performance.md, "Fleet rollouts".
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)

sizes=100,300,1000
real=5
job_ms=2000
timeout_s=600
queue=10000
keep=0
while (($#)); do
  case "$1" in
    --devices) sizes=$2; shift ;;
    --real) real=$2; shift ;;
    --job-ms) job_ms=$2; shift ;;
    --timeout) timeout_s=$2; shift ;;
    --broker-queue) queue=$2; shift ;;
    --keep) keep=1 ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
      exit 0
      ;;
    *) echo "bench-fleet.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
  shift
done
IFS=, read -ra sizes <<<"$sizes"
for n in "${sizes[@]}"; do
  if ! [[ $n =~ ^[0-9]+$ ]] || ((n <= real)); then
    echo "bench-fleet.sh: size '$n' must be a number above --real $real" >&2
    exit 2
  fi
done
[[ $real =~ ^[0-9]+$ && $job_ms =~ ^[0-9]+$ && $timeout_s =~ ^[0-9]+$ && $queue =~ ^[0-9]+$ ]] ||
  { echo "bench-fleet.sh: --real, --job-ms, --broker-queue and --timeout take numbers" >&2; exit 2; }

PREFIX=espfleet
GROUP=bench
STEPS='[{"percent":1},{"percent":10},{"percent":50},{"percent":100}]'
load0=$(cut -d' ' -f1-3 /proc/loadavg) # other work skews the figures: the header shows it

. "$here/tools/deps.sh"
# shellcheck disable=SC2119 # no extra packages
espfleet_install_deps

# 1,000 sessions are 1,000 sockets in the broker and in the emulator (which
# raises its own limit too); children inherit this one.
ulimit -n "$(ulimit -Hn)"

work=$(mktemp -d "${TMPDIR:-/tmp}/espfleet-bench-fleet.XXXXXX")
pids=()         # everything of the current size, stopped in reverse order
broker_dirs=()
cleanup() {
  local status=$? i
  set +e
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do stop_proc "${pids[i]}"; done
  for i in "${broker_dirs[@]}"; do stop_mosquitto "$i" >/dev/null 2>&1; done
  nginx_stop >/dev/null 2>&1
  if ((keep)); then echo "work folder kept: $work" >&2; else rm -rf "$work"; fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

. "$here/tests/integration/lib_mosquitto.sh"
. "$here/tests/integration/lib_nginx.sh"

die() {
  echo "bench-fleet.sh: $*" >&2
  exit 1
}
note() { echo "-- $*" >&2; }

build=$here/build-bench
echo "== building $build" >&2
if ! { cmake -S "$here" -B "$build" >"$work/build.log" 2>&1 &&
  cmake --build "$build" -j "$(nproc 2>/dev/null || echo 2)" \
    --target espfleet espfleetd espfleet-sim espfleet-controller ef_swarm_emu >>"$work/build.log" 2>&1; }; then
  tail -n 30 "$work/build.log" >&2
  die "build failed"
fi
bin=$build/bin

# stop_proc PID: SIGTERM, up to 10 s, then SIGKILL; reaps it.
stop_proc() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 200; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    [ "$(awk '/^State:/ {print $2}' "/proc/$pid/status" 2>/dev/null)" = Z ] && break
    sleep 0.05
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# wait_until 'CMD' TIMEOUT_S: evaluates CMD every 100 ms until it succeeds.
wait_until() {
  local deadline=$((SECONDS + $2))
  until eval "$1" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}

# cpu_s PID: utime + stime in seconds (/proc/PID/stat, after the comm field).
cpu_s() {
  local f
  f=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
  f=${f##*) }
  awk -v f="$f" -v hz="$(getconf CLK_TCK)" 'BEGIN { split(f, a, " "); printf "%.2f", (a[12] + a[13]) / hz }'
}
hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
now_s() { date +%s.%N; }
sub_s() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a - b }'; }
div() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b ? a / b : 0 }'; }

# Timestamps each line of stdin (the controller's log has none of its own).
stamp() { python3 -u -c 'import sys, time
for line in sys.stdin: sys.stdout.write("%.3f %s" % (time.time(), line))'; }

# ---- once: the web server and the image ------------------------------------
nginx_make_certs "$work/pki" >/dev/null || die "cannot make certificates"
CA=$work/pki/ca.pem
mkdir -p "$work/www"
IMG=$work/www/fleet-2.0.0.bin
"$bin/espfleet" mkimage --chip esp32s3 --version 2.0.0 --project bench --size 64K -o "$IMG" >/dev/null ||
  die "mkimage failed"
IMG_SHA=$(sha256sum "$IMG" | cut -d' ' -f1)
nginx_start --dir "$work/nginx" --root "$work/www" --certs "$work/pki" || die "nginx did not start"
JOB=$(jq -cn --arg url "https://127.0.0.1:$NGINX_PORT/fleet-2.0.0.bin" --arg sha "$IMG_SHA" \
  --argjson size "$(stat -c %s "$IMG")" \
  '{job_id: "fleet-2.0.0", url: $url, sha256: $sha, size: $size, version: "2.0.0", project: "bench",
    chip: "esp32s3"}')

# ---- one size ----------------------------------------------------------------
# broker_start DIR: mosquitto for a fleet; sets PORT.
broker_start() {
  local dir=$1
  mkdir -p "$dir"
  PORT=$(free_port) || die "no free port"
  echo "$PORT" >"$dir/mosquitto.port"
  {
    echo "listener $PORT 127.0.0.1"
    echo "allow_anonymous true"
    echo "persistence false"
    echo "max_connections -1"
    # The controller hears every device: a burst of states must not
    # overflow its queue at the broker (1000 by default, then dropped).
    echo "max_queued_messages $queue"
    echo "sys_interval 1"
    echo "max_packet_size 65536"
    echo "log_dest file $dir/mosquitto.log"
    echo "log_type error"
    echo "log_type warning"
    echo "log_type notice"
    if [[ $(id -u) -eq 0 ]]; then echo "user root"; fi
  } >"$dir/mosquitto.conf"
  broker_dirs+=("$dir")
  _mosq_launch "$dir" || die "mosquitto did not start"
}

# sys_counts: mosquitto's PUBLISH counters, "dropped received sent".
# (mosquitto 2.0.11 leaves retained PUBLISHes out of "received": the
# observer on P/# counts what comes in; "sent" counts every delivery.)
sys_counts() {
  # shellcheck disable=SC2016 # $SYS is the broker's topic, not a variable
  mosquitto_sub -h 127.0.0.1 -p "$PORT" -v -C 3 -W 5 -t '$SYS/broker/publish/messages/dropped' \
    -t '$SYS/broker/publish/messages/received' -t '$SYS/broker/publish/messages/sent' 2>/dev/null |
    sort | awk '{ printf "%s ", $2 }'
}

# real_start DIR I: espfleet-sim + espfleetd for device real-I.
real_start() {
  local dir=$1/real-$2 id link
  id=$(printf 'real-%02d' "$2")
  link=$dir/esp
  mkdir -p "$dir/state"
  "$bin/espfleet-sim" --link "$link" --flash "$dir/flash.bin" --erase-ms-per-4k 0 --reboot-delay-ms 200 \
    --slot-size 16777216 >"$dir/sim.log" 2>&1 &
  pids+=($!)
  wait_until "[ -e '$link' ]" 10 || die "espfleet-sim of $id did not publish $link"
  jq -n --arg dev "$id" --arg group "$GROUP" --arg state "$dir/state" --arg uri "mqtt://127.0.0.1:$PORT" \
    --arg link "$link" --arg ca "$CA" \
    '{device_id: $dev, groups: [$group], state_dir: $state, mqtt: {uri: $uri, keepalive_s: 5},
      esp: {device: $link, chip: "esp32s3", boot_timeout_s: 20, max_image_size: 16777216},
      download: {ca_file: $ca, connect_timeout_s: 5, stall_timeout_s: 10, max_attempts: 3}}' >"$dir/espfleetd.json"
  "$bin/espfleetd" --config "$dir/espfleetd.json" >"$dir/espfleetd.log" 2>&1 &
  pids+=($!)
}

# online_count: devices whose retained state says online.
online_count() {
  { mosquitto_sub -h 127.0.0.1 -p "$PORT" -t "$PREFIX/devices/+/state" --retained-only -W 5 2>/dev/null || true; } |
    jq -s '[.[] | select(.online == true)] | length'
}

rows=()
details=()
all_ok=1

# run_size N: everything for one fleet size; appends to rows and details.
run_size() {
  local n=$1 emu_n=$(($1 - real)) dir=$work/n$1 i
  local emu_pid ctl_pid status_pid traffic_pid db rollout=bench-$1
  mkdir -p "$dir"
  echo "== $n devices ($emu_n emulated, $real real)" >&2
  pids=()
  broker_start "$dir/mqtt"
  local uri=mqtt://127.0.0.1:$PORT

  "$bin/ef_swarm_emu" --broker "$uri" --prefix "$PREFIX" --count "$emu_n" --id-format 'emu-%04d' \
    --group "$GROUP" --job-ms "$job_ms" --log-level info >"$dir/emu.out" 2>"$dir/emu.log" &
  emu_pid=$!
  pids+=("$emu_pid")
  wait_until "grep -q '^ready' '$dir/emu.out'" 120 || die "the emulator's sessions did not all connect ($dir/emu.log)"
  for ((i = 0; i < real; i++)); do real_start "$dir" "$i"; done
  wait_until "[ \"\$(online_count)\" -ge $n ]" 60 || die "not all $n devices came online (see $dir)"
  note "$n devices online"

  db=$dir/controller.db
  jq -n --arg uri "$uri" --arg db "$db" \
    '{mqtt: {uri: $uri, keepalive_s: 5}, controller: {database: $db, discovery_s: 2, tick_ms: 250}}' \
    >"$dir/controller.json"
  "$bin/espfleet-controller" --config "$dir/controller.json" --check-config >/dev/null ||
    die "generated controller config is invalid"
  local t_ctl
  t_ctl=$(now_s)
  "$bin/espfleet-controller" --config "$dir/controller.json" 2> >(stamp >"$dir/controller.log") &
  ctl_pid=$!
  pids+=("$ctl_pid")
  # The controller knows the fleet from the retained states (its devices
  # table) and starts rollouts once discovery_s passed since it connected.
  wait_until "[ \"\$(sqlite3 '$db' 'select count(*) from devices where online = 1' 2>/dev/null)\" = $n ]" 60 ||
    die "the controller did not learn all $n devices (see $dir/controller.log)"
  wait_until "awk -v t=$t_ctl -v now=\"\$(now_s)\" 'BEGIN { exit !(now - t > 3) }'" 10
  local ctl_cpu_idle
  ctl_cpu_idle=$(cpu_s "$ctl_pid")

  # Observers, in place before the publish: the rollout's status, and every
  # PUBLISH on P/# (-R: not the retained ones delivered at subscribe). The
  # broker forwards in the order it takes messages in, so whatever the
  # controller heard before it said "completed" reaches the observer before
  # that status does too: the rollout's traffic is exactly the observer's
  # lines from the rollout document to the final status.
  mosquitto_sub -h 127.0.0.1 -p "$PORT" -q 1 -F '%U %p' -t "$PREFIX/rollouts/$rollout/status" \
    >"$dir/status.log" 2>/dev/null &
  status_pid=$!
  pids+=("$status_pid")
  mosquitto_sub -h 127.0.0.1 -p "$PORT" -q 1 -R -F '%U %t %p' -t "$PREFIX/#" >"$dir/traffic.log" 2>/dev/null &
  traffic_pid=$!
  pids+=("$traffic_pid")
  # The broker still sends the observer every retained message (-R only
  # hides them), and a $SYS snapshot may be up to 2 s old: let both settle.
  sleep 3
  local sys0 ctl0 emu0 mq0 t0 mq_pid
  mq_pid=$(cat "$dir/mqtt/mosquitto.pid")
  sys0=$(sys_counts)
  ctl0=$(cpu_s "$ctl_pid")
  emu0=$(cpu_s "$emu_pid")
  mq0=$(cpu_s "$mq_pid")

  local doc
  doc=$(jq -cn --arg id "$rollout" --argjson job "$JOB" --argjson steps "$STEPS" --arg group "$GROUP" \
    '{rollout_id: $id, job: $job, target: {groups: [$group]}, steps: $steps}')
  t0=$(now_s)
  mosquitto_pub -h 127.0.0.1 -p "$PORT" -q 1 -r -t "$PREFIX/rollouts/$rollout" -m "$doc"

  local final_line=""
  wait_until "grep -qE '\"state\":\"(completed|aborted|halted|invalid)\"' '$dir/status.log'" "$timeout_s" || true
  final_line=$(grep -E '"state":"(completed|aborted|halted|invalid)"' "$dir/status.log" | head -n1 || true)
  local ctl1 emu1 mq1 hwm
  ctl1=$(cpu_s "$ctl_pid")
  emu1=$(cpu_s "$emu_pid")
  mq1=$(cpu_s "$mq_pid")
  [ -n "$final_line" ] || {
    all_ok=0
    note "the rollout did not finish within $timeout_s s: $(tail -n1 "$dir/status.log")"
    final_line="$(now_s) $(tail -n1 "$dir/status.log" | cut -d' ' -f2-)"
  }
  local t1=${final_line%% *} final=${final_line#* }
  # mosquitto refreshes $SYS every sys_interval, counted in whole seconds
  # of its main loop: a snapshot may be up to 2 s old.
  sleep 3
  local sys1
  sys1=$(sys_counts)
  hwm=$(hwm_kib "$ctl_pid")

  # Checks: every device succeeded, and the real ESPs run the new image.
  local state succeeded devices real_ok=0
  state=$(jq -r .state <<<"$final")
  succeeded=$(jq -r .counts.succeeded <<<"$final")
  devices=$(jq -r .devices <<<"$final")
  for ((i = 0; i < real; i++)); do
    [ "$("$bin/espfleet-sim" --flash "$dir/real-$i/flash.bin" --show | jq -r '.running.sha256 // ""')" = "$IMG_SHA" ] &&
      real_ok=$((real_ok + 1))
  done
  local ok=yes
  if [ "$state" != completed ] || [ "$succeeded" != "$n" ] || [ "$devices" != "$n" ] || [ "$real_ok" != "$real" ]; then
    ok=NO
    all_ok=0
  fi

  # Traffic during the rollout (its document .. its final status), by kind of topic.
  awk -v doc="$PREFIX/rollouts/$rollout" -v st="$PREFIX/rollouts/$rollout/status" '
      $2 == doc && !on { on = 1 }
      on { print $2 }
      on && $2 == st && $0 ~ /"state":"(completed|aborted|halted|invalid)"/ { exit }' \
    "$dir/traffic.log" >"$dir/traffic.topics"
  local total by_kind
  total=$(wc -l <"$dir/traffic.topics")
  by_kind=$(awk -v p="$PREFIX/" '{
      t = substr($1, length(p) + 1); n = split(t, s, "/")
      k = s[1] == "devices" ? (s[3] == "jobs" ? "result" : s[3]) : s[1] == "rollouts" ? "rollout " (n > 2 ? s[3] : "doc") : s[1]
      c[k]++ } END { for (k in c) printf "%s %d, ", k, c[k] }' "$dir/traffic.topics")
  local d0 s0 d1 s1 rout rdrop
  read -r d0 _ s0 <<<"$sys0"
  read -r d1 _ s1 <<<"$sys1"
  rout=$((s1 - s0 - total)) # less what the observer itself was sent
  rdrop=$((d1 - d0))

  # Steps: when each one started (first status naming it), seconds after the publish.
  local steps
  steps=$(awk -v t0="$t0" '{ ts = $1; $1 = ""; if (match($0, /"step":-?[0-9]+/)) { s = substr($0, RSTART + 7, RLENGTH - 7);
      if (!(s in seen)) { seen[s] = 1; printf "step %d at %.2f s, ", s + 1, ts - t0 } } }' "$dir/status.log")

  # Stop the controller first (its peak RSS was read), then the emulator
  # (its counters), then the rest.
  stop_proc "$ctl_pid"
  stop_proc "$emu_pid"
  local emu_summary
  emu_summary=$(grep '^{' "$dir/emu.out" || echo '{}')
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do stop_proc "${pids[i]}"; done
  pids=()
  stop_mosquitto "$dir/mqtt"

  local warn_ctl drops_broker
  warn_ctl=$(grep -cE ' (warn|error): ' "$dir/controller.log" || true)
  drops_broker=$(grep -ci 'dropped' "$dir/mqtt/mosquitto.log" || true)

  local elapsed ctl_cpu emu_cpu
  elapsed=$(sub_s "$t1" "$t0")
  ctl_cpu=$(sub_s "$ctl1" "$ctl0")
  emu_cpu=$(sub_s "$emu1" "$emu0")
  rows+=("$(printf '%7s | %21s | %18s | %25s | %18s | %16s | %12s | %s' "$n" "$elapsed" "$ctl_cpu" \
    "$(awk -v k="$hwm" 'BEGIN { printf "%.1f", k / 1024 }')" "$(div "$total" "$n")" \
    "$(div "$rout" "$n")" "$emu_cpu" "$ok")")
  details+=("$n devices: $state, $succeeded of $devices succeeded, $real_ok of $real real ESPs run the new image
   publish -> $state: $elapsed s; $steps
   controller: CPU $ctl_cpu s during the rollout ($ctl_cpu_idle s from start to the publish), peak RSS $hwm KiB, $warn_ctl warn/error log lines
   broker: $total PUBLISH on $PREFIX/# during the rollout ($by_kind); \$SYS: $rout PUBLISH delivered (not counting the observer), $rdrop dropped; $drops_broker 'dropped' lines in its log; CPU $(sub_s "$mq1" "$mq0") s during the rollout
   emulator: CPU $emu_cpu s during the rollout; $emu_summary")
  note "$n devices: $state in $elapsed s, $succeeded/$n succeeded, controller CPU $ctl_cpu s"
}

for n in "${sizes[@]}"; do run_size "$n"; done

# ---- summary ---------------------------------------------------------------
echo
echo "espfleet fleet benchmark, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
echo "load average before the run: $load0; $(mosquitto -h 2>/dev/null | head -n1 | sed 's/ (build.*//')"
echo "rollout: steps 1 %, 10 %, 50 %, 100 %; controller discovery_s 2, tick_ms 250; emulated job $job_ms ms; $real real devices per size; mosquitto max_queued_messages $queue"
echo
for d in "${details[@]}"; do echo "$d"; done
echo
printf '%7s | %21s | %18s | %25s | %18s | %16s | %12s | %s\n' devices "publish->all final (s)" "controller CPU (s)" \
  "controller peak RSS (MiB)" "broker msgs/device" "deliveries/device" "emu CPU (s)" "all ok"
for r in "${rows[@]}"; do echo "$r"; done
((all_ok)) || exit 1
