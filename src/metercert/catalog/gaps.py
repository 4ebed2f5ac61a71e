"""Gap analysis: what a run's check results mean per framework.

Each requirement gets one state from the checks that cite it:

- ``failed``: at least one citing check failed;
- ``passed``: at least one passed and none failed;
- ``inconclusive``: checks ran but none could decide;
- ``not-applicable``: every citing check was not applicable;
- ``untested``: no check result, although automated evidence is possible;
- ``document-review``: no check result and only a person reading documents can
  evidence it.

Readiness is passed / applicable requirements (all but not-applicable), as a
percentage; it is deliberately strict, because an untested requirement is not
evidence an auditor accepts. The to-do list says what to do next for every
requirement that is not passed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from metercert.catalog.model import Catalog, Requirement

STATES = ("passed", "failed", "inconclusive", "not-applicable", "untested", "document-review")


@dataclass(frozen=True)
class RequirementGap:
    requirement: Requirement
    state: str
    checks: tuple[str, ...]
    reasons: tuple[str, ...] = ()

    @property
    def action(self) -> str:
        """The next step that would turn this requirement into evidence."""
        if self.state == "failed":
            return "fix the product: " + "; ".join(self.reasons[:3])
        if self.state == "inconclusive":
            return "rerun or complete the inputs of " + ", ".join(self.checks)
        if self.state == "untested":
            return "run a test with a " + " or ".join(e for e in self.requirement.evidence if e != "document-review") + " target"
        if self.state == "document-review":
            return "have an assessor review the documentation"
        return ""


@dataclass(frozen=True)
class FrameworkGaps:
    framework: str
    name: str
    requirements: tuple[RequirementGap, ...]

    def count(self, state: str) -> int:
        return sum(1 for r in self.requirements if r.state == state)

    @property
    def readiness(self) -> float:
        applicable = len(self.requirements) - self.count("not-applicable")
        return round(100.0 * self.count("passed") / applicable, 1) if applicable else 100.0

    @property
    def todo(self) -> tuple[RequirementGap, ...]:
        order = {"failed": 0, "inconclusive": 1, "untested": 2, "document-review": 3}
        pending = [r for r in self.requirements if r.state in order]
        return tuple(sorted(pending, key=lambda r: (order[r.state], r.requirement.status != "mandatory")))

    def to_dict(self) -> dict[str, Any]:
        return {
            "framework": self.framework,
            "name": self.name,
            "counts": {state: self.count(state) for state in STATES},
            "total": len(self.requirements),
            "readiness_pct": self.readiness,
            "requirements": {r.requirement.id: {"state": r.state, "checks": list(r.checks)} for r in self.requirements},
            "todo": [
                {
                    "requirement": r.requirement.id,
                    "title": r.requirement.title,
                    "status": r.requirement.status,
                    "state": r.state,
                    "action": r.action,
                    "checks": list(r.checks),
                }
                for r in self.todo
            ],
        }


@dataclass(frozen=True)
class GapReport:
    frameworks: tuple[FrameworkGaps, ...]
    unknown_requirements: tuple[str, ...] = ()

    def framework(self, framework_id: str) -> FrameworkGaps:
        for fw in self.frameworks:
            if fw.framework.lower() == framework_id.lower():
                return fw
        raise KeyError(framework_id)

    def to_dict(self) -> dict[str, Any]:
        """The ``gaps`` value of results.json."""
        return {
            "frameworks": {fw.framework: fw.to_dict() for fw in self.frameworks},
            "unknown_requirements": list(self.unknown_requirements),
        }


def _state(verdicts: list[str], req: Requirement) -> str:
    if "fail" in verdicts:
        return "failed"
    if "pass" in verdicts:
        return "passed"
    if "inconclusive" in verdicts:
        return "inconclusive"
    if verdicts:
        return "not-applicable"
    return "document-review" if req.document_review_only else "untested"


def analyse(checks: Iterable[Mapping[str, Any]], catalog: Catalog) -> GapReport:
    """Per-framework requirement states from results.json check entries.

    Each mapping needs ``id``, ``requirements`` and ``verdict``; ``reason`` is used
    in the to-do list when present.
    """
    by_req: dict[str, list[tuple[str, str, str]]] = {}
    unknown: list[str] = []
    for entry in checks:
        for rid in entry.get("requirements", ()) or ():
            if rid not in catalog:
                if rid not in unknown:
                    unknown.append(rid)
                continue
            by_req.setdefault(rid, []).append(
                (str(entry.get("id", "?")), str(entry.get("verdict", "")), str(entry.get("reason", "")))
            )
    frameworks = []
    for fw in catalog.frameworks:
        gaps = []
        for req in catalog.in_framework(fw.id):
            hits = by_req.get(req.id, [])
            verdicts = [v for _, v, _ in hits]
            state = _state(verdicts, req)
            reasons = tuple(f"{cid}: {reason}" for cid, v, reason in hits if v == "fail")
            gaps.append(RequirementGap(req, state, tuple(cid for cid, _, _ in hits), reasons))
        frameworks.append(FrameworkGaps(fw.id, fw.name, tuple(gaps)))
    return GapReport(tuple(frameworks), tuple(unknown))
