"""``metercert fleet ingest|scan|simulate``: audit captured fleet traffic at scale."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from metercert.errors import UsageError


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    fleet = subparsers.add_parser(
        "fleet", help="audit fleet traffic: counter reuse, replays, downgrades, plaintext",
        description="Ingest captures/logs into a day-partitioned Parquet dataset, scan it "
                    "with SQL detectors on DuckDB or Spark, or simulate a fleet.")
    sub = fleet.add_subparsers(dest="fleet_command", metavar="SUBCOMMAND")
    fleet.set_defaults(func=lambda args: (fleet.print_help(), 2)[1])

    ing = sub.add_parser("ingest", help="pcap/pcapng captures and CSV/Parquet logs -> dataset")
    ing.add_argument("captures", nargs="+", metavar="CAPTURE", help="pcap, pcapng, CSV or Parquet")
    ing.add_argument("--out", required=True, help="dataset directory (day=YYYY-MM-DD/ inside)")
    ing.add_argument("--port", type=int, action="append", default=None,
                     help="DLMS TCP/UDP port (repeatable; default: DLMS is recognised on any "
                          "port by its framing)")
    ing.add_argument("--keys", help="key file: verify GCM tags, record tag_ok and plain_tag")
    ing.add_argument("--engine", choices=("local", "spark"), default="local",
                     help="local: this machine (default); spark: the binary-files source "
                          "hands each capture to a Spark executor running the same parser "
                          "(--out must be reachable from every executor)")
    ing.add_argument("--master", default="local[*]",
                     help="Spark master URL for --engine spark (default local[*])")
    ing.add_argument("--jobs", type=int, default=1,
                     help="read captures in this many processes, each file on its own "
                          "(default 1: files continue each other and duplicates across "
                          "files are dropped)")
    ing.add_argument("--mapping", help="YAML column mapping for head-end logs")
    ing.add_argument("--map", action="append", default=[], metavar="COLUMN=SOURCE",
                     help="one column mapping for logs (repeatable; overrides --mapping)")
    ing.set_defaults(func=_ingest)

    scan = sub.add_parser("scan", help="run the detectors over a dataset")
    scan.add_argument("dataset", help="dataset directory written by ingest or simulate")
    scan.add_argument("--engine", choices=("duckdb", "spark"), default="duckdb",
                      help="duckdb: embedded, out of core (default); spark: local or --master")
    scan.add_argument("--master", default="local[*]", help="Spark master URL (default local[*])")
    scan.add_argument("--report", help="write fleet-report.html and findings.{json,csv,parquet} here")
    scan.add_argument("--memory-limit", default="4GB",
                      help="peak memory of the scan process (DuckDB gets a share and spills "
                           "to --temp-dir; past it the scan stops with exit 2; default 4GB)")
    scan.add_argument("--temp-dir", help="DuckDB spill directory (default: a fresh temp dir)")
    scan.add_argument("--gap-threshold", type=int, default=None,
                      help="counter jump reported as ic-gap (default 1000000)")
    scan.add_argument("--exhaustion-margin", type=int, default=None,
                      help="report counters above 2^32 minus this (default 16777216)")
    scan.set_defaults(func=_scan)

    sim = sub.add_parser("simulate", help="synthetic fleet traffic with planted anomalies")
    sim.add_argument("--meters", type=int, required=True, help="number of meters")
    sim.add_argument("--days", type=int, required=True, help="days of traffic, one partition each")
    sim.add_argument("--requests", type=int, default=3, help="reads per meter per day")
    sim.add_argument("--out", required=True, help="dataset directory to create")
    sim.add_argument("--inject", action="append", default=[], metavar="KIND=COUNT",
                     help="plant anomalies (repeatable); kinds: ic-reuse, ic-regression, replay, "
                          "plaintext, suite-downgrade, ic-exhaustion, ic-gap")
    sim.add_argument("--seed", type=int, default=1,
                     help="same seed, same records and plants (default 1)")
    sim.add_argument("--truth", help="ground-truth JSON (default OUT/ground-truth.json)")
    sim.add_argument("--pcap", help="also write a small real capture of the same kind of traffic")
    sim.set_defaults(func=_simulate)


def _progress(console: Console, *, auto_refresh: bool = True) -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                    TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                    console=console, transient=True, auto_refresh=auto_refresh)


def _ingest(args: argparse.Namespace) -> int:
    from metercert.fleet.ingest import ingest

    if args.engine == "spark":
        return _ingest_spark(args)

    out = Path(args.out)
    if out.exists() and not out.is_dir():  # before any capture is read
        raise UsageError(f"--out {out}: is a file, not a dataset folder")
    console = Console(stderr=True)
    # with --jobs the display redraws per file only: no refresh thread, so that the
    # ingest's workers can be forked (see metercert.fleet.ingest._start_method)
    with _progress(console, auto_refresh=args.jobs == 1) as prog:
        task = prog.add_task("ingesting", total=len(args.captures))

        def done(path: Path, rows: int) -> None:
            prog.update(task, advance=1, description=f"{path.name}: {rows} APDUs",
                        refresh=True)

        if args.jobs < 1:
            raise UsageError("--jobs must be at least 1")
        result = ingest(args.captures, args.out, port=args.port, keys=args.keys,
                        mapping=args.mapping, map_options=args.map, on_file=done,
                        jobs=args.jobs)
    extra = ""
    st = result.stats
    if st:
        extra = (f" ({st.get('packets', 0)} packets, "
                 f"{st.get('bad_frames', 0)} undecodable frames, "
                 f"{st.get('duplicate_packets', 0)} duplicate packets, "
                 f"{st.get('gaps', 0)} stream gaps skipped)")
    Console().print(f"{result.rows} APDU records written to {args.out}{extra}")
    for path in result.skipped:
        console.print(f"skipped {path}: this content was ingested into {args.out} before")
    if st.get("unattributed"):
        console.print(f"warning: {st['unattributed']} ciphered APDU(s) with no known sender "
                      "system title (no AARQ/AARE seen for their association): judged in "
                      "a counter space of their own per direction")
    if st.get("undecoded_ciphered"):
        console.print(f"warning: {st['undecoded_ciphered']} ciphered APDU(s) of a form that "
                      "could not be split (general-ciphering/signing or damaged): recorded "
                      "as ciphered without security control")
    if st.get("short_tags"):
        console.print(f"warning: {st['short_tags']} authenticated APDU(s) too short for the "
                      "12-byte GCM tag of every DLMS suite (a non-standard tag length, or "
                      "cut): their protection cannot be verified as DLMS defines it")
    if st.get("key_size_mismatch"):
        console.print(f"warning: {st['key_size_mismatch']} APDU(s) not verified: the key "
                      "file's keys for them do not have the size their security suite needs "
                      "(tag_ok left empty, not counted as a tag failure)")
    if st and result.rows == 0 and st.get("packets", 0):
        ports = ", ".join(map(str, args.port)) if args.port else "any port"
        console.print(f"warning: no DLMS APDU decoded from {st.get('packets', 0)} packets "
                      f"({ports}); check --port, or that the capture holds wrapper/HDLC "
                      "DLMS traffic")
        return 1
    if st and result.rows == 0 and not result.skipped:
        damaged = st.get("bad_frames", 0)
        console.print("warning: no packet could be read from "
                      + ", ".join(map(str, args.captures))
                      + (f" ({damaged} damaged record(s)): not a readable capture"
                         if damaged else ": the capture holds no packets"))
        return 1
    if st.get("bad_frames"):
        console.print(f"warning: {st['bad_frames']} frame(s) or capture record(s) could not be "
                      "decoded (a damaged or cut capture): the audit covers what was read")
    return 0


def _ingest_spark(args: argparse.Namespace) -> int:
    from metercert.fleet.engines import spark_session
    from metercert.fleet.ingest import ingest_spark

    spark = spark_session(args.master)
    spark.sparkContext.setLogLevel("ERROR")
    try:
        result = ingest_spark(args.captures, args.out, spark=spark, port=args.port,
                              keys=args.keys)
    finally:
        spark.stop()
    Console().print(f"{result.rows} APDU records written to {args.out} by Spark "
                    f"({result.stats.get('bad_frames', 0)} undecodable frames)")
    return 0 if result.rows else 1


def _scan(args: argparse.Namespace) -> int:
    from metercert.fleet.detectors import DETECTORS, STAGES
    from metercert.fleet.engines import (
        DuckDbEngine,
        SparkEngine,
        check_dataset,
        run_detectors,
    )

    check_dataset(args.dataset)
    params = {}
    if args.gap_threshold is not None:
        params["gap_threshold"] = args.gap_threshold
    if args.exhaustion_margin is not None:
        params["exhaustion_margin"] = args.exhaustion_margin
    console = Console(stderr=True)
    engine: DuckDbEngine | SparkEngine
    if args.engine == "spark":
        engine = SparkEngine(master=args.master)
        engine.spark.sparkContext.setLogLevel("ERROR")
    else:
        engine = DuckDbEngine(memory_limit=args.memory_limit, temp_dir=args.temp_dir)
    try:
        with _progress(console) as prog:
            task = prog.add_task("scanning", total=len(STAGES) + len(DETECTORS))

            started: list[str] = []

            def step(name: str) -> None:
                prog.update(task, completed=len(started), description=name)
                started.append(name)

            try:
                result = run_detectors(engine, args.dataset, params=params, progress=step)
            except Exception as exc:  # noqa: BLE001 - engine errors on bad data become one line
                raise _dataset_error(args.dataset, exc) from None
            prog.update(task, completed=len(STAGES) + len(DETECTORS))
    finally:
        engine.close()
    out = Console()
    table = Table(title=f"fleet scan: {result.rows} records, {result.engine}, "
                        f"{result.seconds:.1f} s")
    for col in ("kind", "severity", "findings", "meters"):
        table.add_column(col)
    from metercert.fleet.detectors import KIND_INFO, KINDS

    for k in KINDS:
        sel = [f for f in result.findings if f.kind == k]
        table.add_row(k, KIND_INFO[k].severity, str(len(sel)), str(len({f.meter_id for f in sel})))
    out.print(table)
    if args.report:
        from metercert.fleet.report import write_report

        paths = write_report(result, args.report)
        out.print(f"report: {paths['html']}")
    return 1 if any(f.severity == "critical" for f in result.findings) else 0


def _dataset_error(dataset: str | Path, exc: Exception) -> Exception:
    """A one-line error for a dataset the engine cannot read (corrupt file, wrong columns)."""
    module = type(exc).__module__.split(".")[0]
    if module not in ("duckdb", "pyspark", "py4j", "pyarrow", "_duckdb"):
        return exc  # not the data: an internal defect, reported as such
    first = " ".join(str(exc).split("\n")[0].split())[:300]
    kind = ("not a fleet dataset (a column is missing)"
            if "Binder" in first or "cannot resolve" in first or "UNRESOLVED_COLUMN" in first
            else "a Parquet file cannot be read")
    return UsageError(f"dataset {dataset}: {kind}: {first}")


def _simulate(args: argparse.Namespace) -> int:
    from metercert.fleet.simulate import parse_injections, simulate, write_truth

    inject = parse_injections(args.inject)
    if args.meters > 50_000_000 or args.days > 3660:
        raise UsageError("--meters above 50 million or --days above 3660 is not supported")
    if args.truth:  # checked before the dataset is written, not after
        truth_path = Path(args.truth)
        if truth_path.is_dir():
            raise UsageError(f"--truth {truth_path}: is a folder, expected a file name")
        if not truth_path.parent.is_dir():
            raise UsageError(f"--truth {truth_path}: folder {truth_path.parent} does not exist")
    console = Console(stderr=True)
    with _progress(console) as prog:
        task = prog.add_task(f"simulating {args.meters} meters", total=args.days)
        result = simulate(args.out, meters=args.meters, days=args.days,
                          requests=args.requests, inject=inject, seed=args.seed,
                          on_day=lambda done, _total: prog.update(task, completed=done))
    truth = Path(args.truth) if args.truth else Path(args.out) / "ground-truth.json"
    write_truth(result, truth)
    Console().print(f"{result.rows} APDU records in {args.out}; ground truth in {truth}: "
                    + json.dumps(result.truth()["counts"]))
    if args.pcap:
        from metercert.fleet.capture import write_sample_capture

        sample = write_sample_capture(args.pcap, meters=min(args.meters, 5),
                                      requests=args.requests, seed=args.seed)
        Console().print(f"sample capture {sample.pcap} ({sample.apdus} APDUs), "
                        f"keys in {sample.keys}")
    return 0
