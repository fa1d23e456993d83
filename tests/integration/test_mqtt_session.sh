#!/usr/bin/env bash
# The MQTT session against a real mosquitto on loopback, driven by
# mqtt_probe: round trip, last will, start with the broker down, QoS 1
# delivery across a broker crash with messages in flight, resubscription
# after the restart, TLS and option errors.
set -euo pipefail

BIN=${ESPFLEET_BIN_DIR:?ESPFLEET_BIN_DIR is not set}
PROBE=$BIN/mqtt_probe
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
for tool in mosquitto mosquitto_pub mosquitto_sub jq openssl; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool not installed"; exit 77; }
done
[[ -x "$PROBE" ]] || { echo "SKIP: $PROBE not built"; exit 77; }
# shellcheck source=tests/integration/lib_mosquitto.sh
source "$HERE/lib_mosquitto.sh"

WORK=$(mktemp -d)
BROKERS=()
PROBES=()
cleanup() {
  local pid dir
  for pid in "${PROBES[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  for dir in "${BROKERS[@]}"; do stop_mosquitto "$dir"; done
  rm -rf "$WORK"
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*" >&2
  local f
  for f in "$WORK"/*.out "$WORK"/*.err; do
    [[ -s "$f" ]] && { echo "--- $f" >&2; tail -n 30 "$f" >&2; }
  done
  exit 1
}

# probe NAME ARGS...: runs mqtt_probe in the background; output in $WORK/NAME.{out,err}.
probe() {
  local name=$1
  shift
  "$PROBE" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  PROBES+=("$!")
  LAST_PID=$!
}

# wait_line FILE REGEX TIMEOUT_S
wait_line() {
  local file=$1 re=$2 t=$3 i
  for ((i = 0; i < t * 10; i++)); do
    grep -Eq -- "$re" "$file" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# wait_exit PID TIMEOUT_S: the process's exit code, 124 (after SIGKILL) on timeout.
wait_exit() {
  local pid=$1 t=$2 i rc=0
  for ((i = 0; i < t * 10; i++)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      wait "$pid" || rc=$?
      return $rc
    fi
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null || true
  return 124
}

# distinct_mids LOG CLIENT TOPIC: how many distinct QoS 1 message ids the
# broker received from CLIENT on TOPIC (re-sends after a crash count once).
distinct_mids() {
  grep -oE "Received PUBLISH from $2 \(d[01], q1, r[01], m[0-9]+, '$3'" "$1" |
    sed -E 's/.*m([0-9]+),.*/\1/' | sort -u | wc -l
}

B=$WORK/broker
BROKERS+=("$B")
start_mosquitto "$B" || fail "mosquitto did not start"
P=$MQTT_PORT
URI=mqtt://127.0.0.1:$P

echo "== 1. subscribe + publish round trip"
probe rt --uri "$URI" --id rt --sub 'rt/#' --wait-connected --pub-topic rt/x --count 5 --rate 50 \
  --expect 5 --timeout 20
rc=0; wait_exit "$LAST_PID" 25 || rc=$?
[[ $rc -eq 0 ]] || fail "round-trip probe exited $rc"
seqs=$(grep '^recv rt/x ' "$WORK/rt.out" | cut -d' ' -f3- | jq -s -c 'map(.seq) | sort')
[[ "$seqs" == "[1,2,3,4,5]" ]] || fail "round trip delivered $seqs"
grep -q '^connected reconnect=0$' "$WORK/rt.out" || fail "no on_connected(reconnect=false)"

probe in --uri "$URI" --id in --sub rt/cmd --until hello --timeout 20
wait_line "$WORK/in.out" '^connected reconnect=0$' 10 || fail "listener did not connect"
mosquitto_pub -h 127.0.0.1 -p "$P" -q 1 -t rt/cmd -m hello
rc=0; wait_exit "$LAST_PID" 15 || rc=$?
[[ $rc -eq 0 ]] || fail "listener did not receive the external message (rc $rc)"
grep -q '^recv rt/cmd hello$' "$WORK/in.out" || fail "listener printed no message"

echo "== 2. last will: sent (retained) on SIGKILL, not sent on a clean stop"
probe wk --uri "$URI" --id will-kill --will-topic w/kill --will-payload offline --will-retain \
  --run-for 60 --timeout 60
wait_line "$WORK/wk.out" '^connected' 10 || fail "will probe did not connect"
kill -9 "$LAST_PID"
wait "$LAST_PID" 2>/dev/null || true
will=$(mosquitto_sub -h 127.0.0.1 -p "$P" -t w/kill -C 1 -W 5 || true)
[[ "$will" == "offline" ]] || fail "last will after SIGKILL: '$will'"

probe wc --uri "$URI" --id will-clean --will-topic w/clean --will-payload offline --will-retain \
  --wait-connected --run-for 0.5 --timeout 15
rc=0; wait_exit "$LAST_PID" 20 || rc=$?
[[ $rc -eq 0 ]] || fail "clean-stop probe exited $rc"
will=$(mosquitto_sub -h 127.0.0.1 -p "$P" -t w/clean -C 1 -W 2 2>/dev/null || true)
[[ -z "$will" ]] || fail "last will published after a clean stop: '$will'"

echo "== 3. broker down at start: connects later, subscribes, delivers the buffer"
B3=$WORK/broker3
BROKERS+=("$B3")
P3=$(free_port)
probe late --uri "mqtt://127.0.0.1:$P3" --id late --sub late/cmd --pub-topic late/buf --count 5 \
  --rate 20 --retain-last --until hello --reconnect-min-ms 200 --reconnect-max-ms 1000 --timeout 40
LATE=$LAST_PID
wait_line "$WORK/late.out" '^published 5$' 10 || fail "publishing blocked while the broker is down"
sleep 1
kill -0 "$LATE" 2>/dev/null || fail "probe gave up while the broker was down"
grep -q '^connected' "$WORK/late.out" && fail "connected to a broker that is not running"
start_mosquitto "$B3" "$P3" || fail "second mosquitto did not start"
wait_line "$WORK/late.out" '^connected reconnect=0$' 10 || fail "no connection after the broker came up"
wait_line "$WORK/late.out" '^flushed$' 10 || fail "buffered messages not flushed"
mosquitto_pub -h 127.0.0.1 -p "$P3" -q 1 -t late/cmd -m hello
rc=0; wait_exit "$LATE" 15 || rc=$?
[[ $rc -eq 0 ]] || fail "late probe exited $rc (subscription missing?)"
last=$(mosquitto_sub -h 127.0.0.1 -p "$P3" -t late/buf -C 1 -W 5 || true)
[[ "$(jq -r .seq <<<"$last")" == 5 ]] || fail "retained last buffered message: '$last'"
n=$(distinct_mids "$B3/mosquitto.log" late late/buf)
[[ $n -eq 5 ]] || fail "broker received $n of 5 buffered messages"
stop_mosquitto "$B3"

echo "== 4+5. broker crash with QoS 1 messages in flight; resubscription"
probe sub --uri "$URI" --id sub4 --sub s4/stream --sub s4/cmd --until bye --reconnect-min-ms 300 \
  --reconnect-max-ms 1000 --timeout 60
SUB=$LAST_PID
wait_line "$WORK/sub.out" '^connected reconnect=0$' 10 || fail "subscriber did not connect"
# The publisher waits 4 s before reconnecting, so that a fresh subscriber is
# on the new broker before anything is re-sent.
probe pub --uri "$URI" --id pub4 --wait-connected --pub-topic s4/stream --count 40 --rate 10 \
  --retain-last --reconnect-min-ms 4000 --flush-ms 30000 --timeout 60
PUB=$LAST_PID
wait_line "$WORK/pub.out" '^connected reconnect=0$' 10 || fail "publisher did not connect"
sleep 1
# Freeze the broker so the publisher's next PUBLISHes sit unacknowledged in
# the socket, then crash it: those are lost with the broker and only the
# client's own re-send can deliver them.
kill -STOP "$(cat "$B/mosquitto.pid")"
sleep 1
crash_mosquitto "$B"
sleep 0.5
restart_mosquitto "$B" || fail "mosquitto did not restart"
mosquitto_sub -h 127.0.0.1 -p "$P" -q 1 -t s4/stream -W 40 >"$WORK/fresh.msgs" 2>/dev/null &
FRESH=$!
PROBES+=("$FRESH")
rc=0; wait_exit "$PUB" 45 || rc=$?
[[ $rc -eq 0 ]] || fail "publisher exited $rc"
grep -q '^connected reconnect=1$' "$WORK/pub.out" || fail "publisher never reported a reconnection"
grep -Eq 're-sent [1-9][0-9]* unacknowledged' "$WORK/pub.err" ||
  fail "no message was in flight at the crash: the test did not exercise the re-send"
sleep 0.5
kill "$FRESH" 2>/dev/null || true
seen=$( { grep '^recv s4/stream ' "$WORK/sub.out" | cut -d' ' -f3-; cat "$WORK/fresh.msgs"; } |
  jq -s -c 'map(.seq) | unique | length')
[[ "$seen" == 40 ]] || fail "subscribers saw $seen of 40 QoS 1 messages across the crash"
last=$(mosquitto_sub -h 127.0.0.1 -p "$P" -t s4/stream -C 1 -W 5 || true)
[[ "$(jq -r .seq <<<"$last")" == 40 ]] || fail "retained final message after the restart: '$last'"

wait_line "$WORK/sub.out" '^connected reconnect=1$' 20 || fail "subscriber did not reconnect"
grep -q '^disconnected ' "$WORK/sub.out" || fail "on_disconnected not called"
mosquitto_pub -h 127.0.0.1 -p "$P" -q 1 -t s4/cmd -m bye
rc=0; wait_exit "$SUB" 15 || rc=$?
[[ $rc -eq 0 ]] || fail "subscriber missed a message after the restart (rc $rc): no resubscription"

echo "== 6. TLS: verified server, host name check, wrong CA"
T=$WORK/tls
mkdir -p "$T"
(
  cd "$T"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=espfleet test CA" -keyout ca.key -out ca.pem
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=localhost" \
    -keyout server.key -out server.csr
  printf 'subjectAltName=DNS:localhost\n' >san.ext
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
    -extfile san.ext -out server.pem
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=other CA" -keyout other.key -out other.pem
) >"$WORK/openssl.err" 2>&1 || fail "openssl could not make test certificates"
BT=$WORK/broker_tls
BROKERS+=("$BT")
start_mosquitto_tls "$BT" "$T/ca.pem" "$T/server.pem" "$T/server.key" || fail "TLS mosquitto did not start"
PT=$MQTT_PORT

probe tls --uri "mqtts://localhost:$PT" --id tls --ca "$T/ca.pem" --sub 'tls/#' --wait-connected \
  --pub-topic tls/x --count 1 --expect 1 --timeout 20
rc=0; wait_exit "$LAST_PID" 25 || rc=$?
[[ $rc -eq 0 ]] || fail "TLS round trip exited $rc"

probe tlsname --uri "mqtts://127.0.0.1:$PT" --id tlsname --ca "$T/ca.pem" --wait-connected --timeout 3
rc=0; wait_exit "$LAST_PID" 10 || rc=$?
[[ $rc -eq 3 ]] || fail "connected although the certificate does not name 127.0.0.1 (rc $rc)"
grep -q 'cannot connect' "$WORK/tlsname.err" || fail "no connect failure logged for the host name mismatch"

probe tlsca --uri "mqtts://localhost:$PT" --id tlsca --ca "$T/other.pem" --wait-connected --timeout 3
rc=0; wait_exit "$LAST_PID" 10 || rc=$?
[[ $rc -eq 3 ]] || fail "connected with a CA that did not sign the server (rc $rc)"

echo "== 7. invalid options fail at start"
for args in "--uri http://127.0.0.1:$P" "--uri mqtt://127.0.0.1:99999" "--uri mqtt://:1883" \
  "--uri mqtts://localhost:$PT --ca $WORK/missing.pem" "--uri mqtt://127.0.0.1:$P --ca $T/ca.pem" \
  "--uri mqtt://127.0.0.1:$P --id ''"; do
  rc=0
  eval "timeout 10 \"$PROBE\" $args --timeout 5" >/dev/null 2>"$WORK/opt.err" || rc=$?
  [[ $rc -eq 2 ]] || fail "options '$args' gave $rc, want 2"
  grep -q 'mqtt' "$WORK/opt.err" || fail "options '$args': no error message"
done

echo "PASS"
