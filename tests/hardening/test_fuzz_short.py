"""A short fuzzing pass over every target: any crash or hang fails the test.

Each target runs in its own atheris (libFuzzer) subprocess through ``fuzz/run.py``
with a time budget of ``METERCERT_FUZZ_SECONDS`` (default 8 s), so the whole
module takes about 2-3 minutes. Longer runs: ``python fuzz/run.py --seconds 300``.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FUZZ = ROOT / "fuzz"
SECONDS = int(os.environ.get("METERCERT_FUZZ_SECONDS", "8"))

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris not installed"),
]

sys.path.insert(0, str(FUZZ))
from run import run_target
from targets import BUILDERS


@pytest.mark.timeout(SECONDS + 150)
@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_target_runs_clean(name: str, tmp_path: Path) -> None:
    result = run_target(name, SECONDS, input_timeout=10, workdir=tmp_path / "corpus",
                        crash_dir=tmp_path / "crashes")
    assert not result.hung, f"{name}: an input hung\n{result.detail}"
    assert not result.crashed, f"{name}: crash\n{result.detail}"
    # the target really ran: more than its seeds, at a believable rate
    assert result.runs > 50, f"{name}: only {result.runs} inputs in {SECONDS} s"


def test_runner_reports_a_crash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The harness can fail: a target that raises outside its contract is reported."""
    monkeypatch.setenv("METERCERT_FUZZ_INJECT_FAULT", "1")
    result = run_target("wrapper", 5, workdir=tmp_path / "corpus", crash_dir=tmp_path / "crashes")
    assert result.crashed
    assert "injected fault" in result.detail
    assert list((tmp_path / "crashes").glob("wrapper-crash-*"))
