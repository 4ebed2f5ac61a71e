"""Shared helpers of the dossier tests (imported relatively by the test modules)."""

from __future__ import annotations

from pathlib import Path

from metercert.checks.base import CheckOutcome
from metercert.checks.dossier import run_all
from metercert.dossier.load import load_dossier

DOSSIER_CHECKS = (
    "DOSSIER-SBOM-01", "DOSSIER-VULN-01", "DOSSIER-FW-01", "DOSSIER-DEBUG-01", "DOSSIER-PASSWD-01",
    "DOSSIER-PATCH-01", "DOSSIER-SUPPORT-01", "DOSSIER-CVD-01", "DOSSIER-INCIDENT-01",
    "DOSSIER-KEYAUDIT-01", "DOSSIER-EOL-01", "DOSSIER-LOG-01",
)


def assess(folder: Path) -> dict[str, CheckOutcome]:
    """Every dossier check's outcome on the dossier in ``folder``, by check id."""
    return {r.spec.id: r.outcome for r in run_all(load_dossier(folder))}


def edit(path: Path, old: str, new: str) -> int:
    """Replace ``old`` once in ``path``; return the 1-based line it was on."""
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))
    return text[: text.index(old)].count("\n") + 1
