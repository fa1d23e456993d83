#!/usr/bin/env bash
# espfleet-controller's HTTP API answers as docs/api.yaml (OpenAPI 3.1) and
# docs/api.md say, checked by tests/integration/api_check.py:
#   1. the description itself: OpenAPI 3.1 structure, the contract's endpoints,
#      every $ref (docs/schema/ too), every schema and example (and
#      openapi-spec-validator's check when that is installed);
#   2. a swarm of 3 devices with the API on (an operator and a viewer token):
#      every error of the contract (401, 403 forbidden/csrf, 404, 405, 413,
#      415, 400, 409), each an Error document with its code and the
#      security headers;
#   3. two rollouts created through the API (from a job document; from a
#      signed manifest), paused, resumed, aborted and deleted through it, and
#      cancels; every GET endpoint checked before, during and after, each
#      answer against the spec's schema for its path, method and status;
#   4. the event stream (bearer header and ?access_token=) from start to end:
#      retry first, every event's data valid for its name, the rollouts'
#      states and the deletion seen;
#   5. every operation answered 2xx at least once; a quiet stream gets its
#      keepalive; without a tokens file everyone is the operator "local" (and
#      only loopback Host names pass); the same API over TLS.
# API_CHECK_PYTHON=/usr/bin/python3 runs the checker with another python
# (e.g. Debian's jsonschema 4.10 instead of a newer one first in PATH).
# Skips (77) while espfleet-controller has no HTTP API, or python3 lacks
# jsonschema 4.x or PyYAML.
. "${ESPFLEET_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/integration/lib.sh"
. "$EF_SRC/tests/integration/lib_fleet.sh"
. "$EF_SRC/tests/integration/lib_swarm.sh"

SPEC=$EF_SRC/docs/api.yaml
CHECK=$EF_SRC/tests/integration/api_check.py
require_cmd jq curl

PY=
for py in ${API_CHECK_PYTHON:-} python3 /usr/bin/python3; do
  if command -v "$py" >/dev/null 2>&1 &&
    "$py" -c 'import yaml, jsonschema; jsonschema.Draft202012Validator' >/dev/null 2>&1; then
    PY=$py
    break
  fi
done
[ -n "$PY" ] || skip "python3 with jsonschema 4.x and PyYAML is not installed (apt-get install python3-jsonschema python3-yaml)"

# ---- 1. the description ----
"$PY" "$CHECK" --spec "$SPEC" lint || fail "docs/api.yaml has problems (above)"
if ! "$PY" -c 'import openapi_spec_validator' 2>/dev/null; then
  # another python may have it (the lint above said it skipped that part)
  for py in python3 /usr/bin/python3; do
    if [ "$py" != "$PY" ] && "$py" -c 'import yaml, jsonschema, openapi_spec_validator' 2>/dev/null; then
      "$py" "$CHECK" --spec "$SPEC" lint || fail "docs/api.yaml has problems (above, $py)"
      break
    fi
  done
fi
pass "docs/api.yaml is a valid OpenAPI 3.1 description of the contract; its \$refs, schemas and examples check out"

# ---- 2. a swarm with the API on ----
require_bin espfleet-controller
"$EF_BIN/espfleet-controller" --help 2>&1 | grep -qi http ||
  skip "espfleet-controller has no HTTP API yet (--help does not mention http)"

OP_TOKEN=$(openssl rand -hex 24)
VIEW_TOKEN=$(openssl rand -hex 24)
TOKENS=$EF_TMP/tokens
{
  echo "# ROLE NAME SHA256HEX (printf %s TOKEN | sha256sum)"
  echo "operator ops $(printf %s "$OP_TOKEN" | sha256sum | cut -d' ' -f1)"
  echo
  echo "viewer view $(printf %s "$VIEW_TOKEN" | sha256sum | cut -d' ' -f1)"
} >"$TOKENS"
PORT=$(free_port)
SWARM_GROUP=api-grp
CONTROLLER_CONFIG_UPDATE='.http.listen = "127.0.0.1:'$PORT'" | .http.tokens_file = "'$TOKENS'"'
swarm_start 3 "$SWARM_GROUP"
cp "$CONTROLLER_CONFIG" "$EF_TMP/controller.json.orig"
controller_start
if ! wait_for_port "$PORT" 15 "$CONTROLLER_PID"; then
  tail -n 20 "$CONTROLLER_LOG" >&2
  _ef_alive "$CONTROLLER_PID" || fail "espfleet-controller exited (log above)"
  skip "espfleet-controller does not listen on 127.0.0.1:$PORT (no HTTP API yet?)"
fi

# (API_CHECK_FAILURES collects every failure, also of the calls whose output
# wait_for discards: the test fails at the end if it is not empty)
export API_BASE=http://127.0.0.1:$PORT API_TOKEN=$OP_TOKEN API_SPEC=$SPEC API_CHECK_RECORD=$EF_TMP/answers.txt \
  API_CHECK_FAILURES=$EF_TMP/failures.txt
check_no_failures() {
  [ ! -s "$API_CHECK_FAILURES" ] || fail "answers differ from docs/api.yaml: $(cat "$API_CHECK_FAILURES")"
}
api() { "$PY" "$CHECK" "$@"; }
viewer() { "$PY" "$CHECK" --token "$VIEW_TOKEN" "$@"; }
# rollout_state R: the rollout's state through the API, "none" when it answers 404
rollout_state() { api call GET "/api/v1/rollouts/$1" --status 200,404 | jq -r '.status.state // "none"'; }
wait_rollout() { # wait_rollout R STATE TIMEOUT_S
  wait_for "[ \"\$(rollout_state $1)\" = $2 ]" "$3" ||
    fail "rollout $1 did not become $2 (now: $(rollout_state "$1"); $(api call GET "/api/v1/rollouts/$1" --status 200,404 | jq -c .status))"
}

assert_eq "ops operator" "$(api call GET /api/v1/whoami --status 200 | jq -r '"\(.name) \(.role)"')" "whoami (operator)"
assert_eq "view viewer" "$(viewer call GET /api/v1/whoami --status 200 | jq -r '"\(.name) \(.role)"')" "whoami (viewer)"

# The event streams, open from here to the end: one with the header, one (the
# viewer's) with ?access_token= as EventSource would.
api events --until-file "$EF_TMP/events.stop" --max-seconds 280 \
  --require device --require progress --require rollout \
  --require-state r-api-1:running --require-state r-api-1:paused --require-state r-api-1:completed \
  --require-state r-api-2:aborted --require-deleted r-api-2 >"$EF_TMP/events.log" 2>&1 &
EVENTS_PID=$!
track_pid "$EVENTS_PID"
viewer events --query-token --until-file "$EF_TMP/events.stop" --max-seconds 280 \
  --require device --require rollout >"$EF_TMP/events-query.log" 2>&1 &
EVENTS_Q_PID=$!
track_pid "$EVENTS_Q_PID"

api errors --viewer-token "$VIEW_TOKEN" || fail "error answers differ from docs/api.yaml (above)"
pass "401, 403 (forbidden, csrf), 404, 405, 413, 415 and 400 answer Error documents with their codes and headers"

wait_for "[ \$(api call GET /api/v1/devices --status 200 | jq '[.devices[] | select(.online and .state == \"idle\")] | length') = 3 ]" 15 ||
  fail "the API does not show the 3 devices online and idle: $(api call GET /api/v1/devices --status 200)"
viewer gets || fail "GET answers before any rollout differ from docs/api.yaml (above)"
pass "every GET answers as the spec says before any rollout (viewer token)"

# ---- 3. a rollout from a job document: created, paused, resumed, completed ----
mkimage "$EF_TMP/v2.bin" 2.0.0 api-demo 256K
serve "$EF_TMP/v2.bin" v2.bin
job=$(job_json api-2.0 v2.bin)
body=$(jq -cn --argjson job "$job" --arg g "$SWARM_GROUP" \
  '{rollout_id: "r-api-1", job: $job, target: {groups: [$g]}, steps: [{count: 1}, {percent: 100}], policy: {soak_s: 4}}')
assert_eq r-api-1 "$(api call POST /api/v1/rollouts --body "$body" --status 202 | jq -r .rollout_id)" "POST /rollouts"
wait_rollout r-api-1 running 30
api call POST /api/v1/rollouts/r-api-1/pause --body '{"reason":"api test"}' --status 202 >/dev/null
wait_rollout r-api-1 paused 20
detail=$(viewer call GET /api/v1/rollouts/r-api-1 --status 200)
jq -e '.status.reason | test("api test")' <<<"$detail" >/dev/null || fail "the pause's reason: $(jq -c .status <<<"$detail")"
jq -e '(.devices | length) == 3 and .timers.step_started != null and .rollout.job.job_id == "api-2.0"' <<<"$detail" >/dev/null ||
  fail "GET /rollouts/r-api-1 while paused: $detail"
api call POST /api/v1/rollouts --body "$body" --status 409 --code conflict >/dev/null
viewer gets || fail "GET answers during a rollout differ from docs/api.yaml (above)"
pass "POST /rollouts (job document) → 202, pause → paused; a second POST → 409; every GET valid while paused"

# resume without a body (the Content-Type alone)
api call POST /api/v1/rollouts/r-api-1/resume --status 202 >/dev/null
wait_rollout r-api-1 completed 120
viewer gets || fail "GET answers after the rollout differ from docs/api.yaml (above)"
results=$(viewer call GET /api/v1/jobs/api-2.0 --status 200)
assert_eq "3 3" "$(jq -r '"\(.counts.succeeded) \([.results[] | select(.state == "succeeded")] | length)"' <<<"$results")" \
  "succeeded results of api-2.0"
assert_eq 3 "$(viewer call GET '/api/v1/devices?state=succeeded&job=api-2.0' --status 200 | jq '.devices | length')" \
  "devices succeeded with api-2.0"
dev=$(viewer call GET /api/v1/devices/sw-00 --status 200)
jq -e '.history[0] | .job_id == "api-2.0" and .rollout_id == "r-api-1" and .state == "succeeded"' <<<"$dev" >/dev/null ||
  fail "sw-00's history does not start with its api-2.0 result: $(jq -c .history <<<"$dev")"
jq -e '.app_version == "2.0.0" and .progress == null' <<<"$dev" >/dev/null || fail "sw-00 after the update: $dev"
pass "resume → completed; /jobs, /devices filters and the history show all 3 devices succeeded"

# ---- a rollout from a signed manifest: aborted, then deleted ----
(cd "$EF_TMP" && espfleet keygen rel-api >/dev/null) || fail "espfleet keygen failed"
mkimage "$EF_TMP/v3.bin" 3.0.0 api-demo 256K
serve "$EF_TMP/v3.bin" v3.bin
espfleet sign "$EF_TMP/v3.bin" --key "$EF_TMP/rel-api.key" --key-id rel-api -o "$EF_TMP/v3.manifest.json" ||
  fail "espfleet sign failed"
jq -n --slurpfile m "$EF_TMP/v3.manifest.json" --arg url "$URL_BASE/v3.bin" --arg g "$SWARM_GROUP" \
  '{rollout_id: "r-api-2", url: $url, manifest: $m[0], target: {groups: [$g]},
    steps: [{count: 1}, {percent: 100}], policy: {soak_s: 600}}' >"$EF_TMP/r-api-2.json"
# the docs' curl command for it
curl -sS --fail-with-body -X POST -H "Authorization: Bearer $OP_TOKEN" -H 'Content-Type: application/json' \
  --data-binary @"$EF_TMP/r-api-2.json" "$API_BASE/api/v1/rollouts" >"$EF_TMP/r-api-2.out" ||
  fail "curl POST /rollouts (manifest): $(cat "$EF_TMP/r-api-2.out")"
assert_eq r-api-2 "$(jq -r .rollout_id "$EF_TMP/r-api-2.out")" "POST /rollouts (manifest)"
wait_rollout r-api-2 running 30
detail=$(viewer call GET /api/v1/rollouts/r-api-2 --status 200)
jq -e --slurpfile m "$EF_TMP/v3.manifest.json" '.rollout.job as $j | $m[0] as $m |
  $j.job_id == "r-api-2" and $j.sha256 == $m.sha256 and $j.size == $m.size and $j.version == $m.version and
  $j.release.key_id == "rel-api" and $j.release.signature == $m.signature and
  $j.release.secure_version == $m.secure_version' <<<"$detail" >/dev/null ||
  fail "the rollout document built from the manifest: $(jq -c .rollout <<<"$detail")"
api call POST /api/v1/rollouts/r-api-2/abort --body '{"reason":"api test abort"}' --status 202 >/dev/null
wait_rollout r-api-2 aborted 30
viewer gets || fail "GET answers with an aborted rollout differ from docs/api.yaml (above)"
api call DELETE /api/v1/rollouts/r-api-2 --status 202 >/dev/null
wait_rollout r-api-2 none 30
pass "POST /rollouts (signed manifest) builds the signed job (job_id = rollout_id); abort → aborted; DELETE → 404"

# ---- cancels reach their topics ----
mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -v -t "$PREFIX/devices/sw-01/cancel" -t "$PREFIX/groups/$SWARM_GROUP/cancel" \
  >"$EF_TMP/cancels.log" 2>/dev/null &
track_pid $!
sleep 0.5
api call POST /api/v1/devices/sw-01/cancel --body '{"job_id":"api-none-1"}' --status 202 >/dev/null
api call POST "/api/v1/groups/$SWARM_GROUP/cancel" --body '{"job_id":"api-none-2"}' --status 202 >/dev/null
wait_for "grep -q '^$PREFIX/devices/sw-01/cancel {\"job_id\":\"api-none-1\"}' '$EF_TMP/cancels.log' &&
          grep -q '^$PREFIX/groups/$SWARM_GROUP/cancel {\"job_id\":\"api-none-2\"}' '$EF_TMP/cancels.log'" 5 ||
  fail "the cancels did not reach their topics: $(cat "$EF_TMP/cancels.log")"
pass "POST /devices/ID/cancel and /groups/G/cancel → 202, each cancel published on its topic"

# From here on nothing happens: a stream that stays quiet gets its keepalive.
api events --max-seconds 17 --require-keepalive >"$EF_TMP/events-quiet.log" 2>&1 &
QUIET_PID=$!
track_pid "$QUIET_PID"

# ---- 4. the event streams ----
# the docs' curl -N example: the stream starts with retry
curl -sS -N --max-time 2 -H "Authorization: Bearer $VIEW_TOKEN" "$API_BASE/api/v1/events" >"$EF_TMP/curl-events.txt" 2>/dev/null || true
head -n1 "$EF_TMP/curl-events.txt" | grep -q '^retry: 2000' || fail "curl -N /api/v1/events: $(head -c 300 "$EF_TMP/curl-events.txt")"
touch "$EF_TMP/events.stop"
status=0
wait "$EVENTS_PID" || status=$?
sed 's/^/  events: /' "$EF_TMP/events.log" >&2
[ "$status" = 0 ] || fail "the event stream (bearer) differs from docs/api.yaml (above)"
status=0
wait "$EVENTS_Q_PID" || status=$?
sed 's/^/  events (access_token): /' "$EF_TMP/events-query.log" >&2
[ "$status" = 0 ] || fail "the event stream (?access_token=) differs from docs/api.yaml (above)"
pass "the event streams start with retry and every device, progress and rollout event matches its schema"

# ---- 5. coverage, then TLS ----
check_no_failures
api coverage || fail "some operations of docs/api.yaml were never answered 2xx (above)"
pass "every operation of docs/api.yaml answered 2xx at least once ($(wc -l <"$API_CHECK_RECORD") answers checked)"

status=0
wait "$QUIET_PID" || status=$?
sed 's/^/  events (quiet): /' "$EF_TMP/events-quiet.log" >&2
[ "$status" = 0 ] || fail "a quiet event stream got no keepalive within 17 s"
pass "a quiet event stream gets ': keepalive' within 15 s"

# ---- without a tokens file: everyone is the operator "local", on loopback names only ----
controller_kill TERM
jq 'del(.http.tokens_file)' "$CONTROLLER_CONFIG" >"$EF_TMP/controller-open.json" && cp "$EF_TMP/controller-open.json" "$CONTROLLER_CONFIG"
controller_start
wait_for_port "$PORT" 15 "$CONTROLLER_PID" || fail "espfleet-controller does not listen without a tokens file: $(tail -n 5 "$CONTROLLER_LOG")"
export API_CHECK_RECORD=
assert_eq "local operator" "$(api call GET /api/v1/whoami --no-token --status 200 | jq -r '"\(.name) \(.role)"')" "whoami without a tokens file"
assert_eq "local operator" "$(api call GET /api/v1/whoami --no-token --header "Host: localhost:$PORT" --status 200 | jq -r '"\(.name) \(.role)"')" \
  "whoami as localhost without a tokens file"
api call GET /api/v1/devices --no-token --header "Host: fleet.example:$PORT" --status 403 --code forbidden >/dev/null
api call POST /api/v1/rollouts/no-such-rollout/pause --no-token --status 404 --code not_found >/dev/null
check_no_failures
pass "without a tokens file: no token needed, everyone is local/operator; a non-loopback Host → 403"

controller_kill TERM
jq --arg cert "$PKI/server.pem" --arg key "$PKI/server.key" '.http.cert_file = $cert | .http.key_file = $key' \
  "$EF_TMP/controller.json.orig" >"$CONTROLLER_CONFIG"
controller_start
wait_for_port "$PORT" 15 "$CONTROLLER_PID" || fail "espfleet-controller does not listen with TLS: $(tail -n 5 "$CONTROLLER_LOG")"
export API_BASE=https://127.0.0.1:$PORT API_CACERT=$PKI/ca.pem
assert_eq "view viewer" "$(viewer call GET /api/v1/whoami --status 200 | jq -r '"\(.name) \(.role)"')" "whoami over TLS"
viewer gets || fail "GET answers over TLS differ from docs/api.yaml (above)"
api call POST /api/v1/rollouts/no-such-rollout/pause --header "Origin: https://127.0.0.1:$PORT" --status 404 --code not_found >/dev/null
api call POST /api/v1/rollouts/no-such-rollout/pause --header "Origin: http://127.0.0.1:$PORT" --status 403 --code csrf >/dev/null
curl -sS --fail --cacert "$PKI/ca.pem" -H "Authorization: Bearer $VIEW_TOKEN" "$API_BASE/api/v1/rollouts" >/dev/null ||
  fail "curl --cacert over TLS"
check_no_failures
pass "over TLS: every GET valid, the origin is https://HOST, curl --cacert works"
