#!/usr/bin/env bash
# Bad images never replace the running one:
#  - a one-byte corruption is caught by `espfleet flash` before OTA end
#    (the simulator counts no OTA end);
#  - the same corrupt file pushed through the raw control API (raw_ota, no
#    host-side checks) is refused by the simulator's own OTA end;
#  - an image for another chip is refused before OTA begin by the CLI, and
#    by the simulator's OTA end when pushed raw.
. "${ESPFLEET_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/integration/lib.sh"
require_bin espfleet espfleet-sim raw_ota
require_cmd jq sha256sum

link=$EF_TMP/esp0
flash=$EF_TMP/flash.bin
start_sim "$link" "$flash" --reboot-delay-ms 200 --down-ms 100

# error_code FILE: the <code> of the CLI's "espfleet: error: <code>: ..." line
error_code() { sed -n 's/^espfleet: error: \([a-z_]*\):.*/\1/p' "$1" | tail -n1; }

mkimage "$EF_TMP/good.bin" 1.0.0 demo 300K
espfleet flash --device "$link" --chip esp32s3 --timeout-ms 3000 "$EF_TMP/good.bin" \
  >/dev/null 2>"$EF_TMP/err" || fail "flashing the good image: $(tail -n1 "$EF_TMP/err")"
sim_wait "$flash" '.counters.boots == 2' 10 || fail "no reboot after the good image"
good_sha=$(sha256_of "$EF_TMP/good.bin")
assert_eq "$good_sha" "$(sim_get "$flash" .running.sha256)" "running image"

# One byte in the middle of a segment, flipped.
mkimage "$EF_TMP/bad.bin" 2.0.0 demo 300K
cp "$EF_TMP/bad.bin" "$EF_TMP/orig.bin"
byte=$(od -An -tu1 -j150000 -N1 "$EF_TMP/bad.bin" | tr -d ' ')
printf "\\$(printf %03o $((byte ^ 0x5a)))" | dd of="$EF_TMP/bad.bin" bs=1 seek=150000 conv=notrunc status=none
assert_eq 1 "$(cmp -l "$EF_TMP/orig.bin" "$EF_TMP/bad.bin" | wc -l)" "bytes changed by the corruption"

ends=$(sim_get "$flash" .counters.ota_end)
if espfleet flash --device "$link" --chip esp32s3 --timeout-ms 3000 "$EF_TMP/bad.bin" >/dev/null 2>"$EF_TMP/err"; then
  fail "espfleet flash accepted a corrupt image"
fi
code=$(error_code "$EF_TMP/err")
[[ $code == image_bad_checksum || $code == image_bad_digest ]] || fail "corrupt image gave '$code'"
assert_eq "$ends" "$(sim_get "$flash" .counters.ota_end)" "ota_end counter after the CLI refused"
assert_eq "$good_sha" "$(sim_get "$flash" .running.sha256)" "running image after the CLI refused"
pass "espfleet flash refuses the corrupt image ($code) before OTA end"

rejected=$(sim_get "$flash" .counters.ota_end_rejected)
out=$("$EF_BIN/raw_ota" --device "$link" --timeout-ms 3000 "$EF_TMP/bad.bin" 2>"$EF_TMP/raw.err") &&
  fail "raw OTA of a corrupt image succeeded"
[[ $out == "error ota_end_rejected ota_end "* ]] || fail "raw OTA of a corrupt image: '$out'"
assert_eq $((ends + 1)) "$(sim_get "$flash" .counters.ota_end)" "ota_end counter after the raw OTA"
assert_eq $((rejected + 1)) "$(sim_get "$flash" .counters.ota_end_rejected)" "ota_end_rejected counter"
assert_eq rejected "$(sim_get "$flash" '.slots[1].state')" "state of the slot written"
sleep 0.4 # longer than the reboot delay: a wrong reboot would show now
assert_eq 2 "$(sim_get "$flash" .counters.boots)" "boots (no reboot after a rejected OTA end)"
assert_eq "$good_sha" "$(sim_get "$flash" .running.sha256)" "running image after the raw OTA"
pass "the simulator's own OTA end refuses the corrupt image ($out)"

# Wrong chip: refused by the CLI before OTA begin...
mkimage "$EF_TMP/c3.bin" 3.0.0 demo 300K esp32c3
begins=$(sim_get "$flash" .counters.ota_begin)
if espfleet flash --device "$link" --chip esp32s3 --timeout-ms 3000 "$EF_TMP/c3.bin" >/dev/null 2>"$EF_TMP/err"; then
  fail "espfleet flash accepted an esp32c3 image for an esp32s3"
fi
assert_eq chip_mismatch "$(error_code "$EF_TMP/err")" "error for a wrong-chip image"
assert_eq "$begins" "$(sim_get "$flash" .counters.ota_begin)" "ota_begin counter after a wrong-chip image"
pass "wrong-chip image refused before OTA begin"

# ...and by the simulated ESP itself when pushed raw.
out=$("$EF_BIN/raw_ota" --device "$link" --timeout-ms 3000 "$EF_TMP/c3.bin" 2>"$EF_TMP/raw.err") &&
  fail "raw OTA of a wrong-chip image succeeded"
[[ $out == "error ota_end_rejected ota_end "* ]] || fail "raw OTA of a wrong-chip image: '$out'"
grep -q "chip id 0x0005" "$SIM_LOG" || fail "the simulator log does not name the wrong chip"
assert_eq "$good_sha" "$(sim_get "$flash" .running.sha256)" "running image after everything"
pass "the simulator's OTA end refuses a wrong-chip image"
