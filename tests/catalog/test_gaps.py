"""Gap analysis per framework from results.json check entries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from metercert.catalog import load_catalog
from metercert.catalog.gaps import analyse
from metercert.cli import main


def _entry(cid: str, verdict: str, *reqs: str, reason: str = "") -> dict:
    return {"id": cid, "requirements": list(reqs), "verdict": verdict, "reason": reason or verdict}


def test_states_readiness_and_todo():
    catalog = load_catalog()
    report = analyse(
        [
            _entry("A", "pass", "IEC62351-8:RBAC-ENFORCE", "IEC62351-8:OPERATOR-CONTROL"),
            _entry("B", "fail", "IEC62351-8:OPERATOR-CONTROL", reason="VIEWER disconnected the meter"),
            _entry("C", "inconclusive", "IEC62351-8:SECADM-SECURITY"),
            _entry("D", "not-applicable", "IEC62351-8:READ-ONLY-ROLES"),
            _entry("E", "pass", "NOT:IN-CATALOG"),
        ],
        catalog,
    )
    fw = report.framework("IEC62351-8")
    states = {g.requirement.id: g.state for g in fw.requirements}
    assert states == {
        "IEC62351-8:RBAC-ENFORCE": "passed",
        "IEC62351-8:OPERATOR-CONTROL": "failed",  # a failure outweighs a pass
        "IEC62351-8:SECADM-SECURITY": "inconclusive",
        "IEC62351-8:READ-ONLY-ROLES": "not-applicable",
        "IEC62351-8:SECAUD-LOG": "untested",
        "IEC62351-8:CREDENTIALS": "untested",
    }
    # 1 passed of 5 applicable requirements
    assert fw.readiness == 20.0
    todo = [(g.requirement.id, g.state) for g in fw.todo]
    assert todo[0] == ("IEC62351-8:OPERATOR-CONTROL", "failed")
    assert "VIEWER disconnected the meter" in fw.todo[0].action
    assert report.unknown_requirements == ("NOT:IN-CATALOG",)


def test_document_review_only_requirements_are_flagged():
    fw = analyse([], load_catalog()).framework("CRA")
    gap = next(g for g in fw.requirements if g.requirement.id == "CRA:I.1")
    assert gap.state == "document-review" and "assessor" in gap.action
    assert next(g for g in fw.requirements if g.requirement.id == "CRA:II.1").state == "untested"
    assert fw.readiness == 0.0


def test_to_dict_is_json_ready():
    data = analyse([_entry("A", "pass", "CRA:II.1")], load_catalog()).to_dict()
    cra = json.loads(json.dumps(data))["frameworks"]["CRA"]
    assert cra["counts"]["passed"] == 1 and cra["total"] == len(load_catalog().in_framework("CRA"))
    assert cra["readiness_pct"] == round(100 / cra["total"], 1)
    assert all(item["requirement"] != "CRA:II.1" for item in cra["todo"])


def _results(tmp_path: Path) -> Path:
    path = tmp_path / "results.json"
    assert main(["dossier", "assess", str(tmp_path / "d"), "--json", str(path)]) in (0, 1)
    return path


def test_cli_gaps_prints_readiness_and_json(tmp_path: Path, capsys):
    main(["dossier", "init", str(tmp_path / "d")])
    path = _results(tmp_path)
    capsys.readouterr()
    assert main(["gaps", str(path), "--framework", "CRA"]) == 0
    out = capsys.readouterr().out
    assert "CRA" in out and "EN303645" not in out.split("to do")[0]
    assert main(["gaps", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["frameworks"]["EN303645"]["requirements"]["EN303645:5.6-4"]["state"] == "passed"


@pytest.mark.parametrize("content, message", [
    ("{broken", "results.json:1: not valid JSON"),
    ('{"checks": [{"id": "x"}]}', "checks[0] lacks id, requirements or verdict"),
    ("[]", "not a results document"),
])
def test_cli_gaps_bad_input_is_one_line(tmp_path: Path, capsys, content: str, message: str):
    path = tmp_path / "results.json"
    path.write_text(content)
    assert main(["gaps", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
