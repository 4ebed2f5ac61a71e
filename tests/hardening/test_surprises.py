"""Things that surprised a user (issue 14, item 8), now each what a user expects."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from metercert.errors import MetercertError
from metercert.meter.profile import load_profile

CLI = [sys.executable, "-m", "metercert"]
ROOT = Path(__file__).resolve().parents[2]


def test_a_file_in_the_working_folder_does_not_shadow_a_builtin_profile(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "accepts-downgrade").touch()          # `touch accepts-downgrade`
    (tmp_path / "conformant").mkdir()                  # a folder of that name
    flawed = load_profile("accepts-downgrade")
    assert flawed.has("accepts-downgrade")             # the built-in flawed meter, not a file
    assert not load_profile("conformant").flaws
    # a path (a slash, or .yaml/.yml) is a file: here the empty one, a profile with no flaw
    assert not load_profile("./accepts-downgrade").has("accepts-downgrade")
    with pytest.raises(MetercertError, match="no such file|No such file"):
        load_profile("./missing.yaml")


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60, cwd=cwd,
                          check=False, stdin=subprocess.DEVNULL)


def test_meter_serve_that_cannot_listen_leaves_no_state_folder(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = _run(["meter", "serve", "--port", str(port), "--state-dir", "st"], tmp_path)
    assert proc.returncode == 2 and "cannot listen" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "st").exists(), "fresh factory keys were left behind"


def test_fleet_simulate_truth_into_a_missing_folder_writes_nothing(tmp_path: Path) -> None:
    proc = _run(["fleet", "simulate", "--meters", "2", "--days", "1", "--out", "ds",
                 "--truth", "nowhere/truth.json"], tmp_path)
    assert proc.returncode == 2 and "nowhere" in proc.stderr, proc.stderr
    assert not (tmp_path / "ds").exists(), "a half-written dataset was left behind"


def test_readme_documents_no_key_environment_variables() -> None:
    """METERCERT_GUEK & co. were documented but read by no command: the README says so now."""
    text = (ROOT / "README.md").read_text()
    assert "METERCERT_GUEK" not in text and "read from the environment" not in text
    cli = "".join(p.read_text() for p in (ROOT / "src" / "metercert" / "cli").glob("*.py"))
    assert "keyset_from_env" not in cli  # (the library function stays, for embedding)


@pytest.fixture()
def read_only(tmp_path: Path) -> Iterator[Path]:
    """A read-only bind mount (root ignores file modes; a mount is read-only for root too)."""
    src, mnt = tmp_path / "src", tmp_path / "ro"
    src.mkdir()
    mnt.mkdir()
    if subprocess.run(["mount", "--bind", str(src), str(mnt)], capture_output=True,
                      check=False).returncode != 0:
        pytest.skip("cannot bind-mount here (needs CAP_SYS_ADMIN)")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(mnt)], check=True,
                       capture_output=True)
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, check=False)


def test_meter_serve_on_a_read_only_state_folder(read_only: Path, tmp_path: Path) -> None:
    proc = _run(["meter", "serve", "--port", "0", "--state-dir", str(read_only / "st")], tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Read-only file system" in lines[0], proc.stderr
