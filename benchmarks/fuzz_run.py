"""Fuzzing throughput: inputs per second for every fuzz target (atheris/libFuzzer).

    python benchmarks/fuzz_run.py                 # 10 s per target
    python benchmarks/fuzz_run.py --seconds 60 --target meter_session

Each target runs in its own subprocess (see fuzz/run.py). Prints one line per
target and a total; exits 1 if any target crashed or hung.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fuzz"))

from run import run_target
from targets import BUILDERS


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--target", action="append", choices=sorted(BUILDERS))
    args = parser.parse_args()
    total, bad = 0, 0
    print(f"{'target':16s} {'inputs':>10s} {'seconds':>8s} {'inputs/s':>10s}  status")
    for name in args.target or list(BUILDERS):
        r = run_target(name, args.seconds)
        total += r.runs
        bad += r.crashed or r.hung
        status = "HANG" if r.hung else "CRASH" if r.crashed else "ok"
        print(f"{name:16s} {r.runs:>10d} {r.seconds:>8.1f} {r.per_second:>10.0f}  {status}", flush=True)
    print(f"{'total':16s} {total:>10d}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
