#!/usr/bin/env bash
# Builds espfleet and runs the whole test suite (unit + integration).
#   tools/test.sh                 normal build in build/
#   tools/test.sh --sanitize      ASan+UBSan build in build-asan/
#   tools/test.sh --valgrind      also runs the unit tests under valgrind
# Exits non-zero on any failure.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/tools/deps.sh"
espfleet_install_deps

sanitize=OFF valgrind=0 build="$here/build" label=""
for a in "$@"; do
  case "$a" in
    --sanitize) sanitize=ON; build="$here/build-asan" ;;
    --valgrind) valgrind=1 ;;
    --unit) label="-L unit" ;;
    *) echo "usage: tools/test.sh [--sanitize] [--valgrind] [--unit]" >&2; exit 2 ;;
  esac
done

jobs=$(nproc 2>/dev/null || echo 2)
cmake -S "$here" -B "$build" -DESPFLEET_SANITIZE=$sanitize -DESPFLEET_WERROR=ON >/dev/null
cmake --build "$build" -j "$jobs"
# Integration tests pick free ports and use their own temp folders, so they
# can run side by side.
(cd "$build" && ctest --output-on-failure -j "$jobs" $label)
if [ "$valgrind" = 1 ]; then
  # Every unit test program under memcheck: any error or definite leak fails.
  for t in "$build"/bin/test_*; do
    echo "valgrind: $(basename "$t")"
    ESPFLEET_SHARED_DIR="$here/../shared" ESPFLEET_BIN_DIR="$build/bin" \
      valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite \
      "$t" >/dev/null || { echo "valgrind found errors in $(basename "$t")" >&2; exit 1; }
  done
  # The daemon under memcheck through the fleet integration tests (threads,
  # MQTT, curl, the journal): any report fails the run.
  vg=$build/valgrind
  rm -rf "$vg" && mkdir -p "$vg"
  (cd "$build" && ESPFLEET_DAEMON_WRAPPER="valgrind -q --leak-check=full --errors-for-leak-kinds=definite --log-file=$vg/espfleetd.%p.log" \
     ctest --output-on-failure -j "$jobs" -R 'integration.test_fleet_')
  for f in "$vg"/*.log; do
    [ -s "$f" ] || continue
    echo "valgrind report for espfleetd ($f):" >&2
    cat "$f" >&2
    exit 1
  done
fi
