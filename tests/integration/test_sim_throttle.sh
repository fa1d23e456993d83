#!/usr/bin/env bash
# Simulated flash timing: --erase-ms-per-4k makes OTA begin take the erase
# time of the whole slot, --flash-kbps and --latency-us pace the writes.
# Unthrottled, the same OTA is fast.
. "${ESPFLEET_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/integration/lib.sh"
require_bin espfleet espfleet-sim
require_cmd jq sha256sum

link=$EF_TMP/esp0
flash=$EF_TMP/flash.bin
mkimage "$EF_TMP/img.bin" 1.0.0 demo 200K

ms_now() { echo $(($(date +%s%N) / 1000000)); }

# timed_install SIM_ARGS...: sets $took to how many ms `espfleet flash
# --no-wait` took (OTA begin to OTA end), and checks the image selected to boot.
timed_install() {
  local t0 t1
  start_sim "$link" "$flash" --reboot-delay-ms 100 --down-ms 50 --slot-size 1M "$@"
  t0=$(ms_now)
  espfleet flash --device "$link" --chip esp32s3 --no-wait "$EF_TMP/img.bin" >/dev/null 2>"$EF_TMP/err" ||
    fail "espfleet flash with $*: $(tail -n1 "$EF_TMP/err")"
  t1=$(ms_now)
  stop_sim
  assert_eq "$(sha256_of "$EF_TMP/img.bin")" "$(sim_get "$flash" '.slots[.boot_slot].sha256')" \
    "image selected to boot, with $*"
  took=$((t1 - t0))
}

timed_install
fast=$took
((fast < 1500)) || fail "unthrottled OTA of 200K took $fast ms"
pass "unthrottled: $fast ms"

# 1 MiB slot = 256 sectors * 2 ms = 512 ms erase; 200 KiB at 400 KiB/s =
# 500 ms; 52 writes * 2 ms latency = 104 ms: at least ~1.1 s in all.
timed_install --erase-ms-per-4k 2 --flash-kbps 400 --latency-us 2000
slow=$took
((slow >= 1100)) || fail "throttled OTA took only $slow ms (want >= 1100)"
((slow < 6000)) || fail "throttled OTA took $slow ms (want about 1.1 s)"
pass "throttled: $slow ms"
