#!/usr/bin/env bash
# The espfleet CLI without a device: inspect and mkimage, their exit codes
# and error lines, --json output, determinism; and the real image's facts.
. "${ESPFLEET_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/integration/lib.sh"
require_bin espfleet
require_cmd jq sha256sum
d=$EF_TMP

espfleet mkimage --chip esp32c6 --version 3.1.4 --project cli-test --size 64K -o "$d/a.bin" >/dev/null
espfleet mkimage --chip ESP32-C6 --version 3.1.4 --project cli-test --size 64K -o "$d/b.bin" >/dev/null
assert_eq "$(sha256_of "$d/a.bin")" "$(sha256_of "$d/b.bin")" "mkimage is deterministic"
espfleet inspect "$d/a.bin" --json >"$d/a.json" || fail "inspect of a generated image failed"
assert_eq true "$(jq -r .valid "$d/a.json")" "valid"
assert_eq esp32c6 "$(jq -r .chip.name "$d/a.json")" "chip"
assert_eq 3.1.4 "$(jq -r .app.version "$d/a.json")" "version"
assert_eq cli-test "$(jq -r .app.project "$d/a.json")" "project"
assert_eq "$(sha256_of "$d/a.bin")" "$(jq -r .sha256 "$d/a.json")" "sha256 in the JSON"
pass "mkimage writes a valid, deterministic image; inspect --json reads it back"

# expect_error CODE ARGS...: the CLI exits 1 with one error line naming CODE.
expect_error() {
  local code=$1 status=0
  shift
  espfleet "$@" >/dev/null 2>"$d/err" || status=$?
  assert_eq 1 "$status" "exit status of espfleet $*"
  assert_eq "$code" "$(cli_error_code "$d/err")" "error code of espfleet $*"
}
cp "$d/a.bin" "$d/bad-magic.bin"; printf '\x00' | dd of="$d/bad-magic.bin" bs=1 conv=notrunc status=none
expect_error image_bad_magic inspect "$d/bad-magic.bin"
head -c 30000 "$d/a.bin" >"$d/short.bin"
expect_error image_truncated inspect "$d/short.bin"
cp "$d/a.bin" "$d/flip.bin"; printf '\x5a' | dd of="$d/flip.bin" bs=1 seek=4000 conv=notrunc status=none
status=0; espfleet inspect "$d/flip.bin" >/dev/null 2>"$d/err" || status=$?
assert_eq 1 "$status" "exit status for a flipped byte"
case "$(cli_error_code "$d/err")" in image_bad_checksum | image_bad_digest) ;; *) fail "flipped byte: $(cat "$d/err")" ;; esac
expect_error io_error inspect "$d/missing.bin"
pass "inspect: bad magic, truncated, corrupted and missing files fail with their codes"

for args in "inspect" "mkimage --chip esp32s3" "mkimage --chip nope --version 1 --project p --size 1K -o $d/x" \
  "flash" "frobnicate"; do
  status=0; espfleet $args >/dev/null 2>&1 || status=$?
  assert_eq 2 "$status" "usage error for espfleet $args"
done
pass "usage errors exit 2"

# No option can build a message the firmware would truncate (4096 bytes).
status=0; espfleet flash --chunk-size 4068 "$d/x.bin" >/dev/null 2>"$d/err" || status=$?
assert_eq 2 "$status" "--chunk-size 4068 is a usage error"
grep -q '1\.\.4067: the firmware drops messages above 4096 bytes' "$d/err" || fail "the error does not say the limit: $(cat "$d/err")"
status=0; espfleet mkimage --chip esp32s3 --version 1 --project p --size 1K --hosted-release 1.0 -o "$d/x" \
  >/dev/null 2>&1 || status=$?
assert_eq 2 "$status" "a malformed --hosted-release is a usage error"
pass "chunk sizes above the firmware's buffer are refused with the limit"

# The real ESP32-S3 image from shared/ (skips the rest when absent).
real=$(real_firmware)
espfleet inspect "$real" --json >"$d/real.json" || fail "the real image does not validate"
assert_eq 1488032 "$(jq -r .size "$d/real.json")" "real image size"
assert_eq 9 "$(jq -r .chip.id "$d/real.json")" "real image chip"
assert_eq 5 "$(jq -r .segment_count "$d/real.json")" "real image segments"
assert_eq "esp-idf: v4.4.7 38eeba213a" "$(jq -r .app.version "$d/real.json")" "real image version"
assert_eq arduino-lib-builder "$(jq -r .app.project "$d/real.json")" "real image project"
assert_eq 1488000 "$(jq -r .hashed_size "$d/real.json")" "real image hashed size"
pass "the real image's facts"

# Release keys: keygen, sign, verify; a changed manifest or another image is refused.
espfleet keygen "$d/rel" >/dev/null || fail "keygen"
assert_eq 600 "$(stat -c %a "$d/rel.key")" "private key mode"
status=0; espfleet keygen "$d/rel" >/dev/null 2>&1 || status=$?
assert_eq 1 "$status" "keygen over an existing key"
mkimage "$d/sig.bin" 1.2.3 demo 64K
espfleet sign "$d/sig.bin" --key "$d/rel.key" --key-id rel-1 --hosted-release FG-1.2.3.0.0 -o "$d/sig.json" ||
  fail "sign"
jq -e '.version == "1.2.3" and .project == "demo" and .chip == "esp32s3" and .key_id == "rel-1"' "$d/sig.json" \
  >/dev/null || fail "manifest content: $(cat "$d/sig.json")"
espfleet verify "$d/sig.json" --pub "$d/rel.pub" --image "$d/sig.bin" >/dev/null || fail "verify of a good manifest"
jq '.allow_downgrade = true' "$d/sig.json" >"$d/forged.json"
espfleet verify "$d/forged.json" --pub "$d/rel.pub" >/dev/null 2>"$d/err" && fail "a changed manifest verified"
assert_eq release_bad_signature "$(cli_error_code "$d/err")" "changed manifest"
mkimage "$d/other.bin" 1.2.3 demo 65K
espfleet verify "$d/sig.json" --pub "$d/rel.pub" --image "$d/other.bin" >/dev/null 2>"$d/err" &&
  fail "another image verified"
assert_eq hash_mismatch "$(cli_error_code "$d/err")" "another image"
pass "keygen (0600, never over a key), sign, verify; a changed manifest and another image are refused"
