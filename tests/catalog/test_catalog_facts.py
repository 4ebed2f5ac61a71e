"""Catalog facts the issue found wrong (ETSI EN 303 645 V2.1.1/V3.1.3, Regulation (EU)
2024/2847, BSI's TR-03109 part list, ENISA GP-TM list, IEC 62443-4-2 security levels)."""

from __future__ import annotations

import pytest

from metercert.catalog import load_catalog
from metercert.catalog.gaps import analyse
from metercert.checks import all_checks
from metercert.errors import UsageError


def _entry(cid: str, verdict: str, *reqs: str) -> dict:
    return {"id": cid, "requirements": list(reqs), "verdict": verdict, "reason": verdict}


def test_bsi_parts_and_the_gateway_requirements_do_not_apply_to_a_meter():
    catalog = load_catalog()
    assert "BSI-TR-03109-2:SEC-MODULE" in catalog and "BSI-TR-03109-4:SM-PKI" in catalog
    assert "BSI-TR-03109-1:SEC-MODULE" not in catalog
    fw = analyse([_entry("X", "pass", "BSI-TR-03109-1:LMN-SECURE")], catalog).framework("BSI-TR-03109-1")
    states = {g.requirement.id: g.state for g in fw.requirements}
    assert states["BSI-TR-03109-1:LMN-SECURE"] == "passed"
    assert {states[r] for r in states if r != "BSI-TR-03109-1:LMN-SECURE"} == {"not-applicable"}
    assert fw.readiness == 100.0 and fw.applicable == 1  # 1 of 1 applicable, not "5/5"


def test_no_dossier_check_claims_a_gateway_or_a_mismatched_requirement():
    specs = all_checks()
    assert not any(r.startswith("BSI") for s in specs.values() if s.target.value == "dossier"
                   for r in s.requirements)
    assert "ENISA:GP-TM-09" in specs["DOSSIER-PASSWD-01"].requirements
    assert "ENISA:GP-TM-55" not in specs["DOSSIER-INCIDENT-01"].requirements
    eol = specs["DOSSIER-EOL-01"].requirements
    assert "CRA:I.2m" not in eol and "EN303645:5.11-1" not in eol  # user-data erasure is not key destruction


def test_cra_texts():
    catalog = load_catalog()
    assert "at least five years" in catalog.get("CRA:ART13.8").title
    art14 = catalog.get("CRA:ART14").title
    assert "one month after the incident notification" in art14 and "14 days after a corrective" in art14
    for rid in ("CRA:ART13.9", "CRA:ART13.19", "CRA:I.2c-AUTO", "CRA:I.2l-OPTOUT"):
        assert rid in catalog


def test_implausible_threat_links_are_gone():
    catalog = load_catalog()
    assert "replay" not in catalog.get("EN303645:5.9-1").threats
    assert "firmware-integrity" not in catalog.get("EN303645:5.3-16").threats
    assert "communication with associated services" in catalog.get("EN303645:5.4-4").title


def test_en303645_versions_are_data_and_selectable(monkeypatch):
    v2 = load_catalog()
    assert v2.framework("EN303645").version == "2.1.1"
    assert "EN303645:5.6-4" in v2 and "EN303645:5.6-4A" not in v2
    v3 = load_catalog(versions={"EN303645": "3.1.3"})
    assert {"EN303645:5.0-1", "EN303645:5.6-4A", "EN303645:5.6-4B", "EN303645:5.13-1A",
            "EN303645:5.13-1B"} <= {r.id for r in v3.requirements}
    assert "EN303645:5.6-4" not in v3
    # a check citing the V2.1.1 id evidences the V3.1.3 provisions that took it over
    assert v3.resolve("EN303645:5.6-4") == ("EN303645:5.6-4A", "EN303645:5.6-4B")
    fw = analyse([_entry("D", "pass", "EN303645:5.6-4")], v3).framework("EN303645")
    assert {g.requirement.id for g in fw.requirements if g.state == "passed"} == {
        "EN303645:5.6-4A", "EN303645:5.6-4B"}
    monkeypatch.setenv("METERCERT_EN303645_VERSION", "3.1.3")
    assert load_catalog().framework("EN303645").version == "3.1.3"
    with pytest.raises(UsageError, match="not in the catalog"):
        load_catalog(versions={"EN303645": "9.9.9"})


def test_iec62443_requirements_are_selected_by_target_security_level(monkeypatch):
    sl1 = {r.id for r in load_catalog(security_level=1).in_framework("IEC62443-4-2")}
    sl2 = {r.id for r in load_catalog(security_level=2).in_framework("IEC62443-4-2")}
    assert "IEC62443-4-2:CR1.2" in sl2 and "IEC62443-4-2:CR1.2" not in sl1
    assert sl1 < sl2
    assert all(r.security_level for r in load_catalog().in_framework("IEC62443-4-2"))
    monkeypatch.setenv("METERCERT_IEC62443_SL", "5")
    with pytest.raises(UsageError, match="1..4"):
        load_catalog()


def test_en18031_1_is_a_framework_the_dossier_checks_evidence():
    catalog = load_catalog()
    assert catalog.framework("EN18031-1").short == "EN 18031-1"
    cited = {r for s in all_checks().values() for r in s.requirements if r.startswith("EN18031-1:")}
    assert cited and not catalog.unknown_ids(cited)


def test_conditional_provisions_and_the_ics_export(tmp_path, reference_results):
    import csv

    from metercert.cli import main

    catalog = load_catalog()
    assert catalog.get("EN303645:5.6-4").condition == "a debug interface is physically accessible"
    assert not catalog.get("EN303645:5.1-3").condition
    ics = tmp_path / "ics.csv"
    assert main(["gaps", str(reference_results), "--ics", str(ics)]) == 0
    rows = {r["provision"]: r for r in csv.DictReader(ics.open())}
    assert len(rows) == len(catalog.in_framework("EN303645"))
    assert rows["5.6-4"]["status"] == "M C" and rows["5.6-4"]["verdict"] == "PASS"
    assert "DOSSIER-DEBUG-01" in rows["5.6-4"]["evidence"]
    assert rows["5.3-9"]["status"] == "R"
    assert rows["6-1"]["verdict"] == "NO VERDICT" and rows["6-1"]["ixit"]


def test_a_review_can_find_a_condition_unmet_only_on_a_conditional_provision(tmp_path):
    import shutil

    from metercert.cli.dossier import assess_document
    from metercert.dossier import sample_dossier
    from metercert.errors import InputFileError

    folder = tmp_path / "d"
    shutil.copytree(sample_dossier("reference-meter"), folder)
    base = (folder / "dossier.yaml").read_text()
    review = ('\nreviews:\n  - {requirement: "EN303645:5.5-5", verdict: not-applicable, reviewer: R, '
              'date: 2026-11-30, note: "no configuration over any network interface"}\n')
    (folder / "dossier.yaml").write_text(base + review)
    doc = assess_document(folder)
    assert doc["gaps"]["frameworks"]["EN303645"]["requirements"]["EN303645:5.5-5"]["state"] == "not-applicable"
    (folder / "dossier.yaml").write_text(base + review.replace("5.5-5", "5.1-3"))
    with pytest.raises(InputFileError, match="no condition"):
        assess_document(folder)


@pytest.fixture
def reference_results(tmp_path):
    from metercert.cli import main
    from metercert.dossier import sample_dossier

    path = tmp_path / "results.json"
    main(["dossier", "assess", str(sample_dossier("reference-meter")), "--json", str(path)])
    return path


def test_cli_chooses_standard_version_and_security_level(reference_results, capsys):
    import json as _json

    from metercert.cli import main

    assert main(["gaps", str(reference_results), "--json", "--en303645-version", "3.1.3",
                 "--iec62443-sl", "1"]) == 0
    data = _json.loads(capsys.readouterr().out)
    en = data["frameworks"]["EN303645"]
    assert "(V3.1.3)" in en["name"] and en["requirements"]["EN303645:5.6-4A"]["state"] == "passed"
    assert "IEC62443-4-2:CR1.2" not in data["frameworks"]["IEC62443-4-2"]["requirements"]
    assert main(["catalog", "list", "--framework", "EN303645", "--en303645-version", "3.1.3"]) == 0
    assert "5.13-1B" in capsys.readouterr().out
