#!/usr/bin/env bash
# Three judges of an ESP-IDF application image must agree on every case:
#  - esp_image_ref.py, an independent validator written from ESP-IDF's
#    documented format (not from client/image/image.c);
#  - `espfleet inspect --json`, the host's validator;
#  - the simulator's OTA end, fed the raw bytes by raw_ota (no host-side
#    check), which accepts exactly the valid images for its chip (esp32s3)
#    that fit its slot.
# Cases: images from `espfleet mkimage` of several sizes and chips, the real
# ESP32-S3 image from shared/firmware (when present), and mutations of both:
# a flipped byte in each region (header fields, a segment header, the app
# description, segment data, padding, checksum, digest), truncations at
# several points, appended bytes, a cleared hash_appended flag, and images
# without a digest. Valid/invalid, chip, version, project and image size
# are compared; any disagreement not in KNOWN below fails the test.
# Without shared/firmware the generated cases still run, and the test ends
# as skipped (77) to say the real image was not covered.
. "${ESPFLEET_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/integration/lib.sh"
require_bin espfleet espfleet-sim raw_ota
require_cmd jq python3

ref=$EF_SRC/tests/integration/esp_image_ref.py
cases=$EF_TMP/cases
mkdir -p "$cases"

# ---- base images --------------------------------------------------------
mkimage "$cases/mk600.bin" 1.0.0 ref-test 600
mkimage "$cases/mk40k.bin" 1.0.1 ref-test 40K
mkimage "$cases/mk300k.bin" 1.0.2 ref-test-large 300K
mkimage "$cases/mkc3.bin" 1.0.3 ref-test 40K esp32c3 # valid, but not for this ESP
real=$EF_SHARED/firmware/esp32s3-app-idf4.4.7.bin
bases=("$cases/mk40k.bin")
if [ -f "$real" ]; then
  cp "$real" "$cases/real.bin"
  bases+=("$cases/real.bin")
else
  log "real firmware not available ($real): only generated images are checked"
fi

# ---- mutations ----------------------------------------------------------
# The regions come from the reference's own walk of the base image.
python3 - "$ref" "${bases[@]}" <<'EOF'
import os, sys
sys.path.insert(0, os.path.dirname(sys.argv[1]))
import esp_image_ref as ref

def write(path, data):
    with open(path, "wb") as f:
        f.write(data)

for base in sys.argv[2:]:
    data = open(base, "rb").read()
    lay = ref.layout_of(base)
    stem = base[:-4]
    out = {}

    def flip(name, at, mask=0x5A):
        b = bytearray(data)
        b[at] ^= mask
        out[name] = bytes(b)

    def setb(name, at, value, src=None):
        b = bytearray(src if src is not None else data)
        b[at] = value
        out[name] = bytes(b)

    # header fields
    flip("hdr-magic", 0)
    flip("hdr-segcount", 1)
    flip("hdr-flashmode", 2)
    flip("hdr-entry", 5)
    flip("hdr-chip", 12)
    flip("hdr-maxrev", 18)
    setb("hdr-hashflag-0", 23, 0)
    setb("hdr-hashflag-2", 23, 2)
    # the second segment's header: load address, then length (low, high byte)
    sh = lay["segment_headers"][1][0]
    flip("seghdr-addr", sh + 1)
    flip("seghdr-len-low", sh + 4)
    flip("seghdr-len-high", sh + 6, 0x01)
    # the app description: its magic, its version
    d0 = lay["segments"][0][0]
    flip("desc-magic", d0 + 1)
    flip("desc-version", d0 + 16)
    # segment data: past the app description in the first segment, the
    # middle of the last one
    s0 = lay["segments"][0]
    if s0[1] - s0[0] > 256:
        flip("seg0-data", d0 + 256 + (s0[1] - d0 - 256) // 2)
    sl = lay["segments"][-1]
    flip("seglast-data", (sl[0] + sl[1]) // 2, 0x01)
    # padding (when there is any), checksum, digest
    pad = lay["padding"]
    if pad[1] > pad[0]:
        flip("padding", pad[0])
    flip("checksum", lay["checksum"], 0x80)
    flip("digest-first", lay["digest"][0])
    flip("digest-last", lay["digest"][1] - 1)
    # truncations
    for name, at in [("cut-0", 0), ("cut-header", 10), ("cut-seghdr", sh + 4),
                     ("cut-seg", (sl[0] + sl[1]) // 2), ("cut-padding", pad[1] - 1 if pad[1] > pad[0] else None),
                     ("cut-checksum", lay["checksum"]), ("cut-digest", lay["digest"][0] + 16),
                     ("cut-last", len(data) - 1)]:
        if at is not None:
            out[name] = data[:at]
    # appended bytes: a byte, a block (like a signature block)
    out["append-1"] = data + b"\0"
    out["append-4k"] = data + b"\xff" * 4096
    # no digest at all: flag cleared and the digest dropped, then mutated
    nohash = bytearray(data[:lay["checksum"] + 1])
    nohash[23] = 0
    out["nohash"] = bytes(nohash)
    setb("nohash-entry", 5, nohash[5] ^ 0x5A, nohash)     # not covered by anything: still valid
    setb("nohash-data", (sl[0] + sl[1]) // 2, nohash[(sl[0] + sl[1]) // 2] ^ 0x01, nohash)
    setb("nohash-checksum", lay["checksum"], nohash[lay["checksum"]] ^ 0x80, nohash)
    for name, b in out.items():
        write("%s.%s.bin" % (stem, name), b)
EOF

mapfile -t files < <(ls "$cases"/*.bin | sort)
log "${#files[@]} cases"

# ---- judge 1: the reference ---------------------------------------------
python3 "$ref" "${files[@]}" >"$EF_TMP/ref.jsonl" || fail "esp_image_ref.py failed"

# ---- judge 2: the host's validator --------------------------------------
for f in "${files[@]}"; do
  espfleet inspect --json "$f" >"$f.inspect.json" 2>/dev/null || true
  jq -e 'has("valid")' "$f.inspect.json" >/dev/null || fail "espfleet inspect --json gave no verdict for $(basename "$f")"
done

# ---- judge 3: the simulator's OTA end -----------------------------------
link=$EF_TMP/esp0
flash=$EF_TMP/flash.bin
start_sim "$link" "$flash" --chip esp32s3 --reboot-delay-ms 20 --down-ms 20 --init-delay-ms 5
for f in "${files[@]}"; do
  boots=$(sim_get "$flash" .counters.boots)
  out=$("$EF_BIN/raw_ota" --device "$link" --timeout-ms 3000 "$f" 2>>"$EF_TMP/raw.err") || true
  if [ "$out" = ok ]; then
    # the facts of the slot it will boot; then let it boot before the next case
    sim_show "$flash" | jq --arg out "$out" '{out: $out, slot_size, slot: .slots[.boot_slot]}' >"$f.sim.json"
    sim_wait "$flash" ".counters.boots > $boots" 10 || fail "the simulator did not boot $(basename "$f")"
  else
    [[ $out == "error "* ]] || fail "raw_ota on $(basename "$f") printed '$out'"
    sim_show "$flash" | jq --arg out "$out" '{out: $out, slot_size, slot: null}' >"$f.sim.json"
  fi
done
stop_sim

# ---- the verdicts side by side -------------------------------------------
python3 - "$EF_TMP/ref.jsonl" <<'EOF' || fail "the three judges disagree (table above)"
import json, os, sys

SIM_CHIP = 0x0009  # esp32s3
CHIP_IDS = {"esp32": 0, "esp32s2": 2, "esp32c3": 5, "esp32s3": 9, "esp32c2": 12, "esp32c6": 13,
            "esp32h2": 16, "esp32p4": 18, "esp32c5": 23}

# Disagreements known today, each with its cause. A case listed here that
# starts to agree fails too, so that the entry is removed with the fix.
KNOWN = {
}

def facts_ref(r):
    return {"chip": r["chip"], "version": r["version"], "project": r["project"], "image_size": r["image_size"]}

def facts_inspect(j):
    app = j.get("app") or {}
    return {"chip": (j.get("chip") or {}).get("id"), "version": app.get("version"),
            "project": app.get("project"), "image_size": j.get("image_size")}

def facts_sim(slot):
    chip = slot.get("chip")
    return {"chip": CHIP_IDS.get(chip, chip), "version": slot.get("version"),
            "project": slot.get("project"), "image_size": slot.get("size")}

bad = []
resolved = []
rows = []
for line in open(sys.argv[1]):
    r = json.loads(line)
    path = r["file"]
    name = os.path.basename(path)[:-4]
    ins = json.load(open(path + ".inspect.json"))
    sim = json.load(open(path + ".sim.json"))
    problems = []
    if r["valid"] != ins["valid"]:
        problems.append("valid: reference %s, inspect %s" % (r["valid"], ins["valid"]))
    elif r["valid"] and facts_ref(r) != facts_inspect(ins):
        problems.append("facts: reference %s, inspect %s" % (facts_ref(r), facts_inspect(ins)))
    # the ESP accepts a valid image for its own chip that fits its slot
    want_accept = r["valid"] and r["chip"] == SIM_CHIP and r["file_size"] <= sim["slot_size"]
    accepted = sim["out"] == "ok"
    if accepted != want_accept:
        problems.append("simulator %s, reference says %s" % (sim["out"], "accept" if want_accept else "reject"))
    elif accepted and facts_ref(r) != facts_sim(sim["slot"]):
        problems.append("facts: reference %s, simulator %s" % (facts_ref(r), facts_sim(sim["slot"])))
    ins_code = (ins.get("error") or {}).get("code", "-")
    rows.append("%-28s ref %-7s inspect %-7s %-20s sim %-7s %s" % (
        name, "valid" if r["valid"] else "invalid", "valid" if ins["valid"] else "invalid", ins_code,
        "accepts" if accepted else "rejects", "" if r["valid"] else "(" + r["reason"] + ")"))
    if problems and name not in KNOWN:
        bad.append((name, problems))
    elif problems:
        rows[-1] += "  KNOWN: " + KNOWN[name]
    elif name in KNOWN:
        resolved.append(name)
for row in rows:
    print(row)
for name, problems in bad:
    print("DISAGREE %s: %s" % (name, "; ".join(problems)), file=sys.stderr)
for name in resolved:
    print("RESOLVED %s now agrees: remove it from KNOWN" % name, file=sys.stderr)
for name in KNOWN:
    if not any(row.startswith(name + " ") for row in rows) and not name.startswith("real.") :
        print("KNOWN case %s was not run" % name, file=sys.stderr)
        bad.append((name, ["not run"]))
sys.exit(1 if bad or resolved else 0)
EOF
pass "reference, host validator and simulator agree on ${#files[@]} cases (known disagreements: see above)"
[ -f "$real" ] || skip "real firmware not available ($real): generated images agreed; the real image was not checked"
