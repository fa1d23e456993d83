#!/usr/bin/env python3
"""An independent reference validator for ESP-IDF application images.

Written from the documented format (ESP-IDF's "App Image Format" page and
shared/reference/esp-app-image.md), not from client/image/image.c, so that
the host's validator and the simulator's OTA-end check (which share
image.c) have something to disagree with. Where the documentation is
silent, the rule is ESP-IDF's own loader (bootloader_support,
esp_image_format.c), named at each rule below.

Usage:
  esp_image_ref.py FILE...            one JSON object per line and file
  esp_image_ref.py --layout FILE      the regions of FILE (for mutations)

Verdict fields: file, valid, reason (None when valid), chip (id or None),
chip_name, version, project, secure_version, hash_appended, segment_count,
image_size (bytes the image itself occupies: header through checksum, plus
the digest; None when invalid), file_size.
"""
import hashlib
import json
import struct
import sys

HEADER_LEN = 24
SEGMENT_HEADER_LEN = 8
IMAGE_MAGIC = 0xE9
MAX_SEGMENTS = 16
CHECKSUM_SEED = 0xEF
DIGEST_LEN = 32
APP_DESC_MAGIC = 0xABCD5432
APP_DESC_LEN = 256
# ESP-IDF's loader refuses segments of 16 MiB or more (verify_segment_header).
SEGMENT_LEN_LIMIT = 0x1000000

# Chip ids of the image header (esp_app_format.h, esp_chip_id_t).
CHIPS = {
    0x0000: "esp32", 0x0002: "esp32s2", 0x0005: "esp32c3", 0x0009: "esp32s3",
    0x000C: "esp32c2", 0x000D: "esp32c6", 0x0010: "esp32h2", 0x0012: "esp32p4",
    0x0017: "esp32c5",
}


class Invalid(Exception):
    """The image breaks a rule; the message says which."""


def xor_bytes(buf):
    """XOR of all bytes of buf, computed by folding one big integer (fast
    enough for multi-megabyte images without a byte loop in Python)."""
    if not buf:
        return 0
    n = len(buf)
    width = 1
    while width < n:
        width *= 2
    x = int.from_bytes(buf, "little")  # zero bytes beyond n change nothing
    bits = width * 8
    while bits > 8:
        bits //= 2
        x = (x >> bits) ^ (x & ((1 << bits) - 1))
    return x


def c_string(raw):
    """A NUL-padded field as text (up to the first NUL)."""
    return raw.split(b"\0", 1)[0].decode("utf-8", errors="replace")


def parse(data):
    """Walks the image. Returns (facts, layout); raises Invalid with facts
    and layout as far as they are known in its args[1], args[2]."""
    facts = {"chip": None, "chip_name": None, "version": None, "project": None,
             "secure_version": None, "hash_appended": None, "segment_count": None}
    layout = {"header": [0, HEADER_LEN], "segment_headers": [], "segments": [],
              "padding": None, "checksum": None, "digest": None, "end": None}

    def bad(msg):
        raise Invalid(msg, facts, layout)

    if len(data) < HEADER_LEN:
        bad("truncated: %d bytes, shorter than the %d-byte header" % (len(data), HEADER_LEN))
    # Header: magic, segment count, SPI mode, SPI speed/size, entry point
    # (offsets 0..7); chip id at 12; hash_appended at 23.
    magic, count = data[0], data[1]
    chip = struct.unpack_from("<H", data, 12)[0]
    facts["chip"] = chip
    facts["chip_name"] = CHIPS.get(chip)
    # ESP-IDF tests the flag as a boolean (process_image_header,
    # process_appended_hash: `if (image.hash_appended)`): any non-zero
    # value means a digest follows.
    hash_appended = data[23] != 0
    facts["hash_appended"] = hash_appended
    facts["segment_count"] = count
    if magic != IMAGE_MAGIC:
        bad("magic byte is 0x%02x, not 0x%02x" % (magic, IMAGE_MAGIC))
    if count > MAX_SEGMENTS:
        bad("%d segments, more than %d" % (count, MAX_SEGMENTS))
    if count == 0:
        bad("no segment, so no app description")

    checksum = CHECKSUM_SEED
    off = HEADER_LEN
    for i in range(count):
        if off + SEGMENT_HEADER_LEN > len(data):
            bad("truncated in the header of segment %d (offset %d)" % (i, off))
        load_addr, length = struct.unpack_from("<II", data, off)
        layout["segment_headers"].append([off, off + SEGMENT_HEADER_LEN])
        # ESP-IDF's loader: lengths are whole words and below 16 MiB
        # (verify_segment_header, "unaligned segment length").
        if length % 4 != 0:
            bad("segment %d length %d is not a multiple of 4" % (i, length))
        if length >= SEGMENT_LEN_LIMIT:
            bad("segment %d length %d is 16 MiB or more" % (i, length))
        start = off + SEGMENT_HEADER_LEN
        end = start + length
        layout["segments"].append([start, end, load_addr])
        if i == 0:
            # The app description (esp_app_desc_t) opens the first segment:
            # magic word, secure_version, 8 reserved bytes, version[32],
            # project_name[32], time, date, idf_ver, ELF SHA-256.
            if length < APP_DESC_LEN:
                bad("first segment (%d bytes) cannot hold the %d-byte app description" % (length, APP_DESC_LEN))
            if start + 4 > len(data):
                bad("truncated before the app description")
            desc_magic = struct.unpack_from("<I", data, start)[0]
            if desc_magic != APP_DESC_MAGIC:
                bad("app description magic is 0x%08x, not 0x%08x" % (desc_magic, APP_DESC_MAGIC))
            if start + APP_DESC_LEN > len(data):
                bad("truncated inside the app description")
            facts["secure_version"] = struct.unpack_from("<I", data, start + 4)[0]
            facts["version"] = c_string(data[start + 16:start + 48])
            facts["project"] = c_string(data[start + 48:start + 80])
        if end > len(data):
            bad("truncated in segment %d: it needs %d bytes, the file has %d" % (i, end, len(data)))
        checksum ^= xor_bytes(data[start:end])
        off = end

    # Zero padding, then the checksum byte as the last byte of a 16-byte block.
    checksum_at = off | 15
    layout["padding"] = [off, checksum_at]
    layout["checksum"] = checksum_at
    if checksum_at >= len(data):
        bad("truncated before the checksum byte (offset %d)" % checksum_at)
    if data[checksum_at] != checksum:
        bad("checksum byte is 0x%02x, the segments give 0x%02x" % (data[checksum_at], checksum))
    end = checksum_at + 1
    if hash_appended:
        layout["digest"] = [end, end + DIGEST_LEN]
        if end + DIGEST_LEN > len(data):
            bad("truncated in the appended SHA-256 (needs %d bytes)" % (end + DIGEST_LEN))
        if hashlib.sha256(data[:end]).digest() != data[end:end + DIGEST_LEN]:
            bad("appended SHA-256 does not match the first %d bytes" % end)
        end += DIGEST_LEN
    layout["end"] = end
    # Bytes after the image (a signature block, the rest of a partition) are
    # not part of it: ESP-IDF verifies the image's own extent.
    return facts, layout


def verdict(path):
    with open(path, "rb") as f:
        data = f.read()
    out = {"file": path, "file_size": len(data)}
    try:
        facts, layout = parse(data)
        out.update(facts)
        out.update(valid=True, reason=None, image_size=layout["end"])
    except Invalid as e:
        out.update(e.args[1])
        out.update(valid=False, reason=e.args[0], image_size=None)
    return out


def layout_of(path):
    with open(path, "rb") as f:
        data = f.read()
    try:
        _, layout = parse(data)
    except Invalid as e:
        layout = e.args[2]
    return layout


def main(argv):
    if len(argv) == 3 and argv[1] == "--layout":
        print(json.dumps(layout_of(argv[2])))
        return 0
    if len(argv) < 2 or argv[1].startswith("-"):
        sys.stderr.write(__doc__)
        return 2
    for path in argv[1:]:
        print(json.dumps(verdict(path), sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
