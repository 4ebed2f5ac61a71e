"""Time of the main job: ``metercert certify`` against the built-in meter, end to end.

Runs ``python -m metercert certify`` as a new user would (the full campaign: DLMS checks,
real power cycles of the meter process, the TLS bench with its probe, the dossier checks)
--runs times, each into a fresh report folder, and prints per run the wall time measured
from outside the process (start of the interpreter to its exit, set-up and teardown
included), the campaign time certify itself printed, the CPU seconds of the whole process
tree (certify, the meter processes it starts and kills, the TLS bench), the exit code and
the verdict counts from results.json; then the medians.

    python benchmarks/certify_time.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def one_run(folder: Path) -> dict[str, object]:
    cpu0 = children_cpu()
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "metercert", "certify", "--quiet", "--out", str(folder)],
                          capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    cpu = children_cpu() - cpu0
    printed = re.search(r"campaign time: ([0-9.]+) s", proc.stdout)
    counts: dict[str, int] = {}
    results = folder / "results.json"
    if results.exists():
        for check in json.loads(results.read_text()).get("checks", []):
            verdict = str(check.get("verdict", "?"))
            counts[verdict] = counts.get(verdict, 0) + 1
    return {"wall": wall, "cpu": cpu, "printed": float(printed.group(1)) if printed else None,
            "rc": proc.returncode, "counts": counts,
            "tail": proc.stdout.strip().splitlines()[-1:] + proc.stderr.strip().splitlines()[-3:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if args.runs < 1:
        parser.error(f"--runs {args.runs}: at least one run")
    walls, cpus = [], []
    print(f"{'run':>3} {'wall s':>7} {'printed s':>9} {'CPU s':>6} {'exit':>4}  verdicts")
    with tempfile.TemporaryDirectory(prefix="certify-time-") as tmp:
        for n in range(1, args.runs + 1):
            result = one_run(Path(tmp) / f"run{n}")
            walls.append(result["wall"])
            cpus.append(result["cpu"])
            printed = "-" if result["printed"] is None else f"{result['printed']:.1f}"
            counts = ", ".join(f"{k} {v}" for k, v in sorted(result["counts"].items()))
            print(f"{n:>3} {result['wall']:>7.1f} {printed:>9} {result['cpu']:>6.1f} "
                  f"{result['rc']:>4}  {counts or 'no results.json: ' + ' | '.join(result['tail'])}")
    print(f"median of {args.runs}: wall {statistics.median(walls):.1f} s, "
          f"CPU {statistics.median(cpus):.1f} s (goal: <= 10 s wall on 2 cores)")


if __name__ == "__main__":
    main()
