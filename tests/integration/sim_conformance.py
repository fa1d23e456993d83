#!/usr/bin/env python3
"""Talks to espfleet-sim the way ESP-Hosted's host library talks to the
firmware: raw TLV frames on the control device, one write() per frame.

Usage: sim_conformance.py LINK CASE
Prints one JSON line per answer it got: {"id": .., "uid": .., "resp": .., "name": ..},
or {"none": true} when nothing came within the wait. Cases are listed in CASES.
The frames of the reference host are the golden ones of tests/unit/test_proto.c.
"""
import json
import os
import select
import sys
import time

GOLDEN = {
    "get_fw_version": "0108006374726c52657370020400107b1802",
    "ota_begin": "0108006374726c5265737002040010741803",
    "ota_end": "0108006374726c52657370020500107618f902",
    "bt_off": "0108006374726c52657370020900107a1803d207020802",
    "split_query": None,  # built below: EnableDisable(feature 3), as init_app sends it
    "heartbeat_20": "0108006374726c52657370020b0010791801ca070408011014",
}


def varint(n):
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field(num, wire, payload):
    return varint(num << 3 | wire) + payload


def tlv(payload, ep=b"ctrlResp"):
    return (bytes([1]) + len(ep).to_bytes(2, "little") + ep + bytes([2]) +
            len(payload).to_bytes(2, "little") + payload)


def request(msg_id, uid, member=None):
    """A CtrlMsg as ctrl_app_send_req encodes it: no msg_type."""
    pb = field(2, 0, varint(msg_id)) + field(3, 0, varint(uid))
    if member is not None:
        pb += field(msg_id, 2, varint(len(member)) + member)
    return tlv(pb)


def ota_write(uid, data):
    return request(117, uid, field(1, 2, varint(len(data)) + data))


def read_varint(b, i):
    n = shift = 0
    while True:
        c = b[i]
        i += 1
        n |= (c & 0x7F) << shift
        shift += 7
        if not c & 0x80:
            return n, i


def parse_fields(b):
    out, i = {}, 0
    while i < len(b):
        key, i = read_varint(b, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            v, i = read_varint(b, i)
        elif wire == 2:
            n, i = read_varint(b, i)
            v, i = b[i:i + n], i + n
        else:
            raise ValueError("wire type %d" % wire)
        out[num] = v
    return out


def decode(payload):
    f = parse_fields(payload)
    msg_id, uid = f.get(2, 0), f.get(3, 0)
    if uid >= 1 << 63:
        uid -= 1 << 64
    out = {"type": f.get(1, 0), "id": msg_id, "uid": uid}
    member = f.get(msg_id)
    out["member"] = member is not None
    if member is not None:
        m = parse_fields(member)
        r = m.get(1, 0)
        if isinstance(r, int):
            out["resp"] = r - (1 << 64) if r >= 1 << 63 else r
        if msg_id == 223:
            out["name"] = m.get(2, b"").decode()
    return out


class Link:
    def __init__(self, path):
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        self.buf = b""
        self.drain()

    def drain(self):
        try:
            while os.read(self.fd, 4096):
                pass
        except BlockingIOError:
            pass

    def send(self, frame):
        os.set_blocking(self.fd, True)
        os.write(self.fd, frame)
        os.set_blocking(self.fd, False)

    def answers(self, wait_s, want=1):
        """Frames received within wait_s (stops early after `want`)."""
        got, end = [], time.monotonic() + wait_s
        while len(got) < want:
            left = end - time.monotonic()
            if left <= 0:
                break
            if select.select([self.fd], [], [], left)[0]:
                try:
                    self.buf += os.read(self.fd, 65536)
                except BlockingIOError:
                    pass
            while len(self.buf) >= 3:
                ep_len = int.from_bytes(self.buf[1:3], "little")
                if len(self.buf) < 6 + ep_len:
                    break
                dlen = int.from_bytes(self.buf[4 + ep_len:6 + ep_len], "little")
                total = 6 + ep_len + dlen
                if len(self.buf) < total:
                    break
                msg = decode(self.buf[6 + ep_len:total])
                msg["ep"] = self.buf[3:3 + ep_len].decode()
                got.append(msg)
                self.buf = self.buf[total:]
        return got


def emit(answers):
    if not answers:
        print(json.dumps({"none": True}))
    for a in answers:
        print(json.dumps(a))


def main():
    path, case = sys.argv[1], sys.argv[2]
    link = Link(path)
    if case in GOLDEN and GOLDEN[case]:
        link.send(bytes.fromhex(GOLDEN[case]))
        emit(link.answers(2.0))
    elif case == "split_query":
        link.send(request(122, 1, field(1, 0, varint(3))))
        emit(link.answers(2.0))
    elif case == "unknown_id":
        link.send(request(150, 7))
        emit(link.answers(1.0))
    elif case == "oversize_then_legal":
        # 4100 data bytes make a 4125-byte frame: cut to 4096 by the firmware
        data = bytes([0xE9]) + bytes(4099)
        link.send(ota_write(5, data))
        emit(link.answers(1.0))
        link.send(ota_write(6, data[:4067]))
        emit(link.answers(2.0))
    elif case == "write_without_begin":
        link.send(ota_write(9, bytes([0xE9]) + bytes(99)))
        emit(link.answers(2.0))
    elif case == "end_without_begin":
        link.send(bytes.fromhex(GOLDEN["ota_end"]))
        emit(link.answers(2.0))
    elif case == "write_no_member":
        link.send(request(117, 11))
        emit(link.answers(1.0))
    elif case.startswith("window:"):
        # OTA begin, then N writes of 4000 bytes kept `window` in flight;
        # prints the elapsed time of the writes and how many were answered.
        window, n = (int(x) for x in case.split(":")[1:3])
        link.send(request(116, 1))
        assert link.answers(30.0)[0]["resp"] == 0
        chunk = bytes([0xE9]) + bytes(3999)
        t0, sent, done, uid = time.monotonic(), 0, 0, 2
        while done < n:
            while sent < n and sent - done < window:
                link.send(ota_write(uid, chunk))
                uid, sent = uid + 1, sent + 1
            got = link.answers(5.0)
            if not got:
                break
            done += len(got)
        print(json.dumps({"window": window, "answered": done, "ms": round((time.monotonic() - t0) * 1000)}))
    elif case == "hold":
        # keeps the device open for a while (a second program's view)
        time.sleep(float(sys.argv[3]) if len(sys.argv) > 3 else 3.0)
    else:
        sys.exit("unknown case " + case)


if __name__ == "__main__":
    main()
