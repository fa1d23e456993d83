#!/usr/bin/env bash
# espfleetd over mqtts:// (the broker's certificate checked against
# mqtt.ca_file), with OTA writes pipelined (esp.window 4, 4000-byte chunks),
# installing the real ESP32-S3 image when shared/ has it, else a generated one.
. "${ESPFLEET_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/integration/lib.sh"
. "$EF_SRC/tests/integration/lib_fleet.sh"
FLEET_MQTT_TLS=1
FLEET_CONFIG_UPDATE='.esp.window = 4 | .esp.chunk_size = 4000'
fleet_start

grep -q "connected to ssl://127.0.0.1:$MQTT_TLS_PORT" "$DAEMON_LOG" || fail "daemon is not on the TLS listener"
pass "espfleetd connected over TLS"

if [ -f "$EF_SHARED/firmware/esp32s3-app-idf4.4.7.bin" ]; then
  image=$EF_SHARED/firmware/esp32s3-app-idf4.4.7.bin
  version="esp-idf: v4.4.7 38eeba213a"
else
  log "shared firmware absent: using a generated image"
  mkimage "$EF_TMP/gen.bin" 4.4.7 arduino-lib-builder 1400K
  image=$EF_TMP/gen.bin
  version=4.4.7
fi
serve "$image" fw.bin
publish_job "$(job_json real fw.bin)"
doc=$(wait_final real 60) || fail "no final state"
assert_eq succeeded "$(jq -r .state <<<"$doc")" "state"
assert_eq "$(sha256_of "$image")" "$(sim_get "$FLASH" .running.sha256)" "simulator runs the image"
assert_eq "$version" "$(sim_get "$FLASH" .running.version)" "running version"
pass "image installed over TLS with a window of 4"
