#!/usr/bin/env bash
# `cmake --install` into a folder: the programs, the unit file and the docs
# land there, and the unit names the daemon and the docs where they are.
. "${ESPFLEET_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/integration/lib.sh"
require_cmd cmake
build=$(cd "$EF_BIN/.." && pwd)
prefix=$EF_TMP/prefix
cmake --install "$build" --prefix "$prefix" >/dev/null 2>"$EF_TMP/install.err" ||
  fail "cmake --install: $(tail -n 3 "$EF_TMP/install.err")"
unit=$prefix/lib/systemd/system/espfleetd.service
[ -f "$unit" ] || fail "no unit file at $unit"
for p in espfleet espfleetd espfleet-sim espfleet-console espfleet-controller; do
  [ -x "$prefix/bin/$p" ] || fail "$p is not installed in $prefix/bin"
done
# The unit was configured for the build's own prefix; the paths it names must
# be those of that prefix's layout.
exec_path=$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$unit")
conf_prefix=${exec_path%/bin/espfleetd}
[ "$conf_prefix" != "$exec_path" ] || fail "ExecStart does not name bin/espfleetd: $exec_path"
for doc in $(sed -n 's/^Documentation=//p' "$unit"); do
  rel=${doc#file:"$conf_prefix"/}
  [ "$rel" != "$doc" ] || fail "Documentation= $doc is not under the prefix $conf_prefix"
  [ -f "$prefix/$rel" ] || fail "Documentation= $doc: no $rel in the installed tree"
done
[ -f "$prefix/share/doc/espfleet/examples/espfleetd.example.json" ] || fail "the example config is not installed"
"$prefix/bin/espfleetd" --config "$prefix/share/doc/espfleet/examples/espfleetd.example.json" --check-config \
  >/dev/null || fail "the installed example config does not pass --check-config"
pass "installed: programs, unit ($exec_path), its documentation and a checkable example"

# The controller's unit and example, the same way.
cunit=$prefix/lib/systemd/system/espfleet-controller.service
[ -f "$cunit" ] || fail "no unit file at $cunit"
cexec=$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$cunit")
assert_eq "$conf_prefix/bin/espfleet-controller" "$cexec" "the controller unit's ExecStart"
for doc in $(sed -n 's/^Documentation=//p' "$cunit"); do
  rel=${doc#file:"$conf_prefix"/}
  [ "$rel" = "$doc" ] || [ -f "$prefix/$rel" ] || fail "Documentation= $doc: no $rel in the installed tree"
done
"$prefix/bin/espfleet-controller" --config "$prefix/share/doc/espfleet/examples/espfleet-controller.example.json" \
  --check-config >/dev/null || fail "the installed controller example does not pass --check-config"
pass "installed: the controller, its unit and a checkable example"
