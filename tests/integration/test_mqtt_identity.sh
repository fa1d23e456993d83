#!/usr/bin/env bash
# Device identity by client certificate, end to end (docs/security.md,
# "Device identity"): mosquitto with require_certificate and
# use_identity_as_username, the shipped ACL keyed on that identity (the
# certificate's CN is the device_id), and espfleetd with mqtt.cert_file /
# key_file. A device with its own certificate comes online; one whose
# certificate names another device cannot publish as the device it claims
# to be, nor take over its session; a device without a certificate, with an
# expired one or with one from another CA is refused, says why in its log,
# and never comes online. A broker whose certificate does not name the host
# the device dialled is refused with that reason too.
. "${ESPFLEET_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/integration/lib.sh"
. "$EF_SRC/tests/integration/lib_net.sh"
. "$EF_SRC/tests/integration/lib_nginx.sh"
require_bin espfleetd
require_cmd mosquitto mosquitto_pub mosquitto_sub openssl jq

d=$EF_TMP
pki=$d/pki
nginx_make_certs "$pki" "fleet devices" >/dev/null || fail "cannot make the CA"
nginx_make_certs "$d/rogue" "rogue" >/dev/null || fail "cannot make the second CA"

# The device CA signs client certificates with `openssl ca`, which can also
# back-date one (an expired certificate).
mkdir -p "$d/ca-db"
: >"$d/ca-db/index.txt"
echo 1000 >"$d/ca-db/serial"
ca_conf() { # ca_conf CA_DIR: an `openssl ca` configuration for that CA
  cat <<EOF
[ca]
default_ca = fleet
[fleet]
database = $d/ca-db/index.txt
serial = $d/ca-db/serial
new_certs_dir = $d/ca-db
certificate = $1/ca.pem
private_key = $1/ca.key
default_md = sha256
policy = any
unique_subject = no
[any]
commonName = supplied
[client_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
EOF
}
# client_cert CN [CA_DIR] [START END]: $d/CN.pem and $d/CN.key, signed by
# CA_DIR (default the device CA), valid for 30 days or from START to END.
client_cert() {
  local cn=$1 ca=${2:-$pki} dates=()
  [ -n "${3:-}" ] && dates=(-startdate "$3" -enddate "$4")
  [ -z "${3:-}" ] && dates=(-days 30)
  ca_conf "$ca" >"$d/ca.cnf"
  openssl ecparam -name prime256v1 -genkey -noout -out "$d/$cn.key" 2>/dev/null
  openssl req -new -key "$d/$cn.key" -subj "/CN=$cn" -out "$d/$cn.csr" 2>/dev/null
  openssl ca -batch -notext -config "$d/ca.cnf" -extensions client_ext "${dates[@]}" \
    -in "$d/$cn.csr" -out "$d/$cn.pem" 2>"$d/$cn.err" || fail "openssl ca for $cn: $(cat "$d/$cn.err")"
  chmod 600 "$d/$cn.key"
}
client_cert console
client_cert dev-1
client_cert dev-2
client_cert dev-expired "$pki" 20200101000000Z 20200201000000Z
client_cert dev-rogue "$d/rogue"
openssl verify -CAfile "$pki/ca.pem" "$d/dev-expired.pem" >/dev/null 2>&1 && fail "the expired certificate verifies"

# The broker: TLS only, a client certificate required, its CN is the user
# name, the session is named after it, and the shipped ACL applies. A
# second listener on 127.0.0.2 lets a device dial an address the broker's
# certificate does not name.
port=$(free_port)
{
  for addr in 127.0.0.1 127.0.0.2; do
    echo "listener $port $addr"
    echo "cafile $pki/ca.pem"
    echo "certfile $pki/server.pem"
    echo "keyfile $pki/server.key"
    echo "require_certificate true"
    echo "use_identity_as_username true"
    echo "use_username_as_clientid true"
  done
  echo "acl_file $EF_SRC/config/mosquitto-acl.example"
  echo "allow_anonymous false"
  echo "max_packet_size 65536"
  echo "persistence false"
  echo "log_dest file $d/mosquitto.log"
  echo "log_type all"
  [ "$(id -u)" -eq 0 ] && echo "user root"
} >"$d/mosquitto.conf"
mosquitto -c "$d/mosquitto.conf" >"$d/mosquitto.out" 2>&1 &
track_pid $!
wait_for_port "$port" 10 $! || fail "mosquitto did not start: $(cat "$d/mosquitto.out" "$d/mosquitto.log" 2>/dev/null)"

# as_console CMD...: a mosquitto client with the console's certificate.
as_console() {
  "$@" -h 127.0.0.1 -p "$port" --cafile "$pki/ca.pem" --cert "$d/console.pem" --key "$d/console.key"
}
# state_of DEVICE TIMEOUT_S: its retained state document, or nothing.
state_of() {
  as_console mosquitto_sub -q 1 -t "espfleet/devices/$1/state" -C 1 -W "$2" 2>/dev/null || true
}

# daemon NAME DEVICE_ID [CERT_CN] [HOST]: starts espfleetd as DEVICE_ID with the
# certificate of CERT_CN (none when empty), dialling HOST (127.0.0.1).
daemon() {
  local name=$1 id=$2 cn=${3:-} host=${4:-127.0.0.1}
  mkdir -p "$d/$name"
  jq -n --arg id "$id" --arg uri "mqtts://$host:$port" --arg ca "$pki/ca.pem" --arg st "$d/$name" \
    --arg cert "${cn:+$d/$cn.pem}" --arg key "${cn:+$d/$cn.key}" --arg dev "$d/no-esp" \
    '{device_id: $id, state_dir: $st, esp: {device: $dev},
      mqtt: ({uri: $uri, ca_file: $ca, keepalive_s: 5}
             + (if $cert != "" then {cert_file: $cert, key_file: $key} else {} end))}' >"$d/$name.json"
  "$EF_BIN/espfleetd" --config "$d/$name.json" --check-config >/dev/null || fail "$name: config refused"
  "$EF_BIN/espfleetd" --config "$d/$name.json" --log-level debug >"$d/$name.log" 2>&1 &
  eval "${name//-/_}_pid=$!"
  track_pid $!
}

# ---- a device with its own certificate comes online ----
daemon good dev-1 dev-1
doc=$(as_console mosquitto_sub -q 1 -t espfleet/devices/dev-1/state -C 1 -W 10 2>/dev/null) ||
  fail "dev-1 did not come online: $(tail -n 5 "$d/good.log")"
assert_eq true "$(jq -r .online <<<"$doc")" "dev-1 online"
grep -q "connected to ssl://127.0.0.1:$port as 'dev-1'" "$d/good.log" || fail "dev-1 did not connect as dev-1"
pass "a device with its certificate (CN = device_id) comes online"

# ---- a device with another device's certificate ----
# dev-2's certificate in a daemon configured as dev-1: the broker names its
# session dev-2 (so dev-1's stays), and the ACL gives dev-1's topics only to
# CN=dev-1: its state is denied, and dev-1's jobs never reach it.
daemon impostor dev-1 dev-2
wait_for "grep -q \"Denied PUBLISH from dev-2 .*'espfleet/devices/dev-1/state'\" '$d/mosquitto.log'" 10 ||
  fail "the impostor's state was not denied: $(grep dev-2 "$d/mosquitto.log" | tail -n 5)"
as_console mosquitto_pub -q 1 -t espfleet/devices/dev-1/job -m '{"job_id":"probe-1"}'
wait_for "grep -q 'job probe-1' '$d/good.log'" 10 || fail "dev-1 did not get its job"
sleep 0.5
! grep -q "probe-1" "$d/impostor.log" || fail "the impostor received dev-1's job"
_ef_alive "$good_pid" || fail "dev-1 died"
! grep -q "closing old connection" "$d/mosquitto.log" || fail "the impostor took over a session"
! grep -q "lost the broker connection" "$d/good.log" || fail "dev-1 lost its connection to the impostor"
pass "a certificate for dev-2 cannot publish or read as dev-1, nor take over its session"

# ---- refused certificates: a clear reason in the log, never online ----
expect_refused() { # NAME DEVICE_ID CERT_CN REASON_REGEX WHAT
  local name=$1 id=$2 cn=$3 re=$4 what=$5
  daemon "$name" "$id" "$cn"
  wait_for "grep -qE '$re' '$d/$name.log'" 15 || fail "$what: no reason in the log: $(grep mqtt "$d/$name.log" | tail -n 3)"
  local pid_var=${name//-/_}_pid
  _ef_alive "${!pid_var}" || fail "$what: espfleetd exited"
  [ -z "$(state_of "$id" 1)" ] || fail "$what: $id came online"
  pass "$what: refused ($(grep -oE "$re" "$d/$name.log" | head -n 1)), not online"
}
expect_refused nocert dev-nocert "" "TLS: the broker refused the connection without a client certificate: [a-z0-9 ]*certificate required" \
  "no client certificate"
expect_refused expired dev-expired dev-expired "TLS: the broker refused the client certificate: [a-z0-9 ]*certificate expired" \
  "an expired certificate"
expect_refused rogue dev-rogue dev-rogue "TLS: the broker refused the client certificate: [a-z0-9 ]*unknown ca" \
  "a certificate from another CA"

# ---- the broker's certificate does not name the address dialled ----
daemon wrongname dev-2 dev-2 127.0.0.2
wait_for "grep -q 'IP address mismatch' '$d/wrongname.log'" 15 ||
  fail "no mismatch reason: $(grep mqtt "$d/wrongname.log" | tail -n 3)"
grep -qF "TLS: the broker's certificate: IP address mismatch (it is for IP:127.0.0.1, DNS:localhost, not 127.0.0.2)" \
  "$d/wrongname.log" || fail "the mismatch is not explained: $(grep mismatch "$d/wrongname.log" | head -n 1)"
[ -z "$(state_of dev-2 1)" ] || fail "dev-2 came online through a broker with the wrong name"
pass "a broker certificate for another name: refused, and the log says which names it has"
