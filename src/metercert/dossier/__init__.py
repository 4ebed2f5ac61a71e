"""Device dossiers: the manufacturer's statements and artefacts a test lab reviews.

:func:`load_dossier` reads a dossier YAML (structure errors are one-line
:class:`~metercert.errors.InputFileError` with file and line) and parses its SBOM,
advisory export, firmware references and key-injection audit log; the checks in
``metercert.checks.dossier`` judge the result. :func:`sample_dossier` locates the
packaged samples (``reference-meter`` passes every check, ``flawed-meter`` has
planted defects).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from metercert.dossier.load import load_dossier
from metercert.dossier.model import Dossier
from metercert.errors import UsageError

SAMPLES = ("reference-meter", "flawed-meter")


def sample_dossier(name: str = "reference-meter") -> Path:
    """Folder of a packaged sample dossier (``reference-meter`` or ``flawed-meter``)."""
    path = Path(str(resources.files("metercert.dossier") / "samples" / name))
    if name not in SAMPLES or not (path / "dossier.yaml").is_file():
        raise UsageError(f"no packaged sample dossier {name!r} (known: {', '.join(SAMPLES)})")
    return path


__all__ = ["SAMPLES", "Dossier", "load_dossier", "sample_dossier"]
