#!/usr/bin/env bash
# Every document espfleet writes is valid under its JSON Schema in docs/schema/:
#   1. the schemas themselves: valid draft 2020-12, and their examples valid;
#   2. ef_docs (tests/tools/ef_docs.c): a sample of every document the
#      library writes (every state with and without error, every error code,
#      the last will, progress, cancel, announce, jobs, manifests, rollouts,
#      rollout control, status and devices), each against its schema;
#   3. the schemas bite: hand-written bad documents are refused, each for the
#      reason it was written for;
#   4. live: the documents a running espfleetd publishes during a successful
#      job, a replaced waiting job, a refused job, an announce request and a
#      clean stop (state, progress and job results, by topic).
# Needs python3 with jsonschema 4.x (Debian: python3-jsonschema); skips without.
. "${ESPFLEET_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/integration/lib.sh"

SCHEMAS=$EF_SRC/docs/schema
require_bin ef_docs
require_cmd jq

PY=
for py in python3 /usr/bin/python3; do
  if command -v "$py" >/dev/null 2>&1 &&
    "$py" -c 'import jsonschema; jsonschema.Draft202012Validator' >/dev/null 2>&1; then
    PY=$py
    break
  fi
done
[ -n "$PY" ] || skip "python3 jsonschema (4.x, with Draft202012Validator) is not installed (apt-get install python3-jsonschema)"

# ---- the validator ----
# validate.py SCHEMA_DIR check FILE:   every line "<schema> <json>" or "<schema>\t<label>\t<json>"
#                                      must be valid (the label names the document in failures)
# validate.py SCHEMA_DIR reject FILE:  every line "<schema>\t<EXPECT>\t<json>" must be invalid,
#                                      with an error whose schema path or message contains EXPECT
# validate.py SCHEMA_DIR schemas:      every schema is valid draft 2020-12 and so are its examples
cat >"$EF_TMP/validate.py" <<'PYTHON'
import json, os, re, sys
import jsonschema
from jsonschema import Draft202012Validator
sys.path.insert(0, os.environ["EF_SCHEMA_SUPPORT"])
from schema_support import FORMATS, strict_json  # shared with api_check.py
from jsonschema.exceptions import best_match

schema_dir, mode = sys.argv[1], sys.argv[2]
schemas = {}
for name in sorted(os.listdir(schema_dir)):
    if name.endswith(".schema.json"):
        with open(os.path.join(schema_dir, name), encoding="utf-8") as f:
            schemas[name] = json.load(f)

# $ref between files: resolved by $id, never fetched.
try:
    from referencing import Registry, Resource  # jsonschema >= 4.18
    registry = Registry().with_resources(
        (s["$id"], Resource.from_contents(s)) for s in schemas.values())
    def make(schema):
        return Draft202012Validator(schema, registry=registry, format_checker=FORMATS)
except ImportError:  # jsonschema 4.0-4.17 (Debian bookworm has 4.10)
    from jsonschema import RefResolver
    store = {s["$id"]: s for s in schemas.values()}
    def make(schema):
        resolver = RefResolver(base_uri=schema["$id"], referrer=schema, store=store)
        return Draft202012Validator(schema, resolver=resolver, format_checker=FORMATS)

validators = {name: make(s) for name, s in schemas.items()}

def path(p):
    # "$ref" steps are left out: jsonschema versions differ in whether they list them
    return "/" + "/".join(str(x) for x in p if x != "$ref")

def flatten(errors):
    for e in errors:
        yield e
        yield from flatten(e.context or [])

def describe(e, indent="    "):
    out = ["%sat %s: %s" % (indent, path(e.absolute_path), short(e.message)),
           "%s  schema path: %s" % (indent, path(e.absolute_schema_path))]
    if e.context:  # oneOf/anyOf: why each alternative failed (its most relevant error)
        alternatives = {}
        for c in e.context:
            alternatives.setdefault(c.relative_schema_path[0], []).append(c)
        for _, errs in sorted(alternatives.items(), key=lambda kv: str(kv[0])):
            out += describe(best_match(errs), indent + "    ")
    return out

def short(text, n=300):
    return text if len(text) <= n else text[:n] + "..."

def split(line):
    if "\t" in line:  # "<schema>\t<label>\t<json>"
        schema, label, rest = (line.split("\t", 2) + ["", ""])[:3]
        return schema, label, rest
    schema, _, rest = line.partition(" ")
    return schema, "", rest

def errors_of(schema, text):
    if schema not in validators:
        return None, ["    no schema %s in %s" % (schema, schema_dir)]
    try:
        doc = strict_json(text)
    except ValueError as e:
        return None, ["    not valid JSON: %s" % e]
    return doc, sorted(validators[schema].iter_errors(doc), key=lambda e: list(e.absolute_path))

failed = 0
if mode == "schemas":
    for name, s in schemas.items():
        try:
            Draft202012Validator.check_schema(s)
        except jsonschema.SchemaError as e:
            print("FAIL: %s is not a valid draft 2020-12 schema: %s (at %s)" % (name, e.message, path(e.absolute_path)))
            failed += 1
            continue
        if s.get("$schema") != "https://json-schema.org/draft/2020-12/schema" or \
           s.get("$id") != "https://espfleet.example/schema/" + name or not s.get("description"):
            print("FAIL: %s: $schema, $id (https://espfleet.example/schema/%s) and description are required" % (name, name))
            failed += 1
        for i, example in enumerate(s.get("examples", [])):
            errs = sorted(validators[name].iter_errors(example), key=lambda e: list(e.absolute_path))
            if errs:
                failed += 1
                print("FAIL: %s examples[%d] is invalid under its own schema" % (name, i))
                for e in errs:
                    print("\n".join(describe(e)))
    print("%d schemas checked, %d problems" % (len(schemas), failed))
    sys.exit(1 if failed else 0)

source = sys.argv[3]
counts = {}
with open(source, encoding="utf-8") as f:
    lines = [l.rstrip("\n") for l in f]
for n, line in enumerate(lines, 1):
    if not line.strip():
        continue
    schema, label, text = split(line)
    counts[schema] = counts.get(schema, 0) + 1
    doc, errs = errors_of(schema, text)
    where = "%s:%d%s" % (os.path.basename(source), n, " (%s)" % label if label and mode == "check" else "")
    if mode == "check":
        if errs:
            failed += 1
            print("FAIL: %s: document invalid under %s:\n    %s" % (where, schema, short(text, 600)))
            for e in errs:
                print("\n".join(describe(e) if hasattr(e, "message") else [e]))
    else:
        if doc is None:
            failed += 1
            print("FAIL: %s: bad test line: %s" % (where, errs))
        elif not errs:
            failed += 1
            print("FAIL: %s: %s accepts a document it must refuse (%s):\n    %s" % (where, schema, label, short(text, 600)))
        elif not any(label in path(e.absolute_schema_path) or label in e.message for e in flatten(errs)):
            failed += 1
            print("FAIL: %s: %s refuses the document, but not for %s:\n    %s" % (where, schema, label, short(text, 600)))
            for e in errs:
                print("\n".join(describe(e)))
print("%s: %d documents (%s), %d problems" % (os.path.basename(source), sum(counts.values()),
      ", ".join("%s %d" % kv for kv in sorted(counts.items())), failed))
sys.exit(1 if failed else 0)
PYTHON

validate() { EF_SCHEMA_SUPPORT=$EF_SRC/tests/integration "$PY" "$EF_TMP/validate.py" "$SCHEMAS" "$@"; }

# ---- 1. the schemas ----
validate schemas || fail "docs/schema/ has invalid schemas or examples"
pass "every schema is valid draft 2020-12 and its examples validate"

# ---- 2. every document the library writes ----
"$EF_BIN/ef_docs" >"$EF_TMP/docs.txt" || fail "ef_docs failed (see above)"
validate check "$EF_TMP/docs.txt" || fail "documents written by the library do not match docs/schema/"
for f in "$SCHEMAS"/*.schema.json; do
  name=$(basename "$f")
  grep -q "^$name " "$EF_TMP/docs.txt" || fail "ef_docs writes no document for $name"
done
pass "$(wc -l <"$EF_TMP/docs.txt") sample documents from the library's writers match their schemas"

# ---- 3. the schemas bite ----
# Each line: <schema> TAB <what the refusal must name: a part of an error's
# schema path or message> TAB <document>. Most are a valid sample with one thing broken.
sample() { grep -m1 "^$1 .*$2" "$EF_TMP/docs.txt" | cut -d' ' -f2-; }
state_ok=$(sample state.schema.json '"state":"succeeded".*"groups":\["site-a"')
failed_ok=$(sample state.schema.json '"state":"failed".*"error"')
status_ok=$(sample rollout-status.schema.json '"state":"running"')
devices_ok=$(sample rollout-devices.schema.json '"gw-0000"')
progress_ok=$(sample progress.schema.json '"percent":50')
job='{"job_id":"j1","url":"https://fw.example.com/a.bin","sha256":"60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752","size":307200,"version":"1.1.0"}'
rollout_ok='{"rollout_id":"r1","job":'$job',"target":{"groups":["site-a"]},"steps":[{"count":1},{"percent":10},{"percent":100}],"policy":{"windows":[{"start":"22:00","end":"06:00"}]}}'
for doc in "$state_ok" "$failed_ok" "$status_ok" "$devices_ok" "$progress_ok"; do
  [ -n "$doc" ] || fail "a base document for the negative checks is missing from ef_docs' output"
done
printf 'rollout.schema.json %s\n' "$rollout_ok" >"$EF_TMP/good.txt"
validate check "$EF_TMP/good.txt" >/dev/null || fail "the hand-written rollout of the negative checks is not valid to begin with"

bad() { printf '%s\t%s\t%s\n' "$1" "$2" "$(jq -c "$3" <<<"$4")" >>"$EF_TMP/bad.txt"; }
: >"$EF_TMP/bad.txt"
# the three asked for by name
printf 'rollout.schema.json\t%s\t{"rollout_id":"r1","job":%s,"target":{"groups":["site-a"]},"steps":[{"percent":10},{"percent":50}]}\n' \
  /properties/steps/anyOf "$job" >>"$EF_TMP/bad.txt"
bad state.schema.json /properties/state/ '.state = "installing"' "$state_ok"
bad rollout-status.schema.json "'counts' is a required property" 'del(.counts)' "$status_ok"
# rollout
bad rollout.schema.json /properties/steps/anyOf '.steps += [{"count": 500}]' "$rollout_ok"
bad rollout.schema.json /properties/steps/items/ '.steps = [{"percent": 50, "count": 3}, {"percent": 100}]' "$rollout_ok"
bad rollout.schema.json "False schema does not allow {'percent': 10}" '.job.rollout = {"percent": 10}' "$rollout_ok"
bad rollout.schema.json /properties/job/ '.job.sha256 = "abc"' "$rollout_ok"
bad rollout.schema.json /properties/target/anyOf 'del(.target.groups) | .target.devices = []' "$rollout_ok"
bad rollout.schema.json /properties/policy/additionalProperties '.policy.sucess_percent = 90' "$rollout_ok"
bad rollout.schema.json /properties/policy/properties/abort/additionalProperties '.policy.abort = {"failures": 1}' "$rollout_ok"
bad rollout.schema.json /properties/end/pattern '.policy.windows[0].end = "24:00"' "$rollout_ok"
bad rollout.schema.json /properties/policy/properties/in_progress_timeout_s/minimum '.policy.in_progress_timeout_s = 5' "$rollout_ok"
bad rollout.schema.json /additionalProperties '.owner = "me"' "$rollout_ok"
# state and per-job result
bad state.schema.json /allOf/0/then/required 'del(.error) | .state = "failed"' "$failed_ok"
bad state.schema.json /allOf/1/then/not '.state = "succeeded"' "$failed_ok"
bad state.schema.json "'groups' is a required property" 'del(.groups)' "$state_ok"
bad state.schema.json /properties/groups/items/ '.groups = ["a/b"]' "$state_ok"
bad state.schema.json /properties/groups/uniqueItems '.groups = ["a", "a"]' "$state_ok"
bad state.schema.json /oneOf/1/additionalProperties '{device_id, online: false, client_version, job_id}' "$state_ok"
bad job-result.schema.json /properties/state/ '.state = "downloading"' "$state_ok"
bad job-result.schema.json /properties/job_id/type '.job_id = null' "$state_ok"
bad job-result.schema.json "'state' is a required property" '{device_id, online: false, client_version}' "$state_ok"
# progress, rollout status and devices, commands
bad progress.schema.json /properties/percent/maximum '.percent = 101' "$progress_ok"
bad rollout-status.schema.json /properties/state/enum '.state = "done"' "$status_ok"
bad rollout-status.schema.json /properties/counts/additionalProperties '.counts.lost = 1' "$status_ok"
bad rollout-devices.schema.json /items/properties/state/enum '.devices[0].state = "done"' "$devices_ok"
bad rollout-devices.schema.json /items/properties/job_state/ '.devices[1].job_state = "installing"' "$devices_ok"
bad rollout-devices.schema.json /properties/updated/format '.devices[0].updated = "yesterday"' "$devices_ok"
bad rollout-control.schema.json /properties/action/enum '.action = "stop"' '{"action":"pause"}'
bad announce.schema.json /properties/scope/enum '.scope = "everyone"' '{"scope":"all"}'
bad cancel.schema.json /properties/job_id/pattern '.job_id = ""' '{"job_id":"j1"}'
validate reject "$EF_TMP/bad.txt" || fail "a schema accepts a document it must refuse"
pass "$(wc -l <"$EF_TMP/bad.txt") bad documents are refused, each for its reason"

# ---- 4. live: what a running espfleetd publishes ----
. "$EF_SRC/tests/integration/lib_fleet.sh"
# 200 KiB at 200 KB/s: job-1 downloads for about a second, time enough to
# queue job-2 and have job-3 replace it.
NGINX_RATE=200000 fleet_start
mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -v -t "$PREFIX/#" >"$EF_TMP/live.log" 2>/dev/null &
SUB_PID=$!
track_pid "$SUB_PID"
sleep 0.3
# seen 'REGEX': a line of the subscription matches (topic, space, payload)
seen() { grep -q -- "$1" "$EF_TMP/live.log"; }

mkimage "$EF_TMP/v1.bin" 1.1.0 schema-demo 200K
serve "$EF_TMP/v1.bin" v1.bin
publish_job "$(job_json job-1 v1.bin '.project = "schema-demo" | .chip = "esp32s3"')"
wait_for "seen '^$STATE_TOPIC .*\"state\":\"downloading\",\"job_id\":\"job-1\"'" 10 || fail "job-1 did not start"
# While job-1 runs: job-2 waits, job-3 replaces it (job-2 ends canceled,
# job_replaced), a job with a bad sha256 is rejected at once.
{
  job_json job-2 v1.bin
  job_json job-3 v1.bin
  job_json job-4 v1.bin '.sha256 = "abc"'
} | mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -t "$JOB_TOPIC" -l
wait_for "seen '^$PREFIX/devices/$DEV/jobs/job-2 .*\"state\":\"canceled\"'" 10 ||
  fail "no canceled result for job-2 (job-1 finished before job-2 and job-3 arrived?)"
wait_for "seen '^$PREFIX/devices/$DEV/jobs/job-1 .*\"state\":\"succeeded\"'" 30 || fail "no result for job-1"
wait_for "seen '^$PREFIX/devices/$DEV/jobs/job-3 .*\"state\":\"succeeded\"'" 10 || fail "no result for job-3"
# An announce request: the device says its state and job-1's result again.
mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -t "$PREFIX/announce" -m '{"scope":"devices","job_id":"job-1"}'
wait_for "[ \$(grep -c '^$PREFIX/devices/$DEV/jobs/job-1 ' '$EF_TMP/live.log') -ge 2 ]" 5 ||
  fail "no answer to the announce request"
# A clean stop publishes the full state once more, online false.
kill_daemon TERM
wait_for "seen '^$STATE_TOPIC .*\"online\":false'" 5 || fail "no state after the clean stop"
stop_pid "$SUB_PID" || true

# Topic -> schema, for what devices publish; the rest (the test's own jobs,
# the announce request) is not espfleetd's.
awk -v p="$PREFIX/devices/" '
  index($1, p) != 1 || NF < 2 || $2 == "(null)" { next }
  { rest = substr($0, length($1) + 2); n = split(substr($1, length(p) + 1), part, "/") }
  n == 2 && part[2] == "state"    { print "state.schema.json\t" $1 "\t" rest }
  n == 2 && part[2] == "progress" { print "progress.schema.json\t" $1 "\t" rest }
  n == 3 && part[2] == "jobs"     { print "job-result.schema.json\t" $1 "\t" rest }
' "$EF_TMP/live.log" >"$EF_TMP/live.txt"
validate check "$EF_TMP/live.txt" || fail "documents published by espfleetd do not match docs/schema/"
for what in '"state":"downloading"' '"state":"verifying"' '"state":"activating"' '"state":"rebooting"' \
  '"state":"rejected"' '"detail":"job_replaced' '"online":false' '"percent":100'; do
  grep -q "$what" "$EF_TMP/live.txt" || fail "the live run published no document with $what"
done
# A result is about the job of its topic.
awk -F'\t' '$1 == "job-result.schema.json" { n = split($2, t, "/"); print t[n] " " $3 }' "$EF_TMP/live.txt" |
  while read -r id json; do
    assert_eq "$id" "$(jq -r .job_id <<<"$json")" "job_id of the result on .../jobs/$id"
  done
pass "$(wc -l <"$EF_TMP/live.txt") documents published by espfleetd match their schemas ($(cut -f1 "$EF_TMP/live.txt" | sort | uniq -c | awk '{printf "%s%s %s", sep, $2, $1; sep=", "}'))"
