#!/usr/bin/env bash
# Runs every libFuzzer harness of tests/fuzz under ASan+UBSan.
#   tools/fuzz.sh [SECONDS] [NAME...]   each harness SECONDS (default 10)
#   tools/fuzz.sh --runs N [NAME...]    each harness N executions
# Builds build-fuzz with clang (Debian's clang, libFuzzer included). Seeds
# come from tests/fuzz/corpus/NAME/; new inputs found go to build-fuzz/corpus/
# (the tree's corpus is not changed). A crash leaves its input in
# build-fuzz/crash-* and makes the script exit 1.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/tools/deps.sh"
espfleet_install_deps clang

limit=(-max_total_time=10)
names=()
while (($#)); do
  case "$1" in
    --runs) limit=(-runs="$2"); shift ;;
    [0-9]*) limit=(-max_total_time="$1") ;;
    -h | --help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) names+=("$1") ;;
  esac
  shift
done

build=$here/build-fuzz
CC=clang cmake -S "$here" -B "$build" -DESPFLEET_FUZZ=ON -DESPFLEET_BUILD_TESTS=OFF \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
[ ${#names[@]} -gt 0 ] || names=($(cd "$here/tests/fuzz" && ls fuzz_*.c | sed 's/^fuzz_//; s/\.c$//'))
cmake --build "$build" -j "$(nproc 2>/dev/null || echo 2)" --target "${names[@]/#/fuzz_}" >/dev/null
status=0
for n in "${names[@]}"; do
  mkdir -p "$build/corpus/$n"
  echo "fuzz_$n: ${limit[*]}"
  (cd "$build" && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    "./bin/fuzz_$n" "${limit[@]}" -print_final_stats=1 "corpus/$n" "$here/tests/fuzz/corpus/$n" \
    2>"$build/fuzz_$n.log") || { status=1; echo "fuzz_$n FAILED:"; tail -n 40 "$build/fuzz_$n.log"; }
  grep -E '^stat::number_of_executed_units|^stat::peak_rss_mb' "$build/fuzz_$n.log" | sed 's/^/  /' || true
done
exit $status
