# shellcheck shell=bash
# Shared helpers for espfleet's integration tests.
#
# Source it first thing in a test script:
#   . "${ESPFLEET_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/integration/lib.sh"
#
# What sourcing does:
#   - strict mode: set -euo pipefail
#   - EF_SRC (source tree), EF_BIN (built programs, $ESPFLEET_BIN_DIR or
#     $EF_SRC/build/bin), EF_SHARED ($ESPFLEET_SHARED_DIR or $EF_SRC/../shared)
#   - EF_TMP: a private temporary folder for this test, removed on exit
#     (kept when EF_KEEP_TMP=1, for debugging)
#   - an EXIT trap that runs the hooks registered with at_exit (last first),
#     then stops every process registered with track_pid (SIGTERM, then
#     SIGKILL after 3 s), then removes EF_TMP. INT/TERM exit through it.
#
# Exit status convention (ctest): 0 pass, 1 fail, 77 skip.
#
# Functions (details above each):
#   log MSG / pass MSG / fail MSG / skip MSG
#   at_exit CMD...          track_pid PID          stop_pid PID
#   require_bin PROG...     require_cmd TOOL...
#   wait_for 'CMD' [TIMEOUT_S]
#   assert_eq WANT GOT WHAT
#   sha256_of FILE
#   start_sim LINK FLASH [SIM_ARGS...]   stop_sim   sim_show FLASH   sim_get FLASH JQ
#   sim_wait FLASH JQ_CONDITION [TIMEOUT_S]
#   espfleet ARGS...        mkimage OUT VERSION [PROJECT] [SIZE] [CHIP] [EXTRA...]
#   real_firmware           (prints the real image's path, or skips)
#   cli_error_code FILE     sim_install LINK FLASH IMAGE [FLASH_ARGS...]

set -euo pipefail

EF_SRC=${ESPFLEET_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
EF_BIN=${ESPFLEET_BIN_DIR:-$EF_SRC/build/bin}
EF_SHARED=${ESPFLEET_SHARED_DIR:-$EF_SRC/../shared}
EF_TEST_NAME=$(basename "$0" .sh)
EF_TMP=$(mktemp -d "${TMPDIR:-/tmp}/espfleet-$EF_TEST_NAME.XXXXXX")

_ef_pids=()
_ef_hooks=()

# log MSG...: a progress line on stderr, prefixed with the test's name.
log() { echo "[$EF_TEST_NAME] $*" >&2; }

# pass MSG: reports one passed check (tests keep going).
pass() { echo "PASS: $*"; }

# fail MSG: reports the failure and ends the test with status 1.
fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# skip MSG: ends the test as skipped (status 77) with the reason.
skip() {
  echo "SKIP: $*" >&2
  exit 77
}

# at_exit CMD...: runs CMD (a string, evaluated) when the test exits, before
# the tracked processes are stopped; hooks run last-registered first.
at_exit() { _ef_hooks+=("$*"); }

# track_pid PID: stops PID when the test exits.
track_pid() { _ef_pids+=("$1"); }

# _ef_alive PID: true while PID runs and is not a zombie.
_ef_alive() {
  local state
  state=$(awk '/^State:/ {print $2}' "/proc/$1/status" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

# stop_pid PID: SIGTERM, up to 3 s to exit, then SIGKILL; reaps it if it is
# our child. Returns the process's exit status when known (0 otherwise).
stop_pid() {
  local pid=$1 i status=0
  if _ef_alive "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 60; i++)); do
      _ef_alive "$pid" || break
      sleep 0.05
    done
    if _ef_alive "$pid"; then
      log "pid $pid ignored SIGTERM; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  wait "$pid" 2>/dev/null || status=$?
  return "$status"
}

_ef_cleanup() {
  local status=$? i
  set +e
  for ((i = ${#_ef_hooks[@]} - 1; i >= 0; i--)); do
    eval "${_ef_hooks[i]}"
  done
  for ((i = ${#_ef_pids[@]} - 1; i >= 0; i--)); do
    stop_pid "${_ef_pids[i]}" >/dev/null 2>&1
  done
  if [ "${EF_KEEP_TMP:-0}" = 1 ]; then
    log "kept $EF_TMP"
  else
    rm -rf "$EF_TMP"
  fi
  exit "$status"
}
trap _ef_cleanup EXIT
trap 'exit 130' INT TERM

# require_bin PROG...: each must be a built program in EF_BIN; a missing one
# is a build problem, so the test fails (it does not skip).
require_bin() {
  local p
  for p in "$@"; do
    [ -x "$EF_BIN/$p" ] || fail "$EF_BIN/$p is not built"
  done
}

# require_cmd TOOL...: each must be on PATH; skips the test otherwise.
require_cmd() {
  local t
  for t in "$@"; do
    command -v "$t" >/dev/null 2>&1 || skip "$t is not installed"
  done
}

# wait_for 'CMD' [TIMEOUT_S]: evaluates CMD (a string) every 50 ms until it
# succeeds; returns 1 after TIMEOUT_S seconds (default 10, fractions allowed).
wait_for() {
  local cmd=$1 timeout=${2:-10} deadline
  deadline=$(awk -v t="$timeout" -v now="$(date +%s.%N)" 'BEGIN { printf "%.3f", now + t }')
  while :; do
    if eval "$cmd" >/dev/null 2>&1; then
      return 0
    fi
    if awk -v d="$deadline" -v now="$(date +%s.%N)" 'BEGIN { exit !(now > d) }'; then
      return 1
    fi
    sleep 0.05
  done
}

# assert_eq WANT GOT WHAT: fails with a message naming WHAT when they differ.
assert_eq() {
  [ "$1" = "$2" ] || fail "$3: want '$1', got '$2'"
}

# sha256_of FILE: prints the file's SHA-256 in hex.
sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# espfleet ARGS...: runs the built CLI.
espfleet() { "$EF_BIN/espfleet" "$@"; }

# mkimage OUT VERSION [PROJECT] [SIZE] [CHIP] [EXTRA_ARGS...]: writes a valid
# test image with `espfleet mkimage` (defaults: project espfleet-test, size
# 300K, chip esp32s3). Quiet unless it fails.
# A test image with a numeric version V stands for ESP-Hosted release
# FG-V (padded to five numbers: 1.1.0 -> FG-1.1.0.0.0): it carries that
# release record, which the simulator reports through GetFwVersion once the
# image runs. Pass --hosted-release yourself to choose another.
mkimage() {
  local out=$1 version=$2 project=${3:-espfleet-test} size=${4:-300K} chip=${5:-esp32s3}
  shift $(($# < 5 ? $# : 5))
  local rel=()
  if [[ " $* " != *" --hosted-release "* && $version =~ ^[0-9]+(\.[0-9]+){0,4}$ ]]; then
    local p
    IFS=. read -ra p <<<"$version"
    while [ ${#p[@]} -lt 5 ]; do p+=(0); done
    rel=(--hosted-release "FG-${p[0]}.${p[1]}.${p[2]}.${p[3]}.${p[4]}")
  fi
  "$EF_BIN/espfleet" mkimage --chip "$chip" --version "$version" --project "$project" \
    --size "$size" "${rel[@]}" "$@" -o "$out" >/dev/null || fail "mkimage $out ($version) failed"
}

# real_firmware: prints the path of the real ESP32-S3 image from shared/, or
# skips the test when shared/ is not there.
real_firmware() {
  local fw=$EF_SHARED/firmware/esp32s3-app-idf4.4.7.bin
  [ -f "$fw" ] || skip "real firmware not available ($fw)"
  echo "$fw"
}

# start_sim LINK FLASH [SIM_ARGS...]: starts espfleet-sim in the background
# (log in $EF_TMP/sim.N.log, N counting up), tracks it, and waits up to 5 s
# for LINK to appear. Sets SIM_PID and SIM_LOG. Call it in the test's own
# shell (not in $(...)) so the variables and the pid registry stay set.
_ef_sims=0
start_sim() {
  local link=$1 flash=$2
  shift 2
  _ef_sims=$((_ef_sims + 1))
  SIM_LOG=$EF_TMP/sim.$_ef_sims.log
  # Tests do not wait for the real erase time (3.8 s per OTA begin); a test
  # that wants it passes its own --erase-ms-per-4k, which comes later and wins.
  "$EF_BIN/espfleet-sim" --link "$link" --flash "$flash" --erase-ms-per-4k 0 "$@" >"$SIM_LOG" 2>&1 &
  SIM_PID=$!
  track_pid "$SIM_PID"
  if ! wait_for "[ -e '$link' ] || ! _ef_alive $SIM_PID" 5 || ! [ -e "$link" ]; then
    sed 's/^/  sim: /' "$SIM_LOG" >&2
    fail "espfleet-sim did not publish $link"
  fi
}

# stop_sim [PID]: stops the simulator (default SIM_PID) with SIGTERM and
# fails the test unless it exits with status 0.
stop_sim() {
  local pid=${1:-$SIM_PID} status=0
  stop_pid "$pid" || status=$?
  [ "$status" = 0 ] || fail "espfleet-sim (pid $pid) exited with status $status"
}

# sim_show FLASH: prints the flash state JSON (espfleet-sim --show).
sim_show() { "$EF_BIN/espfleet-sim" --flash "$1" --show; }

# sim_get FLASH JQ: prints one value of the flash state, e.g.
#   sim_get "$flash" .counters.ota_end
#   sim_get "$flash" '.running.sha256 // "none"'
sim_get() { sim_show "$1" | jq -r "$2"; }

# sim_wait FLASH JQ_CONDITION [TIMEOUT_S]: waits until the condition (a jq
# expression giving true) holds for the flash state, e.g. after a reboot:
#   sim_wait "$flash" ".counters.boots == $((boots + 1))"
sim_wait() {
  wait_for "sim_show '$1' | jq -e '$2'" "${3:-10}"
}

# cli_error_code FILE: the <code> of the last "espfleet: error: <code>: ..."
# line in FILE (the CLI's stderr), or nothing.
cli_error_code() { sed -n 's/^espfleet: error: \([a-z_]*\):.*/\1/p' "$1" | tail -n1; }

# sim_install LINK FLASH IMAGE [FLASH_ARGS...]: flashes IMAGE with
# `espfleet flash` (short timeouts) and waits until the simulator booted it
# (boots counter up by one, running sha256 = the file's). Fails otherwise.
sim_install() {
  local link=$1 flash=$2 image=$3 boots
  shift 3
  boots=$(sim_get "$flash" .counters.boots)
  espfleet flash --device "$link" --timeout-ms 3000 --boot-timeout-ms 10000 "$@" "$image" \
    >"$EF_TMP/install.out" 2>"$EF_TMP/install.err" ||
    fail "espfleet flash $image: $(tail -n1 "$EF_TMP/install.err")"
  sim_wait "$flash" ".counters.boots > $boots and .running.sha256 == \"$(sha256_of "$image")\"" 10 ||
    fail "the simulator did not boot $image"
}

# sim_fault_fixture: the common start of the fault tests. Sets link, flash,
# sim_args, base_sha; writes base.bin (1.0.0) and new.bin (1.1.0) to EF_TMP,
# installs base.bin, and leaves the simulator stopped so that each case can
# start it again with its own --fault.
sim_fault_fixture() {
  link=$EF_TMP/esp0
  flash=$EF_TMP/flash.bin
  sim_args=(--reboot-delay-ms 200 --down-ms 100)
  mkimage "$EF_TMP/base.bin" 1.0.0 demo 200K
  mkimage "$EF_TMP/new.bin" 1.1.0 demo 200K
  base_sha=$(sha256_of "$EF_TMP/base.bin")
  start_sim "$link" "$flash" "${sim_args[@]}"
  sim_install "$link" "$flash" "$EF_TMP/base.bin"
  stop_sim
}
