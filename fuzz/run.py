"""Run the fuzz targets, each in its own subprocess with a time budget.

    python fuzz/run.py                      # every target, 20 s each
    python fuzz/run.py --target pcap --seconds 300
    python fuzz/run.py --seconds 60 --json results.json

Each target runs under atheris (libFuzzer) with the committed seeds in
``fuzz/corpus/<target>/`` and a scratch corpus of its own; a crash (an exception
outside the target's contract), a hang (one input over ``--input-timeout``
seconds) or a subprocess that outlives its budget is a failure. Crash inputs
land in ``fuzz/crashes/``. Exit code 0 only if every target ran clean.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from targets import BUILDERS

_DONE = re.compile(r"Done (\d+) runs in (\d+) second")
_PROGRESS = re.compile(r"^#(\d+)\s", re.MULTILINE)


@dataclass(frozen=True)
class TargetRun:
    """What one target's fuzzing subprocess reported."""

    target: str
    runs: int
    seconds: float
    exit_code: int
    crashed: bool
    hung: bool
    detail: str

    @property
    def per_second(self) -> float:
        return self.runs / self.seconds if self.seconds else 0.0


def run_target(name: str, seconds: int, *, input_timeout: int = 10, workdir: Path | None = None,
               crash_dir: Path = HERE / "crashes") -> TargetRun:
    """Fuzz ``name`` for ``seconds`` in a subprocess and summarise its output."""
    seeds = HERE / "corpus" / name
    crash_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(workdir or tempfile.mkdtemp(prefix=f"metercert-corpus-{name}-"))
    scratch.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(HERE / "_atheris_main.py"), name,
           f"-max_total_time={seconds}", f"-timeout={input_timeout}", "-rss_limit_mb=3000",
           "-print_final_stats=1", f"-artifact_prefix={crash_dir}/{name}-", str(scratch)]
    if seeds.is_dir():
        cmd.append(str(seeds))
    env = dict(os.environ, PYTHONHASHSEED="0")
    started = time.monotonic()
    hung = False
    try:
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env,
                              timeout=seconds + 120, errors="replace")
        out, code = proc.stderr + proc.stdout, proc.returncode
    except subprocess.TimeoutExpired as exc:
        out = (exc.stderr or "") if isinstance(exc.stderr, str) else ""
        code, hung = -9, True
    elapsed = time.monotonic() - started
    done = _DONE.search(out)
    if done:
        runs = int(done.group(1))
    else:
        progress = _PROGRESS.findall(out)
        runs = int(progress[-1]) if progress else 0
    crashed = code != 0 or "Uncaught Python exception" in out or "ERROR: libFuzzer" in out
    hung = hung or "ERROR: libFuzzer: timeout" in out
    detail = ""
    if crashed or hung:
        lines = [ln for ln in out.splitlines() if ln.strip()]
        start = next((i for i, ln in enumerate(lines) if "Uncaught Python exception" in ln
                      or "ERROR: libFuzzer" in ln), max(0, len(lines) - 30))
        detail = "\n".join(lines[start:start + 40])
    return TargetRun(name, runs, elapsed, code, crashed, hung, detail)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", action="append", choices=sorted(BUILDERS),
                        help="target to run (repeatable; default: all)")
    parser.add_argument("--seconds", type=int, default=20, help="time budget per target")
    parser.add_argument("--input-timeout", type=int, default=10,
                        help="seconds one input may take before it counts as a hang")
    parser.add_argument("--json", type=Path, help="write the per-target results here")
    args = parser.parse_args(argv)
    names = args.target or list(BUILDERS)
    results = []
    for name in names:
        r = run_target(name, args.seconds, input_timeout=args.input_timeout)
        results.append(r)
        status = "HANG" if r.hung else "CRASH" if r.crashed else "ok"
        print(f"{name:16s} {status:5s} {r.runs:>9d} inputs {r.seconds:7.1f} s "
              f"{r.per_second:9.0f}/s", flush=True)
        if r.detail:
            print("    " + r.detail.replace("\n", "\n    "), flush=True)
    total = sum(r.runs for r in results)
    bad = [r.target for r in results if r.crashed or r.hung]
    print(f"total {total} inputs, {len(bad)} failing target(s){': ' + ', '.join(bad) if bad else ''}")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) | {"per_second": r.per_second} for r in results],
                                        indent=2))
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
