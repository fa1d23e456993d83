#!/usr/bin/env bash
# espfleet-console against the whole fleet on loopback (mosquitto, nginx,
# the simulator, espfleetd): `job --print` describes the image; `job` installs
# it and `watch --until-final` sees it succeed; `status --json` shows the
# result, with its progress column and the job's counts; an invalid image is
# refused and nothing is published; a refused downgrade makes `watch` exit 1
# and a missing job exit 3. (Rollouts: test_console_rollout.sh.)
. "${ESPFLEET_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/integration/lib.sh"
. "$EF_SRC/tests/integration/lib_fleet.sh"
require_bin espfleet-console
fleet_start

BROKER=mqtt://127.0.0.1:$MQTT_PORT
console() { "$EF_BIN/espfleet-console" "$1" --broker "$BROKER" "${@:2}"; }
# console_code FILE: the <code> of "espfleet-console: error: <code>: ..." in FILE.
console_code() { sed -n 's/^espfleet-console: error: \([a-z_]*\):.*/\1/p' "$1" | tail -n1; }

mkimage "$EF_TMP/v1.bin" 1.1.0 fleet-demo 600K
serve "$EF_TMP/v1.bin" v1.bin
v1_sha=$(sha256_of "$EF_TMP/v1.bin")
v1_size=$(stat -c %s "$EF_TMP/v1.bin")

# ---- job --print: the document describes the image
console job "$EF_TMP/v1.bin" --url "$URL_BASE/v1.bin" --print >"$EF_TMP/print.json" ||
  fail "job --print failed"
doc=$(cat "$EF_TMP/print.json")
assert_eq "$v1_sha" "$(jq -r .sha256 <<<"$doc")" "printed sha256"
assert_eq "$v1_size" "$(jq -r .size <<<"$doc")" "printed size"
assert_eq 1.1.0 "$(jq -r .version <<<"$doc")" "printed version"
assert_eq fleet-demo "$(jq -r .project <<<"$doc")" "printed project"
assert_eq esp32s3 "$(jq -r .chip <<<"$doc")" "printed chip"
assert_eq "$URL_BASE/v1.bin" "$(jq -r .url <<<"$doc")" "printed url"
assert_eq "fleet-demo-1.1.0-${v1_sha:0:8}" "$(jq -r .job_id <<<"$doc")" "default job_id"
assert_eq null "$(jq -r .rollout <<<"$doc")" "no rollout without --percent"
jq -e '(.job_id | test("^[A-Za-z0-9._:-]{1,64}$")) and (.sha256 | test("^[0-9a-f]{64}$"))' <<<"$doc" >/dev/null ||
  fail "printed job is not a valid job: $doc"
doc=$(console job "$EF_TMP/v1.bin" --url "$URL_BASE/v1.bin" --print --job-id x-1 --percent 25 \
  --allow-downgrade --not-after 2099-01-01T00:00:00Z --expect-fw-version FG-1.1.0.0.0) || fail "job --print with options"
jq -e '.job_id == "x-1" and .rollout.percent == 25 and .allow_downgrade == true and
       .not_after == "2099-01-01T00:00:00Z" and .expect_fw_version == "FG-1.1.0.0.0"' <<<"$doc" >/dev/null ||
  fail "job options not in the document: $doc"
# the document is the library's (ef_job_to_json): a time with an offset is written in UTC
doc=$(console job "$EF_TMP/v1.bin" --url "$URL_BASE/v1.bin" --print --not-after 2099-01-01T02:00:00+02:00) ||
  fail "job --print --not-after with an offset"
assert_eq 2099-01-01T00:00:00Z "$(jq -r .not_after <<<"$doc")" "not_after in UTC"
rc=0
console job "$EF_TMP/v1.bin" --url "$URL_BASE/v1.bin" --print --job-id "$(printf 'x%.0s' {1..65})" \
  >/dev/null 2>"$EF_TMP/id.err" || rc=$?
assert_eq 1 "$rc" "exit status for a job_id of 65 characters"
grep -q "(job_id: must be 1-64 characters" "$EF_TMP/id.err" || fail "long job_id: $(cat "$EF_TMP/id.err")"
# ---- signed: --manifest puts the release in the job; --sign-key signs the same
"$EF_BIN/espfleet" keygen "$EF_TMP/rel" >/dev/null || fail "keygen"
"$EF_BIN/espfleet" sign "$EF_TMP/v1.bin" --key "$EF_TMP/rel.key" --key-id rel-1 --hosted-release FG-1.1.0.0.0 \
  -o "$EF_TMP/v1.manifest.json" || fail "sign"
doc=$(console job "$EF_TMP/v1.bin" --url "$URL_BASE/v1.bin" --print --manifest "$EF_TMP/v1.manifest.json") ||
  fail "job --print --manifest"
jq -e --slurpfile m "$EF_TMP/v1.manifest.json" '.release.key_id == "rel-1" and .release.signature == $m[0].signature and
       .release.secure_version == 0 and .expect_fw_version == "FG-1.1.0.0.0"' <<<"$doc" >/dev/null ||
  fail "the manifest's signature is not in the job: $doc"
doc2=$(console job "$EF_TMP/v1.bin" --url "$URL_BASE/v1.bin" --print --sign-key "$EF_TMP/rel.key" --key-id rel-1 \
  --expect-fw-version FG-1.1.0.0.0) || fail "job --print --sign-key"
assert_eq "$(jq -c .release <<<"$doc")" "$(jq -c .release <<<"$doc2")" "--sign-key signs as espfleet sign does"
mkimage "$EF_TMP/other.bin" 1.1.0 fleet-demo 601K
rc=0
console job "$EF_TMP/other.bin" --url "$URL_BASE/v1.bin" --print --manifest "$EF_TMP/v1.manifest.json" \
  >/dev/null 2>"$EF_TMP/manifest.err" || rc=$?
assert_eq 1 "$rc" "a manifest of another image"
assert_eq hash_mismatch "$(console_code "$EF_TMP/manifest.err")" "a manifest of another image"
pass "job --manifest and --sign-key put the release signature in the job; a manifest of another image is refused"

rc=0
console job "$EF_TMP/v1.bin" --url "http://127.0.0.1/v1.bin" --print >/dev/null 2>"$EF_TMP/http.err" || rc=$?
assert_eq 1 "$rc" "exit status for an http url"
assert_eq bad_job "$(console_code "$EF_TMP/http.err")" "error code for an http url"
# --driver-update: the job says the hosts' driver is updated with it; only
# with the release it is updated to accept.
doc=$(console job "$EF_TMP/v1.bin" --url "$URL_BASE/v1.bin" --print --expect-fw-version FG-1.1.0.0.0 \
  --driver-update) || fail "job --print --driver-update"
jq -e '.driver_update == true and .expect_fw_version == "FG-1.1.0.0.0"' <<<"$doc" >/dev/null ||
  fail "--driver-update not in the document: $doc"
assert_eq null "$(console job "$EF_TMP/v1.bin" --url "$URL_BASE/v1.bin" --print | jq .driver_update)" \
  "no driver_update without --driver-update"
rc=0
console job "$EF_TMP/v1.bin" --url "$URL_BASE/v1.bin" --print --driver-update >/dev/null 2>"$EF_TMP/du.err" || rc=$?
assert_eq 1 "$rc" "exit status for --driver-update without --expect-fw-version"
assert_eq bad_job "$(console_code "$EF_TMP/du.err")" "error code for --driver-update alone"
pass "job --print builds a valid job that matches the image"

# Record everything published on the device's job topic from here on.
mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -v -t "$JOB_TOPIC" >"$EF_TMP/jobs.log" 2>/dev/null &
track_pid $!
sleep 0.3

# ---- job --device: installs the image, watch sees it succeed
console job "$EF_TMP/v1.bin" --url "$URL_BASE/v1.bin" --device "$DEV" --job-id c-job-1 \
  --expect-fw-version FG-1.1.0.0.0 >"$EF_TMP/job.out" || fail "job publish failed"
grep -q "c-job-1" "$EF_TMP/job.out" || fail "job did not say what it published"
rc=0
console watch --device "$DEV" --job c-job-1 --until-final --timeout 60 >"$EF_TMP/watch1.out" 2>"$EF_TMP/watch1.err" || rc=$?
assert_eq 0 "$rc" "watch --until-final exit status ($(cat "$EF_TMP/watch1.err"))"
grep -q " $DEV succeeded job=c-job-1" "$EF_TMP/watch1.out" || fail "watch did not print the succeeded state"
assert_eq "$v1_sha" "$(sim_get "$FLASH" .running.sha256)" "simulator runs the image"
pass "job --device installs the image; watch --until-final exits 0"

# ---- status
console status --json >"$EF_TMP/status.json" || fail "status --json failed"
st=$(jq -c --arg d "$DEV" '.[] | select(.device_id == $d)' "$EF_TMP/status.json")
[ -n "$st" ] || fail "status --json has no $DEV: $(cat "$EF_TMP/status.json")"
assert_eq succeeded "$(jq -r .state <<<"$st")" "status state"
assert_eq c-job-1 "$(jq -r .job_id <<<"$st")" "status job"
assert_eq 1.1.0 "$(jq -r .app.version <<<"$st")" "status app version"
console status --device "$DEV" >"$EF_TMP/status.txt" || fail "status failed"
grep -Eq "^DEVICE +ONLINE +STATE +PROGRESS +JOB +APP +FW +ERROR$" "$EF_TMP/status.txt" ||
  fail "status header: $(cat "$EF_TMP/status.txt")"
grep -Eq "^$DEV +yes +succeeded +- +c-job-1 +1.1.0 +FG-1.1.0.0.0 +-$" "$EF_TMP/status.txt" ||
  fail "status table: $(cat "$EF_TMP/status.txt")"
# the job's counts per state, after the devices
grep -Eq "^JOB +DEVICES +SUCCEEDED$" "$EF_TMP/status.txt" || fail "status job counts: $(cat "$EF_TMP/status.txt")"
grep -Eq "^c-job-1 +1 +1$" "$EF_TMP/status.txt" || fail "status job counts: $(cat "$EF_TMP/status.txt")"
# not on a terminal: no escape sequences
! grep -q $'\033' "$EF_TMP/status.txt" || fail "status wrote escape sequences to a file"
pass "status shows the device succeeded with app 1.1.0, and the job's counts"

# ---- an invalid image is refused, nothing is published
head -c 200000 "$EF_TMP/v1.bin" >"$EF_TMP/short.bin"
printf 'X' | cat - <(tail -c +2 "$EF_TMP/v1.bin") >"$EF_TMP/magic.bin"
for bad in short magic; do
  rc=0
  console job "$EF_TMP/$bad.bin" --url "$URL_BASE/$bad.bin" --device "$DEV" --job-id "c-$bad" \
    >/dev/null 2>"$EF_TMP/$bad.err" || rc=$?
  assert_eq 1 "$rc" "exit status for the $bad image"
  code=$(console_code "$EF_TMP/$bad.err")
  [[ $code == image_* ]] || fail "error code for the $bad image: '$code' ($(cat "$EF_TMP/$bad.err"))"
  [ "$(wc -l <"$EF_TMP/$bad.err")" = 1 ] || fail "more than one error line: $(cat "$EF_TMP/$bad.err")"
done
assert_eq image_truncated "$(console_code "$EF_TMP/short.err")" "truncated image code"
assert_eq image_bad_magic "$(console_code "$EF_TMP/magic.err")" "bad magic code"
sleep 0.5
assert_eq 1 "$(grep -c . "$EF_TMP/jobs.log")" "messages on the job topic (only c-job-1)"
grep -q '"job_id":"c-job-1"' "$EF_TMP/jobs.log" || fail "c-job-1 missing on the job topic"
pass "invalid images are refused with image_* codes and nothing is published"

# ---- watch: exit 1 on a rejected job, exit 3 on timeout
mkimage "$EF_TMP/v0.bin" 1.0.0 fleet-demo 200K
serve "$EF_TMP/v0.bin" v0.bin
console job "$EF_TMP/v0.bin" --url "$URL_BASE/v0.bin" --device "$DEV" --job-id c-down >/dev/null ||
  fail "publishing the downgrade failed"
rc=0
console watch --device "$DEV" --job c-down --until-final --timeout 30 >/dev/null 2>"$EF_TMP/down.err" || rc=$?
assert_eq 1 "$rc" "watch exit status for a rejected job"
assert_eq downgrade_refused "$(console_code "$EF_TMP/down.err")" "watch error code"
rc=0
console watch --device "$DEV" --job no-such-job --until-final --timeout 1 >/dev/null 2>&1 || rc=$?
assert_eq 3 "$rc" "watch exit status on timeout"
pass "watch --until-final exits 1 for a rejected job and 3 on timeout"
