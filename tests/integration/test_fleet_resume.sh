#!/usr/bin/env bash
# The web server goes away in the middle of a download and comes back: the
# daemon fetches the rest with an HTTP Range request instead of starting
# over. The ESP sees one OTA (no second OTA begin), the attempt counts up,
# and the SHA-256 of the whole image is still checked before OTA end.
. "${ESPFLEET_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/integration/lib.sh"
. "$EF_SRC/tests/integration/lib_fleet.sh"
NGINX_RATE=204800 # 200 KiB/s: the 1 MiB image below takes about 5 s
fleet_start

mkimage "$EF_TMP/v2.bin" 2.0.0 fleet-demo 1M
serve "$EF_TMP/v2.bin" v2.bin
publish_job "$(job_json resume v2.bin)"
wait_for "sim_get '$FLASH' .counters.ota_write_bytes | jq -e '. > 200000' >/dev/null" 20 ||
  fail "transfer did not get going"
nginx_stop
sleep 0.5
nginx_restart || fail "nginx did not come back"
doc=$(wait_final resume 60) || fail "no final state"
assert_eq succeeded "$(jq -r .state <<<"$doc")" "state after the outage"
assert_eq 2 "$(jq -r .attempt <<<"$doc")" "attempt"
assert_eq 1 "$(sim_get "$FLASH" .counters.ota_begin)" "one OTA begin: the transfer resumed"
assert_eq "$(sha256_of "$EF_TMP/v2.bin")" "$(sim_get "$FLASH" .running.sha256)" "image installed"
offset=$(sed -n 's/.*resuming the download at byte \([0-9]*\).*/\1/p' "$DAEMON_LOG" | head -n1)
[ -n "$offset" ] && [ "$offset" -gt 0 ] || fail "no resume in the daemon log"
grep -q "bytes=$offset-" "$NGINX_DIR/access.log" 2>/dev/null || grep -q " 206 " "$NGINX_DIR/access.log" ||
  fail "nginx served no range request: $(tail -n 3 "$NGINX_DIR/access.log")"
pass "download resumed at byte $offset with a range request; one OTA"

# A server that changed the file between the two requests: the whole-image
# hash catches it, no OTA end.
mkimage "$EF_TMP/v3.bin" 3.0.0 fleet-demo 1M
mkimage "$EF_TMP/v3b.bin" 3.0.0 fleet-demo 1M esp32s3 --secure-version 1
serve "$EF_TMP/v3.bin" v3.bin
ends=$(sim_get "$FLASH" .counters.ota_end)
publish_job "$(job_json changed v3.bin)"
wait_for "sim_get '$FLASH' .counters.ota_write_bytes | jq -e '. > 1300000' >/dev/null" 20 ||
  fail "second transfer did not get going"
nginx_stop
serve "$EF_TMP/v3b.bin" v3.bin
nginx_restart || fail "nginx did not come back"
doc=$(wait_final changed 60) || fail "no final state for the changed file"
assert_eq failed "$(jq -r .state <<<"$doc")" "state when the file changed"
case "$(jq -r .error.code <<<"$doc")" in
  hash_mismatch | image_invalid) ;;
  *) fail "unexpected code $(jq -r .error.code <<<"$doc")" ;;
esac
assert_eq "$ends" "$(sim_get "$FLASH" .counters.ota_end)" "no OTA end for a changed file"
assert_eq "$(sha256_of "$EF_TMP/v2.bin")" "$(sim_get "$FLASH" .running.sha256)" "v2 still running"
pass "file changed between the two requests: $(jq -r .error.code <<<"$doc"), no OTA end"
