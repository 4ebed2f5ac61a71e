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
from metercert.catalog.oscal import assessment_results, catalog_to_oscal, control_id
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
    debug = findings[control_id("EN303645:5.6-4")]
    assert debug["target"]["status"] == {"state": "not-satisfied", "reason": "fail"}
    assert findings[control_id("CRA:ART14")]["target"]["status"]["state"] == "satisfied"
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
