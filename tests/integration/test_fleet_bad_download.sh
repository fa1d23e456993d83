#!/usr/bin/env bash
# Transfers that must never activate: a hash mismatch, a short download, a
# 404 and an unreachable host. Each ends failed with its own error code, the
# simulator counts no OTA end, and the running image stays what it was.
. "${ESPFLEET_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/integration/lib.sh"
. "$EF_SRC/tests/integration/lib_fleet.sh"
fleet_start

mkimage "$EF_TMP/base.bin" 1.0.0 fleet-demo 300K
serve "$EF_TMP/base.bin" base.bin
publish_job "$(job_json base base.bin)"
doc=$(wait_final base 60) || fail "no final state for the base job"
assert_eq succeeded "$(jq -r .state <<<"$doc")" "base job"
base_sha=$(sim_get "$FLASH" .running.sha256)

mkimage "$EF_TMP/v2.bin" 2.0.0 fleet-demo 400K
serve "$EF_TMP/v2.bin" v2.bin

# expect_failure JOB_ID JSON CODE [ATTEMPTS]: the job fails with CODE after
# ATTEMPTS attempts (default 1); no OTA end.
expect_failure() {
  local id=$1 json=$2 code=$3 attempts=${4:-1} ends doc
  ends=$(sim_get "$FLASH" .counters.ota_end)
  publish_job "$json"
  doc=$(wait_final "$id" 60) || fail "no final state for $id"
  assert_eq failed "$(jq -r .state <<<"$doc")" "$id state"
  assert_eq "$code" "$(jq -r .error.code <<<"$doc")" "$id error code"
  assert_eq "$attempts" "$(jq -r .attempt <<<"$doc")" "$id attempts"
  [ -n "$(jq -r '.error.message // empty' <<<"$doc")" ] || fail "$id: error without a message"
  assert_eq "$ends" "$(sim_get "$FLASH" .counters.ota_end)" "$id: no OTA end"
  assert_eq "$base_sha" "$(sim_get "$FLASH" .running.sha256)" "$id: running image unchanged"
  daemon_alive || fail "espfleetd died on $id"
  pass "$id: failed with $code, no OTA end, running image unchanged"
}

# The served file is fine but the job announces another hash.
expect_failure hash "$(job_json hash v2.bin ".sha256 = \"$(printf x | sha256sum | cut -d' ' -f1)\"")" hash_mismatch

# A one-byte corruption on the server: caught by the job's sha256.
cp "$EF_TMP/v2.bin" "$EF_TMP/corrupt.bin"
printf '\x55' | dd of="$EF_TMP/corrupt.bin" bs=1 seek=200000 conv=notrunc status=none
json=$(job_json corrupt v2.bin)
serve "$EF_TMP/corrupt.bin" v2c.bin
expect_failure corrupt "$(jq -c ".url = \"$URL_BASE/v2c.bin\" | .job_id = \"corrupt\"" <<<"$json")" hash_mismatch

# The server's file is shorter than the job says (a truncated upload).
head -c 300000 "$EF_TMP/v2.bin" >"$WWW/short.bin"
expect_failure short "$(jq -c ".url = \"$URL_BASE/short.bin\" | .job_id = \"short\"" <<<"$json")" size_mismatch

expect_failure notfound "$(jq -c ".url = \"$URL_BASE/missing.bin\" | .job_id = \"notfound\"" <<<"$json")" download_failed
# Credentials and a query token in the URL stay out of the log and the
# state document (finding 7): the log names the URL without them.
secret_url="https://user:s3cret@127.0.0.1:$NGINX_PORT/missing.bin?token=t0ken"
expect_failure secret "$(jq -c ".url = \"$secret_url\" | .job_id = \"secret\"" <<<"$json")" download_failed
! grep -E 's3cret|t0ken' "$DAEMON_LOG" || fail "URL secrets in the daemon's log"
grep -qF "job secret: installing 2.0.0 from https://…@127.0.0.1:$NGINX_PORT/missing.bin?… (attempt 1)" "$DAEMON_LOG" ||
  fail "the log does not name the URL without its secrets"
doc=$(wait_final secret 5)
! grep -E 's3cret|t0ken' <<<"$doc" || fail "URL secrets in the state document: $doc"
pass "no credentials or query token of a job URL in the log or the state"
closed=$(free_port)
# A host that refuses connections may come back: tried download.max_attempts
# (3) times, 1 s and 2 s apart.
expect_failure unreachable "$(jq -c ".url = \"https://127.0.0.1:$closed/v2.bin\" | .job_id = \"unreachable\"" <<<"$json")" download_failed 3
grep -q "job unreachable: download failed .*attempt 3 of 3" "$DAEMON_LOG" || fail "no retry logged"

# The web server is down when the job arrives and back a little later: the
# download is retried and the job completes.
nginx_stop
publish_job "$(job_json outage v2.bin)"
wait_for "grep -q 'job outage: download failed' '$DAEMON_LOG'" 10 || fail "no failed first attempt"
nginx_restart || fail "nginx did not restart"
doc=$(wait_final outage 60) || fail "no final state for the outage job"
assert_eq succeeded "$(jq -r .state <<<"$doc")" "job across a web server outage"
[ "$(jq -r .attempt <<<"$doc")" -ge 2 ] || fail "outage job succeeded without a retry"
assert_eq "$(sha256_of "$EF_TMP/v2.bin")" "$(sim_get "$FLASH" .running.sha256)" "v2 running after the outage"
pass "web server outage: retried, attempt $(jq -r .attempt <<<"$doc") succeeded"

# After all that, a good job still goes through (same image: at once).
publish_job "$(job_json good v2.bin)"
doc=$(wait_final good 60) || fail "no final state for the good job"
assert_eq succeeded "$(jq -r .state <<<"$doc")" "good job after failures"
assert_eq "$(sha256_of "$EF_TMP/v2.bin")" "$(sim_get "$FLASH" .running.sha256)" "v2 running"
pass "the same image again: succeeded at once (already installed)"
