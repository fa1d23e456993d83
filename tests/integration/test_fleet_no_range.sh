#!/usr/bin/env bash
# A web server that does not serve byte ranges (nginx with max_ranges 0
# answers a Range request with the whole file, HTTP 200) goes away in the
# middle of a download and comes back: the resume fails with
# download_no_range, which the download module marks retryable, and the
# daemon starts the job over from byte 0 (a second OTA begin) instead of
# failing it. The image is installed; the attempt counts up once for the
# refused resume and once for the fresh start.
. "${ESPFLEET_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/integration/lib.sh"
. "$EF_SRC/tests/integration/lib_fleet.sh"
NGINX_RATE=204800 # 200 KiB/s: the 1 MiB image below takes about 5 s
NGINX_SERVER_CONF='max_ranges 0;'
# one spare attempt, so a slow restart of nginx cannot use them all up
FLEET_CONFIG_UPDATE='.download.max_attempts = 4'
fleet_start

mkimage "$EF_TMP/v2.bin" 2.0.0 fleet-demo 1M
serve "$EF_TMP/v2.bin" v2.bin
publish_job "$(job_json norange v2.bin)"
wait_for "sim_get '$FLASH' .counters.ota_write_bytes | jq -e '. > 200000' >/dev/null" 20 ||
  fail "transfer did not get going"
nginx_stop
sleep 0.5
nginx_restart || fail "nginx did not come back"
doc=$(wait_final norange 90) || fail "no final state"
assert_eq succeeded "$(jq -r .state <<<"$doc")" "state after the outage"
grep -q "server does not serve byte ranges" "$DAEMON_LOG" ||
  fail "the resume did not meet the missing range support: $(grep -E 'download|resum' "$DAEMON_LOG" | tail -n 5)"
[ "$(jq -r .attempt <<<"$doc")" -ge 3 ] || fail "attempt $(jq -r .attempt <<<"$doc"): no resume and fresh start"
assert_eq 2 "$(sim_get "$FLASH" .counters.ota_begin)" "two OTA begins: the job started over"
assert_eq 1 "$(sim_get "$FLASH" .counters.ota_end)" "one OTA end"
assert_eq "$(sha256_of "$EF_TMP/v2.bin")" "$(sim_get "$FLASH" .running.sha256)" "image installed"
pass "no Range support: the resume failed with download_no_range, the job started over (attempt $(jq -r .attempt <<<"$doc")) and succeeded"
