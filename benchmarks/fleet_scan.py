"""Fleet scan benchmark: the whole detector set on DuckDB, a naive baseline and Spark.

    python3 benchmarks/fleet_scan.py                       # 20 million records, best case
    python3 benchmarks/fleet_scan.py --shape coarse-ts     # minute-resolution timestamps
    python3 benchmarks/fleet_scan.py --shape hot-meter --memory-limit 1GB
    python3 benchmarks/fleet_scan.py --rows 100000000 --dir /big/disk

Shapes: ``best`` (simulated fleet, second-resolution timestamps), ``coarse-ts`` (the
same with every timestamp cut to the minute, as head-end logs have it) and
``hot-meter`` (every record from one meter under one suite, in two counter spaces:
what push traffic becomes). Simulates the records (anomalies planted), then runs each engine in its
own child process while sampling the RSS and CPU time of that process tree (the
Spark JVM included) from /proc: DuckDB with the watch-list pruning, DuckDB naive
(every counter space read in full) and Spark. Prints wall time, records/s, CPU
seconds, peak memory, whether the planted anomalies were found exactly, and whether
the engines' findings agree field by field.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def tree_usage(root: int) -> tuple[int, float]:
    """Resident bytes and CPU seconds of ``root`` and all its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    cpu: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            pid, ppid = int(entry), int(fields[1])
            rss[pid] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
            cpu[pid] = (int(fields[11]) + int(fields[12])) / tick
            children.setdefault(ppid, []).append(pid)
        except (OSError, IndexError, ValueError):
            continue
    total, seconds, stack = 0, 0.0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        seconds += cpu.get(pid, 0.0)
        stack.extend(children.get(pid, []))
    return total, seconds


def run_child(argv: list[str]) -> tuple[dict, int, float, float]:
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak, cpu = 0, 0.0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak, cpu
        while not stop.is_set():
            rss, seconds = tree_usage(proc.pid)
            peak, cpu = max(peak, rss), max(cpu, seconds)
            stop.wait(0.2)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    out, err = proc.communicate()
    stop.set()
    t.join()
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"child failed ({proc.returncode}): {err.strip()[-2000:]}")
    return json.loads(out.strip().splitlines()[-1]), peak, wall, cpu


def worker(engine_name: str, data: str, memory_limit: str, spark_memory: str) -> None:
    import hashlib

    from metercert.errors import MetercertError
    from metercert.fleet.engines import DuckDbEngine, SparkEngine, run_detectors

    if engine_name == "spark":
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        engine = SparkEngine(master="local[*]", driver_memory=spark_memory)
        engine.spark.sparkContext.setLogLevel("ERROR")
        t0 = time.perf_counter()
    else:
        t0 = time.perf_counter()
        try:
            engine = DuckDbEngine(memory_limit=memory_limit)
        except MetercertError as exc:
            print(json.dumps({"refused": str(exc)}))
            return
    try:
        res = run_detectors(engine, data, count_rows=False, prune=engine_name != "naive")
    except MetercertError as exc:
        print(json.dumps({"refused": str(exc)}))
        return
    finally:
        engine.close()
    elapsed = time.perf_counter() - t0
    counts: dict[str, int] = {}
    for f in res.findings:
        counts[f.kind] = counts.get(f.kind, 0) + 1
    records = json.dumps([f.to_record() for f in res.findings], default=str, sort_keys=True)
    digest = hashlib.sha256(records.encode()).hexdigest()
    findings_file = Path(data).parent / f"findings-{engine_name}.json"
    findings_file.write_text(records)
    print(json.dumps({"seconds": elapsed, "detect_seconds": res.seconds, "counts": counts,
                      "findings": len(res.findings), "digest": digest,
                      "findings_file": str(findings_file),
                      "steps": {k: round(v, 2) for k, v in res.step_seconds.items()}}))


def reshape(data: Path, shape: str) -> None:
    """Rewrite the simulated dataset into the coarse-ts or hot-meter shape."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'")
    con.execute("SET preserve_insertion_order=false")
    src = str(data / "day=*" / "*.parquet").replace("'", "''")
    cols = ("id, ts, direction, client_addr, server_addr, client_sap, server_sap, link, "
            "meter_id, meter_key, endpoint, assoc_id, system_title, sc, suite, key_set, key_id, "
            "space_key, ic, apdu_tag, length, ct_sha256, ciphered, authenticated, tag_ok, "
            "plain_tag, source")
    if shape == "coarse-ts":
        body = f"SELECT * REPLACE (date_trunc('minute', ts) AS ts) FROM read_parquet('{src}')"
    else:  # one meter: every record in its two counter spaces, counters rising
        one_suite = ("" if shape == "hot-meter-mixed" else
                     "CASE WHEN sc IS NULL THEN NULL ELSE CAST(48 AS SMALLINT) END AS sc, "
                     "CASE WHEN suite IS NULL THEN NULL ELSE CAST(0 AS SMALLINT) END AS suite, ")
        body = (f"SELECT * REPLACE ('10.0.0.1:4059/1' AS meter_id, 1 AS meter_key, {one_suite}"
                f"'guk 10.0.0.1:4059/1/1' AS key_id, "
                f"CASE WHEN NOT ciphered THEN NULL WHEN direction = 'c2s' THEN 11 ELSE 12 END "
                f"AS space_key, "
                f"CASE WHEN ic IS NULL THEN NULL ELSE ROW_NUMBER() OVER (PARTITION BY "
                f"direction, ic IS NULL ORDER BY ts, id) END AS ic, "
                f"CASE WHEN system_title IS NULL THEN NULL WHEN direction = 'c2s' "
                f"THEN system_title ELSE '4D4D4D0000000001' END AS system_title) "
                f"FROM read_parquet('{src}')")
    out = data.parent / (data.name + ".reshaped")
    con.execute(f"COPY (SELECT {cols}, strftime(ts, '%Y-%m-%d') AS day FROM ({body})) "
                f"TO '{out}' (FORMAT parquet, PARTITION_BY (day), ROW_GROUP_SIZE 1000000)")
    con.close()
    truth = data / "ground-truth.json"
    keep = truth.read_bytes() if truth.exists() else None
    shutil.rmtree(data)
    out.rename(data)
    if keep is not None:
        truth.write_bytes(keep)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=20_000_000)
    ap.add_argument("--days", type=int, default=10)
    ap.add_argument("--requests", type=int, default=3)
    ap.add_argument("--dir", help="where to put the dataset (default: a temp dir)")
    ap.add_argument("--engines", default="duckdb,naive,spark",
                    help="duckdb (pruned), naive (DuckDB, every space read) and/or spark")
    ap.add_argument("--shape", choices=("best", "coarse-ts", "hot-meter", "hot-meter-mixed"),
                    default="best")
    ap.add_argument("--memory-limit", default="4GB", help="DuckDB memory limit")
    ap.add_argument("--spark-memory", default="4g", help="Spark driver memory")
    ap.add_argument("--rounds", type=int, default=3,
                    help="runs of pruned DuckDB, interleaved with the other engines (median)")
    ap.add_argument("--keep", action="store_true", help="keep the dataset")
    ap.add_argument("--reuse", action="store_true",
                    help="scan the dataset already in --dir (skip the simulation)")
    ap.add_argument("--worker", nargs=2, metavar=("ENGINE", "DIR"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rows < 1 or args.days < 1 or args.requests < 1 or args.rounds < 1:
        ap.error("--rows, --days, --requests and --rounds must be at least 1")
    if args.worker:
        worker(args.worker[0], args.worker[1], args.memory_limit, args.spark_memory)
        return

    from metercert.fleet.simulate import INJECTABLE, simulate

    frames = 4 + 2 * args.requests
    meters = max(1, args.rows // (args.days * frames))
    base = Path(args.dir or tempfile.mkdtemp(prefix="metercert-bench-"))
    data = base / "fleet"
    inject = {k: 5 for k in INJECTABLE}
    truth = data / "ground-truth.json"
    if args.reuse and truth.exists():
        rows = json.loads(truth.read_text())["rows"]
    else:
        if data.exists():
            shutil.rmtree(data)
        print(f"simulating {meters} meters x {args.days} days x {frames} APDUs ...", flush=True)
        t0 = time.perf_counter()
        sim = simulate(data, meters=meters, days=args.days, requests=args.requests,
                       inject=inject)
        sim_s = time.perf_counter() - t0
        truth.write_text(json.dumps(sim.truth()))
        rows = sim.rows
        if args.shape != "best":
            reshape(data, args.shape)
        print(f"simulated {rows:,} records in {sim_s:.1f} s "
              f"({rows / sim_s / 1e6:.2f} M/s)", flush=True)
    size = sum(p.stat().st_size for p in data.rglob("*.parquet"))
    print(f"shape {args.shape}: {rows:,} records, {size / 1e6:.0f} MB Parquet; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    from metercert.fleet.engines import parse_size

    limit = parse_size(args.memory_limit)
    engines = args.engines.split(",")
    # pruned DuckDB runs --rounds times, interleaved with the other engines (run once each)
    order: list[str] = []
    others = [e for e in engines if e != "duckdb"]
    rounds = args.rounds if "duckdb" in engines else 0
    for i in range(max(rounds, 1)):
        if i < rounds:
            order.append("duckdb")
        if i < len(others):
            order.append(others[i])
    order.extend(others[max(rounds, 1):])
    runs: dict[str, list[tuple[dict, int, float, float]]] = {}
    for name in order:
        out, peak, wall, cpu = run_child([sys.executable, __file__, "--worker", name, str(data),
                                          "--memory-limit", args.memory_limit,
                                          "--spark-memory", args.spark_memory])
        bound = (f"limit {limit / 2**30:.2f} GiB: {'within' if peak <= limit else 'OVER'}"
                 if name != "spark" else f"Spark driver {args.spark_memory}")
        if "refused" in out:
            print(f"{name:7s} refused (exit 2): {out['refused']}  (peak RSS "
                  f"{peak / 2**30:.2f} GiB, {bound}; {wall:.1f} s)", flush=True)
            continue
        ok = out["counts"] == inject if args.shape == "best" else "n/a (reshaped)"
        runs.setdefault(name, []).append((out, peak, wall, cpu))
        print(f"{name:7s} detectors {out['seconds']:7.1f} s  "
              f"{rows / out['seconds'] / 1e6:6.2f} M records/s  "
              f"peak RSS {peak / 2**30:5.2f} GiB ({bound})  (process {wall:.1f} s, "
              f"{cpu:.1f} CPU-s, {rows / max(cpu, 1e-9) / 1e6:.2f} M records per CPU-s)  "
              f"{out['findings']} findings, planted found exactly: {ok}", flush=True)
        print(f"        steps: {out['steps']}", flush=True)
    results = {}
    for name, rs in runs.items():
        rs = sorted(rs, key=lambda r: r[0]["seconds"])
        results[name] = rs[len(rs) // 2]  # the median run
    if len(runs.get("duckdb", ())) > 1:
        rs = runs["duckdb"]
        secs = sorted(r[0]["seconds"] for r in rs)
        cpus = sorted(r[3] for r in rs)
        print(f"duckdb  median of {len(rs)} rounds: {secs[len(secs) // 2]:.1f} s, "
              f"{rows / secs[len(secs) // 2] / 1e6:.2f} M records/s, "
              f"{cpus[len(cpus) // 2]:.1f} CPU-s, peak RSS {max(r[1] for r in rs) / 2**30:.2f} GiB "
              f"(limit {limit / 2**30:.2f} GiB)")
    if len(results) > 1:
        names = list(results)
        ref = json.loads(Path(results[names[0]][0]["findings_file"]).read_text())
        for other in names[1:]:
            recs = json.loads(Path(results[other][0]["findings_file"]).read_text())
            diffs = [(i, k) for i, (x, y) in enumerate(zip(ref, recs, strict=False))
                     for k in x if x[k] != y.get(k)]
            fields = sum(len(r) for r in ref)
            print(f"findings {names[0]} vs {other}: {len(ref)} vs {len(recs)} findings, "
                  f"{fields} fields compared, {len(diffs)} differ"
                  + (f" (first: finding {diffs[0][0]} field {diffs[0][1]})" if diffs else ""))
        same = len({r[0]["digest"] for r in results.values()}) == 1
        print(f"findings identical field by field across {', '.join(results)}: {same}")
    if "duckdb" in results:
        out, peak, wall, cpu = results["duckdb"]
        rate = rows / out["seconds"] / 1e6
        print(f"DuckDB target >= 5 M records/s for the whole detector set: "
              f"{'met' if rate >= 5 else 'NOT met'} ({rate:.2f} M/s wall); "
              + (f"<= 8 CPU-s for 20 M records: {'met' if cpu <= 8 else 'NOT met'} "
                 f"({cpu:.1f} CPU-s, the whole worker process)" if rows >= 20_000_000 else
                 f"{cpu:.1f} CPU-s (the CPU goal is for 20 M records)")
              + f"; peak RSS within "
              f"--memory-limit {args.memory_limit}: {'yes' if peak <= limit else 'NO'}")
    if "duckdb" in results and "spark" in results:
        ratio = results["spark"][0]["seconds"] / results["duckdb"][0]["seconds"]
        print(f"DuckDB is {ratio:.1f}x faster than Spark local mode on this machine "
              f"({os.cpu_count()} cores)")
    if not args.keep and not args.dir:
        shutil.rmtree(base)


if __name__ == "__main__":
    from metercert.errors import MetercertError

    try:
        main()
    except MetercertError as exc:  # bad input (too few rows for the planted anomalies...)
        sys.exit(f"fleet_scan.py: error: {exc}")
