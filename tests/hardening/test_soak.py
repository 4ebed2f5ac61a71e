"""Soak: the DLMS campaign (non-destructive) back to back against ONE meter process.

10 runs here (about 50 s); ``python benchmarks/soak.py`` does the 50-run version.
Bounds: meter RSS grows by less than 8 MiB over the runs after a warm-up run, its
open file descriptors by at most 2, every persisted counter only moves forward
(and the receive counters move in every run), and every run gives the same verdicts.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNS = 10
MAX_RSS_GROWTH_KIB = 8 * 1024


def _soak_module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("metercert_soak", ROOT / "benchmarks" / "soak.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.timeout(170)
def test_campaign_soak(tmp_path: Path) -> None:
    result = _soak_module().soak(RUNS, tmp_path, progress=False)
    assert result.runs == RUNS
    assert result.verdicts.get("pass", 0) >= 10, result.verdicts
    assert not result.verdict_changes, result.verdict_changes
    assert not result.counter_problems, result.counter_problems
    assert result.fds_after <= result.fds_before + 2, (result.fds_before, result.fds_after)
    assert result.rss_growth_kib < MAX_RSS_GROWTH_KIB, result.rss_growth_kib
    print(f"\n{RUNS} runs, {result.seconds:.0f} s; RSS {result.rss_before_kib}->{result.rss_after_kib} KiB;"
          f" fds {result.fds_before}->{result.fds_after}")
