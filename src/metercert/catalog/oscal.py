"""OSCAL exports: the catalog as an OSCAL catalog, a run as OSCAL assessment results.

Auditors and GRC tools ingest OSCAL (NIST's JSON models); we emit OSCAL 1.2.x
JSON that validates against NIST's complete schema. Requirement ids become
control ids by lower-casing and replacing ``:`` (not allowed in an OSCAL token)
with ``-``; the original id is kept as the control's ``label`` property.
UUIDs are derived (uuid5) from the content so the same input gives the same
document, which keeps exports diffable.
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


def control_id(requirement_id: str) -> str:
    """OSCAL token for a requirement id (``DLMS:IC-REPLAY`` -> ``dlms-ic-replay``)."""
    token = re.sub(r"[^A-Za-z0-9._-]", "-", requirement_id.replace(":", "-")).lower()
    return token if token[:1].isalpha() else f"r-{token}"


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
                    "parts": [{"id": f"{cid}_smt", "name": "statement", "prose": req.title}],
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


def assessment_results(results: Mapping[str, Any], catalog: Catalog | None = None) -> dict[str, Any]:
    """OSCAL assessment results from a results.json dict.

    One observation per check (its verdict, reason and evidence), one finding per
    catalog requirement that a passing, failing or inconclusive check cites.
    """
    cat = catalog or load_catalog()
    run = results.get("run", {}) or {}
    start = _timestamp(run.get("started_at"))
    end = _timestamp(run.get("finished_at") or run.get("started_at"))
    seed = (start, str(run.get("target", "")))
    observations = []
    obs_for_req: dict[str, list[tuple[str, str]]] = {}
    for entry in results.get("checks", []) or []:
        check_id = str(entry.get("id", "?"))
        verdict = str(entry.get("verdict", ""))
        obs_uuid = _uuid("observation", *seed, check_id)
        evidence = [
            {
                "description": f"{ev.get('label', 'evidence')}: {ev.get('content', '')}"[:4000] or "evidence",
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
        for rid in entry.get("requirements", []) or []:
            obs_for_req.setdefault(str(rid), []).append((obs_uuid, verdict))

    findings = []
    reviewed = []
    for rid, items in obs_for_req.items():
        if rid not in cat:
            continue
        verdicts = [v for _, v in items]
        if "fail" in verdicts:
            state, reason = _STATE["fail"]
        elif "pass" in verdicts:
            state, reason = _STATE["pass"]
        elif "inconclusive" in verdicts:
            state, reason = "not-satisfied", "other"
        else:
            continue  # only not-applicable checks: nothing was assessed
        req = cat.get(rid)
        cid = control_id(rid)
        reviewed.append({"control-id": cid})
        findings.append(
            {
                "uuid": _uuid("finding", *seed, rid),
                "title": f"{rid}: {req.title}",
                "description": f"{len(items)} check(s): " + ", ".join(sorted(set(verdicts))),
                "props": [{"name": "label", "value": rid}],
                "target": {
                    "type": "objective-id",
                    "target-id": cid,
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
            "import-ap": {"href": "#metercert-campaign"},
            "results": [result],
        }
    }
