"""OSCAL exports validate against NIST's published OSCAL 1.2.3 JSON schema
(shipped in tests/catalog/schemas, see SOURCES.md there)."""

from __future__ import annotations

import copy
import hashlib
import json
import re
from pathlib import Path

import jsonschema
import pytest

from metercert.catalog import load_catalog
from metercert.catalog.oscal import (
    assessment_plan,
    assessment_results,
    catalog_to_oscal,
    control_id,
    objective_id,
    unresolved_references,
)
from metercert.cli import main
from metercert.cli.dossier import assess_document, sample_dossier

SCHEMA_FILE = Path(__file__).parent / "schemas" / "oscal_complete_schema.json"
SCHEMA_SHA256 = "384324105c7a817af0f65b120a963146caa0e0d55d969cf0daf60e063b87a206"


def _unicode_pattern(pattern: str) -> str:
    """Python's re lacks \\p{..}; these two classes are all the OSCAL schema uses."""
    return pattern.replace(r"\p{L}", r"[^\W\d_]").replace(r"\p{N}", r"\d")


@pytest.fixture(scope="module")
def validator() -> jsonschema.Validator:
    raw = SCHEMA_FILE.read_bytes()
    assert hashlib.sha256(raw).hexdigest() == SCHEMA_SHA256, "schema file differs from NIST's release"
    schema = json.loads(raw)
    try:
        import regex

        def pattern(v, patrn, instance, schema):
            if isinstance(instance, str) and not regex.search(patrn, instance):
                yield jsonschema.ValidationError(f"{instance!r} does not match {patrn!r}")
    except ImportError:
        def pattern(v, patrn, instance, schema):
            if isinstance(instance, str) and not re.search(_unicode_pattern(patrn), instance):
                yield jsonschema.ValidationError(f"{instance!r} does not match {patrn!r}")

    cls = jsonschema.validators.extend(jsonschema.Draft7Validator, {"pattern": pattern})
    return cls(schema)


def _errors(validator, doc) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message[:200]}" for e in validator.iter_errors(doc)]


def test_catalog_export_validates(validator):
    doc = catalog_to_oscal(load_catalog())
    assert _errors(validator, doc) == []
    groups = doc["catalog"]["groups"]
    assert [g["id"] for g in groups][:3] == ["dlms", "iec62351-3", "iec62351-8"]
    controls = {c["id"]: c for g in groups for c in g["controls"]}
    assert len(controls) == len(load_catalog().requirements)
    replay = controls[control_id("DLMS:IC-REPLAY")]
    assert {"name": "label", "value": "DLMS:IC-REPLAY"} in replay["props"]


def test_validator_rejects_a_broken_document(validator):
    doc = catalog_to_oscal(load_catalog())
    broken = copy.deepcopy(doc)
    broken["catalog"]["groups"][0]["controls"][0]["id"] = "DLMS:IC-REPLAY"  # ':' is not a token char
    assert _errors(validator, broken)
    missing = copy.deepcopy(doc)
    del missing["catalog"]["metadata"]["oscal-version"]
    assert _errors(validator, missing)


def test_assessment_results_validate_and_carry_findings(validator):
    results = assess_document(sample_dossier("flawed-meter"))
    doc = assessment_results(results)
    assert _errors(validator, doc) == []
    result = doc["assessment-results"]["results"][0]
    assert len(result["observations"]) == len(results["checks"])
    findings = {f["target"]["target-id"]: f for f in result["findings"]}
    debug = findings[objective_id("EN303645:5.6-4")]
    assert debug["target"]["status"] == {"state": "not-satisfied", "reason": "fail"}
    assert findings[objective_id("CRA:ART14")]["target"]["status"]["state"] == "satisfied"
    obs = {o["uuid"]: o for o in result["observations"]}
    linked = obs[debug["related-observations"][0]["observation-uuid"]]
    assert linked["title"].startswith("DOSSIER-DEBUG-01")
    assert any("jtag" in e["description"] for e in linked["relevant-evidence"])


def test_assessment_results_are_deterministic():
    results = assess_document(sample_dossier("reference-meter"))
    assert assessment_results(results) == assessment_results(results)


def test_cli_catalog_oscal_writes_valid_json(tmp_path: Path, validator):
    out = tmp_path / "catalog.oscal.json"
    assert main(["catalog", "oscal", "--out", str(out)]) == 0
    assert _errors(validator, json.loads(out.read_text())) == []


def _written_oscal(tmp_path: Path) -> tuple[dict, dict, dict]:
    """Plan, results and catalog as `metercert report --oscal` writes them."""
    results = tmp_path / "results.json"
    main(["dossier", "assess", str(sample_dossier("flawed-meter")), "--json", str(results)])
    assert main(["report", str(results), "--out", str(tmp_path / "out"), "--oscal", "-q"]) == 0
    out = tmp_path / "out"
    return tuple(json.loads((out / name).read_text()) for name in  # type: ignore[return-value]
                 ("assessment-plan.json", "assessment-results.json", "oscal-catalog.json"))


def test_plan_and_results_validate_and_every_reference_resolves(tmp_path: Path, validator):
    """OSCAL pointed at a plan `#metercert-campaign` that did not exist."""
    plan, results, catalog = _written_oscal(tmp_path)
    assert _errors(validator, plan) == [] and _errors(validator, results) == []
    assert _errors(validator, catalog) == []
    assert results["assessment-results"]["import-ap"]["href"] == "assessment-plan.json"
    assert unresolved_references(catalog, plan, results) == []
    findings = results["assessment-results"]["results"][0]["findings"]
    parts = {p["id"] for g in catalog["catalog"]["groups"] for c in g["controls"] for p in c["parts"]}
    assert findings and all(f["target"]["target-id"] in parts for f in findings)
    selected = plan["assessment-plan"]["reviewed-controls"]["control-selections"][0]["include-controls"]
    assert {"control-id": control_id("DLMS:IC-REPLAY")} not in selected  # a dossier run plans no DLMS


def test_reference_resolver_finds_a_dangling_reference(tmp_path: Path):
    plan, results, catalog = _written_oscal(tmp_path)
    broken = copy.deepcopy(results)
    broken["assessment-results"]["results"][0]["findings"][0]["target"]["target-id"] = "cra-nope_obj"
    assert any("cra-nope_obj" in p for p in unresolved_references(catalog, plan, broken))
    broken = copy.deepcopy(results)
    broken["assessment-results"]["import-ap"]["href"] = "#metercert-campaign"
    assert unresolved_references(catalog, plan, broken)
    broken_plan = copy.deepcopy(plan)
    broken_plan["assessment-plan"]["import-ssp"]["href"] = "#no-such-resource"
    assert unresolved_references(catalog, broken_plan, results)


def test_not_assessed_requirements_are_findings_with_their_state():
    doc = assess_document(sample_dossier("reference-meter"))
    for entry in doc["checks"]:
        entry["verdict"] = "not-assessed"
    doc["summary"] = {"pass": 0, "fail": 0, "inconclusive": 0, "not-applicable": 0,
                      "not-assessed": len(doc["checks"])}
    result = assessment_results(doc)["assessment-results"]["results"][0]
    states = {p["value"] for f in result["findings"] for p in f["props"] if p["name"] == "assessment-state"}
    assert states == {"not-assessed"}
    assert all(f["target"]["status"]["state"] == "not-satisfied" for f in result["findings"])
    assert assessment_plan(doc)["assessment-plan"]["tasks"]
