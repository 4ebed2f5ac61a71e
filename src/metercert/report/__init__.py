"""Reports of a campaign run: results.json (the record), HTML, JUnit XML, OSCAL.

results.json is written first and every other format is rendered from that
document, so ``metercert report results.json`` re-creates any of them later.
"""

from __future__ import annotations

import json as _json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from metercert.errors import UsageError
from metercert.report.html import render_html, write_html
from metercert.report.json import (
    ResultsSchemaError,
    load_results,
    results_document,
    results_schema,
    validate_results,
    write_results_json,
)
from metercert.report.junit import junit_tree, write_junit

if TYPE_CHECKING:
    from metercert.campaign.runner import CampaignRun

__all__ = [
    "FORMATS",
    "ResultsSchemaError",
    "junit_tree",
    "load_results",
    "render_documents",
    "render_html",
    "results_document",
    "results_schema",
    "validate_results",
    "write_reports",
]

#: Format name -> file name inside the output directory.
FORMATS: dict[str, str] = {
    "json": "results.json",
    "html": "report.html",
    "junit": "junit.xml",
    "oscal": "assessment-results.json",
}


class OscalUnavailable(UsageError):
    """OSCAL output was asked for but the catalog's OSCAL exporter is not installed."""


def oscal_assessment_results(doc: Mapping[str, Any]) -> dict[str, Any]:
    """OSCAL assessment-results JSON via the catalog package (which owns the mapping)."""
    try:
        from metercert.catalog import oscal
    except ImportError:
        raise OscalUnavailable("OSCAL output needs metercert.catalog.oscal, which is not installed") from None
    exporter = getattr(oscal, "assessment_results", None)
    if not callable(exporter):
        raise OscalUnavailable("metercert.catalog.oscal has no assessment_results() exporter")
    result: dict[str, Any] = exporter(doc)
    return result


def oscal_companions(doc: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """File name -> OSCAL document that the assessment results reference (plan, catalog)."""
    from metercert.catalog import load_catalog, oscal

    catalog = load_catalog()
    return {
        oscal.PLAN_FILE: oscal.assessment_plan(doc, catalog),
        oscal.CATALOG_FILE: oscal.catalog_to_oscal(catalog, last_modified=oscal.assessment_plan(
            doc, catalog)["assessment-plan"]["metadata"]["last-modified"]),
    }


def render_documents(doc: Mapping[str, Any], out_dir: Path, formats: Iterable[str]) -> dict[str, Path]:
    """Write ``formats`` of the results document ``doc`` into ``out_dir``."""
    wanted = list(dict.fromkeys(formats))
    unknown = [f for f in wanted if f not in FORMATS]
    if unknown:
        raise UsageError(f"unknown report format(s) {', '.join(unknown)} (known: {', '.join(FORMATS)})")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"{out_dir}: exists and is not a directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for fmt in wanted:
        path = out_dir / FORMATS[fmt]
        if fmt == "json":
            written[fmt] = write_results_json(doc, path)
        elif fmt == "html":
            written[fmt] = write_html(doc, path)
        elif fmt == "junit":
            written[fmt] = write_junit(doc, path)
        elif fmt == "oscal":
            data = oscal_assessment_results(doc)
            path.write_text(_json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
            written[fmt] = path
            for name, extra in oscal_companions(doc).items():
                (out_dir / name).write_text(_json.dumps(extra, indent=2, ensure_ascii=False) + "\n",
                                            encoding="utf-8")
                written[f"oscal-{name.split('.')[0]}"] = out_dir / name
    return written


def write_reports(
    run: CampaignRun,
    out_dir: Path,
    *,
    formats: Iterable[str] = ("html", "json", "junit"),
) -> dict[str, Path]:
    """Write the reports of ``run`` into ``out_dir``; returns format -> path.

    The gap analysis of the catalog (when installed) is computed once here and
    stored under ``gaps`` in results.json and the HTML.
    """
    doc = results_document(run)
    return render_documents(doc, Path(out_dir), formats)
