"""Run the SQL detectors on DuckDB (embedded, default) or Spark (local or cluster).

Both engines see the dataset as the view ``apdus`` read straight from the Parquet
files (hive partitioning on ``day``), materialise the ``stage_*`` results once, and
run each detector's text unchanged. DuckDB works out of core: a memory limit and
a spill directory bound what one scan may hold.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from metercert.errors import InputFileError, MetercertError, UsageError
from metercert.fleet.detectors import (
    DETECTORS,
    STAGES,
    Finding,
    finding_from_row,
    render_sql,
    sort_findings,
)
from metercert.fleet.schema import COLUMNS, dataset_files

Progress = Callable[[str], None]


class Engine(Protocol):
    name: str

    def register(self, dataset: Path) -> None: ...
    def stage(self, name: str, sql: str) -> None: ...
    def query(self, sql: str) -> list[dict[str, Any]]: ...
    def count(self) -> int: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class ScanResult:
    engine: str
    dataset: Path
    rows: int
    findings: tuple[Finding, ...]
    seconds: float
    step_seconds: Mapping[str, float]


class ScanTooLarge(MetercertError):
    """The engine ran out of its memory budget: a one-line refusal, never a crash."""


def check_dataset(dataset: str | Path) -> Path:
    root = Path(dataset)
    if not root.exists():
        raise InputFileError(f"dataset {root}: no such directory")
    if not root.is_dir():
        raise InputFileError(f"dataset {root}: not a directory (give the --out of fleet ingest)")
    if not dataset_files(root):
        raise InputFileError(f"dataset {root}: no day=YYYY-MM-DD/*.parquet files in it")
    return root


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class DuckDbEngine:
    """DuckDB over the Parquet files, bounded by ``memory_limit`` with spilling."""

    name = "duckdb"

    def __init__(self, *, memory_limit: str = "4GB", temp_dir: str | Path | None = None,
                 threads: int | None = None) -> None:
        import duckdb

        self._con = duckdb.connect()
        self.memory_limit = memory_limit
        self._tmp = None if temp_dir else tempfile.TemporaryDirectory(prefix="metercert-duck-")
        spill = str(temp_dir) if temp_dir else self._tmp.name  # type: ignore[union-attr]
        try:
            self._con.execute(f"SET memory_limit={_sql_str(memory_limit)}")
        except duckdb.Error:
            raise UsageError(f"--memory-limit {memory_limit!r}: not a size like 4GB") from None
        self._con.execute(f"SET temp_directory={_sql_str(spill)}")
        self._con.execute("SET preserve_insertion_order=false")
        self._con.execute("SET enable_progress_bar=false")
        self._con.execute("SET TimeZone='UTC'")
        if threads:
            self._con.execute(f"SET threads={int(threads)}")

    def register(self, dataset: Path) -> None:
        pattern = str(dataset / "day=*" / "*.parquet")
        cols = ", ".join(COLUMNS)
        self._con.execute(
            f"CREATE OR REPLACE VIEW apdus AS SELECT {cols} FROM read_parquet("
            f"{_sql_str(pattern)}, hive_partitioning=true, union_by_name=true)")

    def _run(self, sql: str) -> Any:
        import duckdb

        try:
            return self._con.execute(sql)
        except duckdb.OutOfMemoryException:
            raise ScanTooLarge(
                f"the scan needs more memory than --memory-limit {self.memory_limit} and "
                "could not spill enough to the temp dir; raise --memory-limit or give "
                "--temp-dir on a disk with free space") from None

    def stage(self, name: str, sql: str) -> None:
        self._run(f"CREATE OR REPLACE TEMP TABLE {name} AS {sql}")

    def query(self, sql: str) -> list[dict[str, Any]]:
        cur = self._run(sql)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def count(self) -> int:
        return int(self._con.execute("SELECT COUNT(*) FROM apdus").fetchone()[0])  # type: ignore[index]

    def close(self) -> None:
        self._con.close()
        if self._tmp is not None:
            self._tmp.cleanup()


def spark_session(master: str = "local[*]", *, driver_memory: str = "2g",
                  shuffle_partitions: int = 8) -> Any:
    """A Spark session bound to loopback, without UI, sized for this job."""
    os.environ.setdefault("PYSPARK_PYTHON", "python3")
    if master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # never listen beyond loopback
    from pyspark.sql import SparkSession

    builder = (SparkSession.builder.master(master).appName("metercert-fleet")
               .config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
               .config("spark.sql.session.timeZone", "UTC")
               .config("spark.driver.memory", driver_memory)
               .config("spark.sql.adaptive.enabled", "true")
               .config("spark.sql.ansi.enabled", "false"))
    if master.startswith("local"):
        builder = (builder.config("spark.driver.host", "127.0.0.1")
                   .config("spark.driver.bindAddress", "127.0.0.1"))
    return builder.getOrCreate()


class SparkEngine:
    """Spark SQL over the same Parquet files; ``master`` picks local mode or a cluster."""

    name = "spark"

    def __init__(self, *, master: str = "local[*]", session: Any = None,
                 driver_memory: str = "2g") -> None:
        self._owned = session is None
        self.spark = session if session is not None else spark_session(
            master, driver_memory=driver_memory)
        self._cached: list[Any] = []

    def register(self, dataset: Path) -> None:
        df = (self.spark.read.option("basePath", str(dataset))
              .parquet(str(dataset / "day=*")))
        df.select(*COLUMNS).createOrReplaceTempView("apdus")

    def stage(self, name: str, sql: str) -> None:
        df = self.spark.sql(sql).cache()
        df.count()
        self._cached.append(df)
        df.createOrReplaceTempView(name)

    def query(self, sql: str) -> list[dict[str, Any]]:
        return [row.asDict(recursive=True) for row in self.spark.sql(sql).collect()]

    def count(self) -> int:
        return int(self.spark.sql("SELECT COUNT(*) AS n FROM apdus").collect()[0]["n"])

    def close(self) -> None:
        for df in self._cached:
            df.unpersist()
        self._cached.clear()
        if self._owned:
            self.spark.stop()


NAIVE_SUSPECTS = ("SELECT DISTINCT space_key FROM apdus "
                  "WHERE ciphered AND space_key IS NOT NULL")


def run_detectors(engine: Engine, dataset: str | Path, *,
                  params: Mapping[str, int] | None = None,
                  progress: Progress | None = None, count_rows: bool = True,
                  prune: bool = True) -> ScanResult:
    """Run every stage and detector; findings come back sorted and engine-neutral.

    ``prune=False`` puts every counter space on the watch list (the exact detectors
    then read every ciphered row): the naive baseline the benchmark compares with.
    """
    root = check_dataset(dataset)
    started = time.perf_counter()
    steps: dict[str, float] = {}
    engine.register(root)
    rows = engine.count() if count_rows else -1
    findings: list[Finding] = []
    for name in STAGES:
        t = time.perf_counter()
        if progress:
            progress(f"stage {name}")
        sql = NAIVE_SUSPECTS if name == "suspects" and not prune else render_sql(
            f"stage_{name}", params)
        engine.stage(name, sql)
        steps[f"stage_{name}"] = time.perf_counter() - t
    for name in DETECTORS:
        t = time.perf_counter()
        if progress:
            progress(name)
        findings.extend(finding_from_row(r) for r in engine.query(render_sql(name, params)))
        steps[name] = time.perf_counter() - t
    return ScanResult(engine.name, root, rows, tuple(sort_findings(findings)),
                      time.perf_counter() - started, steps)
