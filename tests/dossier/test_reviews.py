"""Manual review records: a reviewer's verdict on a requirement no check covers makes the
report complete, and is shown as a person's verdict, never as tool evidence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from metercert.cli import main
from metercert.cli.dossier import assess_document
from metercert.errors import InputFileError
from metercert.report import render_documents

REVIEWS = """
reviews:
  - requirement: "CRA:I.1"
    verdict: pass
    reviewer: A. Assessor
    date: 2026-11-30
    note: risk assessment v3 read; covers the meter's interfaces
    documents: [docs/risk-assessment.pdf]
  - requirement: "CRA:II.8"
    verdict: fail
    reviewer: A. Assessor
    date: 2026-11-30
    note: updates are sold as a service contract
"""


def _with_reviews(reference: Path, text: str = REVIEWS) -> Path:
    (reference / "dossier.yaml").write_text((reference / "dossier.yaml").read_text() + text)
    return reference


def test_reviews_decide_requirements_no_check_covers(reference: Path):
    doc = assess_document(_with_reviews(reference))
    assert [r["requirement"] for r in doc["reviews"]] == ["CRA:I.1", "CRA:II.8"]
    cra = doc["gaps"]["frameworks"]["CRA"]["requirements"]
    assert cra["CRA:I.1"]["state"] == "passed" and cra["CRA:I.1"]["checks"] == ["review: A. Assessor 2026-11-30"]
    assert cra["CRA:II.8"]["state"] == "failed"
    todo = {t["requirement"]: t for t in doc["gaps"]["frameworks"]["CRA"]["todo"]}
    assert "service contract" in todo["CRA:II.8"]["action"]


def test_a_review_does_not_override_a_check(reference: Path):
    text = REVIEWS + """  - requirement: "CRA:II.1"
    verdict: fail
    reviewer: B. Other
    date: 2026-11-30
"""
    doc = assess_document(_with_reviews(reference, text))
    assert doc["gaps"]["frameworks"]["CRA"]["requirements"]["CRA:II.1"]["state"] == "passed"  # SBOM check


def test_reviews_reach_html_and_oscal(reference: Path, tmp_path: Path):
    doc = assess_document(_with_reviews(reference))
    out = render_documents(doc, tmp_path, ["json", "html", "oscal"])
    html = out["html"].read_text()
    section = html[html.index('<section id="reviews"'):]
    assert "A. Assessor" in section and "service contract" in section
    results = json.loads(out["oscal"].read_text())["assessment-results"]["results"][0]
    methods = [o["methods"] for o in results["observations"] if o["title"].startswith("Manual review")]
    assert methods == [["EXAMINE"], ["EXAMINE"]]
    assert main(["gaps", str(out["json"]), "--json"]) == 0


def test_unknown_requirement_in_a_review_is_one_line_error(reference: Path, capsys):
    _with_reviews(reference, REVIEWS.replace("CRA:I.1", "CRA:NOPE"))
    with pytest.raises(InputFileError, match="unknown requirement"):
        assess_document(reference)
    assert main(["dossier", "assess", str(reference)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
