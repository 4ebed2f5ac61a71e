"""Soak: the DLMS campaign N times back to back against ONE reference meter process.

    python benchmarks/soak.py            # 50 runs (the figure in the hardening report)
    python benchmarks/soak.py --runs 10  # what tests/hardening/test_soak.py does

Measures the meter process's RSS and open file descriptors before the first and
after the last run, and the invocation counters on disk after every run. Exits 1
if RSS grew more than --max-rss-growth-mib, fds grew at all beyond a small slack,
a counter did not strictly increase, or a run's verdicts changed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "hardening"))

from _meterproc import ServedMeter

from metercert.campaign.runner import run_campaign
from metercert.checks import all_checks
from metercert.checks.base import TargetKind
from metercert.client.target import DlmsTarget
from metercert.security import load_keyset
from metercert.security.counters import read_counter_file
from metercert.security.journal import read_journal, window_key


@dataclass
class SoakResult:
    runs: int
    seconds: float
    rss_before_kib: int
    rss_after_kib: int
    fds_before: int
    fds_after: int
    verdicts: dict[str, int]
    counter_problems: list[str] = field(default_factory=list)
    verdict_changes: list[str] = field(default_factory=list)
    run_seconds: list[float] = field(default_factory=list)

    @property
    def rss_growth_kib(self) -> int:
        return self.rss_after_kib - self.rss_before_kib


def read_counters(counter_dir: Path) -> dict[str, int]:
    """Every counter file's persisted value (tx: reservation mark; rx: last accepted + 1,
    kept in the state folder's replay journal, security/journal.py)."""
    out = {}
    root = counter_dir.parent.parent
    journal = read_journal(root)
    for path in sorted(counter_dir.glob("*.ctr")):
        value = read_counter_file(path)  # the running meter holds the file's lock
        if value is not None and "-rx" in path.name:
            value = max(value, journal.get(window_key(root, path), 0))
        out[path.name] = -1 if value is None else value
    return out


def soak(runs: int, work: Path, *, progress: bool = True) -> SoakResult:
    meter = ServedMeter(work / "state")
    port = meter.start()
    counter_dir = work / "state" / "meter-0000" / "counters"
    dlms = [c for c in all_checks().values() if c.target is TargetKind.DLMS]
    keys = load_keyset(meter.keys)
    client_counters = work / "client-counters"  # one head-end, one set of counters
    try:
        def once() -> dict[str, str]:
            target = DlmsTarget("127.0.0.1", port, keys, counter_dir=client_counters)
            run = run_campaign({TargetKind.DLMS: target}, dlms, include_destructive=False,
                               progress=False)
            return {r.spec.id: r.outcome.verdict.value for r in run.results}

        first = once()  # warm-up: imports, first associations, counter files created
        rss0, fds0 = meter.rss_kib(), meter.open_fds()
        previous = read_counters(counter_dir)
        problems: list[str] = []
        changes: list[str] = []
        times: list[float] = []
        started = time.monotonic()
        for i in range(runs):
            t = time.monotonic()
            verdicts = once()
            times.append(time.monotonic() - t)
            changed = {k for k in first if verdicts.get(k) != first[k]}
            if changed:
                changes.append(f"run {i + 1}: {sorted(changed)}")
            now = read_counters(counter_dir)
            for name, value in now.items():
                before = previous.get(name)
                if before is not None and value < before:
                    problems.append(f"run {i + 1}: {name} went back {before} -> {value}")
            # the management association's counters must have moved forward in every run
            moved = [n for n in now if previous.get(n) is not None and now[n] > previous[n]]
            if not any("-rx" in n for n in moved):
                problems.append(f"run {i + 1}: no receive counter moved forward")
            previous = now
            if progress:
                print(f"run {i + 1}/{runs}: {times[-1]:.1f} s, rss {meter.rss_kib()} KiB, "
                      f"fds {meter.open_fds()}", flush=True)
        elapsed = time.monotonic() - started
        time.sleep(0.5)
        result = SoakResult(runs, elapsed, rss0, meter.rss_kib(), fds0, meter.open_fds(),
                            dict(sorted(_count(first).items())), problems, changes, times)
        if not meter.alive():
            result.counter_problems.append("meter process died")
        return result
    finally:
        meter.stop()


def _count(verdicts: dict[str, str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in verdicts.values():
        out[v] = out.get(v, 0) + 1
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--max-rss-growth-mib", type=float, default=16.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="metercert-soak-") as tmp:
        r = soak(args.runs, Path(tmp))
    print(f"{r.runs} runs in {r.seconds:.0f} s ({r.seconds / r.runs:.2f} s/run); verdicts {r.verdicts}")
    print(f"meter RSS {r.rss_before_kib} -> {r.rss_after_kib} KiB ({r.rss_growth_kib:+d} KiB); "
          f"fds {r.fds_before} -> {r.fds_after}")
    for line in r.counter_problems + r.verdict_changes:
        print("PROBLEM:", line)
    if args.json:
        args.json.write_text(json.dumps(asdict(r), indent=2))
    ok = (r.rss_growth_kib <= args.max_rss_growth_mib * 1024 and r.fds_after <= r.fds_before + 2
          and not r.counter_problems and not r.verdict_changes)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
