"""Gap analysis: what a run's check results mean per framework.

Each requirement gets one state from the checks that cite it:

- ``failed``: at least one citing check failed;
- ``passed``: at least one passed and none failed;
- ``inconclusive``: checks ran but none could decide;
- ``not-applicable``: every citing check found it does not apply to this product;
- ``not-assessed``: a check would evidence it but did not run in this run (its
  target was missing, or it was deselected: ``--only``/``--skip``/no-destructive);
- ``untested``: no check cites it, although automated evidence is possible;
- ``document-review``: no check cites it and only a person reading documents
  can evidence it.

"Not applicable to this product" and "not assessed in this run" are different
facts: only the first leaves a requirement out of readiness. Readiness is
passed / (all requirements but not-applicable), as a percentage, and ``None``
when nothing applies; it is deliberately strict, because an unassessed
requirement is not evidence an auditor accepts. The to-do list names the next
step for every requirement that is not passed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from metercert.catalog.model import Catalog, Requirement

STATES = (
    "passed", "failed", "inconclusive", "not-applicable", "not-assessed", "untested", "document-review",
)
_TARGET_HINT = {
    "dlms": "add a DLMS meter target (metercert test tcp://HOST:PORT --keys FILE)",
    "tls": "add a TLS endpoint target (certify without --no-tls, or test --tls HOST:PORT)",
    "dossier": "supply the device dossier (--dossier DOSSIER.yaml)",
    "traffic": "supply captured traffic",
    "headend": "run the client checks (metercert headend --client-cmd CMD, docs/headend.md)",
}
#: The kind of product metercert certifies.
PRODUCT = "meter"
_NO_TARGET = re.compile(r"^no (\w+) target configured")


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
            return "rerun or complete the inputs of " + ", ".join(self.checks) + (
                " (" + "; ".join(self.reasons[:2]) + ")" if self.reasons else ""
            )
        if self.state == "not-assessed":
            return "; ".join(dict.fromkeys(_not_assessed_step(r) for r in self.reasons)) or (
                "run " + ", ".join(self.checks)
            )
        if self.state == "untested":
            return ("no automated check covers it: manual review against the "
                    + " / ".join(self.requirement.evidence) + " evidence, recorded in the dossier's reviews")
        if self.state == "document-review":
            return "supply the document and record a manual review of it in the dossier's reviews"
        return ""


def _not_assessed_step(reason: str) -> str:
    """The step that would have let a check run, from the reason it did not."""
    cid, _, why = reason.partition(": ")
    match = _NO_TARGET.match(why)
    if match:
        return _TARGET_HINT.get(match.group(1), f"add a {match.group(1)} target")
    if "destructive" in why:
        return f"drop --no-destructive (to run {cid})"
    if "--only" in why or "--skip" in why:
        return f"include {cid} (it was left out by --only/--skip)"
    return f"run {cid} ({why})" if why else f"run {cid}"


@dataclass(frozen=True)
class FrameworkGaps:
    framework: str
    name: str
    requirements: tuple[RequirementGap, ...]

    def count(self, state: str) -> int:
        return sum(1 for r in self.requirements if r.state == state)

    @property
    def applicable(self) -> int:
        return len(self.requirements) - self.count("not-applicable")

    @property
    def readiness(self) -> float | None:
        """Passed share of the applicable requirements; None when none applies."""
        applicable = self.applicable
        return round(100.0 * self.count("passed") / applicable, 1) if applicable else None

    @property
    def todo(self) -> tuple[RequirementGap, ...]:
        order = {"failed": 0, "inconclusive": 1, "not-assessed": 2, "untested": 3, "document-review": 4}
        pending = [r for r in self.requirements if r.state in order]
        return tuple(sorted(pending, key=lambda r: (order[r.state], r.requirement.status != "mandatory")))

    def to_dict(self) -> dict[str, Any]:
        return {
            "framework": self.framework,
            "name": self.name,
            "counts": {state: self.count(state) for state in STATES},
            "total": len(self.requirements),
            "applicable": self.applicable,
            "readiness_pct": self.readiness,
            "requirements": {
                r.requirement.id: {"state": r.state, "checks": list(r.checks), "title": r.requirement.title}
                for r in self.requirements
            },
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
    if PRODUCT not in req.applies_to:
        return "not-applicable"  # e.g. a smart meter gateway requirement, and this is a meter
    if "fail" in verdicts:
        return "failed"
    if "pass" in verdicts:
        return "passed"
    if "inconclusive" in verdicts:
        return "inconclusive"
    if "not-assessed" in verdicts:
        return "not-assessed"
    if verdicts:
        return "not-applicable"
    return "document-review" if req.document_review_only else "untested"


def analyse(
    checks: Iterable[Mapping[str, Any]],
    catalog: Catalog,
    deselected: Iterable[Mapping[str, Any]] = (),
    reviews: Iterable[Mapping[str, Any]] = (),
) -> GapReport:
    """Per-framework requirement states from results.json check entries.

    Each mapping needs ``id``, ``requirements`` and ``verdict``; ``reason`` is used
    in the to-do list when present. ``deselected`` are results.json
    ``run.deselected`` entries carrying ``requirements``: checks left out of the
    run, whose requirements are therefore not assessed (not "not applicable").
    ``reviews`` are manual review records (``requirement``, ``verdict`` pass/fail,
    ``reviewer``, ``date``, ``note``): they decide a requirement only where no check
    does (untested or document-review), and say so in its checks ("review: NAME").
    """
    reviewed: dict[str, list[Mapping[str, Any]]] = {}
    for review in reviews:
        reviewed.setdefault(str(review.get("requirement", "")), []).append(review)
    by_req: dict[str, list[tuple[str, str, str]]] = {}
    unknown: list[str] = []
    left_out = [
        {"id": d.get("id", "?"), "requirements": d.get("requirements") or (), "verdict": "not-assessed",
         "reason": d.get("reason", "")}
        for d in deselected
    ]
    for entry in [*checks, *left_out]:
        for cited in entry.get("requirements", ()) or ():
            ids = catalog.resolve(cited)
            if not ids:
                if cited not in unknown:
                    unknown.append(cited)
                continue
            verdict = (entry.get("requirement_verdicts") or {}).get(cited, entry.get("verdict", ""))
            for rid in ids:
                by_req.setdefault(rid, []).append(
                    (str(entry.get("id", "?")), str(verdict), str(entry.get("reason", "")))
                )
    frameworks = []
    for fw in catalog.frameworks:
        gaps = []
        for req in catalog.in_framework(fw.id):
            hits = by_req.get(req.id, [])
            verdicts = [v for _, v, _ in hits]
            state = _state(verdicts, req)
            if state in ("untested", "document-review") and req.id in reviewed:
                records = reviewed[req.id]
                verdicts_given = {r.get("verdict") for r in records}
                if "fail" in verdicts_given:
                    state = "failed"
                elif "pass" in verdicts_given:
                    state = "passed"
                else:  # a reviewer found the provision's condition does not hold
                    state = "not-applicable"
                who = tuple(f"review: {r.get('reviewer', '?')} {r.get('date', '')}".strip() for r in records)
                notes = tuple(f"{w}: {r.get('note', '')}" for w, r in zip(who, records, strict=True)
                              if r.get("verdict") == "fail")
                gaps.append(RequirementGap(req, state, who, notes))
                continue
            wanted = {"failed": "fail", "inconclusive": "inconclusive", "not-assessed": "not-assessed"}
            reasons = tuple(f"{cid}: {reason}" for cid, v, reason in hits if v == wanted.get(state))
            gaps.append(RequirementGap(req, state, tuple(cid for cid, _, _ in hits), reasons))
        name = f"{fw.name} (V{fw.version})" if fw.version else fw.name
        frameworks.append(FrameworkGaps(fw.id, name, tuple(gaps)))
    return GapReport(tuple(frameworks), tuple(unknown))


#: gap state -> TS 103 701 style verdict of the ICS export
_ICS_VERDICT = {
    "passed": "PASS", "failed": "FAIL", "inconclusive": "INCONCLUSIVE",
    "not-applicable": "NOT APPLICABLE", "not-assessed": "NOT ASSESSED",
    "untested": "NO VERDICT", "document-review": "NO VERDICT",
}
ICS_COLUMNS = ("provision", "title", "status", "condition", "verdict", "evidence", "ixit")


def ics_rows(report: GapReport, framework: str = "EN303645") -> list[dict[str, str]]:
    """An implementation conformance statement in the shape ETSI TS 103 701 uses for
    EN 303 645: one row per provision with its status (M, R, M C, R C), condition,
    verdict and the evidence it rests on; ``ixit`` carries the open step for the
    implementation extra information the assessor still needs."""
    rows = []
    for gap in report.framework(framework).requirements:
        req = gap.requirement
        status = ("M" if req.status == "mandatory" else "R") + (" C" if req.condition else "")
        rows.append({
            "provision": req.id.split(":", 1)[1],
            "title": req.title,
            "status": status,
            "condition": req.condition,
            "verdict": _ICS_VERDICT.get(gap.state, gap.state.upper()),
            "evidence": "; ".join(gap.checks),
            "ixit": gap.action,
        })
    return rows
