"""results.json: shape, schema validation, and one-line errors for bad files."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import jsonschema
import pytest

from metercert.campaign import CampaignRun
from metercert.checks.base import Severity, TargetKind, Verdict
from metercert.errors import InputFileError
from metercert.report import load_results, results_document, results_schema, write_reports
from metercert.report.json import ResultsSchemaError, validate_results


def test_written_results_validate_against_the_published_schema(run: CampaignRun, tmp_path: Path) -> None:
    paths = write_reports(run, tmp_path, formats=["json"])
    doc = json.loads(paths["json"].read_text("utf-8"))
    jsonschema.Draft202012Validator.check_schema(results_schema())
    jsonschema.validate(doc, results_schema(), cls=jsonschema.Draft202012Validator)
    assert doc["schema"] == "metercert-results" and doc["schema_version"] == 1
    # the TLS check did not run for want of a target: not assessed, which is not "not applicable"
    assert doc["summary"] == {"pass": 2, "fail": 1, "inconclusive": 2, "not-applicable": 0,
                              "not-assessed": 1}
    assert doc["run"]["target"] == "reference meter tcp://127.0.0.1:40591 (wrapper)"
    assert doc["run"]["meter_profile"] == "replay-accepting"
    assert doc["run"]["duration_s"] == 95.4
    assert doc["run"]["started_at"] == "2026-11-25T12:00:00.000Z"
    assert doc["run"]["deselected"] == [{"id": "dlms.fw-signed", "reason": "excluded by --skip"}]
    replay = next(c for c in doc["checks"] if c["id"] == "dlms.ic-replay")
    assert replay["verdict"] == "fail" and replay["severity"] == "critical"
    assert replay["requirements"] == ["DLMS:IC-REPLAY", "EN303645:5.5-1"]
    assert replay["evidence"][0]["kind"] == "apdu-trace"
    assert "01234567" in replay["evidence"][0]["content"]
    assert set(replay) >= {"id", "title", "severity", "target", "requirements", "tags", "destructive",
                           "verdict", "reason", "duration_s", "evidence"}
    assert "gaps" in doc
    assert load_results(paths["json"]) == doc


def test_schema_enums_follow_the_check_api() -> None:
    defs = results_schema()["$defs"]
    assert set(defs["verdict"]["enum"]) == {v.value for v in Verdict} | {"not-assessed"}
    assert set(defs["severity"]["enum"]) == {s.value for s in Severity}
    assert set(defs["target_kind"]["enum"]) == {k.value for k in TargetKind}


def test_gaps_come_from_the_catalog_or_are_null_with_a_note(run: CampaignRun) -> None:
    doc = results_document(run)
    if importlib.util.find_spec("metercert.catalog.gaps") is None:
        assert doc["gaps"] is None
        assert any("gap analysis unavailable" in n for n in doc["run"]["notes"])
    else:
        assert isinstance(doc["gaps"], dict) and doc["run"]["notes"] == []
        assert "dlms.ic-replay" in json.dumps(doc["gaps"])  # the analysis saw this run's checks
    assert results_document(run, with_gaps=False)["gaps"] is None


@pytest.mark.parametrize(
    "mutate, needle",
    [
        (lambda d: d["checks"][0].update(verdict="passed"), "checks/0/verdict"),
        (lambda d: d.pop("summary"), "'summary' is a required property"),
        (lambda d: d["checks"][1]["evidence"][0].pop("source"), "checks/1/evidence/0"),
        (lambda d: d["checks"][0].update(requirements=["no-colon"]), "checks/0/requirements/0"),
        (lambda d: d["summary"].update({"pass": 7}), "does not match the verdicts"),
        (lambda d: d.update(schema_version=2), "version 2 is not supported"),
    ],
)
def test_bad_results_file_is_one_line_naming_the_problem(run: CampaignRun, tmp_path: Path,
                                                         mutate, needle: str) -> None:  # type: ignore[no-untyped-def]
    doc = results_document(run, with_gaps=False)
    mutate(doc)
    path = tmp_path / "results.json"
    path.write_text(json.dumps(doc), "utf-8")
    with pytest.raises(ResultsSchemaError) as info:
        load_results(path)
    message = str(info.value)
    assert needle in message and str(path) in message and "\n" not in message


def test_unreadable_results_files(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="no such results file"):
        load_results(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text('{\n  "schema": "metercert-results",\n  "checks": [,]\n}\n', "utf-8")
    with pytest.raises(InputFileError, match=r"broken.json:3:\d+: not valid JSON"):
        load_results(broken)
    with pytest.raises(InputFileError, match="is a directory"):
        load_results(tmp_path)


def test_an_invalid_document_is_never_written(run: CampaignRun, tmp_path: Path) -> None:
    doc = results_document(run, with_gaps=False)
    doc["checks"][0]["verdict"] = "maybe"
    from metercert.report.json import write_results_json

    with pytest.raises(ResultsSchemaError):
        write_results_json(doc, tmp_path / "results.json")
    assert not (tmp_path / "results.json").exists()
    validate_results(results_document(run, with_gaps=False))


def test_per_requirement_verdicts_reach_results_and_gaps(run: CampaignRun) -> None:
    """no-replay-check: the replay-after-power-cycle check fails IC-REPLAY while the meter's
    own counters rose; IC-UNIQUE must not be reported failed for it (issue item 6)."""
    import dataclasses

    from metercert.checks.base import CheckOutcome, CheckResult, Verdict

    from .conftest import spec

    persist = spec("DLMS-IC-PERSIST-01", TargetKind.DLMS, ["DLMS:IC-PERSIST", "DLMS:IC-UNIQUE"])
    outcome = CheckOutcome(Verdict.FAIL, "a request captured before the power cycle was served after it")
    result = CheckResult(persist, outcome.with_requirement_verdicts({"DLMS:IC-UNIQUE": Verdict.PASS}), 1.0)
    doc = results_document(dataclasses.replace(run, results=(*run.results, result)))
    entry = doc["checks"][-1]
    assert entry["verdict"] == "fail" and entry["requirement_verdicts"] == {"DLMS:IC-UNIQUE": "pass"}
    states = doc["gaps"]["frameworks"]["DLMS"]["requirements"]
    assert states["DLMS:IC-PERSIST"]["state"] == "failed" and states["DLMS:IC-UNIQUE"]["state"] == "passed"
