#!/usr/bin/env python3
"""A small deterministic pcap of known flows, for pmacctd.

usage: make_pcap.py OUT.pcap > expected.json

Writes Ethernet/IPv4 packets (TCP, UDP, ICMP) of six flows spread over
three 5-minute bins (2026-11-25 10:00, 10:05, 10:10 UTC), 58 packets in all:
pmacctd 1.7.7 reading a savefile counts up to ~100 packets exactly. Prints
the totals pmacct should report per flow and per bin, as JSON lines:
{"ip_src", "ip_dst", "port_src", "port_dst", "ip_proto", "stamp_inserted", "packets", "bytes"}
where bytes are IP lengths (what pmacct counts), not frame lengths.
"""
import json
import struct
import sys
from datetime import datetime, timezone

BIN0 = int(datetime(2026, 11, 25, 10, 0, tzinfo=timezone.utc).timestamp())

# (src, dst, proto, sport, dport, payload sizes per bin)
FLOWS = [
    ("10.0.0.1", "10.0.1.1", "tcp", 40001, 443, [[1200, 1200, 300], [1400] * 4, [60]]),
    ("10.0.1.1", "10.0.0.1", "tcp", 443, 40001, [[100, 100], [200] * 5, []]),
    ("10.0.0.2", "10.0.2.53", "udp", 5353, 53, [[40, 44, 48], [], [52, 56]]),
    ("10.0.2.53", "10.0.0.2", "udp", 53, 5353, [[120, 130, 140], [], [150, 160]]),
    ("172.16.5.5", "10.0.0.9", "icmp", 0, 0, [[56] * 4, [56] * 4, [56] * 4]),
    ("10.0.0.3", "172.16.9.9", "udp", 12345, 2055, [[900] * 6, [1000] * 7, [800] * 8]),
]
PROTO = {"tcp": 6, "udp": 17, "icmp": 1}


def ip(a):
    return bytes(int(x) for x in a.split("."))


def checksum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def packet(src, dst, proto, sport, dport, size, ident):
    payload = bytes((ident + i) % 256 for i in range(size))
    if proto == "tcp":
        l4 = struct.pack("!HHIIBBHHH", sport, dport, ident, 0, 5 << 4, 0x18, 65535, 0, 0) + payload
    elif proto == "udp":
        l4 = struct.pack("!HHHH", sport, dport, 8 + size, 0) + payload
    else:
        body = struct.pack("!BBHHH", 8, 0, 0, ident & 0xFFFF, 1) + payload
        l4 = body[:2] + struct.pack("!H", checksum(body)) + body[4:]
    total = 20 + len(l4)
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, ident & 0xFFFF, 0, 64, PROTO[proto], 0, ip(src), ip(dst))
    hdr = hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:]
    eth = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00"
    return eth + hdr + l4, total


def main():
    out = sys.argv[1]
    packets = []
    expected = {}
    ident = 1
    for b in range(3):
        for f, (src, dst, proto, sport, dport, bins) in enumerate(FLOWS):
            for k, size in enumerate(bins[b]):
                ts = BIN0 + b * 300 + 10 + f * 7 + k  # inside bin b
                frame, iplen = packet(src, dst, proto, sport, dport, size, ident)
                ident += 1
                packets.append((ts, frame))
                key = (src, dst, sport, dport, proto, b)
                p, n = expected.get(key, (0, 0))
                expected[key] = (p + 1, n + iplen)
    packets.sort(key=lambda p: p[0])
    with open(out, "wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for ts, frame in packets:
            fh.write(struct.pack("<IIII", ts, 0, len(frame), len(frame)))
            fh.write(frame)
    for (src, dst, sport, dport, proto, b), (p, n) in sorted(expected.items()):
        stamp = datetime.fromtimestamp(BIN0 + b * 300, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        print(json.dumps({"ip_src": src, "ip_dst": dst, "port_src": sport, "port_dst": dport,
                          "ip_proto": proto, "stamp_inserted": stamp, "packets": p, "bytes": n}))
    print(f"{len(packets)} packets", file=sys.stderr)


if __name__ == "__main__":
    main()
