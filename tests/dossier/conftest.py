from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from metercert.checks import all_checks
from metercert.dossier import sample_dossier


@pytest.fixture()
def reference(tmp_path: Path) -> Path:
    """A private copy of the reference-meter dossier folder, free to edit."""
    all_checks()
    target = tmp_path / "meter"
    shutil.copytree(sample_dossier("reference-meter"), target)
    return target
