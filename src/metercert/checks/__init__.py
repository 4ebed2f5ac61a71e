"""Controls as code.

A check is one function decorated with :func:`metercert.checks.base.check`; the
decorator records its id, title, severity, target kind, catalog requirement ids
and whether it is destructive. The runner, the reports and the coverage matrix
read that metadata from :func:`all_checks`.

Check modules live next to this file, one per target kind (``dlms``, ``tls``,
``dossier``, ``traffic``); :func:`all_checks` imports every module in this package
so that registering a check is just defining it.
"""

from __future__ import annotations

import importlib
import pkgutil

from metercert.checks.base import (
    CheckOutcome,
    CheckResult,
    CheckSpec,
    Evidence,
    Severity,
    TargetKind,
    Verdict,
    check,
    fail,
    inconclusive,
    not_applicable,
    passed,
    registered,
)

__all__ = [
    "CheckOutcome",
    "CheckResult",
    "CheckSpec",
    "Evidence",
    "Severity",
    "TargetKind",
    "Verdict",
    "all_checks",
    "check",
    "fail",
    "inconclusive",
    "not_applicable",
    "passed",
]


def all_checks() -> dict[str, CheckSpec]:
    """Every registered check, by id, after importing all check modules."""
    for info in pkgutil.iter_modules(__path__):
        if info.name != "base" and not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")
    return registered()
