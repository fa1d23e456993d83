#!/usr/bin/env bash
# espfleetd's command line: --check-config accepts the shipped example and
# lists every problem of a bad file, one line per key, exit 2; --version and
# --help; and a daemon with an unreachable broker keeps running.
. "${ESPFLEET_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/integration/lib.sh"
require_bin espfleetd
d=$EF_TMP

"$EF_BIN/espfleetd" --version | grep -q '^espfleetd ' || fail "--version"
"$EF_BIN/espfleetd" --help | grep -q -- '--check-config' || fail "--help"
status=0; "$EF_BIN/espfleetd" >/dev/null 2>&1 || status=$?
assert_eq 2 "$status" "no arguments is a usage error"
pass "--version, --help, usage error"

# The shipped example checks as it is, on any machine (a newcomer's first
# command); its credentials files are added on a real installation.
cp "$EF_SRC/config/espfleetd.example.json" "$d/example.json"
"$EF_BIN/espfleetd" --config "$d/example.json" --check-config >/dev/null || fail "example config rejected"
pass "shipped example config is valid"

cat >"$d/bad.json" <<'JSON'
{
  "device_id": "has space",
  "mqtt": {"uri": "http://broker", "keepalive_s": "30"},
  "esp": {"window": 99, "chunk_size": 0},
  "download": {"allow_http": "yes"},
  "colour": "blue"
}
JSON
status=0
"$EF_BIN/espfleetd" --config "$d/bad.json" --check-config 2>"$d/problems.txt" || status=$?
assert_eq 2 "$status" "exit status for a bad config"
for key in device_id mqtt.uri mqtt.keepalive_s esp.window esp.chunk_size download.allow_http colour; do
  grep -q "$key" "$d/problems.txt" || fail "no problem line names $key: $(cat "$d/problems.txt")"
done
pass "--check-config names every bad key ($(wc -l <"$d/problems.txt") lines)"

# A chunk the firmware would truncate (the old 16 KiB advice): refused, and
# the line says the limit and why.
jq '.esp.chunk_size = 16384' "$d/example.json" >"$d/chunk.json"
status=0
"$EF_BIN/espfleetd" --config "$d/chunk.json" --check-config 2>"$d/chunk.txt" || status=$?
assert_eq 2 "$status" "exit status for a 16 KiB chunk"
grep -Eq "esp.chunk_size: must be 1\.\.40[0-9]{2} \(the ESP firmware drops messages above 4096 bytes\)" "$d/chunk.txt" ||
  fail "the chunk_size problem does not say the limit: $(cat "$d/chunk.txt")"
pass "a chunk above the firmware's limit is refused: $(sed 's/^[^:]*: //' "$d/chunk.txt")"

echo '{not json' >"$d/broken.json"
status=0; "$EF_BIN/espfleetd" --config "$d/broken.json" --check-config 2>/dev/null || status=$?
assert_eq 2 "$status" "exit status for invalid JSON"
status=0; "$EF_BIN/espfleetd" --config "$d/missing.json" --check-config 2>/dev/null || status=$?
assert_eq 2 "$status" "exit status for a missing file"
pass "invalid JSON and a missing file exit 2"

# A broker that is not there: the daemon runs, retries, and stops cleanly.
. "$EF_SRC/tests/integration/lib_mosquitto.sh"
port=$(free_port)
jq -n --arg s "$d/state" --arg u "mqtt://127.0.0.1:$port" --arg dev "$d/no-esp" \
  '{device_id: "lonely", state_dir: $s, mqtt: {uri: $u}, esp: {device: $dev}}' >"$d/lonely.json"
"$EF_BIN/espfleetd" --config "$d/lonely.json" 2>"$d/lonely.log" &
pid=$!
track_pid $pid
sleep 2
_ef_alive $pid || fail "espfleetd exited without a broker: $(cat "$d/lonely.log")"
status=0; stop_pid $pid || status=$?
assert_eq 0 "$status" "exit status after SIGTERM"
pass "no broker, no ESP: daemon keeps running and stops cleanly on SIGTERM"
