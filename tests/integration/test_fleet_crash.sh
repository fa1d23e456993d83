#!/usr/bin/env bash
# espfleetd killed with SIGKILL in the middle of an update, then restarted:
# the journal brings the job back, it runs again from the start as attempt 2
# and completes; a finished job is never run twice.
. "${ESPFLEET_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/integration/lib.sh"
. "$EF_SRC/tests/integration/lib_fleet.sh"
fleet_start --flash-kbps 150

mkimage "$EF_TMP/v2.bin" 2.0.0 fleet-demo 500K
serve "$EF_TMP/v2.bin" v2.bin
publish_job "$(job_json crashy v2.bin)"
wait_for "sim_get '$FLASH' .counters.ota_write | jq -e '. > 5' >/dev/null" 20 || fail "transfer did not start"
# A second job arrives while the first runs: it waits, and must survive too.
mkimage "$EF_TMP/v25.bin" 2.5.0 fleet-demo 200K
serve "$EF_TMP/v25.bin" v25.bin
publish_job "$(job_json waiting v25.bin)"
wait_for "[ \"\$(journal_job waiting)\" = waiting ]" 5 ||
  fail "the waiting job is not in the journal"
kill_daemon KILL
assert_eq 0 "$(sim_get "$FLASH" .counters.ota_end)" "no OTA end before the kill"
assert_eq crashy "$(journal_job current)" \
  "journal holds the interrupted job"

start_daemon
doc=$(wait_state '.job_id == "crashy" and .state == "succeeded"' 60) || fail "interrupted job did not complete"
assert_eq 2 "$(jq -r .attempt <<<"$doc")" "attempt after the restart"
assert_eq "$(sha256_of "$EF_TMP/v2.bin")" "$(jq -r .app.sha256 <<<"$doc")" "image installed"
pass "killed mid-update: resumed as attempt 2 and completed"
doc=$(wait_final waiting 60) || fail "the job that waited before the kill did not run"
assert_eq succeeded "$(jq -r .state <<<"$doc")" "waiting job after the restart"
assert_eq "$(sha256_of "$EF_TMP/v25.bin")" "$(sim_get "$FLASH" .running.sha256)" "waiting job installed"
assert_eq 2 "$(sim_get "$FLASH" .counters.ota_end)" "one OTA end per job (none from the killed attempt)"
pass "the job that was waiting when the daemon was killed ran after the restart"

# Restart once more: the finished job is not run again, its state stays.
begins=$(sim_get "$FLASH" .counters.ota_begin)
kill_daemon TERM
start_daemon
publish_job "$(job_json crashy v2.bin)"
sleep 1
doc=$(wait_final crashy 10) || fail "final state lost over a restart"
assert_eq succeeded "$(jq -r .state <<<"$doc")" "state after restart"
assert_eq "$begins" "$(sim_get "$FLASH" .counters.ota_begin)" "finished job not run twice"
pass "a finished job is not run twice after a restart"

# A service stop (SIGTERM) in the middle of a transfer: no OTA end, the job
# stays in the journal, and the next start completes it as attempt 2.
mkimage "$EF_TMP/v3.bin" 3.0.0 fleet-demo 500K
serve "$EF_TMP/v3.bin" v3.bin
writes=$(sim_get "$FLASH" .counters.ota_write)
ends=$(sim_get "$FLASH" .counters.ota_end)
publish_job "$(job_json stopped v3.bin)"
wait_for "sim_get '$FLASH' .counters.ota_write | jq -e '. > $writes + 5' >/dev/null" 20 || fail "transfer did not start"
kill_daemon TERM
doc=$(wait_state '.online == false' 5) || fail "no offline state after SIGTERM"
assert_eq stopped "$(jq -r .job_id <<<"$doc")" "offline state names the job in progress"
assert_eq "$ends" "$(sim_get "$FLASH" .counters.ota_end)" "no OTA end after SIGTERM"
assert_eq "$(sha256_of "$EF_TMP/v25.bin")" "$(sim_get "$FLASH" .running.sha256)" "old image still runs"
start_daemon
doc=$(wait_state '.job_id == "stopped" and .state == "succeeded"' 60) || fail "stopped job did not complete"
assert_eq 2 "$(jq -r .attempt <<<"$doc")" "attempt after the service stop"
assert_eq "$(sha256_of "$EF_TMP/v3.bin")" "$(sim_get "$FLASH" .running.sha256)" "v3 installed"
pass "SIGTERM mid-transfer: resumed at the next start as attempt 2"
