#!/usr/bin/env bash
# Cancel and SIGTERM take effect within a second in every phase that does
# not write to the ESP, however long the ESP takes: while it erases its slot
# for OTA begin (the answer can take up to esp.begin_timeout_s), and while
# the daemon waits for it to come back after OTA end. Measured here under
# 2 s, against a simulated erase of about 7 minutes and a reboot of 60 s.
. "${ESPFLEET_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/integration/lib.sh"
. "$EF_SRC/tests/integration/lib_fleet.sh"

# now_ms: monotonic enough for a test (wall clock, milliseconds)
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# 100 ms per 4 KiB of the 16 MiB slot: OTA begin is answered after ~410 s.
FLEET_CONFIG_UPDATE='.esp.begin_timeout_s = 600'
fleet_start --erase-ms-per-4k 100

mkimage "$EF_TMP/a.bin" 2.0.0 fleet-demo 200K
serve "$EF_TMP/a.bin" a.bin
mkimage "$EF_TMP/b.bin" 2.1.0 fleet-demo 200K
serve "$EF_TMP/b.bin" b.bin

# ---- cancel while the ESP erases (OTA begin sent, not answered) ----
publish_job "$(job_json erase-cancel a.bin)"
wait_for "grep -q 'OTA begin' '$SIM_LOG'" 20 || fail "OTA begin did not reach the simulator"
sleep 1 # well inside the erase
t0=$(now_ms)
publish_cancel erase-cancel
doc=$(wait_final erase-cancel 10) || fail "no final state for the job canceled during OTA begin"
took=$(($(now_ms) - t0))
assert_eq canceled "$(jq -r .state <<<"$doc")" "state after a cancel during OTA begin"
((took < 2000)) || fail "cancel during OTA begin took ${took} ms"
grep -q "canceled while waiting for the answer to Req_OTABegin" "$DAEMON_LOG" ||
  fail "the daemon did not say what it stopped waiting for"
pass "cancel during OTA begin: canceled after ${took} ms (the erase goes on for minutes)"

# ---- SIGTERM while the ESP erases ----
publish_job "$(job_json erase-stop b.bin)"
wait_for "grep -q 'job erase-stop: installing' '$DAEMON_LOG'" 10 || fail "job erase-stop did not start"
sleep 1.5 # the download started, the header was checked, OTA begin waits behind the erase
t0=$(now_ms)
kill -TERM "$DAEMON_PID"
wait_for "! _ef_alive $DAEMON_PID" 10 || fail "espfleetd did not exit after SIGTERM"
took=$(($(now_ms) - t0))
status=0
wait "$DAEMON_PID" || status=$?
assert_eq 0 "$status" "espfleetd's exit status after SIGTERM"
((took < 2000)) || fail "SIGTERM during OTA begin took ${took} ms"
grep -q "job erase-stop: stopped before it finished; it resumes at the next start" "$DAEMON_LOG" ||
  fail "the stopped job is not kept for the next start"
assert_eq 0 "$(sim_get "$FLASH" .counters.ota_end)" "no OTA end"
pass "SIGTERM during OTA begin: exited after ${took} ms, the job resumes at the next start"

# ---- SIGTERM while the ESP reboots after OTA end ----
# A fresh simulator that erases at once and stays away for 60 s when it
# reboots; the restarted daemon resumes erase-stop and installs it.
stop_sim
start_sim "$LINK" "$FLASH" --reboot-delay-ms 200 --slot-size 16777216 --down-ms 60000
sleep 0.5 # its ESPInit at start-up is not the reboot the boot check waits for
start_daemon
wait_state '.job_id == "erase-stop" and .state == "rebooting"' 30 >/dev/null ||
  fail "the resumed job did not reach rebooting"
sleep 1 # the simulator's link is gone now
t0=$(now_ms)
kill -TERM "$DAEMON_PID"
wait_for "! _ef_alive $DAEMON_PID" 30 || fail "espfleetd did not exit after SIGTERM"
took=$(($(now_ms) - t0))
wait "$DAEMON_PID" 2>/dev/null || true
((took < 2000)) || fail "SIGTERM during the boot check took ${took} ms"
grep -q "job erase-stop: stopped before it finished; it resumes at the next start" "$DAEMON_LOG" ||
  fail "the job stopped during its boot check is not kept for the next start"
pass "SIGTERM while the ESP reboots: exited after ${took} ms, the boot check runs at the next start"
