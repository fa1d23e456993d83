#!/usr/bin/env bash
# The broker restarts (without persistence: it forgets retained messages and
# sessions) in the middle of an update. The OTA continues, espfleetd
# reconnects, and the final state arrives on the restarted broker.
. "${ESPFLEET_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/integration/lib.sh"
. "$EF_SRC/tests/integration/lib_fleet.sh"
fleet_start --flash-kbps 150

mkimage "$EF_TMP/v2.bin" 2.0.0 fleet-demo 600K
serve "$EF_TMP/v2.bin" v2.bin
publish_job "$(job_json across v2.bin)"
wait_for "sim_get '$FLASH' .counters.ota_write | jq -e '. > 5' >/dev/null" 20 || fail "transfer did not start"
crash_mosquitto "$EF_TMP/mqtt"
sleep 1
restart_mosquitto "$EF_TMP/mqtt"
doc=$(wait_final across 60) || fail "final state never arrived after the broker restart"
assert_eq succeeded "$(jq -r .state <<<"$doc")" "final state"
assert_eq "$(sha256_of "$EF_TMP/v2.bin")" "$(sim_get "$FLASH" .running.sha256)" "image installed"
grep -q "reconnected to the broker" "$DAEMON_LOG" || fail "no reconnect in the daemon log"
pass "broker restart mid-update: OTA continued, final state delivered"

# The session works after the restart: a new job goes through.
mkimage "$EF_TMP/v3.bin" 3.0.0 fleet-demo 100K
serve "$EF_TMP/v3.bin" v3.bin
publish_job "$(job_json after v3.bin)"
doc=$(wait_final after 60) || fail "no job after the broker restart"
assert_eq succeeded "$(jq -r .state <<<"$doc")" "job after restart"
pass "jobs are received after the broker restart"
