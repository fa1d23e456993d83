#!/usr/bin/env bash
# The shipped config/mosquitto-acl.example, loaded as it is into a real
# mosquitto with password logins: a device reads its own and its groups' job
# topics only, and cannot forge another device's state; the console can
# publish jobs and read states.
. "${ESPFLEET_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/integration/lib.sh"
. "$EF_SRC/tests/integration/lib_net.sh"
require_cmd mosquitto mosquitto_pub mosquitto_sub mosquitto_passwd

d=$EF_TMP
for u in console gw-0042 gw-0043; do
  mosquitto_passwd -b $([ -f "$d/passwd" ] || echo -c) "$d/passwd" "$u" "pw-$u" 2>/dev/null
done
chmod 0600 "$d/passwd"
port=$(free_port)
{
  echo "listener $port 127.0.0.1"
  echo "allow_anonymous false"
  echo "password_file $d/passwd"
  echo "acl_file $EF_SRC/config/mosquitto-acl.example"
  echo "persistence false"
  [ "$(id -u)" -eq 0 ] && echo "user root"
} >"$d/mosquitto.conf"
mosquitto -c "$d/mosquitto.conf" >"$d/mosquitto.log" 2>&1 &
track_pid $!
wait_for_port "$port" 10 $! || fail "mosquitto did not start: $(cat "$d/mosquitto.log")"

as() { local u=$1; shift; "$@" -h 127.0.0.1 -p "$port" -u "$u" -P "pw-$u"; }

# gw-0042 listens to everything it may try to read.
as gw-0042 mosquitto_sub -v -q 1 -t 'espfleet/devices/#' -t 'espfleet/groups/#' >"$d/gw42.txt" 2>&1 &
track_pid $!
# the console listens to every state
as console mosquitto_sub -v -q 1 -t 'espfleet/devices/+/state' >"$d/console.txt" 2>&1 &
track_pid $!
sleep 0.5

for t in devices/gw-0042/job devices/gw-0043/job groups/site-berlin/job groups/hw-rev-c/job groups/other/job \
  devices/gw-0042/cancel devices/gw-0043/cancel; do
  as console mosquitto_pub -q 1 -t "espfleet/$t" -m "{\"to\":\"$t\"}"
done
as gw-0043 mosquitto_pub -q 1 -t espfleet/devices/gw-0042/state -m '{"forged":true}'
as gw-0043 mosquitto_pub -q 1 -t espfleet/devices/gw-0043/state -m '{"own":true}'
sleep 1

for t in devices/gw-0042/job groups/site-berlin/job groups/hw-rev-c/job devices/gw-0042/cancel; do
  grep -q "^espfleet/$t " "$d/gw42.txt" || fail "gw-0042 did not receive espfleet/$t: $(cat "$d/gw42.txt")"
done
for t in devices/gw-0043/job groups/other/job devices/gw-0043/cancel devices/gw-0043/state; do
  ! grep -q "^espfleet/$t " "$d/gw42.txt" || fail "gw-0042 received espfleet/$t"
done
pass "a device reads its own and its groups' jobs and cancels, nothing else"

grep -q '^espfleet/devices/gw-0043/state {"own":true}' "$d/console.txt" || fail "console did not get gw-0043's own state"
! grep -q forged "$d/console.txt" || fail "gw-0043 could publish gw-0042's state"
pass "a device writes its own state only; the console reads states"
