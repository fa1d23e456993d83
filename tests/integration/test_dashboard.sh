#!/usr/bin/env bash
# The dashboard of espfleet-controller (docs/dashboard.md) in a real headless
# Chromium, driven by puppeteer-core (tests/browser/dashboard.test.js),
# against a swarm of 6 espfleetd + espfleet-sim pairs and the controller's
# HTTP API with a tokens file (a viewer and an operator):
#   - the page asks for a token, a viewer reads the fleet without controls;
#   - the operator sees every device live, gets the controller's sentence for
#     a bad document, starts a broken rollout from the form (a job document
#     whose sha256 is wrong) and sees the canary abort it with the reason;
#   - starts the good release from the form (URL + the signed manifest's
#     file, espfleet keygen + sign), pauses it, resumes it and sees every
#     device succeed;
#   - starts a third release on one device with a long soak, sees the soak
#     timer, and aborts it with the Abort button (after its confirmation);
#   - the first canary's page lists both of its jobs.
# Screenshots: $ESPFLEET_ARTIFACTS_DIR/dashboard, else
# <build>/test-artifacts/dashboard (printed at the end).
# Skips (77) without chromium, node or tests/browser/node_modules, and when
# the controller has no HTTP API.
. "${ESPFLEET_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/integration/lib.sh"
. "$EF_SRC/tests/integration/lib_fleet.sh"
. "$EF_SRC/tests/integration/lib_swarm.sh"

# ---- what the browser test needs
CHROMIUM=${ESPFLEET_CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}
if [ -z "$CHROMIUM" ] || [ ! -x "$CHROMIUM" ]; then
  skip "chromium is not installed (Debian: apt-get install chromium; or set ESPFLEET_CHROMIUM=/path/to/chrome)"
fi
command -v node >/dev/null 2>&1 || skip "node is not installed (Debian: apt-get install nodejs npm)"
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 18 ] || skip "node $(node --version) is too old: puppeteer-core needs 18 or later"
[ -f "$EF_SRC/tests/browser/node_modules/puppeteer-core/package.json" ] ||
  skip "tests/browser/node_modules is missing: run (cd tests/browser && npm ci)"
require_bin espfleet-controller
grep -aq '/api/v1' "$EF_BIN/espfleet-controller" ||
  skip "espfleet-controller has no HTTP API yet (docs/api.md)"

# ---- the swarm, with the API on a free loopback port and two logins
HTTP_PORT=$(free_port)
operator_token=op-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
viewer_token=view-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
digest() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }
{
  echo "# role name sha256(token)"
  echo "operator ops $(digest "$operator_token")"
  echo "viewer watcher $(digest "$viewer_token")"
} >"$EF_TMP/tokens"
N=6
SWARM_GROUP=swarm
CONTROLLER_CONFIG_UPDATE=".http.listen = \"127.0.0.1:$HTTP_PORT\" | .http.tokens_file = \"$EF_TMP/tokens\""
swarm_start "$N" "$SWARM_GROUP"
controller_start
URL=http://127.0.0.1:$HTTP_PORT/
wait_for "curl -fsS -o /dev/null -H 'Authorization: Bearer $viewer_token' ${URL}api/v1/whoami" 15 ||
  fail "the controller's HTTP API does not answer on $URL"
# The page it serves is the one of this tree (embedded at build time).
for f in index.html app.js app.css; do
  path=$f
  [ "$f" != index.html ] || path=
  curl -fsS "$URL$path" | cmp -s - "$EF_SRC/tools/espfleet-controller/web/$f" ||
    fail "the controller serves another $f than tools/espfleet-controller/web/$f: rebuild it"
done

# ---- the releases: a signed good one, and a broken job document
mkimage "$EF_TMP/v2.bin" 2.0.0 fleet-demo 64K
serve "$EF_TMP/v2.bin" v2.bin
espfleet keygen "$EF_TMP/rel-test" >/dev/null
espfleet sign "$EF_TMP/v2.bin" --key "$EF_TMP/rel-test.key" --key-id rel-test -o "$EF_TMP/v2.manifest.json" >/dev/null ||
  fail "espfleet sign failed"
broken_job=$(job_json broken-v2 v2.bin '.sha256 = ("0" * 64)')
# a third release, for the rollout the page aborts during its soak
mkimage "$EF_TMP/v3.bin" 3.0.0 fleet-demo 64K
serve "$EF_TMP/v3.bin" v3.bin
espfleet sign "$EF_TMP/v3.bin" --key "$EF_TMP/rel-test.key" --key-id rel-test -o "$EF_TMP/v3.manifest.json" >/dev/null ||
  fail "espfleet sign failed"
abort_device=${SWARM_IDS[N - 1]}

shots=${ESPFLEET_ARTIFACTS_DIR:-$(dirname "$EF_BIN")/test-artifacts}/dashboard
rm -rf "$shots"
mkdir -p "$shots" "$EF_TMP/profile"
devices=$(
  IFS=,
  echo "${SWARM_IDS[*]}"
)
log "browser: $CHROMIUM ($("$CHROMIUM" --version 2>/dev/null | head -n1)), node $(node --version)"
start=$(date +%s)
EF_URL=$URL EF_CHROMIUM=$CHROMIUM EF_DEVICES=$devices EF_GROUP=$SWARM_GROUP \
  EF_BROKEN_JOB=$broken_job EF_GOOD_URL=$URL_BASE/v2.bin EF_GOOD_MANIFEST=$EF_TMP/v2.manifest.json \
  EF_GOOD_VERSION=2.0.0 EF_ABORT_URL=$URL_BASE/v3.bin EF_ABORT_MANIFEST=$EF_TMP/v3.manifest.json \
  EF_ABORT_DEVICE=$abort_device EF_OPERATOR_TOKEN=$operator_token EF_VIEWER_TOKEN=$viewer_token \
  EF_SHOTS=$shots EF_PROFILE=$EF_TMP/profile \
  node "$EF_SRC/tests/browser/dashboard.test.js" 2>&1 | tee "$EF_TMP/browser.log" | sed 's/^/  /'
[ "${PIPESTATUS[0]}" = 0 ] || fail "the browser test failed (screenshots in $shots)"
grep -q 'all checks passed' "$EF_TMP/browser.log" || fail "the browser test ended early"
log "browser test: $(($(date +%s) - start)) s"

# ---- what the page did, as the broker and the store saw it
doc=$(rollout_wait r-broken '.state == "aborted"' 5) || fail "r-broken is not aborted on the broker"
assert_eq 1 "$(jq -r .step_devices <<<"$doc")" "devices the broken job reached"
doc=$(rollout_wait r-good '.state == "completed"' 5) || fail "r-good is not completed on the broker"
assert_eq "$N" "$(jq -r .counts.succeeded <<<"$doc")" "devices r-good succeeded on"
doc=$(rollout_wait r-abort '.state == "aborted"' 5) || fail "r-abort is not aborted on the broker"
jq -r .reason <<<"$doc" | grep -q 'dashboard test abort' || fail "r-abort's reason: $(jq -r .reason <<<"$doc")"
# every device runs the good release, but the one r-abort reached: no rollback
for ((i = 0; i < N; i++)); do
  want=$EF_TMP/v2.bin
  [ "${SWARM_IDS[$i]}" != "$abort_device" ] || want=$EF_TMP/v3.bin
  assert_eq "$(sha256_of "$want")" "$(sim_get "$(swarm_flash "$i")" .running.sha256)" "image running on ${SWARM_IDS[$i]}"
done
grep -q 'pause' "$CONTROLLER_LOG" || fail "the controller's log has no pause"
pass "the page started, paused, resumed and aborted rollouts; the simulated ESPs run what they were sent"
log "screenshots: $shots"
for f in "$shots"/*.png; do echo "  ${f##*/}" >&2; done
