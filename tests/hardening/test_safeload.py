"""Crafted input files never hang or mislead a loader: aliases, duplicate keys, size, pipes.

Each loader of a user-supplied file (key file, campaign, dossier, meter profile, RBAC
file) is given the same hostile inputs; each must refuse them quickly with one line
naming the file and the problem.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from metercert import safeload
from metercert.campaign.config import load_campaign
from metercert.dossier.yamldoc import read_yaml
from metercert.errors import InputFileError
from metercert.meter.profile import load_profile
from metercert.meter.rbac import load_rbac
from metercert.security.keys import load_key_file

# "billion laughs": each level holds nine of the one before; expanded, it never fits in RAM
ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 9) + "]\n"
    for i in range(10))

LOADERS: dict[str, tuple[str, Callable[[Path], Any]]] = {
    "key file": ("keys.yaml", load_key_file),
    "campaign": ("campaign.yaml", lambda p: load_campaign(p, check_files=False)),
    "dossier": ("dossier.yaml", read_yaml),
    "meter profile": ("profile.yaml", lambda p: load_profile(str(p))),
    "rbac": ("rbac.yaml", load_rbac),
}


def _refused(loader: Callable[[Path], Any], path: Path, *needles: str) -> str:
    t0 = time.monotonic()
    with pytest.raises(InputFileError) as info:
        loader(path)
    assert time.monotonic() - t0 < 10, "the loader took too long to refuse"
    message = str(info.value)
    assert "\n" not in message and path.name in message, message
    for needle in needles:
        assert needle in message, message
    return message


@pytest.mark.parametrize("kind", list(LOADERS))
def test_alias_bomb_is_refused(tmp_path: Path, kind: str) -> None:
    name, loader = LOADERS[kind]
    path = tmp_path / name
    path.write_text(ALIAS_BOMB)
    _refused(loader, path, "anchors")


@pytest.mark.parametrize("kind", list(LOADERS))
def test_a_single_alias_is_refused(tmp_path: Path, kind: str) -> None:
    name, loader = LOADERS[kind]
    path = tmp_path / name
    path.write_text("x: 1\ny: *nowhere\n")
    _refused(loader, path, "2")


@pytest.mark.parametrize("kind", list(LOADERS))
def test_duplicate_key_is_refused(tmp_path: Path, kind: str) -> None:
    name, loader = LOADERS[kind]
    path = tmp_path / name
    path.write_text("guek: '00'\nname: one\nname: two\n")
    _refused(loader, path, "'name' appears twice")


def test_duplicate_key_in_json_key_file(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text('{"guek": "00112233445566778899AABBCCDDEEFF", "guek": "FF"}')
    _refused(load_key_file, path, "'guek' appears twice")


@pytest.mark.parametrize("kind", list(LOADERS))
def test_oversized_file_is_refused_before_reading(tmp_path: Path, kind: str) -> None:
    name, loader = LOADERS[kind]
    path = tmp_path / name
    with path.open("wb") as fh:  # sparse: 40 MB that cost nothing to make
        fh.truncate(40 * 1024 * 1024)
    _refused(loader, path, "over the limit")


@pytest.mark.parametrize("kind", list(LOADERS))
def test_named_pipe_is_refused_without_blocking(tmp_path: Path, kind: str) -> None:
    name, loader = LOADERS[kind]
    path = tmp_path / name
    os.mkfifo(path)
    result: list[BaseException | None] = []

    def run() -> None:
        try:
            loader(path)
            result.append(None)
        except BaseException as exc:  # noqa: BLE001 - judged below
            result.append(exc)
    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(10)
    if worker.is_alive():  # unblock the reader so the test process can end
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        pytest.fail("the loader blocked on a named pipe")
    assert isinstance(result[0], InputFileError) and "not a regular file" in str(result[0])


def test_dev_zero_is_refused() -> None:
    with pytest.raises(InputFileError, match="not a regular file"):
        load_key_file("/dev/zero")


def test_strict_loader_still_reads_ordinary_yaml() -> None:
    assert safeload.loads_yaml("a: [1, 2]\nb: {c: d}\n") == {"a": [1, 2], "b": {"c": "d"}}
    assert safeload.loads_yaml("k: 0011\n", base=True) == {"k": "0011"}
    assert safeload.loads_json('{"a": {"a": 1}}') == {"a": {"a": 1}}  # same key, other levels
