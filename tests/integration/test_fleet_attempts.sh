#!/usr/bin/env bash
# A job that keeps getting interrupted: after download.max_attempts starts it
# ends failed with `interrupted` instead of running forever, and the ESP keeps
# its old image.
. "${ESPFLEET_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/integration/lib.sh"
. "$EF_SRC/tests/integration/lib_fleet.sh"
FLEET_CONFIG_UPDATE='.download.max_attempts = 2'
fleet_start --flash-kbps 150

mkimage "$EF_TMP/v2.bin" 2.0.0 fleet-demo 500K
serve "$EF_TMP/v2.bin" v2.bin
publish_job "$(job_json flaky v2.bin)"
for attempt in 1 2; do
  wait_state ".job_id == \"flaky\" and .state == \"downloading\" and .attempt == $attempt" 20 >/dev/null ||
    fail "attempt $attempt did not start"
  writes=$(sim_get "$FLASH" .counters.ota_write)
  wait_for "sim_get '$FLASH' .counters.ota_write | jq -e '. > $writes + 3' >/dev/null" 20 ||
    fail "attempt $attempt is not writing"
  kill_daemon KILL
  start_daemon
done
doc=$(wait_final flaky 20) || fail "no final state after the last interruption"
assert_eq failed "$(jq -r .state <<<"$doc")" "state"
assert_eq interrupted "$(jq -r .error.code <<<"$doc")" "error code"
assert_eq 2 "$(jq -r .attempt <<<"$doc")" "attempts counted"
assert_eq 0 "$(sim_get "$FLASH" .counters.ota_end)" "never activated"
assert_eq null "$(sim_get "$FLASH" .running)" "nothing installed"
pass "interrupted twice with max_attempts 2: failed interrupted"
