"""Every generated edge case (tests/fleet/cases.py) on Spark and DuckDB in one run: the
cases' datasets are put side by side in one dataset (each case's identities, titles,
associations and ciphertext digests prefixed with its name, so that no case can see
another), scanned once by each engine; both must give every case exactly its findings,
and the two engines the same findings field for field."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from metercert.fleet.engines import DuckDbEngine, SparkEngine, run_detectors, spark_session
from metercert.fleet.ingest import ingest
from metercert.fleet.schema import meter_key, space_key, table_from_rows, write_dataset

from .cases import CASES

pytestmark = [pytest.mark.spark, pytest.mark.slow, pytest.mark.timeout(600)]


def _isolate(name: str, rows: list[dict[str, Any]], first: int) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        r = dict(r)
        r["id"] += first
        for col in ("meter_id", "endpoint", "assoc_id", "system_title", "key_id"):
            if r.get(col) is not None:
                r[col] = f"{name}:{r[col]}"
        r["meter_key"] = meter_key(r["meter_id"])
        if r.get("ct_sha256") is not None:
            r["ct_sha256"] = hashlib.sha256(name.encode() + r["ct_sha256"]).digest()
        if r.get("space_key") is not None:
            r["space_key"] = space_key(r["system_title"] or f"?{r['direction']}", r["key_id"])
        out.append(r)
    return out


@pytest.fixture(scope="module")
def combined(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, set[str]]]:
    root = tmp_path_factory.mktemp("cases")
    rows: list[dict[str, Any]] = []
    kinds: dict[str, set[str]] = {}
    for n, (name, build) in enumerate(sorted(CASES.items())):
        case = build(root / name)
        kinds[name] = case.kinds
        ingest(case.files, root / name / "data", keys=case.keys, port=case.ports)
        table = pq.read_table(root / name / "data").drop(["day"])
        rows += _isolate(name, table.to_pylist(), 100_000 * n)
    write_dataset(table_from_rows(rows), root / "all")
    return root / "all", kinds


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    pytest.importorskip("pyspark")
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    session = spark_session("local[2]", driver_memory="1g", shuffle_partitions=2)
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def test_both_engines_give_every_case_its_findings(
        combined: tuple[Path, dict[str, set[str]]], spark: Any) -> None:
    data, kinds = combined
    duck = DuckDbEngine(memory_limit="1GB")
    try:
        on_duck = run_detectors(duck, data).findings
    finally:
        duck.close()
    on_spark = run_detectors(SparkEngine(session=spark), data).findings
    assert on_spark == on_duck  # every field, timestamps and details included
    by_case: dict[str, set[str]] = {name: set() for name in CASES}
    for f in on_spark:
        meter = f.meter_id.removeprefix("st:")  # duplicate-title names the title
        by_case[meter.split(":", 1)[0]].add(f.kind)
    assert by_case == kinds


def test_spark_binary_files_ingest_writes_the_same_dataset(tmp_path: Path, spark: Any) -> None:
    from metercert.fleet.ingest import ingest_spark

    files = [CASES[n](tmp_path / n).files[0] for n in ("clones", "sc-downgrade", "hdlc-ui")]
    local = ingest(files, tmp_path / "local", jobs=1)
    on_spark = ingest_spark(files, tmp_path / "spark", spark=spark)
    assert on_spark.rows == local.rows > 0

    def content(root: Path) -> list[tuple[Any, ...]]:
        rows = pq.read_table(root).drop(["day"]).to_pylist()
        return sorted(tuple(v for k, v in r.items() if k != "id") for r in rows)

    assert content(tmp_path / "spark") == content(tmp_path / "local")
    ids = pq.read_table(tmp_path / "spark").column("id").to_pylist()
    assert len(ids) == len(set(ids))
