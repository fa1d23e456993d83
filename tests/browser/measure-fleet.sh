#!/usr/bin/env bash
# The dashboard with a big fleet (a measurement, not a test; the figures of
# docs/dashboard.md): mosquitto, N emulated devices in one ef_swarm_emu
# process (tests/tools/ef_swarm_emu.c: espfleetd's MQTT contract, no
# download), espfleet-controller with its HTTP API on a free loopback port,
# and the page in headless Chromium (measure.js), which follows one rollout
# to the whole fleet (steps 1 %, 10 %, 50 %, 100 %) and reports what its
# live updates cost.
#
#   tests/browser/measure-fleet.sh [--devices 1000] [--job-ms 4000] [--out DIR]
#     --devices N   emulated devices
#     --job-ms MS   how long an emulated device takes for a job
#     --out DIR     where the JSON and the screenshot go
#                   (default build/test-artifacts/dashboard-measure)
# Needs the built programs (build/bin: espfleet-controller, ef_swarm_emu),
# mosquitto, jq, curl, chromium, node and tests/browser/node_modules.
. "$(cd "$(dirname "$0")/../.." && pwd)/tests/integration/lib.sh"
. "$EF_SRC/tests/integration/lib_mosquitto.sh"

n=1000
job_ms=4000
out=$EF_SRC/build/test-artifacts/dashboard-measure
while (($#)); do
  case "$1" in
    --devices) n=$2; shift ;;
    --job-ms) job_ms=$2; shift ;;
    --out) out=$2; shift ;;
    -h | --help) sed -n '2,/^\. /p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "measure-fleet.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
require_bin espfleet-controller ef_swarm_emu
require_cmd mosquitto mosquitto_sub jq curl node
CHROMIUM=${ESPFLEET_CHROMIUM:-$(command -v chromium || true)}
[ -x "$CHROMIUM" ] || skip "chromium is not installed"
[ -d "$EF_SRC/tests/browser/node_modules/puppeteer-core" ] || skip "run: (cd tests/browser && npm ci)"
ulimit -n "$(ulimit -Hn)"
mkdir -p "$out"

# mosquitto for a fleet (as tools/bench-fleet.sh): no connection limit, a
# deep queue for the controller's session
mkdir -p "$EF_TMP/mqtt"
port=$(free_port)
echo "$port" >"$EF_TMP/mqtt/mosquitto.port"
{
  echo "listener $port 127.0.0.1"
  echo "allow_anonymous true"
  echo "persistence false"
  echo "max_connections -1"
  echo "max_queued_messages 10000"
  echo "max_packet_size 65536"
  echo "log_dest file $EF_TMP/mqtt/mosquitto.log"
  if [[ $(id -u) -eq 0 ]]; then echo "user root"; fi
} >"$EF_TMP/mqtt/mosquitto.conf"
_mosq_launch "$EF_TMP/mqtt" || fail "mosquitto did not start"
at_exit "stop_mosquitto '$EF_TMP/mqtt'"
uri=mqtt://127.0.0.1:$MQTT_PORT

log "$n emulated devices (job: $job_ms ms)"
"$EF_BIN/ef_swarm_emu" --broker "$uri" --count "$n" --id-format 'emu-%04d' --group fleet --job-ms "$job_ms" \
  >"$EF_TMP/emu.out" 2>"$EF_TMP/emu.log" &
track_pid $!
wait_for "grep -q '^ready' '$EF_TMP/emu.out'" 120 || fail "the emulator's sessions did not all connect"

http_port=$(free_port)
jq -n --arg uri "$uri" --arg db "$EF_TMP/controller.db" --arg listen "127.0.0.1:$http_port" \
  '{mqtt: {uri: $uri, keepalive_s: 5}, controller: {database: $db, discovery_s: 2, tick_ms: 250},
    http: {listen: $listen}}' >"$EF_TMP/controller.json"
"$EF_BIN/espfleet-controller" --config "$EF_TMP/controller.json" >"$EF_TMP/controller.log" 2>&1 &
track_pid $!
url=http://127.0.0.1:$http_port/
wait_for "[ \"\$(curl -fsS ${url}api/v1/devices | jq '[.devices[] | select(.online)] | length')\" = $n ]" 60 ||
  fail "the controller's API does not list $n online devices"
sleep 3 # discovery_s

rollout=$(jq -cn '{rollout_id: "measure-1", job: {job_id: "measure-1", url: "https://updates.example/fw-2.0.0.bin",
  sha256: ("ab" * 32), size: 1048576, version: "2.0.0"}, target: {groups: ["fleet"]},
  steps: [{percent: 1}, {percent: 10}, {percent: 50}, {percent: 100}]}')
log "load average before: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) CPUs"
EF_CHROMIUM=$CHROMIUM EF_PROFILE=$EF_TMP/profile \
  node "$EF_SRC/tests/browser/measure.js" "$url" "$n" "$rollout" "$out/measure-$n.json" "$out/fleet-$n.png" ||
  fail "the measurement failed"
log "figures: $out/measure-$n.json; screenshot: $out/fleet-$n.png"
