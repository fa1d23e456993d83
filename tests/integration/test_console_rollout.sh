#!/usr/bin/env bash
# espfleet-console as espfleet-controller's client, against mosquitto alone
# (the controller's side is played by hand with mosquitto_pub/sub):
# `rollout create` publishes a valid rollout document retained with QoS 1,
# bad input publishes nothing with the rollout reader's sentence, and an
# existing rollout is never changed;
# pause/resume/abort publish control documents, succeed when a status
# shows the effect and exit 1 when no controller answers; `show` and `list`
# print statuses published by hand (texts escaped); `create --wait` follows
# a status to its end; `delete` clears the retained document; `cancel
# --group` publishes on the group's cancel topic; `status` and `list` send
# announce requests; the documents follow docs/schema/. Last, when it is
# built, the real espfleet-controller runs a rollout over two devices
# played by hand, followed by `create --wait`, `list`, `show` and `delete`.
. "${ESPFLEET_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/integration/lib.sh"
. "$EF_SRC/tests/integration/lib_mosquitto.sh"
require_bin espfleet espfleet-console
require_cmd mosquitto mosquitto_pub mosquitto_sub jq

start_mosquitto "$EF_TMP/mqtt"
at_exit "stop_mosquitto '$EF_TMP/mqtt'"
BROKER=mqtt://127.0.0.1:$MQTT_PORT
P=espfleet
# console COMMAND [SUBCOMMAND] ARGS...: the console on the test's broker.
console() {
  if [ "$1" = rollout ]; then
    "$EF_BIN/espfleet-console" rollout "$2" --broker "$BROKER" "${@:3}"
  else
    "$EF_BIN/espfleet-console" "$1" --broker "$BROKER" "${@:2}"
  fi
}
console_code() { sed -n 's/^espfleet-console: error: \([a-z_]*\):.*/\1/p' "$1" | tail -n1; }
pub() { mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 "$@"; }
# retained TOPIC: prints the retained message of TOPIC, nothing when there is none.
retained() { mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -t "$1" -C 1 -W 1 2>/dev/null || true; }
# subacks: how many subscriptions the broker acknowledged so far.
subacks() { grep -c 'Sending SUBACK' "$EF_TMP/mqtt/mosquitto.log" || true; }
# record TOPIC FILE: records every message on TOPIC (with its topic) into FILE.
record() {
  local before
  before=$(subacks)
  mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -v -t "$1" >"$2" 2>/dev/null &
  track_pid $!
  wait_for "[ \$(subacks) -gt $before ]" 5 || fail "no subscription on $1"
}
# on_message TOPIC FILE CMD: in the background, once a message arrives on
# TOPIC (kept in FILE), evaluates CMD; returns when the subscription is in place.
on_message() {
  local before
  before=$(subacks)
  (mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -t "$1" -C 1 -W 20 >"$2" 2>/dev/null && eval "$3") &
  track_pid $!
  wait_for "[ \$(subacks) -gt $before ]" 5 || fail "no subscription on $1"
}
# status R STATE STEP [REASON_JSON]: a status document as ef_rollout_status_json writes it.
status() {
  jq -cn --arg r "$1" --arg s "$2" --argjson step "$3" --argjson reason "${4:-null}" \
    '{rollout_id: $r, job_id: ("j-" + $r), state: $s, step: $step, steps: 3, devices: 40, step_devices: 4,
      counts: {waiting: 36, sent: 0, running: 1, succeeded: 2, failed: 1, timed_out: 0, offline: 0},
      reason: $reason, created: "2025-01-20T10:00:00Z", updated: "2025-01-20T10:05:00Z",
      controller_version: "0.1.0"}'
}

# expect SCHEMA JSON: checked against docs/schema/SCHEMA at the end (with python3 jsonschema).
expect() { printf '%s\t%s\n' "$1" "$(jq -c . <<<"$2")" >>"$EF_TMP/docs.tsv"; }

mkimage "$EF_TMP/fw.bin" 1.2.0 fleet-demo 100K
sha=$(sha256_of "$EF_TMP/fw.bin")
URL=https://files.lan/fw-1.2.0.bin

# ---- create: a valid rollout document, retained, QoS 1
record "$P/rollouts/#" "$EF_TMP/rollouts.log"
console rollout create "$EF_TMP/fw.bin" --rollout-id r1 --url "$URL" --job-id j-r1 --group lab --group canary \
  --devices gw-1,gw-2 --devices gw-3 --steps 1,10%,100% --success-percent 90 --abort-percent 20 --abort-min 2 \
  --soak 30 --progress-timeout 600 --offline-timeout 120 --window 22:00-04:00 --window 12:00-13:00 \
  >"$EF_TMP/create.out" 2>"$EF_TMP/create.err" || fail "rollout create: $(cat "$EF_TMP/create.err")"
grep -q "published rollout r1 to $P/rollouts/r1 (retained): job j-r1" "$EF_TMP/create.out" ||
  fail "create output: $(cat "$EF_TMP/create.out")"
doc=$(retained "$P/rollouts/r1")
[ -n "$doc" ] || fail "no retained rollout document on $P/rollouts/r1"
jq -e --arg sha "$sha" --arg url "$URL" '
  .rollout_id == "r1" and
  .job.job_id == "j-r1" and .job.sha256 == $sha and .job.url == $url and .job.version == "1.2.0" and
  .job.project == "fleet-demo" and .job.chip == "esp32s3" and (.job | has("rollout") | not) and
  .target == {groups: ["lab", "canary"], devices: ["gw-1", "gw-2", "gw-3"]} and
  .steps == [{count: 1}, {percent: 10}, {percent: 100}] and
  .policy == {success_percent: 90, abort: {failure_percent: 20, min_finished: 2}, soak_s: 30,
              in_progress_timeout_s: 600, offline_timeout_s: 120,
              windows: [{start: "22:00", end: "04:00"}, {start: "12:00", end: "13:00"}]}' <<<"$doc" >/dev/null ||
  fail "rollout document: $doc"
expect rollout.schema.json "$doc"
grep -Eq "Received PUBLISH from espfleet-console-[^ ]* \(d0, q1, r1, m[0-9]+, '$P/rollouts/r1'" \
  "$EF_TMP/mqtt/mosquitto.log" || fail "the rollout was not published with QoS 1, retained"
# --print is the same document, and connects to nothing
console rollout create "$EF_TMP/fw.bin" --rollout-id r1 --url "$URL" --job-id j-r1 --group lab --group canary \
  --devices gw-1,gw-2,gw-3 --steps 1,10%,100% --success-percent 90 --abort-percent 20 --abort-min 2 --soak 30 \
  --progress-timeout 600 --offline-timeout 120 --window 22:00-04:00 --window 12:00-13:00 --print \
  --broker mqtt://127.0.0.1:1 >"$EF_TMP/print.json" || fail "rollout create --print"
assert_eq "$(jq -cS . <<<"$doc")" "$(jq -cS . "$EF_TMP/print.json")" "--print and the published document"
# defaults: one step of 100 %, the policy's defaults written out
doc=$(console rollout create "$EF_TMP/fw.bin" --rollout-id r0 --url "$URL" --devices gw-1 --print) ||
  fail "create --print with defaults"
jq -e '.steps == [{percent: 100}] and .job.job_id == "fleet-demo-1.2.0-'"${sha:0:8}"'" and
       .policy == {success_percent: 100, abort: {failure_percent: 10, min_finished: 1}, soak_s: 0,
                   in_progress_timeout_s: 3600, offline_timeout_s: 600, windows: []}' <<<"$doc" >/dev/null ||
  fail "defaults: $doc"
expect rollout.schema.json "$doc"
# a signed job keeps its release object
"$EF_BIN/espfleet" keygen "$EF_TMP/rel" >/dev/null || fail "keygen"
doc=$(console rollout create "$EF_TMP/fw.bin" --rollout-id r0 --url "$URL" --group lab --print \
  --sign-key "$EF_TMP/rel.key" --key-id rel-1 --expect-fw-version FG-1.2.0.0.0) || fail "create --sign-key"
jq -e '.job.release.key_id == "rel-1" and (.job.release.signature | length) == 88 and
       .job.expect_fw_version == "FG-1.2.0.0.0"' <<<"$doc" >/dev/null || fail "signed job in the rollout: $doc"
expect rollout.schema.json "$doc"
pass "rollout create publishes a valid rollout document, retained with QoS 1"

# ---- bad input: the specific error, nothing published
bad() { # bad WANT_RC WANT_TEXT ARGS...: create with ARGS exits WANT_RC and says WANT_TEXT
  local want=$1 text=$2 rc=0
  shift 2
  console rollout create "$EF_TMP/fw.bin" --rollout-id r-bad "$@" >/dev/null 2>"$EF_TMP/bad.err" || rc=$?
  assert_eq "$want" "$rc" "exit status of create $* ($(cat "$EF_TMP/bad.err"))"
  grep -qF -- "$text" "$EF_TMP/bad.err" || fail "create $*: want '$text', got: $(cat "$EF_TMP/bad.err")"
}
bad 1 "steps[1]: must reach more devices than the steps before it" --url "$URL" --group lab --steps 50%,10%,100%
assert_eq rollout_invalid "$(console_code "$EF_TMP/bad.err")" "error code of a refused rollout"
bad 1 'steps: the last step must be {"percent": 100}' --url "$URL" --group lab --steps 1,10%
bad 1 "policy.success_percent: must be an integer 1..100" --url "$URL" --group lab --success-percent 101
bad 1 "target.devices[1]: gw-1 is listed twice" --url "$URL" --devices gw-1,gw-1
bad 2 "--steps: '10x' is not a step" --url "$URL" --group lab --steps 1,10x,100%
bad 2 "--steps: '0%'" --url "$URL" --group lab --steps 0%,100%
bad 2 "--url is required" --group lab
bad 2 "--window: '25:00-04:00' must be HH:MM-HH:MM" --url "$URL" --group lab --window 25:00-04:00
bad 2 "give the target" --url "$URL"
bad 2 "--group: 'a b' is not a group id" --url "$URL" --group "a b"
bad 1 "url: must be https" --url http://files.lan/fw.bin --group lab
rc=0
console rollout create "$EF_TMP/fw.bin" --url "$URL" --group lab >/dev/null 2>&1 || rc=$?
assert_eq 2 "$rc" "create without --rollout-id"
sleep 0.3
assert_eq "" "$(grep "r-bad" "$EF_TMP/rollouts.log" || true)" "messages for a refused rollout"
assert_eq "" "$(retained "$P/rollouts/r-bad")" "retained document of a refused rollout"
pass "bad rollouts are refused with the reader's sentence (exit 1) or a usage error (exit 2); nothing is published"

# ---- pause, resume, abort without a controller: the control document, then exit 1
for action in pause resume abort; do
  rc=0
  start=$(date +%s%N)
  console rollout "$action" r1 --reason "night \"shift\"" --timeout 1 >"$EF_TMP/$action.out" 2>"$EF_TMP/$action.err" ||
    rc=$?
  took=$((($(date +%s%N) - start) / 1000000))
  assert_eq 1 "$rc" "$action without a controller ($(cat "$EF_TMP/$action.err"))"
  grep -q "no controller answered the $action of rollout r1 within 1 s" "$EF_TMP/$action.err" ||
    fail "$action: $(cat "$EF_TMP/$action.err")"
  [ "$took" -ge 1000 ] && [ "$took" -lt 6000 ] || fail "$action gave up after $took ms, want about 1 s"
  grep -q "published $action of rollout r1 to $P/rollouts/r1/control" "$EF_TMP/$action.out" ||
    fail "$action output: $(cat "$EF_TMP/$action.out")"
done
sleep 0.3
controls=$(sed -n "s|^$P/rollouts/r1/control ||p" "$EF_TMP/rollouts.log" | jq -c .)
assert_eq '{"action":"pause","reason":"night \"shift\""}
{"action":"resume","reason":"night \"shift\""}
{"action":"abort","reason":"night \"shift\""}' "$controls" "control documents"
while IFS= read -r c; do expect rollout-control.schema.json "$c"; done <<<"$controls"
grep -Eq "Received PUBLISH from espfleet-console-[^ ]* \(d0, q1, r0, m[0-9]+, '$P/rollouts/r1/control'" \
  "$EF_TMP/mqtt/mosquitto.log" || fail "a control was not published with QoS 1, not retained"
pass "pause/resume/abort publish their control document and exit 1 when no controller answers"

# ---- a controller played by hand: each control answered by a status
# answer ACTION STATE [REASON_JSON]: publishes the status once the control ACTION arrives.
answer() {
  on_message "$P/rollouts/r1/control" "$EF_TMP/got-$1.json" \
    "pub -r -t '$P/rollouts/r1/status' -m '$(status r1 "$2" 1 "${3:-null}")'"
}
pub -r -t "$P/rollouts/r1/status" -m "$(status r1 running 1)"
answer pause paused '"night"'
console rollout pause r1 --reason night --timeout 5 >"$EF_TMP/pause.out" 2>"$EF_TMP/pause.err" ||
  fail "pause with a controller: $(cat "$EF_TMP/pause.err")"
grep -q "r1 paused: step 2/3, 4 of 40 device(s) reached: 2 succeeded, 1 failed, 1 running, 36 waiting (night)" \
  "$EF_TMP/pause.out" || fail "pause output: $(cat "$EF_TMP/pause.out")"
assert_eq '{"action":"pause","reason":"night"}' "$(jq -c . "$EF_TMP/got-pause.json")" "pause document"
answer resume running
console rollout resume r1 --timeout 5 >"$EF_TMP/resume.out" 2>"$EF_TMP/resume.err" ||
  fail "resume with a controller: $(cat "$EF_TMP/resume.err")"
grep -q "r1 running: step 2/3" "$EF_TMP/resume.out" || fail "resume output: $(cat "$EF_TMP/resume.out")"
assert_eq '{"action":"resume"}' "$(jq -c . "$EF_TMP/got-resume.json")" "resume document"
# an answer that is not the effect: exit 1 with what the controller says
answer abort running '"busy"'
rc=0
console rollout abort r1 --timeout 2 >/dev/null 2>"$EF_TMP/abort.err" || rc=$?
assert_eq 1 "$rc" "abort answered without effect"
grep -q "the controller did not abort rollout r1 within 2 s: r1 running: .*(busy)" "$EF_TMP/abort.err" ||
  fail "abort without effect: $(cat "$EF_TMP/abort.err")"
answer abort aborted '"by the operator"'
console rollout abort r1 --timeout 5 >"$EF_TMP/abort.out" 2>"$EF_TMP/abort.err" ||
  fail "abort with a controller: $(cat "$EF_TMP/abort.err")"
grep -q "r1 aborted: .*(by the operator)" "$EF_TMP/abort.out" || fail "abort output: $(cat "$EF_TMP/abort.out")"
# an ended rollout takes no control (and nothing is published)
rc=0
console rollout pause r1 --timeout 5 >/dev/null 2>"$EF_TMP/ended.err" || rc=$?
assert_eq 1 "$rc" "pause of an aborted rollout"
grep -q "rollout r1 is aborted: nothing to pause" "$EF_TMP/ended.err" || fail "ended: $(cat "$EF_TMP/ended.err")"
pass "pause/resume/abort wait for the status to show the effect"

# ---- show: a status published by hand, texts escaped
pub -r -t "$P/rollouts/r2/status" -m "$(status r2 halted 1 '"step 2: 2 of 4 succeeded\u001b[2J, 90 % needed"')"
console rollout show r2 >"$EF_TMP/show.out" 2>"$EF_TMP/show.err" || fail "show: $(cat "$EF_TMP/show.err")"
for want in "rollout   r2" "job       j-r2" "state     halted" "step      2/3 (4 of 40 device(s) reached)" \
  "devices   waiting 36, sent 0, running 1, succeeded 2, failed 1, timed_out 0, offline 0" \
  'reason    step 2: 2 of 4 succeeded\x1b[2J, 90 % needed' "created   2025-01-20T10:00:00.000Z" \
  "updated   2025-01-20T10:05:00.000Z"; do
  grep -qxF "$want" "$EF_TMP/show.out" || fail "show has no line '$want': $(cat "$EF_TMP/show.out")"
done
! LC_ALL=C grep -qP '[\x00-\x09\x0b-\x1f\x7f]' "$EF_TMP/show.out" || fail "show printed a raw control character"
# --devices: the controller answers the devices request
cat >"$EF_TMP/devices.json" <<'EOF2'
{"rollout_id":"r2","devices":[
 {"device_id":"gw-2","step":1,"state":"failed","job_state":"failed","error":"hash_mismatch: x\u001b]0;t","updated":"2025-01-20T10:05:00Z"},
 {"device_id":"gw-1","step":0,"state":"succeeded","job_state":"succeeded","error":null,"updated":"2025-01-20T10:01:00Z"},
 {"device_id":"gw-3","step":-1,"state":"waiting","job_state":null,"error":null,"updated":"2025-01-20T10:00:00Z"}]}
EOF2
on_message "$P/rollouts/r2/control" "$EF_TMP/got-devices.json" "pub -t '$P/rollouts/r2/devices' -f '$EF_TMP/devices.json'"
console rollout show r2 --devices >"$EF_TMP/show-devices.out" 2>"$EF_TMP/show.err" ||
  fail "show --devices: $(cat "$EF_TMP/show.err")"
assert_eq '{"action":"devices"}' "$(jq -c . "$EF_TMP/got-devices.json")" "devices request"
expect rollout-control.schema.json "$(cat "$EF_TMP/got-devices.json")"
expect rollout-devices.schema.json "$(cat "$EF_TMP/devices.json")"
sed -n '/^DEVICE/,$p' "$EF_TMP/show-devices.out" >"$EF_TMP/rows.txt"
grep -Eq '^DEVICE +STEP +STATE +JOB_STATE +ERROR$' "$EF_TMP/rows.txt" || fail "rows: $(cat "$EF_TMP/rows.txt")"
grep -Eq '^gw-1 +1 +succeeded +succeeded +-$' "$EF_TMP/rows.txt" || fail "gw-1 row: $(cat "$EF_TMP/rows.txt")"
grep -Eq '^gw-2 +2 +failed +failed +hash_mismatch: x\\x1b\]0;t$' "$EF_TMP/rows.txt" ||
  fail "gw-2 row: $(cat "$EF_TMP/rows.txt")"
grep -Eq '^gw-3 +- +waiting +- +-$' "$EF_TMP/rows.txt" || fail "gw-3 row: $(cat "$EF_TMP/rows.txt")"
rc=0
console rollout show r-none --timeout 1 >/dev/null 2>"$EF_TMP/none.err" || rc=$?
assert_eq 1 "$rc" "show of an unknown rollout"
grep -q "no status of rollout r-none within 1 s" "$EF_TMP/none.err" || fail "unknown: $(cat "$EF_TMP/none.err")"
pass "show prints the status (escaped) and, with --devices, the controller's rows"

# ---- list: every status, after an announce request
record "$P/announce" "$EF_TMP/announce.log"
console rollout list --timeout 1 >"$EF_TMP/list.out" 2>"$EF_TMP/list.err" || fail "list: $(cat "$EF_TMP/list.err")"
grep -Eq '^ROLLOUT +JOB +STATE +STEP +SUCCEEDED +FAILED +DEVICES$' "$EF_TMP/list.out" ||
  fail "list header: $(cat "$EF_TMP/list.out")"
grep -Eq '^r1 +j-r1 +aborted +2/3 +2 +1 +40$' "$EF_TMP/list.out" || fail "list r1: $(cat "$EF_TMP/list.out")"
grep -Eq '^r2 +j-r2 +halted +2/3 +2 +1 +40$' "$EF_TMP/list.out" || fail "list r2: $(cat "$EF_TMP/list.out")"
assert_eq 3 "$(wc -l <"$EF_TMP/list.out")" "list lines"
console status --timeout 0.5 >/dev/null || fail "status"
console status --timeout 0.5 --no-announce >/dev/null || fail "status --no-announce"
console rollout list --no-announce --timeout 0.5 >/dev/null || fail "list --no-announce"
sleep 0.3
assert_eq "$P/announce {\"scope\":\"rollouts\"}
$P/announce {\"scope\":\"devices\"}" "$(cat "$EF_TMP/announce.log")" "announce requests"
expect announce.schema.json '{"scope":"rollouts"}'
expect announce.schema.json '{"scope":"devices"}'
pass "list shows every rollout's status; list and status send announce requests (not with --no-announce)"

# ---- create --wait: follows the status to its end
# controller R STATE:STEP...: once the rollout document of R arrives,
# publishes these statuses, as espfleet-controller would.
controller() {
  local r=$1 cmd="" s
  shift
  for s in "$@"; do
    cmd+="pub -r -t '$P/rollouts/$r/status' -m '$(status "$r" "${s%:*}" "${s#*:}" '"the end"')'; sleep 0.1; "
  done
  on_message "$P/rollouts/$r" /dev/null "$cmd"
}
controller r3 pending:-1 running:0 running:1 completed:2
console rollout create "$EF_TMP/fw.bin" --rollout-id r3 --url "$URL" --group lab --steps 1,10%,100% --wait \
  --timeout 20 >"$EF_TMP/wait.out" 2>"$EF_TMP/wait.err" || fail "create --wait: $(cat "$EF_TMP/wait.err")"
grep -q "r3 completed: step 3/3" "$EF_TMP/wait.out" || fail "create --wait: $(cat "$EF_TMP/wait.out")"
assert_eq 5 "$(wc -l <"$EF_TMP/wait.out")" "create --wait lines (published, pending, step 1, step 2, completed)"
# the same rollout again: nothing is published, --wait shows where it is
console rollout create "$EF_TMP/fw.bin" --rollout-id r3 --url "$URL" --group lab --steps 1,10%,100% --wait \
  --timeout 5 >"$EF_TMP/again.out" 2>"$EF_TMP/again.err" || fail "create again: $(cat "$EF_TMP/again.err")"
grep -q "rollout r3 exists with this document; not published again" "$EF_TMP/again.out" ||
  fail "create again: $(cat "$EF_TMP/again.out")"
grep -q "r3 completed: step 3/3" "$EF_TMP/again.out" || fail "create again: $(cat "$EF_TMP/again.out")"
# another document under an id the controller holds: refused (it would be ignored), nothing published
before=$(retained "$P/rollouts/r3")
rc=0
console rollout create "$EF_TMP/fw.bin" --rollout-id r3 --url "$URL" --group lab --steps 50%,100% \
  >/dev/null 2>"$EF_TMP/exists.err" || rc=$?
assert_eq 1 "$rc" "create of an existing rollout with another document"
grep -q "rollout r3 exists (r3 completed: step 3/3.*) and a rollout cannot be changed: delete it first ('rollout delete r3')" \
  "$EF_TMP/exists.err" || fail "existing rollout: $(cat "$EF_TMP/exists.err")"
assert_eq "$before" "$(retained "$P/rollouts/r3")" "the rollout document after a refused change"
# an invalid rollout is not held by the controller: it may be replaced
pub -r -t "$P/rollouts/r6" -m '{"rollout_id":"r6"}'
pub -r -t "$P/rollouts/r6/status" -m "$(status r6 invalid -1 '"job: must be a job document"')"
console rollout create "$EF_TMP/fw.bin" --rollout-id r6 --url "$URL" --group lab >"$EF_TMP/r6.out" 2>&1 ||
  fail "create over an invalid rollout: $(cat "$EF_TMP/r6.out")"
jq -e '.target.groups == ["lab"]' <<<"$(retained "$P/rollouts/r6")" >/dev/null || fail "r6 was not replaced"
controller r5 running:0 aborted:1
rc=0
console rollout create "$EF_TMP/fw.bin" --rollout-id r5 --url "$URL" --group lab --steps 1,10%,100% --wait \
  --timeout 20 >/dev/null 2>"$EF_TMP/wait.err" || rc=$?
assert_eq 1 "$rc" "create --wait of an aborted rollout"
assert_eq rollout_aborted "$(console_code "$EF_TMP/wait.err")" "error code of an aborted rollout"
grep -q "rollout r5 aborted: the end" "$EF_TMP/wait.err" || fail "aborted: $(cat "$EF_TMP/wait.err")"
rc=0
console rollout create "$EF_TMP/fw.bin" --rollout-id r4 --url "$URL" --group lab --wait --timeout 1 \
  >/dev/null 2>"$EF_TMP/wait.err" || rc=$?
assert_eq 3 "$rc" "create --wait with no controller"
grep -q "timed out after 1 s; the rollout goes on" "$EF_TMP/wait.err" || fail "timeout: $(cat "$EF_TMP/wait.err")"
pass "create --wait exits 0 when completed, 1 when aborted, 3 on --timeout; an existing rollout is not changed"

# ---- delete: the retained document is cleared
[ -n "$(retained "$P/rollouts/r1")" ] || fail "r1 has no retained document before delete"
console rollout delete r1 >"$EF_TMP/delete.out" || fail "delete"
grep -q "deleted rollout r1: cleared the retained rollout document on $P/rollouts/r1" "$EF_TMP/delete.out" ||
  fail "delete output: $(cat "$EF_TMP/delete.out")"
assert_eq "" "$(retained "$P/rollouts/r1")" "retained document after delete"
pass "delete clears the retained rollout document"

# ---- cancel --group: on the group's cancel topic, not retained
record "$P/groups/+/cancel" "$EF_TMP/cancel.log"
console cancel j-r1 --group lab >"$EF_TMP/cancel.out" || fail "cancel --group"
grep -q "published cancel of job j-r1 to $P/groups/lab/cancel" "$EF_TMP/cancel.out" ||
  fail "cancel output: $(cat "$EF_TMP/cancel.out")"
wait_for "grep -q . '$EF_TMP/cancel.log'" 5 || fail "nothing on the group's cancel topic"
assert_eq "$P/groups/lab/cancel {\"job_id\":\"j-r1\"}" "$(cat "$EF_TMP/cancel.log")" "group cancel"
assert_eq "" "$(retained "$P/groups/lab/cancel")" "retained group cancel"
rc=0
console cancel j-r1 --group lab --device gw-1 >/dev/null 2>&1 || rc=$?
assert_eq 2 "$rc" "cancel with --group and --device"
pass "cancel --group publishes the cancel document on the group's cancel topic"

# ---- the documents above against their JSON Schemas (docs/schema/), the
# hand-written statuses too: they stand for what espfleet-controller writes
expect rollout-status.schema.json "$(status r1 running 1)"
expect rollout-status.schema.json "$(status r2 halted -1 '"a reason"')"
expect cancel.schema.json '{"job_id":"j-r1"}'
if python3 -c 'import jsonschema; jsonschema.Draft202012Validator' >/dev/null 2>&1; then
  python3 - "$EF_SRC/docs/schema" "$EF_TMP/docs.tsv" <<'PYTHON' || fail "a document does not follow its schema"
import json, os, sys
import jsonschema
from jsonschema import Draft202012Validator
schema_dir, docs = sys.argv[1], sys.argv[2]
schemas = {}
for name in os.listdir(schema_dir):
    if name.endswith(".schema.json"):
        with open(os.path.join(schema_dir, name), encoding="utf-8") as f:
            schemas[name] = json.load(f)
try:  # jsonschema >= 4.18: $ref between files by $id, never fetched
    from referencing import Registry, Resource
    registry = Registry().with_resources((s["$id"], Resource.from_contents(s)) for s in schemas.values())
    make = lambda s: Draft202012Validator(s, registry=registry)
except ImportError:
    from jsonschema import RefResolver
    store = {s["$id"]: s for s in schemas.values()}
    make = lambda s: Draft202012Validator(s, resolver=RefResolver(base_uri=s["$id"], referrer=s, store=store))
bad = 0
with open(docs, encoding="utf-8") as f:
    for line in f:
        name, text = line.rstrip("\n").split("\t", 1)
        for e in make(schemas[name]).iter_errors(json.loads(text)):
            print("%s: %s at /%s: %s" % (name, text[:120], "/".join(map(str, e.absolute_path)), e.message))
            bad += 1
sys.exit(1 if bad else 0)
PYTHON
  pass "the rollout, control, announce and cancel documents and the hand-written statuses follow docs/schema/"
else
  log "python3 jsonschema is not installed: the documents were not checked against docs/schema/"
fi

# ---- with espfleet-controller itself: two devices played by hand
if [ -x "$EF_BIN/espfleet-controller" ]; then
  jq -n --arg uri "$BROKER" --arg db "$EF_TMP/controller.db" \
    '{mqtt: {uri: $uri, client_id: "ctl-console-test", topic_prefix: "espfleet"},
      controller: {database: $db, discovery_s: 1, tick_ms: 200}, http: {listen: ""}}' >"$EF_TMP/controller.json"
  # device ID: known to the controller by its state (group e2e); once a job
  # arrives, it reports the job succeeded (state and result), as espfleetd would.
  device() {
    local state='{"device_id":"'$1'","online":true,"state":"idle","job_id":null,"groups":["e2e"]}'
    pub -r -t "$P/devices/$1/state" -m "$state"
    on_message "$P/devices/$1/job" "$EF_TMP/job-$1.json" \
      "j=\$(jq -r .job_id '$EF_TMP/job-$1.json'); d=\$(jq -c --arg j \"\$j\" '.state = \"succeeded\" | .job_id = \$j' <<<'$state');
       pub -r -t '$P/devices/$1/state' -m \"\$d\"; pub -r -t \"$P/devices/$1/jobs/\$j\" -m \"\$d\""
  }
  device gw-a
  device gw-b
  "$EF_BIN/espfleet-controller" --config "$EF_TMP/controller.json" >"$EF_TMP/controller.log" 2>&1 &
  track_pid $!
  e2e=(rollout create "$EF_TMP/fw.bin" --rollout-id e1 --job-id j-e1 --url "$URL" --group e2e --steps 1,100%)
  console "${e2e[@]}" >/dev/null 2>"$EF_TMP/e2e.err" || fail "create for the controller: $(cat "$EF_TMP/e2e.err")"
  # the same rollout again with --wait follows it to its end
  console "${e2e[@]}" --wait --timeout 30 >"$EF_TMP/e2e.out" 2>"$EF_TMP/e2e.err" ||
    fail "create --wait with the controller: $(cat "$EF_TMP/e2e.err") $(cat "$EF_TMP/e2e.out") $(cat "$EF_TMP/controller.log")"
  grep -q "e1 completed: step 2/2, 2 of 2 device(s) reached: 2 succeeded" "$EF_TMP/e2e.out" ||
    fail "create --wait with the controller: $(cat "$EF_TMP/e2e.out")"
  console rollout list --timeout 1 >"$EF_TMP/e2e-list.out" || fail "list with the controller"
  grep -Eq '^e1 +j-e1 +completed +2/2 +2 +0 +2$' "$EF_TMP/e2e-list.out" || fail "list: $(cat "$EF_TMP/e2e-list.out")"
  console rollout show e1 --devices >"$EF_TMP/e2e-show.out" || fail "show --devices with the controller"
  grep -Eq '^gw-a +[12] +succeeded +succeeded +-$' "$EF_TMP/e2e-show.out" || fail "show: $(cat "$EF_TMP/e2e-show.out")"
  rc=0
  console rollout pause e1 >/dev/null 2>"$EF_TMP/e2e.err" || rc=$?
  assert_eq 1 "$rc" "pause of a completed rollout"
  console rollout delete e1 >/dev/null || fail "delete with the controller"
  wait_for "[ -z \"\$(retained '$P/rollouts/e1/status')\" ]" 10 || fail "the controller did not clear the status"
  pass "with espfleet-controller: create --wait follows the rollout to completed; list, show, delete"
fi
