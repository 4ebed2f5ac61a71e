"""The scan within --memory-limit: refusals in one line, evidence capped inside the engine."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from metercert.fleet.detectors import EVIDENCE_CAP
from metercert.fleet.engines import (
    DUCK_SHARE,
    DuckDbEngine,
    ScanTooLarge,
    _rss,
    parse_size,
    run_detectors,
)
from metercert.fleet.schema import table_from_rows, write_dataset

T0 = datetime(2026, 3, 1, tzinfo=UTC)
TITLE = "4D4D4D00000000AA"


def big_findings_rows() -> list[dict[str, Any]]:
    """One association with 300 APDUs encrypted without authentication, and one meter
    title sending from 250 endpoints at once: two findings over more than EVIDENCE_CAP ids."""
    rows: list[dict[str, Any]] = []
    for i in range(300):
        rows.append({"id": i, "ts": T0 + timedelta(seconds=i), "direction": "c2s",
                     "meter_id": "m-enc", "assoc_id": "m-enc#1", "ciphered": True,
                     "authenticated": False, "sc": 0x20, "suite": 0, "key_set": "unicast",
                     "system_title": "48454E4400000001", "apdu_tag": 0xC8, "length": 30})
    for k in range(250):
        for j, ts in enumerate((T0 + timedelta(seconds=k), T0 + timedelta(seconds=1000 + k))):
            rows.append({"id": 1000 + 2 * k + j, "ts": ts, "direction": "s2c",
                         "meter_id": f"st:{TITLE}", "endpoint": f"10.9.{k // 200}.{k % 200}:4059/1",
                         "ciphered": True, "authenticated": True, "sc": 0x30, "suite": 0,
                         "key_set": "unicast", "system_title": TITLE, "apdu_tag": 0xCC,
                         "length": 30})
    return rows


def check_capped(findings) -> None:  # type: ignore[no-untyped-def]
    by_kind = {f.kind: f for f in findings}
    enc, dup = by_kind["encryption-only"], by_kind["duplicate-title"]
    assert enc.n == 300 and enc.evidence_ids == tuple(range(EVIDENCE_CAP))
    assert dup.n == 250
    assert dup.evidence_ids == tuple(1000 + 2 * k for k in range(EVIDENCE_CAP))


def test_evidence_is_capped_inside_the_engine(tmp_path: Path) -> None:
    write_dataset(table_from_rows(big_findings_rows()), tmp_path / "d")
    engine = DuckDbEngine(memory_limit="1GB")
    try:
        check_capped(run_detectors(engine, tmp_path / "d").findings)
    finally:
        engine.close()


def test_a_process_past_the_limit_is_interrupted_with_one_line(tmp_path: Path) -> None:
    write_dataset(table_from_rows(big_findings_rows()), tmp_path / "d")
    engine = DuckDbEngine(memory_limit="1GB")
    engine.limit_bytes = 1 << 20  # as if the process had grown past its limit
    try:
        with pytest.raises(ScanTooLarge) as err:
            run_detectors(engine, tmp_path / "d")
    finally:
        engine.close()
    text = str(err.value)
    assert "\n" not in text and "--memory-limit 1GB" in text and "the process reached" in text
    assert engine.threads == 1  # it tried again on one thread before refusing


def test_a_limit_below_the_process_itself_is_refused_in_one_line(tmp_path: Path) -> None:
    from metercert.cli import main

    main(["fleet", "simulate", "--meters", "20", "--days", "1", "--out", str(tmp_path / "sim")])
    proc = subprocess.run([sys.executable, "-m", "metercert", "fleet", "scan",
                           str(tmp_path / "sim"), "--memory-limit", "120MB"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "--memory-limit 120MB is too small" in lines[0]


@pytest.mark.parametrize("text, size", [("4GB", 4 * 10**9), ("512MB", 512 * 10**6),
                                        ("1.5GiB", 3 << 29), ("64 mib", 64 << 20)])
def test_memory_limit_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_duckdb_gets_a_share_of_the_limit_and_one_thread_when_small() -> None:
    base = _rss() or 0
    big = DuckDbEngine(memory_limit="4GB")
    small = DuckDbEngine(memory_limit=f"{(base >> 20) + 300}MiB")  # 300 MiB above this process
    try:
        assert 0 < big.duck_bytes <= DUCK_SHARE * 4e9 and big.threads >= 1
        assert small.duck_bytes <= DUCK_SHARE * (310 << 20) < (256 << 20)
        assert small.threads == 1
    finally:
        big.close()
        small.close()
