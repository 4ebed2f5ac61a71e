"""Gap analysis per framework from results.json check entries."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from metercert.catalog import load_catalog
from metercert.catalog.gaps import analyse
from metercert.cli import main
from metercert.dossier import sample_dossier


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
    assert gap.state == "document-review" and "manual review" in gap.action
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
    # the reference sample itself: an unedited `dossier init` copy judges nothing (placeholders)
    shutil.copytree(sample_dossier("reference-meter"), tmp_path / "d")
    path = _results(tmp_path)
    capsys.readouterr()
    assert main(["gaps", str(path), "--framework", "CRA"]) == 0
    out = capsys.readouterr().out
    assert "CRA" in out and "EN303645" not in out.split("to do")[0]
    assert main(["gaps", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["frameworks"]["EN303645"]["requirements"]["EN303645:5.6-4"]["state"] == "passed"


# gaps validates like `metercert report` (same schema, same messages): a document one
# rejects the other must not analyse
@pytest.mark.parametrize("content, message", [
    ("{broken", "results.json:1:2: not valid JSON"),
    ('{"checks": [{"id": "x"}]}', "not a valid results document"),
    ("[]", "not a results document"),
])
def test_cli_gaps_bad_input_is_one_line(tmp_path: Path, capsys, content: str, message: str):
    path = tmp_path / "results.json"
    path.write_text(content)
    assert main(["gaps", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_a_missing_target_is_not_assessed_and_keeps_readiness_down():
    """`certify --no-tls` used to report IEC 62351-3 100 % ready with nothing passed."""
    catalog = load_catalog()
    reqs = [r.id for r in catalog.in_framework("IEC62351-3")]
    entries = [_entry(f"TLS-{i}", "not-assessed", rid, reason="no tls target configured")
               for i, rid in enumerate(reqs)]
    fw = analyse(entries, catalog).framework("IEC62351-3")
    assert {g.state for g in fw.requirements} == {"not-assessed"}
    assert fw.readiness == 0.0
    assert all("TLS endpoint target" in g.action for g in fw.todo)
    data = fw.to_dict()
    assert data["counts"]["not-assessed"] == len(reqs) and data["counts"]["not-applicable"] == 0


def test_only_not_applicable_leaves_readiness():
    catalog = load_catalog()
    reqs = [r.id for r in catalog.in_framework("IEC62351-3")]
    fw = analyse([_entry("T", "not-applicable", *reqs)], catalog).framework("IEC62351-3")
    assert fw.readiness is None  # nothing applies: no percentage at all, certainly not 100 %
    half = analyse([_entry("T", "not-applicable", *reqs[1:]), _entry("U", "pass", reqs[0])],
                   catalog).framework("IEC62351-3")
    assert half.readiness == 100.0 and half.applicable == 1


def test_deselected_checks_name_the_option_to_drop():
    catalog = load_catalog()
    report = analyse([], catalog, [
        {"id": "DLMS-IC-PERSIST-01", "reason": "destructive check; run with destructive checks disabled",
         "requirements": ["DLMS:IC-PERSIST"]},
        {"id": "X-01", "reason": "excluded by --skip", "requirements": ["CRA:II.1"]},
    ])
    persist = next(g for g in report.framework("DLMS").requirements if g.requirement.id == "DLMS:IC-PERSIST")
    assert persist.state == "not-assessed" and "drop --no-destructive" in persist.action
    sbom = next(g for g in report.framework("CRA").requirements if g.requirement.id == "CRA:II.1")
    assert sbom.state == "not-assessed" and "--only/--skip" in sbom.action


def test_untested_advice_is_a_manual_review_not_a_target():
    """No check cites it: adding a target would not help, so the advice must not say so."""
    fw = analyse([], load_catalog()).framework("CRA")
    untested = [g for g in fw.requirements if g.state == "untested"]
    assert untested and all("no automated check" in g.action for g in untested)
    assert not any("target" in g.action for g in untested)
