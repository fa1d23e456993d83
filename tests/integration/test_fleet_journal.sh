#!/usr/bin/env bash
# The journal end to end (issue 9): a save that fails mid-job, a job that
# cannot be recorded, a final state whose record is lost, a not_after with an
# offset over a restart (finding 1), a flood of refused documents (finding 3).
# Saves are made to fail by a directory at the journal's temporary name: the
# journal creates that file exclusively, so every save fails ("File exists")
# until the directory goes, for root too.
. "${ESPFLEET_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/integration/lib.sh"
. "$EF_SRC/tests/integration/lib_fleet.sh"
fleet_start --flash-kbps 400

STATES=$EF_TMP/states.log
mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -t "$STATE_TOPIC" >"$STATES" 2>/dev/null &
track_pid $!
saves_fail() { mkdir "$EF_TMP/state/journal.json.tmp"; }
saves_work() { rmdir "$EF_TMP/state/journal.json.tmp"; }
# states JOB_ID: every state published for the job, in order
states() { jq -r --arg id "$1" 'select(.job_id == $id) | .state' "$STATES" | uniq | paste -sd' '; }

mkimage "$EF_TMP/v2.bin" 2.0.0 fleet-demo 300K
serve "$EF_TMP/v2.bin" v2.bin
mkimage "$EF_TMP/v3.bin" 3.0.0 fleet-demo 300K
serve "$EF_TMP/v3.bin" v3.bin

# 1. A job whose record cannot be saved does not start.
saves_fail
begins=$(sim_get "$FLASH" .counters.ota_begin)
publish_job "$(job_json unrecorded v2.bin)"
doc=$(wait_final unrecorded 30) || fail "no final state for a job that cannot be recorded"
assert_eq failed "$(jq -r .state <<<"$doc")" "state of a job that cannot be recorded"
assert_eq io_error "$(jq -r .error.code <<<"$doc")" "code of a job that cannot be recorded"
jq -r .error.detail <<<"$doc" | grep -q "not started: cannot create .*journal.json.tmp: File exists" ||
  fail "detail: $(jq -r .error.detail <<<"$doc")"
assert_eq "$begins" "$(sim_get "$FLASH" .counters.ota_begin)" "no OTA begin without a record"
grep -q "could not save the journal" "$DAEMON_LOG" || fail "the failed save is not in the log"
pass "a job whose record cannot be saved does not start: failed io_error, no OTA begin"
# nothing was recorded for it: delivered again once the disk is back, it runs
saves_work
publish_job "$(job_json unrecorded v2.bin)"
doc=$(wait_state '.job_id == "unrecorded" and .state == "succeeded"' 60) || fail "the job did not run once saves worked"
pass "delivered again once saves work, it runs and succeeds"

# 2. Saves fail in the middle of the transfer: the job stops before OTA end.
ends=$(sim_get "$FLASH" .counters.ota_end)
publish_job "$(job_json midway v3.bin)"
wait_state '.job_id == "midway" and .state == "downloading"' 20 >/dev/null || fail "midway did not start"
saves_fail
doc=$(wait_final midway 60) || fail "no final state for midway"
assert_eq failed "$(jq -r .state <<<"$doc")" "state after a failed save mid-job"
assert_eq io_error "$(jq -r .error.code <<<"$doc")" "code after a failed save mid-job"
jq -r .error.detail <<<"$doc" | grep -q "stopped before OTA end: cannot create" ||
  fail "detail: $(jq -r .error.detail <<<"$doc")"
assert_eq "$ends" "$(sim_get "$FLASH" .counters.ota_end)" "no OTA end without a record"
assert_eq "$(sha256_of "$EF_TMP/v2.bin")" "$(sim_get "$FLASH" .running.sha256)" "the old image still runs"
saves_work
pass "a save that fails mid-transfer stops the job before OTA end: failed io_error"

# 3. The final record cannot be saved: never succeeded without it.
# (Finding 8: with the state published before its record was saved, the
# suite still passed. Published first, this job would read succeeded.)
publish_job "$(job_json final v3.bin)"
wait_state '.job_id == "final" and .state == "rebooting"' 60 >/dev/null || fail "final did not reach rebooting"
saves_fail
doc=$(wait_final final 60) || fail "no final state for final"
assert_eq failed "$(jq -r .state <<<"$doc")" "state when the final record cannot be saved"
assert_eq io_error "$(jq -r .error.code <<<"$doc")" "code when the final record cannot be saved"
jq -r .error.detail <<<"$doc" | grep -q "the ESP runs the new image, but the journal could not record it" ||
  fail "detail: $(jq -r .error.detail <<<"$doc")"
assert_eq "$(sha256_of "$EF_TMP/v3.bin")" "$(jq -r .app.sha256 <<<"$doc")" "the app the ESP runs is reported"
sleep 0.5
case " $(states final) " in *" succeeded "*) fail "succeeded was published without a record: $(states final)" ;; esac
saves_work
# delivered again: nothing recorded, so it is decided again: already installed
publish_job "$(job_json final v3.bin)"
doc=$(wait_state '.job_id == "final" and .state == "succeeded"' 30) || fail "final was not decided again"
assert_eq 0 "$(jq -r .attempt <<<"$doc")" "decided as already installed, nothing flashed"
pass "a final record that cannot be saved: failed io_error, never succeeded; delivered again it is installed"

# 4. Finding 1: a not_after with an offset survives a restart mid-job, and so
# does everything else in the journal.
mkimage "$EF_TMP/v4.bin" 4.0.0 fleet-demo 600K
serve "$EF_TMP/v4.bin" v4.bin
publish_job "$(job_json far v4.bin '.not_after = "9999-12-31T23:59:59-01:00"')"
wait_for "sim_get '$FLASH' .counters.ota_write | jq -e '. > 5' >/dev/null" 20 || fail "far did not start"
assert_eq far "$(journal_job current)" "far is the job in progress"
kill_daemon TERM
start_daemon
doc=$(wait_state '.job_id == "far" and .state == "succeeded"' 60) || fail "far did not resume after the restart"
assert_eq 2 "$(jq -r .attempt <<<"$doc")" "far resumed as attempt 2"
! grep -q "could not be read" "$DAEMON_LOG" || fail "the journal lost records: $(grep 'could not be read' "$DAEMON_LOG")"
[ ! -e "$EF_TMP/state/journal.json.corrupt" ] || fail "the journal was found damaged"
pass "not_after 9999-12-31T23:59:59-01:00: the journal reads back after a restart, the job resumes"

# 5. Finding 3: refused documents never push out a real result. Each of
# these is refused and recorded (a job for another chip), 80 > 64 of them.
begins=$(sim_get "$FLASH" .counters.ota_begin)
base=$(job_json junk v2.bin '.chip = "esp32c3"')
for i in $(seq 1 80); do jq -c --arg id "junk-$i" '.job_id = $id' <<<"$base"; done |
  mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -t "$JOB_TOPIC" -l
doc=$(wait_final junk-80 30) || fail "the last refused document was not answered"
assert_eq chip_mismatch "$(jq -r .error.code <<<"$doc")" "the refusal"
kill_daemon TERM
start_daemon
# the first real job of this test, redelivered: its result stands
publish_job "$(job_json unrecorded v2.bin)"
doc=$(wait_state '.job_id == "unrecorded" and .state == "succeeded" and .attempt == 1' 30) ||
  fail "the result of a job that ran was lost"
sleep 1
assert_eq "$begins" "$(sim_get "$FLASH" .counters.ota_begin)" "nothing flashed again"
assert_eq "$(sha256_of "$EF_TMP/v4.bin")" "$(sim_get "$FLASH" .running.sha256)" "v4 still runs"
pass "80 refused documents and a restart later, a finished job is still not run again"

# 6. A damaged record costs that record only. The job in progress has a
# record this version refuses (its url): it cannot resume, and ends failed
# with interrupted; a result line has a flipped byte; the rest loads.
kill_daemon TERM
python3 - "$EF_TMP/state/journal.json" <<'PY'
import json, sys, zlib
path = sys.argv[1]
lines = open(path).read().splitlines(True)
def line(kind, data):
    d = json.dumps(data, separators=(',', ':'))
    return '{"kind":"%s","crc":"%08x","data":%s}\n' % (kind, zlib.crc32(d.encode()), d)
job = json.dumps({"job_id": "lost", "url": "ftp://x/y", "sha256": "0" * 64, "size": 1, "version": "1"})
lines.insert(2, line("current", {"attempt": 1, "phase": "downloading", "job": job}))
last_result = max(i for i, l in enumerate(lines) if l.startswith('{"kind":"result"'))
lines[last_result] = lines[last_result].replace('"message":"', '"message":"X', 1)
open(path, 'w').write(''.join(lines))
PY
start_daemon
doc=$(wait_final lost 20) || fail "the job whose record was lost got no final state"
assert_eq failed "$(jq -r .state <<<"$doc")" "state of the job whose record was lost"
assert_eq interrupted "$(jq -r .error.code <<<"$doc")" "code of the job whose record was lost"
grep -q "journal: 2 record(s) could not be read and were dropped" "$DAEMON_LOG" ||
  fail "the damage is not in the log: $(grep journal: "$DAEMON_LOG")"
[ -s "$EF_TMP/state/journal.json.corrupt" ] || fail "no copy of the damaged journal"
publish_job "$(job_json unrecorded v2.bin)"
wait_state '.job_id == "unrecorded" and .state == "succeeded" and .attempt == 1' 30 >/dev/null ||
  fail "a result was lost with the damaged records"
pass "a damaged journal: the unreadable records are dropped and said, the job in progress ends interrupted, the rest stands"
