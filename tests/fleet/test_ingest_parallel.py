"""Parallel ingest (``jobs`` > 1): workers start by fork on Linux, and row ids stay unique
when parallel and serial ingests append to one dataset in turn."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pyarrow.parquet as pq

from metercert.fleet.capture import write_sample_capture
from metercert.fleet.ingest import _start_method, ingest


def test_workers_fork_on_linux_only_when_no_other_thread_runs() -> None:
    # a fresh process (as the CLI is) has no other thread: its workers fork on Linux
    code = "from metercert.fleet.ingest import _start_method; print(_start_method())"
    fresh = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           timeout=120, check=True)
    assert fresh.stdout.strip() == ("fork" if sys.platform == "linux" else "spawn")
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert _start_method() == "spawn"  # a lock of that thread could be held at a fork
    finally:
        stop.set()
        other.join()


def test_parallel_ingest_with_another_thread_running_spawns_and_matches(
        tmp_path: Path) -> None:
    caps = [write_sample_capture(tmp_path / f"c{i}.pcap", meters=2, requests=2, seed=i + 1)
            for i in range(2)]
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        spawned = ingest([c.pcap for c in caps], tmp_path / "p", jobs=2)
    finally:
        stop.set()
        other.join()
    serial = ingest([c.pcap for c in caps], tmp_path / "s")
    assert spawned.rows == serial.rows == sum(c.apdus for c in caps)


def test_row_ids_stay_unique_across_parallel_and_serial_appends(tmp_path: Path) -> None:
    caps = [write_sample_capture(tmp_path / f"c{i}.pcap", meters=3, requests=2, seed=i + 1)
            for i in range(6)]
    out = tmp_path / "d"
    a = ingest([c.pcap for c in caps[:3]], out, jobs=2)
    b = ingest([caps[3].pcap], out)
    c = ingest([c.pcap for c in caps[4:]], out, jobs=2, keys=caps[4].keys)
    rows = pq.read_table(out).to_pylist()
    assert a.rows + b.rows + c.rows == len(rows) == sum(x.apdus for x in caps)
    ids = [r["id"] for r in rows]
    assert len(set(ids)) == len(ids)
    # the serial ingest starts after the parallel one's highest id
    first_b = min(r["id"] for r in rows if r["source"] == str(caps[3].pcap))
    assert first_b > max(r["id"] for r in rows if r["source"] in {str(x.pcap) for x in caps[:3]})
    # the keys reached the workers: capture 4's own tags verify there
    four = [r for r in rows if r["source"] == str(caps[4].pcap) and r["ciphered"]]
    assert four and all(r["tag_ok"] is True for r in four)
