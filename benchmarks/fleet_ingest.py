"""Fleet ingest throughput: APDUs per CPU-second, serial and parallel across files.

Writes N capture files of ciphered wrapper traffic (many meters, one TCP connection
each, glo-get request/response pairs, frames split across segments now and then),
then ingests them with the function ``metercert fleet ingest`` calls, serially (one
process) and in parallel (``--jobs`` worker processes, one file each), alternating the two
in ``--rounds`` rounds (with ``--cli`` also the ``metercert fleet ingest`` command as a
child process, interpreter start and imports included), and prints per round and as
medians the APDUs per CPU-second (user + system time of this process and of every
process it waited for) and per wall-second, with the load average (the machine may be
shared). Usage:

    python benchmarks/fleet_ingest.py --apdus 400000 --files 4 --jobs 2 [--cli]
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dpkt

from metercert.cosem.acse import AARE, AARQ

INITIATE_REQUEST = bytes.fromhex("01000000065F1F0400001E1DFFFF")
INITIATE_RESPONSE = bytes.fromhex("0800065F1F040000101D04000007")


def _cpu() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


class _Conn:
    """One head-end <-> meter TCP connection being written."""

    def __init__(self, w: dpkt.pcap.Writer, meter_ip: bytes, sport: int, rng: random.Random,
                 ts: float) -> None:
        self.w, self.meter_ip, self.sport, self.ts = w, meter_ip, sport, ts
        self.seq = {True: rng.randrange(1 << 31), False: rng.randrange(1 << 31)}

    def pkt(self, c2s: bool, data: bytes, flags: int = dpkt.tcp.TH_ACK | dpkt.tcp.TH_PUSH) -> None:
        self.ts += 0.001
        src, dst = (HEAD_IP, self.meter_ip) if c2s else (self.meter_ip, HEAD_IP)
        tcp = dpkt.tcp.TCP(sport=self.sport if c2s else 4059, dport=4059 if c2s else self.sport,
                           seq=self.seq[c2s] % (1 << 32), flags=flags, data=data)
        ip = dpkt.ip.IP(src=src, dst=dst, p=6, data=tcp)
        ip.len = len(bytes(ip))
        self.w.writepkt(bytes(dpkt.ethernet.Ethernet(type=0x0800, data=ip)), ts=self.ts)
        self.seq[c2s] += len(data) + (1 if flags & dpkt.tcp.TH_SYN else 0)


HEAD_IP = bytes([10, 255, 0, 1])


def _frame(apdu: bytes) -> bytes:
    return b"\x00\x01\x00\x01\x00\x01" + len(apdu).to_bytes(2, "big") + apdu


def write_capture(path: Path, apdus: int, seed: int) -> int:
    """About ``apdus`` APDUs: per meter AARQ/AARE and 50 ciphered request/response pairs
    (random ciphertext: the ingest without --keys does not open it)."""
    rng = random.Random(seed)
    written = 0
    ts = 1767571200.0 + seed * 86400
    with open(path, "wb") as fh:
        w = dpkt.pcap.Writer(fh)
        m = 0
        while written < apdus:
            m += 1
            conn = _Conn(w, bytes([10, seed & 255, (m >> 8) & 255, m & 255]),
                         30000 + (m % 30000), rng, ts)
            conn.pkt(True, b"", dpkt.tcp.TH_SYN)
            conn.pkt(False, b"", dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK)
            aarq = AARQ(calling_ap_title=bytes.fromhex("48454E4400000001"),
                        user_information=INITIATE_REQUEST).to_bytes()
            aare = AARE(responding_ap_title=b"MTR" + m.to_bytes(5, "big"),
                        user_information=INITIATE_RESPONSE).to_bytes()
            conn.pkt(True, _frame(aarq))
            conn.pkt(False, _frame(aare))
            written += 2
            ic = {True: rng.randrange(1, 1 << 20), False: rng.randrange(1, 1 << 20)}
            for _ in range(50):
                for c2s in (True, False):
                    body = os.urandom(20 if c2s else 60)
                    frame = _frame(bytes([0xC8 if c2s else 0xCC, 5 + len(body), 0x30])
                                   + ic[c2s].to_bytes(4, "big") + body)
                    ic[c2s] += 1
                    if rng.random() < 0.1:  # a frame cut over two segments
                        conn.pkt(c2s, frame[:9])
                        conn.pkt(c2s, frame[9:])
                    else:
                        conn.pkt(c2s, frame)
                    written += 1
            ts = conn.ts
    return written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--apdus", type=int, default=400_000, help="APDUs in all files together")
    ap.add_argument("--files", type=int, default=4, help="capture files")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes for the parallel run")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of serial + parallel runs")
    ap.add_argument("--cli", action="store_true",
                    help="also run the metercert fleet ingest command (a child process)")
    args = ap.parse_args()
    if args.apdus < 1 or args.files < 1 or args.jobs < 1 or args.rounds < 1:
        ap.error("--apdus, --files, --jobs and --rounds must be at least 1")
    from metercert.fleet.ingest import ingest

    work = Path(tempfile.mkdtemp(prefix="metercert-ingest-bench-"))
    try:
        files = [work / f"cap-{i}.pcap" for i in range(args.files)]
        total = sum(write_capture(f, args.apdus // args.files, i + 1) for i, f in enumerate(files))
        size = sum(f.stat().st_size for f in files)
        print(f"{args.files} files, {total} APDUs, {size / 1e6:.1f} MB; "
              f"load average {os.getloadavg()[0]:.2f}")
        runs = [("ingest()", 1), ("ingest()", args.jobs)]
        if args.cli:
            runs += [("CLI", 1), ("CLI", args.jobs)]
        results: dict[tuple[str, int], list[tuple[float, float]]] = {r: [] for r in runs}
        for rnd in range(args.rounds):
            for how, jobs in runs:
                out = work / f"out-{rnd}-{how}-{jobs}"
                c0, w0 = _cpu(), time.perf_counter()
                if how == "CLI":  # the whole command: interpreter, imports, digests, ingest
                    proc = subprocess.run(
                        [sys.executable, "-m", "metercert", "fleet", "ingest", *map(str, files),
                         "--out", str(out), "--jobs", str(jobs)],
                        capture_output=True, text=True, check=True)
                    rows = int(proc.stdout.split()[0])
                else:
                    rows = ingest(files, out, jobs=jobs).rows
                cpu, wall = _cpu() - c0, time.perf_counter() - w0
                assert rows == total, (rows, total)
                results[(how, jobs)].append((cpu, wall))
                print(f"round {rnd + 1} {how} jobs={jobs}: {rows} APDUs, {cpu:.2f} CPU-s, "
                      f"{wall:.2f} s wall: {rows / cpu / 1000:.1f} k APDUs per CPU-second, "
                      f"{rows / wall / 1000:.1f} k per wall-second")
                shutil.rmtree(out, ignore_errors=True)
        for (how, jobs), got in results.items():
            cpu = statistics.median(c for c, _ in got)
            wall = statistics.median(w for _, w in got)
            print(f"median {how} jobs={jobs}: {cpu:.2f} CPU-s, {wall:.2f} s wall: "
                  f"{total / cpu / 1000:.1f} k APDUs per CPU-second, "
                  f"{total / wall / 1000:.1f} k per wall-second")
        print(f"load average at the end {os.getloadavg()[0]:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
