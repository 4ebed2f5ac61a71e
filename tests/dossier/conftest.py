from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from metercert.checks import all_checks
from metercert.checks.base import CheckOutcome
from metercert.checks.dossier import run_all
from metercert.cli.dossier import sample_dossier
from metercert.dossier.load import load_dossier

DOSSIER_CHECKS = (
    "DOSSIER-SBOM-01", "DOSSIER-VULN-01", "DOSSIER-FW-01", "DOSSIER-DEBUG-01", "DOSSIER-PASSWD-01",
    "DOSSIER-PATCH-01", "DOSSIER-SUPPORT-01", "DOSSIER-CVD-01", "DOSSIER-INCIDENT-01",
    "DOSSIER-KEYAUDIT-01", "DOSSIER-EOL-01", "DOSSIER-LOG-01",
)


@pytest.fixture()
def reference(tmp_path: Path) -> Path:
    """A private copy of the reference-meter dossier folder, free to edit."""
    all_checks()
    target = tmp_path / "meter"
    shutil.copytree(sample_dossier("reference-meter"), target)
    return target


def assess(folder: Path) -> dict[str, CheckOutcome]:
    return {r.spec.id: r.outcome for r in run_all(load_dossier(folder))}


def edit(path: Path, old: str, new: str) -> int:
    """Replace ``old`` once in ``path``; return the 1-based line it was on."""
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))
    return text[: text.index(old)].count("\n") + 1


@pytest.fixture()
def assess_folder() -> Callable[[Path], dict[str, CheckOutcome]]:
    return assess
