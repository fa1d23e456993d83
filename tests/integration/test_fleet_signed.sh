#!/usr/bin/env bash
# Signed releases through the real broker (docs/security.md): with
# security.release_keys set, an unsigned job, a job signed by an unknown or a
# revoked key, a job whose signed fields were changed, a signature of another
# image and allow_downgrade added to a signed job are all refused before
# anything is downloaded or sent to the ESP (the simulator's counters do not
# move); a signed job installs; a second key works after rotation; a
# secure_version below the installed one is refused whatever the job says.
. "${ESPFLEET_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/integration/lib.sh"
. "$EF_SRC/tests/integration/lib_fleet.sh"
K=$EF_TMP/keys
mkdir -p "$K"
for k in rel-1 rel-2 rogue; do espfleet keygen "$K/$k" >/dev/null || fail "keygen $k"; done
FLEET_CONFIG_UPDATE=".security = {release_keys: [{id: \"rel-1\", public_key_file: \"$K/rel-1.pub\"}]}"
fleet_start --erase-ms-per-4k 0

doc=$(wait_state '.online == true') || fail "no state document"
assert_eq true "$(jq -r .signed_releases <<<"$doc")" "signed_releases in the state document"

# sign IMAGE KEY ID [ARGS...]: the image's manifest (espfleet sign)
sign() {
  local img=$1 key=$2 id=$3
  shift 3
  espfleet sign "$img" --key "$K/$key.key" --key-id "$id" "$@" -o "$img.$id.json" || fail "sign $img"
  echo "$img.$id.json"
}
# signed_job ID NAME MANIFEST [JQ]: a job for the served NAME carrying MANIFEST's signature
signed_job() {
  local m=$3
  job_json "$1" "$2" "$(jq -r '"(.project = \"" + .project + "\" | .chip = \"" + .chip + "\" | .release = {key_id: \"" +
    .key_id + "\", signature: \"" + .signature + "\", secure_version: " + (.secure_version | tostring) +
    ", allow_downgrade: " + (.allow_downgrade | tostring) + "})"' "$m") | ${4:-.}"
}
# refused ID JSON CODE: publishes JSON and checks it is rejected with CODE,
# with nothing downloaded and nothing sent to the ESP
refused() {
  local requests fetches
  requests=$(sim_get "$FLASH" .counters.requests)
  fetches=$(wc -l <"$NGINX_DIR/access.log")
  publish_job "$2"
  doc=$(wait_final "$1" 30) || fail "$1: no final state"
  assert_eq rejected "$(jq -r .state <<<"$doc")" "$1: state"
  assert_eq "$3" "$(jq -r .error.code <<<"$doc")" "$1: error code ($(jq -r .error.detail <<<"$doc"))"
  assert_eq "$requests" "$(sim_get "$FLASH" .counters.requests)" "$1: requests to the ESP"
  assert_eq "$fetches" "$(wc -l <"$NGINX_DIR/access.log")" "$1: requests to the web server"
}

mkimage "$EF_TMP/v1.bin" 1.1.0 fleet-demo 200K esp32s3 --secure-version 1
mkimage "$EF_TMP/v2.bin" 1.2.0 fleet-demo 210K esp32s3 --secure-version 1
serve "$EF_TMP/v1.bin" v1.bin
serve "$EF_TMP/v2.bin" v2.bin
m1=$(sign "$EF_TMP/v1.bin" rel-1 rel-1)
m2=$(sign "$EF_TMP/v2.bin" rel-1 rel-1)
mr=$(sign "$EF_TMP/v1.bin" rogue rel-9)

refused unsigned "$(job_json unsigned v1.bin '.project = "fleet-demo" | .chip = "esp32s3"')" release_unsigned
refused unknown-key "$(signed_job unknown-key v1.bin "$mr")" release_key_unknown
refused changed "$(signed_job changed v1.bin "$m1" '.version = "1.1.1"')" release_bad_signature
refused changed-size "$(signed_job changed-size v1.bin "$m1" '.size = .size + 1')" release_bad_signature
refused other-sig "$(signed_job other-sig v1.bin "$m2" ".sha256 = \"$(sha256_of "$EF_TMP/v1.bin")\" | .size = $(stat -c %s "$EF_TMP/v1.bin")")" release_bad_signature
refused lifted "$(signed_job lifted v1.bin "$m1" '.expect_fw_version = "FG-1.1.0.0.0" | .driver_update = true')" release_bad_signature
pass "unsigned, unknown key, changed fields, another image's signature, an unsigned driver_update: rejected, ESP untouched"

# A signed job installs; the image's secure_version becomes the floor.
publish_job "$(signed_job good-2 v2.bin "$m2")"
doc=$(wait_final good-2 60) || fail "no final state for the signed job"
assert_eq succeeded "$(jq -r .state <<<"$doc")" "signed job ($(jq -c .error <<<"$doc"))"
assert_eq "$(sha256_of "$EF_TMP/v2.bin")" "$(sim_get "$FLASH" .running.sha256)" "running image after the signed job"
pass "a signed job installs"

# allow_downgrade added to a signed job does not permit the downgrade.
refused added-downgrade "$(signed_job added-downgrade v1.bin "$m1" '.allow_downgrade = true')" downgrade_refused
pass "allow_downgrade outside the signature: downgrade_refused"

# Rotation: rel-2 added, rel-1 revoked (revoked wins even while it is listed).
kill_daemon TERM
jq --arg k2 "$K/rel-2.pub" '.security.release_keys += [{id: "rel-2", public_key_file: $k2}] | .security.revoked_keys = ["rel-1"]' \
  "$CONFIG" >"$CONFIG.new" && mv "$CONFIG.new" "$CONFIG"
"$EF_BIN/espfleetd" --config "$CONFIG" --check-config >/dev/null || fail "rotated config refused"
start_daemon
refused revoked "$(signed_job revoked v1.bin "$m1")" release_key_revoked
mkimage "$EF_TMP/v3.bin" 1.3.0 fleet-demo 220K esp32s3 --secure-version 2
serve "$EF_TMP/v3.bin" v3.bin
publish_job "$(signed_job rotated v3.bin "$(sign "$EF_TMP/v3.bin" rel-2 rel-2)")"
doc=$(wait_final rotated 60) || fail "no final state after rotation"
assert_eq succeeded "$(jq -r .state <<<"$doc")" "job signed by the new key ($(jq -c .error <<<"$doc"))"
pass "rotation: the new key installs, the revoked one is refused"

# Anti-rollback: secure_version 1 after 2 is refused with every permission set.
mkimage "$EF_TMP/old.bin" 1.0.0 fleet-demo 190K esp32s3 --secure-version 1
serve "$EF_TMP/old.bin" old.bin
mo=$(sign "$EF_TMP/old.bin" rel-2 rel-2 --allow-downgrade)
refused rollback "$(signed_job rollback old.bin "$mo" '.allow_downgrade = true')" secure_version_rollback
pass "secure_version below the installed one: secure_version_rollback, whatever the job allows"

# --check-config refuses a key file that is not an Ed25519 public key.
jq '.security.release_keys[0].public_key_file = "'"$K/rel-1.key"'"' "$CONFIG" >"$EF_TMP/bad.json"
status=0; "$EF_BIN/espfleetd" --config "$EF_TMP/bad.json" --check-config >/dev/null 2>"$EF_TMP/err" || status=$?
assert_eq 2 "$status" "--check-config with a private key as public_key_file"
grep -q "private key" "$EF_TMP/err" || fail "the problem does not say why: $(cat "$EF_TMP/err")"
pass "--check-config validates the keys"
