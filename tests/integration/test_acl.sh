#!/usr/bin/env bash
# The shipped config/mosquitto.conf.example and config/mosquitto-acl.example,
# loaded into a real mosquitto with only ports, addresses and paths replaced
# (TLS with a throwaway CA, password logins): a device reads its own and its
# groups' job topics only, and cannot forge another device's state; the
# console can publish jobs and read states; a device that logs in with
# another device's client id does not knock it offline (finding 6), and a
# publish above the size limit never reaches a device.
. "${ESPFLEET_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/integration/lib.sh"
. "$EF_SRC/tests/integration/lib_net.sh"
. "$EF_SRC/tests/integration/lib_nginx.sh"
require_cmd mosquitto mosquitto_pub mosquitto_sub mosquitto_passwd openssl

d=$EF_TMP
for u in console gw-0042 gw-0043; do
  mosquitto_passwd -b $([ -f "$d/passwd" ] || echo -c) "$d/passwd" "$u" "pw-$u" 2>/dev/null
done
chmod 0600 "$d/passwd"
nginx_make_certs "$d/pki" >/dev/null || fail "cannot make certificates"
dport=$(free_port)
oport=$(free_port)
# The example as shipped; each replacement must hit, so the file tested is
# the file shipped.
conf=$(cat "$EF_SRC/config/mosquitto.conf.example")
replace() {
  [[ $conf == *"$1"* ]] || fail "config/mosquitto.conf.example has no '$1' any more: update this test"
  conf=${conf//"$1"/"$2"}
}
replace "password_file /etc/mosquitto/espfleet.passwd" "password_file $d/passwd"
replace "acl_file /etc/mosquitto/espfleet.acl" "acl_file $EF_SRC/config/mosquitto-acl.example"
replace "listener 8883" "listener $dport 127.0.0.1"
replace "listener 8884 10.0.0.1" "listener $oport 127.0.0.1"
replace "/etc/mosquitto/certs/ca.pem" "$d/pki/ca.pem"
replace "/etc/mosquitto/certs/broker.pem" "$d/pki/server.pem"
replace "/etc/mosquitto/certs/broker.key" "$d/pki/server.key"
{
  echo "$conf"
  echo "persistence false"
  echo "log_dest file $d/mosquitto.log"
  echo "log_type all"
  [ "$(id -u)" -eq 0 ] && echo "user root"
} >"$d/mosquitto.conf"
mosquitto -c "$d/mosquitto.conf" >"$d/mosquitto.out" 2>&1 &
track_pid $!
wait_for_port "$dport" 10 $! && wait_for_port "$oport" 10 $! ||
  fail "mosquitto did not start: $(cat "$d/mosquitto.out" "$d/mosquitto.log" 2>/dev/null)"

# as USER PORT CMD...: runs a mosquitto client as USER on PORT over TLS.
as() {
  local u=$1 port=$2
  shift 2
  "$@" -h 127.0.0.1 -p "$port" --cafile "$d/pki/ca.pem" -u "$u" -P "pw-$u"
}

# gw-0042 listens to everything it may try to read, with its own client id.
as gw-0042 "$dport" mosquitto_sub -i gw-0042 -v -q 1 -t 'espfleet/devices/#' -t 'espfleet/groups/#' \
  >"$d/gw42.txt" 2>&1 &
gw42=$!
track_pid $gw42
# the console listens to every state
as console "$oport" mosquitto_sub -v -q 1 -t 'espfleet/devices/+/state' >"$d/console.txt" 2>&1 &
track_pid $!
sleep 0.5

for t in devices/gw-0042/job devices/gw-0043/job groups/site-berlin/job groups/hw-rev-c/job groups/other/job \
  devices/gw-0042/cancel devices/gw-0043/cancel; do
  as console "$oport" mosquitto_pub -q 1 -t "espfleet/$t" -m "{\"to\":\"$t\"}"
done
as gw-0043 "$dport" mosquitto_pub -q 1 -t espfleet/devices/gw-0042/state -m '{"forged":true}'
as gw-0043 "$dport" mosquitto_pub -q 1 -t espfleet/devices/gw-0043/state -m '{"own":true}'
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

# ---- finding 6: gw-0043 logs in with gw-0042's client id, three times ----
for i in 1 2 3; do
  as gw-0043 "$dport" mosquitto_sub -i gw-0042 -q 1 -t espfleet/devices/gw-0043/job -W 1 >/dev/null 2>&1 || true
done
as console "$oport" mosquitto_pub -q 1 -t espfleet/devices/gw-0042/job -m '{"after":"takeover attempts"}'
sleep 1
_ef_alive "$gw42" || fail "gw-0042 was disconnected by a device using its client id: $(cat "$d/gw42.txt")"
grep -q '^espfleet/devices/gw-0042/job {"after":"takeover attempts"}' "$d/gw42.txt" ||
  fail "gw-0042 missed the job published while another device used its client id"
! grep -q "already connected, closing old connection" "$d/mosquitto.log" ||
  fail "the broker closed a session for another client's login: $(grep 'closing old' "$d/mosquitto.log")"
pass "a device using another device's client id does not knock it offline, and its jobs arrive"

# ---- the size limit: a publish above 64 KiB never reaches a device ----
head -c $((1024 * 1024)) /dev/zero | tr '\0' x >"$d/big.txt"
as console "$oport" mosquitto_pub -q 1 -t espfleet/devices/gw-0042/job -f "$d/big.txt" >/dev/null 2>&1 || true
as console "$oport" mosquitto_pub -q 1 -t espfleet/devices/gw-0042/job -m '{"after":"big"}'
sleep 1
grep -q '^espfleet/devices/gw-0042/job {"after":"big"}' "$d/gw42.txt" || fail "the device lost its session"
! grep -q 'xxxxxxxxxx' "$d/gw42.txt" || fail "a 1 MiB publish reached the device"
pass "a 1 MiB publish is refused by the broker (max_packet_size), the device gets the next job"
