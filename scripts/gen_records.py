#!/usr/bin/env python3
"""Deterministic pmacct-like records (JSON lines, as pmacct's Kafka plugin
writes them) for the demo and the benchmarks.

usage: gen_records.py COUNT [--seed N]  → JSON lines on stdout, and on
stderr one line of totals: records, sum of bytes, sum of packets.
"""
import json
import random
import sys


def main():
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    seed = int(sys.argv[sys.argv.index("--seed") + 1]) if "--seed" in sys.argv else 7
    rng = random.Random(seed)
    protos = [("tcp", [443, 80, 22, 8080]), ("udp", [53, 123, 161, 2055]), ("icmp", [0])]
    total_bytes = total_packets = 0
    out = sys.stdout
    for i in range(count):
        proto, ports = protos[i % 3]
        packets = rng.randint(1, 500)
        size = rng.randint(40, 1500)
        bin_minute = (i // 500) % 60
        rec = {
            "event_type": "purge",
            "ip_src": f"10.{i % 7}.{(i // 7) % 250}.{1 + i % 200}",
            "ip_dst": f"192.168.{i % 5}.{1 + (i * 7) % 250}",
            "port_src": 0 if proto == "icmp" else 1024 + (i * 13) % 60000,
            "port_dst": ports[i % len(ports)],
            "ip_proto": proto,
            "tos": 0,
            "stamp_inserted": f"2026-11-25 10:{bin_minute:02d}:00",
            "stamp_updated": f"2026-11-25 10:{bin_minute:02d}:{i % 60:02d}",
            "packets": packets,
            "bytes": packets * size,
            "writer_id": "default_kafka/4242",
        }
        total_bytes += rec["bytes"]
        total_packets += packets
        out.write(json.dumps(rec) + "\n")
    print(f"records={count} bytes={total_bytes} packets={total_packets}", file=sys.stderr)


if __name__ == "__main__":
    main()
