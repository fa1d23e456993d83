#!/usr/bin/env bash
# espfleet in one command: builds everything, then runs a whole fleet update
# on this machine, on loopback only:
#   - a throwaway CA and server certificate,
#   - mosquitto (MQTT broker) and nginx serving a generated image over HTTPS,
#   - espfleet-sim (a simulated ESP32-S3 running ESP-Hosted) and espfleetd,
#   - espfleet-controller with its dashboard on a free loopback port (the
#     URL is printed: the device, its update live, and its history),
#   - a job published with mosquitto_pub; state and progress printed as they
#     arrive. Exits 0 when the update succeeded; stops everything it started.
#   tools/quickstart.sh [--keep] [--dashboard]
#     --keep       leaves the work folder for a look
#     --dashboard  keeps everything running after the update, for the
#                  dashboard, until Ctrl-C (docs/dashboard.md)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/tools/deps.sh"
espfleet_install_deps

keep=0
dashboard=0
for arg in "$@"; do
  case $arg in
  --keep) keep=1 ;;
  --dashboard) dashboard=1 ;;
  *)
    echo "quickstart.sh: unknown option $arg (--keep, --dashboard)" >&2
    exit 2
    ;;
  esac
done
build=$here/build
# the same settings as tools/test.sh, so that neither rebuilds everything
cmake -S "$here" -B "$build" -DESPFLEET_SANITIZE=OFF -DESPFLEET_WERROR=ON >/dev/null
cmake --build "$build" -j "$(nproc 2>/dev/null || echo 2)" >/dev/null
bin=$build/bin

work=$(mktemp -d /tmp/espfleet-quickstart.XXXXXX)
pids=()
cleanup() {
  local status=$? p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  nginx_stop >/dev/null 2>&1 || true
  stop_mosquitto "$work/mqtt" >/dev/null 2>&1 || true
  wait 2>/dev/null || true
  if [ "$keep" = 1 ]; then echo "work folder kept: $work"; else rm -rf "$work"; fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
. "$here/tests/integration/lib_mosquitto.sh"
. "$here/tests/integration/lib_nginx.sh"

step() { printf '\n== %s\n' "$*"; }

step "certificates, broker and web server (loopback only)"
mkdir -p "$work/www" "$work/mqtt" "$work/state"
nginx_make_certs "$work/pki" >/dev/null
start_mosquitto "$work/mqtt"
nginx_start --dir "$work/nginx" --root "$work/www" --certs "$work/pki"
echo "mosquitto on 127.0.0.1:$MQTT_PORT, nginx (HTTPS) on 127.0.0.1:$NGINX_PORT"

step "simulated ESP32-S3 at $work/esp0"
"$bin/espfleet-sim" --link "$work/esp0" --flash "$work/flash.bin" --chip esp32s3 \
  --reboot-delay-ms 1000 --flash-kbps 400 >"$work/sim.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do [ -e "$work/esp0" ] && break; sleep 0.1; done
"$bin/espfleet" info --device "$work/esp0"

step "a new firmware image"
"$bin/espfleet" mkimage --chip esp32s3 --version 2.1.0 --project quickstart-demo --size 1M \
  -o "$work/www/fw-2.1.0.bin"
"$bin/espfleet" inspect "$work/www/fw-2.1.0.bin" | head -n 8

step "a release key, and the image's signed manifest"
"$bin/espfleet" keygen "$work/rel-demo"
"$bin/espfleet" sign "$work/www/fw-2.1.0.bin" --key "$work/rel-demo.key" --key-id rel-demo \
  -o "$work/fw-2.1.0.manifest.json"
jq -c . "$work/fw-2.1.0.manifest.json"

step "espfleetd for device demo-1"
cat >"$work/espfleetd.json" <<JSON
{
  "device_id": "demo-1",
  "groups": ["quickstart"],
  "state_dir": "$work/state",
  "mqtt": {"uri": "mqtt://127.0.0.1:$MQTT_PORT"},
  "esp": {"device": "$work/esp0", "chip": "esp32s3", "boot_timeout_s": 30},
  "download": {"ca_file": "$work/pki/ca.pem"},
  "security": {"release_keys": [{"id": "rel-demo", "public_key_file": "$work/rel-demo.pub"}]}
}
JSON
"$bin/espfleetd" --config "$work/espfleetd.json" --check-config
"$bin/espfleetd" --config "$work/espfleetd.json" 2>"$work/espfleetd.log" &
pids+=($!)

step "espfleet-controller and its dashboard (loopback, no login)"
http_port=$(free_port)
jq -n --arg uri "mqtt://127.0.0.1:$MQTT_PORT" --arg db "$work/controller.db" --arg listen "127.0.0.1:$http_port" \
  '{mqtt: {uri: $uri}, controller: {database: $db, discovery_s: 1}, http: {listen: $listen}}' >"$work/controller.json"
"$bin/espfleet-controller" --config "$work/controller.json" 2>"$work/controller.log" &
pids+=($!)
dashboard_url=http://127.0.0.1:$http_port/
for _ in $(seq 100); do curl -fsS -o /dev/null "${dashboard_url}api/v1/whoami" 2>/dev/null && break; sleep 0.1; done
echo "dashboard: $dashboard_url (device demo-1: ${dashboard_url}#/devices/demo-1)"

# Print state and progress documents as they arrive.
mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -v -t 'espfleet/devices/demo-1/#' >"$work/messages.log" 2>/dev/null &
pids+=($!)
tail -n +1 -f "$work/messages.log" 2>/dev/null | sed -u 's/^/  /' &
pids+=($!)
sleep 1

step "publishing the signed job"
sha=$(sha256sum "$work/www/fw-2.1.0.bin" | cut -d' ' -f1)
job=$("$bin/espfleet-console" job "$work/www/fw-2.1.0.bin" --print --job-id quickstart-1 \
  --url "https://127.0.0.1:$NGINX_PORT/fw-2.1.0.bin" --manifest "$work/fw-2.1.0.manifest.json")
echo "$job"
mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -t espfleet/devices/demo-1/job -m "$job"

final=""
for _ in $(seq 600); do
  final=$(grep '/state ' "$work/messages.log" | grep '"quickstart-1"' |
    grep -oE '"state":"(succeeded|failed|rejected|canceled|skipped)"' | tail -n1 || true)
  [ -n "$final" ] && break
  sleep 0.1
done
sleep 0.3
step "result"
"$bin/espfleet-sim" --flash "$work/flash.bin" --show | jq -c '{boot_slot, running: (.running | {version, project, sha256})}'
result=1
if [ "$final" = '"state":"succeeded"' ]; then
  echo "update succeeded: the simulated ESP runs 2.1.0 (sha256 $sha)"
  result=0
else
  echo "update did not succeed (${final:-no final state}); espfleetd log:" >&2
  tail -n 20 "$work/espfleetd.log" >&2
fi
echo "dashboard: $dashboard_url"
if [ "$dashboard" = 1 ]; then
  # Everything stays up for the page (the device, the finished update and
  # its history) until Ctrl-C; the exit status stays the update's.
  echo "everything keeps running for the dashboard: press Ctrl-C to stop"
  trap 'exit $result' INT TERM
  while :; do sleep 1; done
fi
exit "$result"
