"""results.json: the machine-readable record of a run, and the input of every other report.

The HTML, JUnit and OSCAL renderers all read this document (not the live run),
so ``metercert report results.json`` reproduces exactly what the run wrote. Its
shape is pinned by ``schema/results.schema.json`` (schema version 1); every
document is validated before it is written and after it is read.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jsonschema

from metercert import __version__
from metercert.checks.base import CheckResult, Verdict
from metercert.errors import InputFileError

if TYPE_CHECKING:
    from metercert.campaign.runner import CampaignRun

log = logging.getLogger("metercert.report")

SCHEMA_NAME = "metercert-results"
SCHEMA_VERSION = 1
#: Verdicts a results document records. ``not-assessed`` is not a check verdict:
#: it marks a check that did not run because its target was missing, so that
#: "not applicable to this product" and "not assessed in this run" stay apart.
RESULT_VERDICTS = (*(v.value for v in Verdict), "not-assessed")
#: Evidence longer than this is cut in every rendering, with this marker.
EVIDENCE_MAX = 20_000
TRUNCATION_MARK = "\n[... evidence truncated: {cut} of {total} characters not shown; full text in results.json]"


def truncate_evidence(text: str, limit: int = EVIDENCE_MAX) -> str:
    """``text`` cut to ``limit`` characters with an explicit marker (never silently)."""
    if len(text) <= limit:
        return text
    return text[:limit] + TRUNCATION_MARK.format(cut=len(text) - limit, total=len(text))


class ResultsSchemaError(InputFileError):
    """A results document does not match the results schema."""


@cache
def results_schema() -> dict[str, Any]:
    """The JSON schema of results.json (package data)."""
    text = resources.files("metercert.report").joinpath("schema/results.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def _path_text(path: Any) -> str:
    parts = [str(p) for p in path]
    return "/".join(parts) if parts else "(top level)"


def validate_results(doc: Mapping[str, Any], source: str = "results") -> None:
    """Raise :class:`ResultsSchemaError` (one line) unless ``doc`` is a valid results document."""
    validator = jsonschema.Draft202012Validator(results_schema())
    error = jsonschema.exceptions.best_match(validator.iter_errors(doc))
    if error is not None:
        message = " ".join(error.message.split())
        if len(message) > 300:
            message = message[:299] + "\u2026"
        raise ResultsSchemaError(f"{source}: not a valid results document at {_path_text(error.absolute_path)}: {message}")
    counts = {v: 0 for v in RESULT_VERDICTS}
    for entry in doc["checks"]:
        counts[entry["verdict"]] += 1
    summary = {"not-assessed": 0, **dict(doc["summary"])}
    if summary != counts:
        raise ResultsSchemaError(
            f"{source}: summary {dict(doc['summary'])} does not match the verdicts of its checks {counts}"
        )


def check_entry(result: CheckResult, *, target_present: bool = True) -> dict[str, Any]:
    """One check's entry in results.json.

    With ``target_present=False`` a NOT-APPLICABLE outcome is recorded as
    ``not-assessed``: the runner could not run the check, which says nothing
    about whether the requirement applies to the product.
    """
    spec, outcome = result.spec, result.outcome
    verdict = outcome.verdict.value
    if not target_present and outcome.verdict is Verdict.NOT_APPLICABLE:
        verdict = "not-assessed"
    return {
        "id": spec.id,
        "title": spec.title,
        "severity": spec.severity.value,
        "target": spec.target.value,
        "requirements": list(spec.requirements),
        "tags": list(spec.tags),
        "destructive": spec.destructive,
        "verdict": verdict,
        "reason": outcome.reason,
        "duration_s": round(max(0.0, result.duration_s), 6),
        "started_at": result.started_at,
        "evidence": [
            {"label": e.label, "kind": e.kind, "content": e.content, "source": e.source}
            for e in outcome.evidence
        ],
        **_requirement_verdicts(outcome, spec.requirements, verdict),
    }


def _requirement_verdicts(outcome: Any, cited: tuple[str, ...], verdict: str) -> dict[str, Any]:
    """``requirement_verdicts`` when the check judged some cited requirement differently from
    its overall verdict (a check that fails one requirement need not fail all it cites)."""
    own = getattr(outcome, "requirement_verdicts", None) or {}
    if verdict == "not-assessed" or not own:
        return {}
    per = {rid: (v.value if isinstance(v, Verdict) else str(v)) for rid, v in own.items() if rid in cited}
    return {"requirement_verdicts": per} if per else {}


def requirement_verdict_of(entry: Mapping[str, Any], requirement_id: str) -> str:
    """The verdict ``entry`` (a results.json check) gives ``requirement_id``."""
    per = entry.get("requirement_verdicts") or {}
    return str(per.get(requirement_id, entry.get("verdict", "")))


def main_target(targets: Mapping[str, str]) -> str:
    """The run's headline target: the DLMS meter if there is one."""
    if "dlms" in targets:
        return targets["dlms"]
    if not targets:
        return "no target"
    return "; ".join(f"{kind}: {desc}" for kind, desc in targets.items())


def summary_of(checks: list[Mapping[str, Any]]) -> dict[str, int]:
    """Count per results verdict; every verdict is present, zero or not."""
    counts = {v: 0 for v in RESULT_VERDICTS}
    for entry in checks:
        counts[str(entry["verdict"])] += 1
    return counts


def deselected_entries(deselected: Any) -> list[dict[str, Any]]:
    """``run.deselected`` entries with the requirements each left-out check would cite."""
    try:
        from metercert.checks import all_checks

        specs = all_checks()
    except Exception:  # noqa: BLE001 - a broken check module must not cost the report
        specs = {}
    out = []
    for d in deselected:
        entry: dict[str, Any] = {"id": d.id, "reason": d.reason}
        spec = specs.get(d.id)
        if spec is not None:
            entry["requirements"] = list(spec.requirements)
        out.append(entry)
    return out


def gap_analysis(
    checks: list[dict[str, Any]], deselected: list[dict[str, Any]] | None = None,
    reviews: list[dict[str, Any]] | None = None,
) -> tuple[dict[str, Any] | None, str | None]:
    """The catalog's gap analysis for these check entries, or ``(None, why_not)``.

    The catalog is optional at this layer: a missing or failing catalog must not
    cost the user the rest of the report.
    """
    try:
        from metercert.catalog import gaps as catalog_gaps
    except ImportError:
        return None, "gap analysis unavailable: metercert.catalog.gaps is not installed"
    try:
        catalog = _load_catalog()
        report = catalog_gaps.analyse(checks, catalog, deselected or [], reviews or [])
        data = report.to_dict() if hasattr(report, "to_dict") else report
        if not isinstance(data, Mapping):
            return None, f"gap analysis unavailable: analyse() returned {type(data).__name__}"
        return json.loads(json.dumps(dict(data), default=str)), None
    except Exception as exc:  # the catalog is another layer's code; keep the report
        log.debug("gap analysis failed", exc_info=exc)
        return None, f"gap analysis failed: {type(exc).__name__}: {' '.join(str(exc).split())}"


def _load_catalog() -> Any:
    """Load the requirement catalog through whichever loader the catalog package offers."""
    import metercert.catalog as catalog_pkg

    for name in ("load_catalog", "load", "default_catalog", "get_catalog"):
        loader = getattr(catalog_pkg, name, None)
        if callable(loader):
            return loader()
    raise ImportError("metercert.catalog offers no catalog loader (load_catalog)")


#: Environment variables a lab sets once per bench so every report names lab and operator.
LAB_ENV, OPERATOR_ENV = "METERCERT_LAB", "METERCERT_OPERATOR"


def lab_context() -> dict[str, str]:
    """``lab``, ``operator`` (from the environment) and ``catalog_version`` for results.json."""
    out = {k: " ".join(os.environ[v].split()) for k, v in (("lab", LAB_ENV), ("operator", OPERATOR_ENV))
           if os.environ.get(v, "").strip()}
    try:
        from metercert.catalog.load import catalog_digest

        out["catalog_version"] = catalog_digest()
    except Exception as exc:
        log.debug("catalog digest unavailable", exc_info=exc)
    return out


def device_identity_of(run: Any) -> dict[str, Any]:
    """The device identity the run read from the meter, when the runner recorded one.

    Looked up as ``run.device_identity`` or ``run.target_info[kind]["device_identity"]``;
    values are made JSON-safe (bytes as hex). Reading it from the meter is the
    DLMS target's job, not the report's.
    """
    found = getattr(run, "device_identity", None)
    if not found:
        info = getattr(run, "target_info", None) or {}
        for kind in ("dlms", *info):
            item = info.get(kind) if isinstance(info, Mapping) else None
            if isinstance(item, Mapping) and item.get("device_identity"):
                found = item["device_identity"]
                break
    if not isinstance(found, Mapping):
        return {}
    return {str(k): (v.hex() if isinstance(v, (bytes, bytearray)) else v)
            for k, v in json.loads(json.dumps(dict(found), default=_json_safe)).items()}


def _json_safe(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    return str(value)


def results_document(run: CampaignRun, *, with_gaps: bool = True) -> dict[str, Any]:
    """The results.json document of ``run`` (validated)."""
    present = set(run.targets)
    checks = [check_entry(r, target_present=r.spec.target.value in present) for r in run.results]
    deselected = deselected_entries(run.deselected)
    reviews = [dict(r) for r in getattr(run, "reviews", ()) or ()]  # manual reviews, when the run has them
    notes = list(run.notes)
    gaps: dict[str, Any] | None = None
    if with_gaps:
        gaps, why_not = gap_analysis(checks, deselected, reviews)
        if why_not:
            notes.append(why_not)
    from metercert.campaign.runner import iso

    identity = device_identity_of(run)
    run_extra: dict[str, Any] = {"device_identity": identity} if identity else {}
    run_extra.update(lab_context())
    doc: dict[str, Any] = {
        "schema": SCHEMA_NAME,
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "metercert", "version": run.tool_version or __version__},
        "run": {
            "started_at": iso(run.started_at),
            "finished_at": iso(run.finished_at),
            "duration_s": round(run.duration_s, 3),
            "target": main_target(run.targets),
            "meter_profile": run.meter_profile,
            "targets": dict(run.targets),
            "deselected": deselected,
            "notes": notes,
            **run_extra,
        },
        "summary": summary_of(checks),
        "checks": checks,
        **({"reviews": reviews} if reviews else {}),
        "gaps": gaps,
    }
    validate_results(doc, "results document")
    return doc


def write_results_json(doc: Mapping[str, Any], path: Path) -> Path:
    """Validate and write ``doc``; UTF-8, stable key order, one trailing newline."""
    validate_results(doc, str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def load_results(path: str | Path) -> dict[str, Any]:
    """Read and validate a results.json; any problem is one :class:`InputFileError` line."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputFileError(f"{p}: no such results file") from None
    except IsADirectoryError:
        raise InputFileError(f"{p}: is a directory, expected a results.json file") from None
    except UnicodeDecodeError as exc:
        raise InputFileError(f"{p}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise InputFileError(f"{p}: cannot read: {exc.strerror or exc}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputFileError(f"{p}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}") from None
    except RecursionError:
        raise InputFileError(f"{p}: JSON nested too deeply") from None
    if not isinstance(doc, dict):
        raise ResultsSchemaError(f"{p}: not a results document (top level is {type(doc).__name__})")
    if doc.get("schema") == SCHEMA_NAME and doc.get("schema_version") not in (None, SCHEMA_VERSION):
        raise ResultsSchemaError(
            f"{p}: results schema version {doc.get('schema_version')!r} is not supported "
            f"(this metercert reads version {SCHEMA_VERSION})"
        )
    validate_results(doc, str(p))
    return doc
