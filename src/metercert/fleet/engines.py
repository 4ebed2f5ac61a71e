"""Run the SQL detectors on DuckDB (embedded, default) or Spark (local or cluster).

Both engines see the dataset as the view ``apdus`` read straight from the Parquet
files (hive partitioning on ``day``), materialise the ``stage_*`` results once, and
run each detector's text unchanged. DuckDB works out of core: a memory limit and
a spill directory bound what one scan may hold.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from metercert.errors import InputFileError, MetercertError, UsageError
from metercert.fleet.detectors import (
    DETECTORS,
    STAGES,
    Finding,
    finding_from_row,
    for_engine,
    render_sql,
    sort_findings,
)
from metercert.fleet.schema import COLUMNS, dataset_files

Progress = Callable[[str], None]


class Engine(Protocol):
    name: str

    def register(self, dataset: Path) -> None: ...
    def stage(self, name: str, sql: str) -> None: ...
    def query(self, sql: str) -> Iterable[dict[str, Any]]: ...
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


_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b|b)?\s*", re.IGNORECASE)
_UNIT = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
         "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_size(text: str) -> int:
    """Bytes of a size like ``4GB``, ``512MB`` or ``1GiB`` (DuckDB's units: GB = 10^9)."""
    m = _SIZE.fullmatch(str(text))
    if not m:
        raise UsageError(f"--memory-limit {text!r}: not a size like 4GB")
    return int(float(m.group(1)) * _UNIT[(m.group(2) or "b").lower()])


def _rss() -> int | None:
    """Resident bytes of this process (Linux /proc), or None where it cannot be read."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
DUCK_SHARE = 0.7          # of the limit left over by the process: DuckDB's buffer manager
MIN_DUCK_BYTES = 48 << 20  # below this DuckDB cannot hold one row group's hash tables
WATCH_SECONDS = 0.02


def _mib(n: int) -> str:
    return f"{n / 2**20:.0f} MiB"


class DuckDbEngine:
    """DuckDB over the Parquet files; the whole process stays within ``memory_limit``.

    DuckDB's own ``memory_limit`` bounds its buffer manager only (hash tables, sorts,
    temp tables, which spill to ``temp_dir``), not the process: Parquet decoding, the
    result being fetched and the interpreter come on top. So DuckDB gets a share
    (DUCK_SHARE) of what the limit leaves above the process's size at start, one
    thread when that share is small, and a watchdog samples the process's resident
    size while a query runs: past the limit it interrupts the query and the scan
    stops with a one-line :class:`ScanTooLarge`, never an out-of-memory kill.
    """

    name = "duckdb"

    def __init__(self, *, memory_limit: str = "4GB", temp_dir: str | Path | None = None,
                 threads: int | None = None) -> None:
        import duckdb

        self.memory_limit = memory_limit
        self.limit_bytes = parse_size(memory_limit)
        base = _rss() or 0
        self.duck_bytes = int((self.limit_bytes - base) * DUCK_SHARE)
        if self.duck_bytes < MIN_DUCK_BYTES:
            raise ScanTooLarge(
                f"--memory-limit {memory_limit} is too small: this process already holds "
                f"{_mib(base)} and the scan needs at least "
                f"{_mib(base + int(MIN_DUCK_BYTES / DUCK_SHARE))}")
        # a database file (not an in-memory one) in the spill directory: only then can the
        # temp tables of a scan whose watch list is the whole fleet be evicted to disk
        self._tmp = tempfile.TemporaryDirectory(prefix="metercert-duck-",
                                                dir=str(temp_dir) if temp_dir else None)
        spill = self._tmp.name
        self._con = duckdb.connect(str(Path(spill) / "scan.duckdb"))
        self._con.execute(f"SET memory_limit='{self.duck_bytes}B'")
        self._con.execute(f"SET temp_directory={_sql_str(spill)}")
        self._con.execute("PRAGMA disable_checkpoint_on_shutdown")  # the file is thrown away
        self._con.execute("SET preserve_insertion_order=false")
        self._con.execute("SET enable_progress_bar=false")
        self._con.execute("SET TimeZone='UTC'")
        if not threads and self.duck_bytes < (256 << 20):
            threads = 1  # every thread holds its own Parquet buffers and partial states
        if threads:
            self._con.execute(f"SET threads={int(threads)}")
        self.threads = int(self._con.execute("SELECT current_setting('threads')").fetchone()[0])  # type: ignore[index]
        self._over: int | None = None

    def register(self, dataset: Path) -> None:
        pattern = str(dataset / "day=*" / "*.parquet")
        cols = ", ".join(COLUMNS)
        self._con.execute(
            f"CREATE OR REPLACE VIEW apdus AS SELECT {cols} FROM read_parquet("
            f"{_sql_str(pattern)}, hive_partitioning=true, union_by_name=true)")

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """Interrupt DuckDB if the process grows past the limit; refuse in one line."""
        import duckdb

        done = threading.Event()
        self._over = None

        def watch() -> None:
            while True:  # a first sample at once: a process already past the limit stops
                rss = _rss()
                if rss is not None and rss > self.limit_bytes:
                    self._over = rss
                    self._con.interrupt()
                    return
                if done.wait(WATCH_SECONDS):
                    return

        watcher = threading.Thread(target=watch, name="metercert-rss-watch", daemon=True)
        watcher.start()
        try:
            yield
        except (duckdb.OutOfMemoryException, duckdb.InterruptException) as exc:
            if isinstance(exc, duckdb.InterruptException) and self._over is None:
                raise
            raise ScanTooLarge(self._refusal()) from None
        finally:
            done.set()
            watcher.join()
        if self._over is not None:
            raise ScanTooLarge(self._refusal())

    def _refusal(self) -> str:
        where = (f"the process reached {_mib(self._over)}" if self._over is not None else
                 f"DuckDB could not spill enough within its {_mib(self.duck_bytes)}")
        return (f"the scan needs more memory than --memory-limit {self.memory_limit} "
                f"({where}); raise --memory-limit, or give --temp-dir on a disk with free space")

    def _execute(self, sql: str) -> Any:
        """Run one statement; out of memory with several threads, run it again on one."""
        while True:
            try:
                with self._guard():
                    return self._con.execute(sql)
            except ScanTooLarge:
                if self.threads <= 1:
                    raise
                self.threads = 1  # each thread's Parquet buffers and partial states add up
                self._con.execute("SET threads=1")

    def stage(self, name: str, sql: str) -> None:
        self._execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {sql}")

    def query(self, sql: str) -> Iterator[dict[str, Any]]:
        cur = self._execute(for_engine(sql, self.name))
        names = [d[0] for d in cur.description]
        with self._guard():
            while batch := cur.fetchmany(1024):
                for row in batch:
                    yield dict(zip(names, row, strict=True))

    def count(self) -> int:
        return int(self._con.execute("SELECT COUNT(*) FROM apdus").fetchone()[0])  # type: ignore[index]

    def close(self) -> None:
        self._con.close()
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

    def query(self, sql: str) -> Iterator[dict[str, Any]]:
        for row in self.spark.sql(for_engine(sql, self.name)).toLocalIterator():
            yield row.asDict(recursive=True)

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
