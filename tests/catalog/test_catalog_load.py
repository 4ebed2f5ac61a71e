"""The catalog loads, defines every id the checks and the shared convention use,
and a broken data file is refused with one line naming file and line."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from metercert.catalog import load_catalog
from metercert.catalog.load import default_data_dir
from metercert.checks import all_checks
from metercert.errors import InputFileError

CONVENTION_IDS = ["DLMS:SUITE-NEGOTIATION", "DLMS:SUITE-DOWNGRADE", "DLMS:POLICY-ENFORCED", "DLMS:IC-REPLAY", "DLMS:IC-PERSIST", "DLMS:APDU-INTEGRITY", "DLMS:KEY-WRAP", "DLMS:KEK-CONFIDENTIAL", "DLMS:HLS-AUTH", "DLMS:AUTH-THROTTLE", "DLMS:SECRET-PROTECT", "DLMS:ACCESS-RIGHTS", "DLMS:FW-SIGNED", "DLMS:ROBUSTNESS", "DLMS:IC-UNIQUE", "IEC62351-3:MUTUAL-AUTH", "IEC62351-3:TLS-VERSION", "IEC62351-3:TLS13", "IEC62351-3:CIPHER-FS", "IEC62351-3:CIPHER-STRENGTH", "IEC62351-3:CERT-PROFILE", "IEC62351-3:KEY-STRENGTH", "IEC62351-3:SIG-HASH", "IEC62351-3:CERT-VALIDITY", "IEC62351-3:REVOCATION", "IEC62351-3:RENEGOTIATION", "IEC62351-3:COMPRESSION", "IEC62351-8:RBAC-ENFORCE", "IEC62351-8:OPERATOR-CONTROL", "IEC62351-8:SECADM-SECURITY", "IEC62351-8:READ-ONLY-ROLES", "IEC62351-8:SECAUD-LOG", "EN303645:5.1-1", "EN303645:5.2-1", "EN303645:5.3-10", "EN303645:5.3-13", "EN303645:5.5-1", "EN303645:5.6-4", "CRA:I.1", "CRA:I.2a", "CRA:I.2b", "CRA:I.2c", "CRA:I.2d", "CRA:I.2e", "CRA:I.2f", "CRA:I.2g", "CRA:I.2h", "CRA:I.2i", "CRA:I.2j", "CRA:I.2k", "CRA:I.2l", "CRA:I.2m", "CRA:II.1", "CRA:II.2", "CRA:II.3", "CRA:II.4", "CRA:II.5", "CRA:II.6", "CRA:II.7", "CRA:II.8", "CRA:ART14", "IEC62443-4-2:CR1.1", "IEC62443-4-2:EDR2.13", "IEC62443-4-2:EDR3.10", "IEC62443-4-2:EDR3.14"]

SEED_THREATS = [
    "replay", "mitm-backhaul", "unauthorized-command", "firmware-integrity",
    "debug-interface", "key-lifecycle", "multi-tenant", "incident-notification",
]


def test_every_convention_id_is_defined():
    assert load_catalog().unknown_ids(CONVENTION_IDS) == []


def test_catalog_has_all_frameworks_and_the_seed_threats():
    catalog = load_catalog()
    assert {f.id for f in catalog.frameworks} == {
        "DLMS", "IEC62351-3", "IEC62351-8", "EN303645", "CRA", "IEC62443-4-2", "BSI-TR-03109-1",
        "BSI-TR-03109-2", "BSI-TR-03109-4", "ENISA", "EN18031-1",
    }
    assert [t.id for t in catalog.threats] == SEED_THREATS
    for fw in catalog.frameworks:
        assert catalog.in_framework(fw.id), fw.id
    for threat in SEED_THREATS:
        assert catalog.for_threat(threat), threat
    for req in catalog.requirements:
        assert req.id.startswith(req.framework + ":")
        assert req.status in ("mandatory", "recommended")


def test_en303645_status_follows_the_standard():
    catalog = load_catalog()
    assert catalog.get("EN303645:5.1-1").status == "mandatory"
    assert catalog.get("EN303645:5.6-4").status == "mandatory"
    assert catalog.get("EN303645:5.3-9").status == "recommended"
    assert catalog.get("IEC62351-3:TLS13").status == "recommended"


def test_every_registered_check_maps_to_existing_requirements():
    catalog = load_catalog()
    checks = all_checks()
    assert checks, "no checks registered at all"
    problems = []
    for spec in checks.values():
        if not spec.requirements:
            problems.append(f"{spec.id}: no requirement")
        for rid in catalog.unknown_ids(spec.requirements):
            problems.append(f"{spec.id}: unknown requirement {rid}")
    assert problems == []


def test_seed_misstatements_are_recorded_with_the_standards_facts():
    by_id = {m.id: m for m in load_catalog().misstatements}
    assert set(by_id) == {"SEED-SUITES", "SEED-KEY-NAMES", "SEED-CRA-90-DAYS"}
    assert "AES-GCM-256" in by_id["SEED-SUITES"].correction
    assert "post-quantum" in by_id["SEED-SUITES"].seed_claim
    assert "GBEK" in by_id["SEED-KEY-NAMES"].correction and "(AK)" in by_id["SEED-KEY-NAMES"].correction
    assert "without delay" in by_id["SEED-CRA-90-DAYS"].correction


@pytest.fixture()
def data_copy(tmp_path: Path) -> Path:
    target = tmp_path / "data"
    shutil.copytree(default_data_dir(), target)
    return target


def _replace(path: Path, old: str, new: str) -> int:
    """Replace ``old`` once and return the 1-based line where it was."""
    text = path.read_text()
    assert old in text
    line = text[: text.index(old)].count("\n") + 1
    path.write_text(text.replace(old, new, 1))
    return line


@pytest.mark.parametrize(
    "file, old, new, message",
    [
        ("frameworks/10-dlms.yaml", "threats: [replay]\n", "threats: [replays]\n", "unknown threat 'replays'"),
        ("frameworks/10-dlms.yaml", "status: recommended", "status: optional", "'optional' is not one of"),
        ("frameworks/10-dlms.yaml", "id: DLMS:IC-PERSIST", "id: CRA:IC-PERSIST", "must start with 'DLMS:'"),
        ("frameworks/10-dlms.yaml", "id: DLMS:IC-PERSIST", "id: DLMS:IC-REPLAY", "already defined"),
        ("frameworks/40-cra.yaml", "evidence: [dossier], threats: [key-lifecycle]}",
         "evidence: [paper], threats: [key-lifecycle]}", "'paper' is not one of"),
        ("coverage.yaml", "status: partial, text: \"Partially (62351-5", "status: half, text: \"Partially (62351-5",
         "'half' is not one of"),
        ("threats.yaml", "  - id: replay\n", "  - id: replay\n    colour: red\n", "unknown field 'colour'"),
        ("misstatements.yaml", "requirements: [CRA:II.2]", "requirements: [CRA:II.99]", "unknown requirement"),
    ],
)
def test_bad_catalog_file_names_file_and_line(data_copy: Path, file: str, old: str, new: str, message: str):
    path = data_copy / file
    line = _replace(path, old, new)
    if "colour" in new:
        line += 1  # the unknown key sits on the line after the replaced one
    with pytest.raises(InputFileError) as info:
        load_catalog(data_copy)
    text = str(info.value)
    assert f"{path}:{line}" in text or f"{path.resolve()}:{line}" in text
    assert message in text
    assert "\n" not in text


def test_yaml_syntax_error_names_the_line(data_copy: Path):
    path = data_copy / "frameworks" / "20-iec62351-3.yaml"
    line = _replace(path, "    title: TLS compression is disabled", "    title: [unclosed")
    with pytest.raises(InputFileError, match=r"20-iec62351-3\.yaml:\d+: invalid YAML") as info:
        load_catalog(data_copy)
    reported = int(str(info.value).split(".yaml:")[1].split(":")[0])
    assert reported in (line, line + 1)  # PyYAML marks where it noticed the problem


def test_cli_reports_a_bad_catalog_as_one_line(data_copy: Path):
    path = data_copy / "frameworks" / "10-dlms.yaml"
    line = _replace(path, "threats: [replay]\n", "threats: [replays]\n")
    proc = subprocess.run(
        [sys.executable, "-m", "metercert", "catalog", "list"],
        check=False, capture_output=True, text=True, timeout=60,
        env={**__import__("os").environ, "METERCERT_CATALOG_DIR": str(data_copy)},
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("metercert: error: ")
    assert f"10-dlms.yaml:{line}: unknown threat 'replays'" in lines[0]
    assert "Traceback" not in proc.stderr
