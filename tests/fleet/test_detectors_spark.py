"""The same SQL on Spark (local mode, one session for the module) finds the same."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from metercert.fleet.engines import DuckDbEngine, SparkEngine, run_detectors, spark_session

from .conftest import finding_keys, truth_keys
from .oracle import expected, found, random_rows

pytestmark = [pytest.mark.spark, pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    pytest.importorskip("pyspark")
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    session = spark_session("local[2]", driver_memory="1g", shuffle_partitions=2)
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def test_spark_finds_exactly_what_duckdb_finds(planted_fleet, spark) -> None:  # type: ignore[no-untyped-def]
    on_spark = run_detectors(SparkEngine(session=spark), planted_fleet.out_dir)
    duck = DuckDbEngine(memory_limit="1GB")
    try:
        on_duck = run_detectors(duck, planted_fleet.out_dir)
    finally:
        duck.close()
    assert finding_keys(on_spark.findings) == truth_keys(planted_fleet)
    assert on_spark.findings == on_duck.findings  # every field, timestamps included
    assert on_spark.rows == on_duck.rows == planted_fleet.rows


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_spark_prunes_the_random_corner_cases_like_duckdb(seed, spark, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # ties in time, rows without a counter, shared counters of two senders,
    # digest collisions: the same text must reach the same findings on Spark
    from metercert.fleet.schema import table_from_rows, write_dataset

    params = {"gap_threshold": 3} if seed % 2 else None
    rows = random_rows(seed)
    write_dataset(table_from_rows(rows), tmp_path / "d")
    on_spark = run_detectors(SparkEngine(session=spark), tmp_path / "d", params=params)
    duck = DuckDbEngine(memory_limit="1GB")
    try:
        on_duck = run_detectors(duck, tmp_path / "d", params=params)
    finally:
        duck.close()
    assert found(on_spark.findings) == expected(rows, params)
    assert on_spark.findings == on_duck.findings


def test_cli_scan_on_spark_of_an_ingested_capture(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json
    import subprocess
    import sys

    from metercert.fleet.capture import write_sample_capture
    from metercert.fleet.ingest import ingest

    sample = write_sample_capture(tmp_path / "s.pcap", meters=3)
    ingest([sample.pcap], tmp_path / "d", keys=sample.keys)
    proc = subprocess.run(
        [sys.executable, "-m", "metercert", "fleet", "scan", str(tmp_path / "d"),
         "--engine", "spark", "--master", "local[1]", "--report", str(tmp_path / "r")],
        capture_output=True, text=True, timeout=240, check=False)
    assert proc.returncode == 1, proc.stderr[-2000:]  # a critical finding
    found = json.loads((tmp_path / "r" / "findings.json").read_text())
    assert found["scan"]["engine"] == "spark"
    assert [(f["kind"], f["meter_id"]) for f in found["findings"]] == [
        ("ic-reuse", "st:4D4D4D0000000000")]


def test_spark_caps_evidence_like_duckdb(spark, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # findings over more than EVIDENCE_CAP rows: each engine's spelling of the capped
    # array_agg (DuckDB min(x, n), Spark a sorted slice) keeps the same smallest ids
    from metercert.fleet.schema import table_from_rows, write_dataset

    from .test_scan_memory import big_findings_rows, check_capped

    write_dataset(table_from_rows(big_findings_rows()), tmp_path / "d")
    on_spark = run_detectors(SparkEngine(session=spark), tmp_path / "d")
    duck = DuckDbEngine(memory_limit="1GB")
    try:
        on_duck = run_detectors(duck, tmp_path / "d")
    finally:
        duck.close()
    check_capped(on_spark.findings)
    assert on_spark.findings == on_duck.findings
