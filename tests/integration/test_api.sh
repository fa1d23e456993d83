#!/usr/bin/env bash
# espfleet-controller's HTTP API (docs/api.md) over a swarm of 3 devices:
# logins (operator, viewer, none, a wrong token), the checks before any
# action (403 for a viewer, 415 without a JSON body, 403 csrf from another
# origin), the devices with their counts and filters, a device string with
# HTML and control characters coming back escaped in valid JSON, a rollout
# created from a signed manifest that completes on every device while an
# event stream sees devices, progress and the rollout, the job's results and
# a device's history, pause/resume/abort/delete of a second rollout, cancels
# on the broker, the embedded page, --check-config on a bad tokens file, and
# the same API over HTTPS.
. "${ESPFLEET_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/integration/lib.sh"
. "$EF_SRC/tests/integration/lib_fleet.sh"
. "$EF_SRC/tests/integration/lib_swarm.sh"
require_cmd curl jq mosquitto_pub mosquitto_sub openssl sha256sum

N=3
SWARM_GROUP=api
HTTP_PORT=$(free_port)
OP=$(openssl rand -hex 24)
VIEW=$(openssl rand -hex 24)
TOKENS=$EF_TMP/tokens
{
  echo "# role name sha256(token)"
  echo "operator alice $(printf %s "$OP" | sha256sum | cut -d' ' -f1)"
  echo "viewer bob $(printf %s "$VIEW" | sha256sum | cut -d' ' -f1)   # read only"
} >"$TOKENS"
CONTROLLER_CONFIG_UPDATE=".http.listen = \"127.0.0.1:$HTTP_PORT\" | .http.tokens_file = \"$TOKENS\""
swarm_start "$N" "$SWARM_GROUP"
controller_start
ORIGIN=http://127.0.0.1:$HTTP_PORT
API=$ORIGIN/api/v1
BODY=$EF_TMP/body
HEADERS=$EF_TMP/headers
CURL_BASE=()

# call METHOD PATH [CURL_ARGS...]: prints the status; the body is in $BODY,
# the headers in $HEADERS. The token is $TOKEN (the operator's by default,
# "" for none); POST and DELETE send JSON unless told otherwise.
call() {
  local method=$1 path=$2 auth=()
  shift 2
  [ -n "${TOKEN-$OP}" ] && auth=(-H "Authorization: Bearer ${TOKEN-$OP}")
  curl -s -o "$BODY" -D "$HEADERS" -w '%{http_code}' -X "$method" "${auth[@]}" "${CURL_BASE[@]}" "$@" "${BASE_URL:-$API}$path"
}
json() { call "$@" -H 'Content-Type: application/json'; }
# expect CODE ERROR_CODE WHAT -- METHOD PATH [ARGS...]
expect() {
  local want=$1 code=$2 what=$3 got
  shift 4
  got=$(call "$@")
  assert_eq "$want" "$got" "$what: status ($(cat "$BODY"))"
  [ -z "$code" ] || assert_eq "$code" "$(jq -r .error.code "$BODY")" "$what: error code"
}

wait_for "curl -sf -H 'Authorization: Bearer $OP' $API/whoami" 10 || fail "the API does not answer on $API"
grep -q "dashboard: http://127.0.0.1:$HTTP_PORT/" "$CONTROLLER_LOG" || fail "no dashboard URL in the log"

# ---- logins ----
assert_eq 200 "$(call GET /whoami)" "whoami"
assert_eq '{"name":"alice","role":"operator"}' "$(jq -c . "$BODY")" "whoami of the operator"
TOKEN=$VIEW call GET /whoami >/dev/null
assert_eq '{"name":"bob","role":"viewer"}' "$(jq -c . "$BODY")" "whoami of the viewer"
TOKEN="" expect 401 unauthorized "no token" -- GET /devices
grep -qi '^WWW-Authenticate: Bearer' "$HEADERS" || fail "401 without WWW-Authenticate: Bearer"
TOKEN=nope expect 401 unauthorized "a wrong token" -- GET /whoami
for h in "Content-Security-Policy: default-src 'self'; frame-ancestors 'none'" "X-Content-Type-Options: nosniff" \
  "Referrer-Policy: no-referrer" "Cache-Control: no-store"; do
  grep -qiF "$h" "$HEADERS" || fail "missing header: $h"
done
pass "whoami for an operator and a viewer; 401 without a token or with a wrong one; the security headers"

# ---- the checks before an action ----
TOKEN=$VIEW expect 403 forbidden "a viewer's POST" -- POST /rollouts -H 'Content-Type: application/json' -d '{}'
expect 415 unsupported_media_type "a POST without JSON" -- POST /rollouts -d '{}'
expect 415 unsupported_media_type "a DELETE without JSON" -- DELETE /rollouts/r-none
expect 403 csrf "a POST from another origin" -- POST /rollouts -H 'Content-Type: application/json' \
  -H 'Origin: http://evil.example' -d '{}'
expect 400 bad_request "a POST from the page's own origin (no rollout_id)" -- POST /rollouts \
  -H 'Content-Type: application/json' -H "Origin: $ORIGIN" -d '{}'
expect 405 method_not_allowed "PUT" -- PUT /rollouts
grep -qi '^Allow: GET, POST' "$HEADERS" || fail "405 without Allow"
expect 404 not_found "an unknown path" -- GET /nothing
head -c 300000 /dev/zero | tr '\0' a >"$EF_TMP/big"
expect 413 payload_too_large "a 300 KB body" -- POST /rollouts -H 'Content-Type: application/json' \
  --data-binary "@$EF_TMP/big"
pass "403 for a viewer, 415 without JSON, 403 csrf from another origin, 400, 404, 405, 413"

# ---- devices ----
wait_for "call GET /devices >/dev/null && jq -e '.total == $N and .counts.idle == $N' $BODY" 20 ||
  fail "the devices are not all there and idle: $(cat "$BODY")"
assert_eq "sw-00 sw-01 sw-02" "$(jq -r '[.devices[].device_id] | join(" ")' "$BODY")" "devices, sorted"
jq -e '.devices[0] | .online == true and .groups == ["api"] and (.fw_version | type) == "string" and
  .error == null and .progress == null and (.updated | test("^[0-9]{4}-"))' "$BODY" >/dev/null ||
  fail "a device: $(jq -c '.devices[0]' "$BODY")"
filter() { call GET "/devices?$1" >/dev/null && jq -r "[.devices[].device_id] | join(\" \")" "$BODY"; }
assert_eq "sw-01" "$(filter q=W-01)" "?q= (case-insensitive)"
assert_eq "sw-00 sw-01 sw-02" "$(filter group=api)" "?group=api"
assert_eq "" "$(filter group=other)" "?group=other"
assert_eq "$N" "$(jq .total "$BODY")" "total before the filters"
assert_eq "sw-00 sw-01 sw-02" "$(filter state=idle)" "?state=idle"
assert_eq "" "$(filter state=downloading)" "?state=downloading"
pass "GET /devices: $N devices with their counts; q, group and state filters"

# A device's strings are the device's: HTML stays text (the page inserts
# text only) and control characters come back escaped.
mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -r -t "$PREFIX/devices/fake-xss/state" \
  -m '{"device_id": "fake-xss", "online": true, "state": "idle", "fw_version": "<img src=x onerror=alert(1)>\u001b[2J\u0007", "groups": []}'
wait_for "[ \$(call GET /devices/fake-xss) = 200 ]" 10 || fail "the fake device is not known"
jq -e . "$BODY" >/dev/null || fail "GET /devices/fake-xss is not JSON: $(cat -v "$BODY")"
assert_eq '<img src=x onerror=alert(1)>\x1b[2J\x07' "$(jq -r .fw_version "$BODY")" "escaped fw_version"
! grep -q $'[\x01-\x1f]' "$BODY" || fail "control characters in the answer: $(cat -v "$BODY")"
call GET /devices >/dev/null
jq -e . "$BODY" >/dev/null || fail "GET /devices is not JSON"
mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -r -t "$PREFIX/devices/fake-xss/state" -n
pass "a device's HTML and control characters come back as escaped text in valid JSON"

# ---- a rollout from a signed manifest, watched by event streams ----
curl -s -N -H "Authorization: Bearer $VIEW" "$API/events" >"$EF_TMP/events" 2>/dev/null &
EVENTS_PID=$!
track_pid "$EVENTS_PID"
curl -s -N "$API/events?access_token=$VIEW" >"$EF_TMP/events2" 2>/dev/null &
track_pid $!
wait_for "[ -s $EF_TMP/events ] && [ -s $EF_TMP/events2 ]" 5 || fail "the event streams did not start"
assert_eq "retry: 2000" "$(head -n 1 "$EF_TMP/events")" "the stream's first line"

mkdir -p "$EF_TMP/keys"
espfleet keygen "$EF_TMP/keys/rel-1" >/dev/null || fail "keygen"
mkimage "$EF_TMP/v2.bin" 2.0.0 fleet-demo 256K esp32s3
serve "$EF_TMP/v2.bin" v2.bin
espfleet sign "$EF_TMP/v2.bin" --key "$EF_TMP/keys/rel-1.key" --key-id rel-1 -o "$EF_TMP/v2.json" >/dev/null ||
  fail "sign"
create=$(jq -c --arg url "$URL_BASE/v2.bin" --arg group "$SWARM_GROUP" \
  '{rollout_id: "r-api", url: $url, manifest: ., target: {groups: [$group]}, steps: [{count: 1}, {percent: 100}]}' \
  "$EF_TMP/v2.json")
assert_eq 202 "$(json POST /rollouts -d "$create")" "POST /rollouts ($(cat "$BODY"))"
assert_eq '{"rollout_id":"r-api"}' "$(jq -c . "$BODY")" "POST /rollouts answer"
wait_for "[ \$(call GET /rollouts/r-api) = 200 ]" 10 || fail "the rollout is not in the store"
expect 409 conflict "the same rollout again" -- POST /rollouts -H 'Content-Type: application/json' -d "$create"
expect 400 bad_request "a changed manifest" -- POST /rollouts -H 'Content-Type: application/json' \
  -d "$(jq -c '.rollout_id = "r-bad" | .manifest.size = "big"' <<<"$create")"
expect 400 bad_request "an unknown key" -- POST /rollouts -H 'Content-Type: application/json' \
  -d "$(jq -c '.rollout_id = "r-bad" | .polcy = {}' <<<"$create")"
wait_for "call GET /rollouts/r-api >/dev/null && jq -e '.status.state == \"completed\"' $BODY" 90 ||
  fail "r-api did not complete: $(jq -c .status "$BODY")"
jq -e --argjson n "$N" '(.devices | length) == $n and all(.devices[]; .state == "succeeded") and
  .rollout.job.release.key_id == "rel-1" and .rollout.job.job_id == "r-api" and .status.counts.succeeded == $n and
  (.timers | has("step_started") and has("step_done") and has("soak_until"))' "$BODY" >/dev/null ||
  fail "GET /rollouts/r-api: $(jq -c . "$BODY")"
assert_eq "$(sha256_of "$EF_TMP/v2.bin")" "$(sim_get "$(swarm_flash 2)" .running.sha256)" "sw-02's running image"
call GET /rollouts >/dev/null
assert_eq "r-api completed" "$(jq -r '.rollouts[] | "\(.rollout_id) \(.state)"' "$BODY")" "GET /rollouts"
pass "a rollout created from a signed manifest completed on all $N devices (409 again, 400 for bad input)"

# the streams saw it happen: every data line is JSON
for f in "$EF_TMP/events" "$EF_TMP/events2"; do
  for ev in device progress rollout; do
    grep -q "^event: $ev$" "$f" || fail "no $ev event in $(basename "$f"): $(head -c 600 "$f")"
  done
  sed -n 's/^data: //p' "$f" | jq -e . >/dev/null || fail "an event's data is not JSON"
done
sed -n '/^event: rollout$/{n;s/^data: //p}' "$EF_TMP/events" | jq -e -s 'any(.state == "completed")' >/dev/null ||
  fail "no rollout event said completed"
sed -n '/^event: progress$/{n;s/^data: //p}' "$EF_TMP/events" |
  jq -e -s 'all(has("device_id") and .job_id == "r-api" and (.percent | type) == "number")' >/dev/null ||
  fail "a progress event: $(grep -m1 -A1 '^event: progress' "$EF_TMP/events")"
pass "the event streams (header and ?access_token=) saw device, progress and rollout events"

assert_eq 200 "$(call GET /jobs/r-api)" "GET /jobs/r-api"
jq -e --argjson n "$N" '.counts.succeeded == $n and (.results | length) == $n' "$BODY" >/dev/null ||
  fail "GET /jobs/r-api: $(cat "$BODY")"
assert_eq 200 "$(call GET /devices/sw-01)" "GET /devices/sw-01"
jq -e '.history[0] | .job_id == "r-api" and .rollout_id == "r-api" and .state == "succeeded"' "$BODY" >/dev/null ||
  fail "sw-01's history: $(jq -c .history "$BODY")"
pass "the job's results and a device's history"

# ---- pause, resume, abort, delete ----
mkimage "$EF_TMP/v3.bin" 3.0.0 fleet-demo 64K esp32s3
serve "$EF_TMP/v3.bin" v3.bin
create=$(jq -cn --argjson job "$(job_json ctl-3 v3.bin)" --arg group "$SWARM_GROUP" \
  '{rollout_id: "r-ctl", job: $job, target: {groups: [$group]}, steps: [{count: 1}, {percent: 100}], policy: {soak_s: 600}}')
assert_eq 202 "$(json POST /rollouts -d "$create")" "POST /rollouts with a job ($(cat "$BODY"))"
# the canary done, the rollout soaks (running) for ten minutes
wait_for "call GET /rollouts/r-ctl >/dev/null && jq -e '.status.state == \"running\" and .timers.soak_until != null' $BODY" 60 ||
  fail "r-ctl did not reach its soak: $(jq -c '.status, .timers' "$BODY")"
TOKEN=$VIEW expect 403 forbidden "a viewer's pause" -- POST /rollouts/r-ctl/pause -H 'Content-Type: application/json'
for step in "pause paused" "resume running" "abort aborted"; do
  set -- $step
  assert_eq 202 "$(json POST "/rollouts/r-ctl/$1" -d "{\"reason\": \"test_api $1\"}")" "$1 ($(cat "$BODY"))"
  assert_eq "{\"rollout_id\":\"r-ctl\",\"action\":\"$1\"}" "$(jq -c . "$BODY")" "$1 answer"
  wait_for "call GET /rollouts/r-ctl >/dev/null && jq -e '.status.state == \"$2\"' $BODY" 10 ||
    fail "r-ctl is not $2 after $1: $(jq -c .status "$BODY")"
done
expect 404 not_found "pause of an unknown rollout" -- POST /rollouts/r-none/pause -H 'Content-Type: application/json'
assert_eq 202 "$(json DELETE /rollouts/r-ctl)" "DELETE /rollouts/r-ctl"
wait_for "[ \$(call GET /rollouts/r-ctl) = 404 ]" 10 || fail "r-ctl is still there after DELETE"
grep -q '"rollout_id":"r-ctl","deleted":true' "$EF_TMP/events" || fail "no event said r-ctl was deleted"
pass "pause, resume, abort and delete through the API (a viewer may not)"

# ---- cancels reach the broker ----
mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -t "$PREFIX/devices/sw-01/cancel" -t "$PREFIX/groups/api/cancel" \
  -v -C 2 -W 10 >"$EF_TMP/cancels" 2>/dev/null &
sub=$!
sleep 0.5
assert_eq 202 "$(json POST /devices/sw-01/cancel -d '{"job_id": "j-x"}')" "device cancel ($(cat "$BODY"))"
assert_eq 202 "$(json POST /groups/api/cancel -d '{"job_id": "j-y"}')" "group cancel ($(cat "$BODY"))"
expect 400 bad_request "a cancel without job_id" -- POST /groups/api/cancel -H 'Content-Type: application/json' -d '{}'
wait "$sub" || true
grep -q "^$PREFIX/devices/sw-01/cancel {\"job_id\":\"j-x\"}$" "$EF_TMP/cancels" || fail "device cancel: $(cat "$EF_TMP/cancels")"
grep -q "^$PREFIX/groups/api/cancel {\"job_id\":\"j-y\"}$" "$EF_TMP/cancels" || fail "group cancel: $(cat "$EF_TMP/cancels")"
pass "device and group cancels are published"

# ---- the page ----
TOKEN="" BASE_URL=$ORIGIN
assert_eq 200 "$(call GET /)" "GET /"
grep -qi '^Content-Type: text/html' "$HEADERS" || fail "/ is not text/html"
grep -qiF "Content-Security-Policy: default-src 'self'" "$HEADERS" || fail "/ without CSP"
cmp -s "$BODY" "$EF_SRC/tools/espfleet-controller/web/index.html" || fail "/ is not web/index.html"
assert_eq 200 "$(call GET /app.js)" "GET /app.js"
grep -qi '^Content-Type: text/javascript' "$HEADERS" || fail "/app.js is not JavaScript"
etag=$(sed -n 's/^ETag: *//Ip' "$HEADERS" | tr -d '\r')
[ -n "$etag" ] || fail "/app.js without ETag"
assert_eq 304 "$(call GET /app.js -H "If-None-Match: $etag")" "GET /app.js again with its ETag"
assert_eq 404 "$(call GET /nothing.js)" "an unknown file"
unset TOKEN BASE_URL
pass "the embedded page: /, /app.js (ETag, 304), 404"

# ---- --check-config reads the tokens file ----
printf 'operator alice %s\nadmin carol %s\nviewer bad*name %s\nviewer dave 1234\n' "$(printf %s x | sha256sum | cut -d' ' -f1)" \
  "$(printf %s y | sha256sum | cut -d' ' -f1)" "$(printf %s z | sha256sum | cut -d' ' -f1)" >"$EF_TMP/bad-tokens"
jq --arg t "$EF_TMP/bad-tokens" '.http.tokens_file = $t' "$CONTROLLER_CONFIG" >"$EF_TMP/bad.json"
rc=0
"$EF_BIN/espfleet-controller" --config "$EF_TMP/bad.json" --check-config >/dev/null 2>"$EF_TMP/check.err" || rc=$?
assert_eq 2 "$rc" "--check-config with a bad tokens file"
for l in 2 3 4; do grep -q "bad-tokens:$l: " "$EF_TMP/check.err" || fail "no problem for line $l: $(cat "$EF_TMP/check.err")"; done
! grep -q "bad-tokens:1:" "$EF_TMP/check.err" || fail "line 1 is fine: $(cat "$EF_TMP/check.err")"
pass "--check-config names every bad line of the tokens file"

# ---- a stop ends the streams; then the same API over HTTPS ----
controller_kill TERM
wait_for "! _ef_alive $EVENTS_PID" 5 || fail "the event stream did not end with the controller"
# a key that is not the certificate's: the controller says which and does not start
jq --arg cert "$PKI/server.pem" --arg key "$PKI/ca.key" '.http.cert_file = $cert | .http.key_file = $key' \
  "$CONTROLLER_CONFIG" >"$EF_TMP/bad-tls.json"
rc=0
timeout 20 "$EF_BIN/espfleet-controller" --config "$EF_TMP/bad-tls.json" >"$EF_TMP/bad-tls.log" 2>&1 || rc=$?
assert_eq 1 "$rc" "a start with the CA's key"
grep -q "not the key of the certificate" "$EF_TMP/bad-tls.log" || fail "bad key: $(cat "$EF_TMP/bad-tls.log")"
jq --arg cert "$PKI/server.pem" --arg key "$PKI/server.key" '.http.cert_file = $cert | .http.key_file = $key' \
  "$CONTROLLER_CONFIG" >"$CONTROLLER_CONFIG.new" && mv "$CONTROLLER_CONFIG.new" "$CONTROLLER_CONFIG"
controller_start
HTTPS=https://127.0.0.1:$HTTP_PORT
wait_for "curl -sf --cacert $PKI/ca.pem -H 'Authorization: Bearer $OP' $HTTPS/api/v1/whoami" 10 ||
  fail "no answer over HTTPS: $(tail -n 5 "$CONTROLLER_LOG")"
grep -q "dashboard: https://127.0.0.1:$HTTP_PORT/" "$CONTROLLER_LOG" || fail "no https dashboard URL in the log"
CURL_BASE=(--cacert "$PKI/ca.pem")
BASE_URL=$HTTPS/api/v1
assert_eq 200 "$(call GET /rollouts)" "GET /rollouts over HTTPS"
assert_eq "r-api" "$(jq -r '[.rollouts[].rollout_id] | join(" ")' "$BODY")" "rollouts over HTTPS"
expect 403 csrf "another origin over HTTPS" -- POST /rollouts -H 'Content-Type: application/json' \
  -H "Origin: http://127.0.0.1:$HTTP_PORT" -d '{}'
expect 400 bad_request "the page's own origin over HTTPS" -- POST /rollouts -H 'Content-Type: application/json' \
  -H "Origin: $HTTPS" -d '{}'
! curl -s -o /dev/null "http://127.0.0.1:$HTTP_PORT/api/v1/whoami" || fail "plain HTTP answered on the TLS port"
pass "the API over HTTPS (curl --cacert), and not in clear"

# Behind a proxy that terminates TLS, http.public_origin is the origin the
# CSRF check expects: the proxy's, not the controller's own.
controller_kill TERM
jq '.http.public_origin = "https://fleet.example.com" | del(.http.cert_file, .http.key_file)' \
  "$CONTROLLER_CONFIG" >"$CONTROLLER_CONFIG.new" && mv "$CONTROLLER_CONFIG.new" "$CONTROLLER_CONFIG"
controller_start
CURL_BASE=()
BASE_URL=http://127.0.0.1:$HTTP_PORT/api/v1
wait_for "curl -sf -H 'Authorization: Bearer $OP' $BASE_URL/whoami" 10 || fail "no answer with public_origin"
expect 403 csrf "the controller's own origin behind a proxy" -- POST /rollouts -H 'Content-Type: application/json' \
  -H "Origin: http://127.0.0.1:$HTTP_PORT" -d '{}'
expect 400 bad_request "the proxy's origin" -- POST /rollouts -H 'Content-Type: application/json' \
  -H "Origin: https://fleet.example.com" -d '{}'
pass "http.public_origin: writes from the proxy's origin only"
