"""OSCAL exports: the catalog as an OSCAL catalog, a run as OSCAL assessment results.

Auditors and GRC tools ingest OSCAL (NIST's JSON models); we emit OSCAL 1.2.x
JSON that validates against NIST's complete schema. Requirement ids become
control ids by lower-casing and replacing ``:`` (not allowed in an OSCAL token)
with ``-``; the original id is kept as the control's ``label`` property.
UUIDs are derived (uuid5) from the content so the same input gives the same
document, which keeps exports diffable.

A run is exported as three documents that reference each other by file name
(they are written side by side): the catalog (``oscal-catalog.json``), the
assessment plan (``assessment-plan.json``: which controls the campaign assesses
with which checks, and the device under test) and the assessment results
(``assessment-results.json``: one observation per check, one finding per
requirement, whose target is the requirement's assessment objective
``<control>_obj`` in the catalog). Every reference is resolvable:
:func:`unresolved_references` lists any that is not.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Mapping
from typing import Any

from metercert import __version__
from metercert.catalog.load import load_catalog
from metercert.catalog.model import Catalog

OSCAL_VERSION = "1.2.3"
NS = "urn:metercert:oscal"
_UUID_NS = uuid.UUID("5d1f3c8e-8a52-4b8e-9f0e-6d3c2a1b7e40")
_STATE = {"pass": ("satisfied", "pass"), "fail": ("not-satisfied", "fail")}
CATALOG_FILE = "oscal-catalog.json"
PLAN_FILE = "assessment-plan.json"
RESULTS_FILE = "assessment-results.json"


def objective_id(requirement_id: str) -> str:
    """Id of the requirement's assessment-objective part in the OSCAL catalog."""
    return control_id(requirement_id) + "_obj"


def control_id(requirement_id: str) -> str:
    """OSCAL token for a requirement id (``DLMS:IC-REPLAY`` -> ``dlms-ic-replay``)."""
    token = re.sub(r"[^A-Za-z0-9._-]", "-", requirement_id.replace(":", "-")).lower()
    return token if token[:1].isalpha() else f"r-{token}"


def _truncate(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters with a marker saying how much is missing."""
    if len(text) <= limit:
        return text
    return text[:limit] + (f"\n[... evidence truncated: {len(text) - limit} of {len(text)} characters "
                           "not shown; full text in results.json]")


def _uuid(*parts: object) -> str:
    return str(uuid.uuid5(_UUID_NS, "|".join(map(str, parts))))


def _timestamp(value: object | None) -> str:
    """An OSCAL date-time (timezone required); naive times are taken as UTC."""
    moment: dt.datetime | None = None
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, str) and value:
        try:
            moment = dt.datetime.fromisoformat(value)
        except ValueError:
            moment = None
    if moment is None:
        moment = dt.datetime.now(dt.UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _prop(name: str, value: str) -> dict[str, str]:
    return {"name": name, "ns": NS, "value": value or "-"}


def _metadata(title: str, last_modified: str) -> dict[str, Any]:
    return {
        "title": title,
        "last-modified": last_modified,
        "version": __version__,
        "oscal-version": OSCAL_VERSION,
    }


def catalog_to_oscal(catalog: Catalog, *, last_modified: str | None = None) -> dict[str, Any]:
    """The requirement catalog as an OSCAL catalog: one group per framework."""
    groups = []
    for fw in catalog.frameworks:
        controls = []
        for req in catalog.in_framework(fw.id):
            props = [{"name": "label", "value": req.id}, _prop("requirement-status", req.status)]
            props += [_prop("evidence", e) for e in req.evidence]
            props += [_prop("threat", t) for t in req.threats]
            if req.verify:
                props.append(_prop("to-verify", "true"))
            cid = control_id(req.id)
            controls.append(
                {
                    "id": cid,
                    "title": req.title,
                    "props": props,
                    "parts": [
                        {"id": f"{cid}_smt", "name": "statement", "prose": req.title},
                        {"id": f"{cid}_obj", "name": "assessment-objective",
                         "prose": f"The evidence shows that this holds: {req.title}"},
                    ],
                }
            )
        groups.append({"id": control_id(fw.id), "title": fw.name, "controls": controls})
    return {
        "catalog": {
            "uuid": _uuid("catalog", __version__, len(catalog.requirements)),
            "metadata": _metadata(
                "metercert cross-framework smart-meter security requirements",
                last_modified or _timestamp(None),
            ),
            "groups": groups,
        }
    }


def _seed(results: Mapping[str, Any]) -> tuple[str, str, str, str]:
    run = results.get("run", {}) or {}
    start = _timestamp(run.get("started_at"))
    end = _timestamp(run.get("finished_at") or run.get("started_at"))
    return start, end, str(run.get("target", "")), str(run.get("started_at", ""))


def _cited(results: Mapping[str, Any], cat: Catalog) -> list[str]:
    """Catalog requirement ids the run's checks (run or left out) cite, in catalog order."""
    ids = {str(r) for e in results.get("checks", []) or [] for r in e.get("requirements", []) or []}
    ids |= {str(r) for d in (results.get("run", {}) or {}).get("deselected", []) or []
            for r in d.get("requirements", []) or []}
    resolved = {rid for cited in ids for rid in cat.resolve(cited)}
    return [r.id for r in cat.requirements if r.id in resolved]


def assessment_plan(results: Mapping[str, Any], catalog: Catalog | None = None) -> dict[str, Any]:
    """The OSCAL assessment plan the run carried out: controls in scope, checks as tasks.

    metercert has no system security plan; ``import-ssp`` points at a back-matter
    resource describing the device under test, and a second resource points at
    the OSCAL catalog written beside this file, where every control id resolves.
    """
    cat = catalog or load_catalog()
    start, _end, target, _ = _seed(results)
    seed = (start, target)
    run = results.get("run", {}) or {}
    tool = results.get("tool", {}) or {}
    dut_uuid = _uuid("plan-dut", *seed)
    catalog_uuid = _uuid("plan-catalog", *seed)
    cited = _cited(results, cat)
    tasks = []
    for entry in results.get("checks", []) or []:
        cid = str(entry.get("id", "?"))
        tasks.append({
            "uuid": _uuid("task", *seed, cid),
            "type": "action",
            "title": f"{cid}: {entry.get('title', cid)}",
            "props": [_prop("check-id", cid), _prop("target-kind", str(entry.get("target", "")))],
        })
    plan: dict[str, Any] = {
        "uuid": _uuid("assessment-plan", *seed),
        "metadata": _metadata(
            f"metercert assessment plan ({tool.get('name', 'metercert')} {tool.get('version', __version__)})",
            start,
        ),
        "import-ssp": {"href": f"#{dut_uuid}"},
        "reviewed-controls": {
            "control-selections": [
                {"include-controls": [{"control-id": control_id(r)} for r in cited]}
                if cited else {"include-all": {}}
            ],
            "control-objective-selections": [
                {"include-objectives": [{"objective-id": objective_id(r)} for r in cited]}
                if cited else {"include-all": {}}
            ],
        },
        "assessment-subjects": [{"type": "component", "include-all": {}}],
        "back-matter": {
            "resources": [
                {
                    "uuid": dut_uuid,
                    "title": f"Device under test: {target or 'unnamed target'}",
                    "description": "metercert assesses a device, not an information system: there "
                    "is no system security plan. Targets: "
                    + ("; ".join(f"{k}: {v}" for k, v in (run.get("targets") or {}).items()) or target or "-"),
                },
                {
                    "uuid": catalog_uuid,
                    "title": "metercert requirement catalog (OSCAL)",
                    "rlinks": [{"href": CATALOG_FILE, "media-type": "application/oscal.catalog+json"}],
                },
            ]
        },
    }
    if tasks:
        plan["tasks"] = tasks
    return {"assessment-plan": plan}


def assessment_results(
    results: Mapping[str, Any], catalog: Catalog | None = None, *, plan_href: str = PLAN_FILE
) -> dict[str, Any]:
    """OSCAL assessment results from a results.json dict.

    One observation per check (its verdict, reason and evidence), one finding per
    catalog requirement a check cites, with metercert's state (passed, failed,
    inconclusive, not-assessed) as a property; a requirement that only
    not-applicable checks cite gets no finding (it is out of scope, recorded as a
    ``not-applicable-control`` property of the result). ``import-ap`` names the
    plan written beside it (:func:`assessment_plan`).
    """
    cat = catalog or load_catalog()
    start, end, target, _ = _seed(results)
    run = results.get("run", {}) or {}
    seed = (start, target)
    observations = []
    obs_for_req: dict[str, list[tuple[str, str]]] = {}
    for entry in results.get("checks", []) or []:
        check_id = str(entry.get("id", "?"))
        verdict = str(entry.get("verdict", ""))
        obs_uuid = _uuid("observation", *seed, check_id)
        evidence = [
            {
                "description": _truncate(
                    f"{ev.get('label', 'evidence')}: {ev.get('content', '')}", 4000) or "evidence",
                "props": [_prop("evidence-kind", str(ev.get("kind", "text"))),
                          _prop("source", str(ev.get("source", "")))],
            }
            for ev in entry.get("evidence", []) or []
        ]
        obs: dict[str, Any] = {
            "uuid": obs_uuid,
            "title": f"{check_id}: {entry.get('title', check_id)}",
            "description": str(entry.get("reason", "")) or verdict or "no reason recorded",
            "props": [
                _prop("check-id", check_id),
                _prop("verdict", verdict),
                _prop("severity", str(entry.get("severity", ""))),
                _prop("target-kind", str(entry.get("target", ""))),
            ],
            "methods": ["TEST"],
            "collected": end,
        }
        if evidence:
            obs["relevant-evidence"] = evidence
        observations.append(obs)
        per = entry.get("requirement_verdicts") or {}
        for cited in entry.get("requirements", []) or []:
            for rid in cat.resolve(str(cited)):
                obs_for_req.setdefault(rid, []).append((obs_uuid, str(per.get(cited, verdict))))

    for review in results.get("reviews", []) or []:
        rid = str(review.get("requirement", ""))
        obs_uuid = _uuid("review", *seed, rid, review.get("reviewer", ""), review.get("date", ""))
        observations.append({
            "uuid": obs_uuid,
            "title": f"Manual review of {rid} by {review.get('reviewer', '?')}",
            "description": str(review.get("note", "")) or f"reviewer's verdict: {review.get('verdict')}",
            "props": [_prop("verdict", str(review.get("verdict", ""))),
                      _prop("reviewer", str(review.get("reviewer", ""))),
                      _prop("review-date", str(review.get("date", "")))],
            "methods": ["EXAMINE"],
            "collected": end,
        })
        for resolved in cat.resolve(rid):
            obs_for_req.setdefault(resolved, []).append((obs_uuid, str(review.get("verdict", ""))))

    findings = []
    reviewed = []
    out_of_scope = []
    for rid in [r.id for r in cat.requirements if r.id in obs_for_req]:
        items = obs_for_req[rid]
        verdicts = [v for _, v in items]
        if "meter" not in cat.get(rid).applies_to:
            out_of_scope.append(control_id(rid))  # a gateway requirement; this is a meter
            continue
        if "fail" in verdicts:
            (state, reason), ours = _STATE["fail"], "failed"
        elif "pass" in verdicts:
            (state, reason), ours = _STATE["pass"], "passed"
        elif "inconclusive" in verdicts:
            state, reason, ours = "not-satisfied", "other", "inconclusive"
        elif "not-assessed" in verdicts:
            state, reason, ours = "not-satisfied", "other", "not-assessed"
        else:
            out_of_scope.append(control_id(rid))  # does not apply to this product
            continue
        req = cat.get(rid)
        cid = control_id(rid)
        reviewed.append({"control-id": cid})
        findings.append(
            {
                "uuid": _uuid("finding", *seed, rid),
                "title": f"{rid}: {req.title}",
                "description": f"{len(items)} check(s): " + ", ".join(sorted(set(verdicts))),
                "props": [{"name": "label", "value": rid}, _prop("assessment-state", ours)],
                "target": {
                    "type": "objective-id",
                    "target-id": objective_id(rid),
                    "status": {"state": state, "reason": reason},
                },
                "related-observations": [{"observation-uuid": u} for u, _ in items],
            }
        )
    result: dict[str, Any] = {
        "uuid": _uuid("result", *seed),
        "title": f"metercert run against {run.get('target') or 'unnamed target'}",
        "description": "Automated checks run by metercert; one observation per check, "
        "one finding per catalog requirement the checks evidence.",
        "start": start,
        "end": end,
        "reviewed-controls": {
            "control-selections": [{"include-controls": reviewed} if reviewed else {"include-all": {}}]
        },
    }
    if out_of_scope:
        result["props"] = [_prop("not-applicable-control", c) for c in out_of_scope]
    if observations:
        result["observations"] = observations
    if findings:
        result["findings"] = findings
    tool = results.get("tool", {}) or {}
    return {
        "assessment-results": {
            "uuid": _uuid("assessment-results", *seed),
            "metadata": _metadata(
                f"metercert assessment results ({tool.get('name', 'metercert')} {tool.get('version', __version__)})",
                end,
            ),
            "import-ap": {"href": plan_href},
            "results": [result],
        }
    }


def _walk(value: Any, key: str) -> list[Any]:
    """Every value stored under ``key`` anywhere in ``value``."""
    found: list[Any] = []
    if isinstance(value, Mapping):
        for k, v in value.items():
            if k == key:
                found.append(v)
            found.extend(_walk(v, key))
    elif isinstance(value, list):
        for item in value:
            found.extend(_walk(item, key))
    return found


def unresolved_references(
    catalog_doc: Mapping[str, Any], plan_doc: Mapping[str, Any], results_doc: Mapping[str, Any]
) -> list[str]:
    """References among the three exported documents that do not resolve (empty: all do).

    Checked: results ``import-ap`` names the plan file; the plan's ``import-ssp``
    and back-matter point at its own resources and at the catalog file; every
    control id and objective id in plan and results exists in the catalog;
    every related observation exists in its result.
    """
    problems: list[str] = []
    controls = {c["id"] for c in _walk(catalog_doc, "controls") for c in c}
    parts = {p["id"] for ps in _walk(catalog_doc, "parts") for p in ps if "id" in p}
    plan = plan_doc.get("assessment-plan", {})
    resources = {r["uuid"]: r for r in plan.get("back-matter", {}).get("resources", [])}
    href = str(plan.get("import-ssp", {}).get("href", ""))
    if not (href.startswith("#") and href[1:] in resources):
        problems.append(f"plan import-ssp {href!r} names no back-matter resource")
    links = [link.get("href") for r in resources.values() for link in r.get("rlinks", [])]
    if CATALOG_FILE not in links:
        problems.append(f"plan back-matter does not link the catalog {CATALOG_FILE}")
    for doc_name, doc in (("plan", plan_doc), ("results", results_doc)):
        for cid in _walk(doc, "control-id"):
            if cid not in controls:
                problems.append(f"{doc_name}: control {cid!r} is not in the catalog")
        for oid in _walk(doc, "objective-id"):
            if oid not in parts:
                problems.append(f"{doc_name}: objective {oid!r} is not in the catalog")
    ar = results_doc.get("assessment-results", {})
    if ar.get("import-ap", {}).get("href") != PLAN_FILE:
        problems.append(f"results import-ap {ar.get('import-ap')!r} does not name {PLAN_FILE}")
    for result in ar.get("results", []):
        observations = {o["uuid"] for o in result.get("observations", [])}
        for finding in result.get("findings", []):
            target = finding.get("target", {})
            if target.get("type") == "objective-id" and target.get("target-id") not in parts:
                problems.append(f"finding target {target.get('target-id')!r} is not a catalog objective")
            for rel in finding.get("related-observations", []):
                if rel.get("observation-uuid") not in observations:
                    problems.append(f"finding {finding.get('title')!r}: unknown observation")
    return problems
