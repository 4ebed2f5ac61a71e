"""The packaged samples: the reference meter passes every dossier check, the
flawed meter fails exactly the checks of its planted defects, and each defect
planted alone into the reference dossier fails exactly its own check."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from metercert.checks.base import Verdict
from metercert.dossier import sample_dossier
from metercert.dossier.audit import chain, parse_lines

from ._support import DOSSIER_CHECKS, assess, edit

FLAWED_FAILS = {
    "DOSSIER-DEBUG-01", "DOSSIER-PASSWD-01", "DOSSIER-FW-01", "DOSSIER-VULN-01",
    "DOSSIER-PATCH-01", "DOSSIER-KEYAUDIT-01",
}


def test_reference_meter_passes_every_dossier_check():
    outcomes = assess(sample_dossier("reference-meter"))
    assert set(outcomes) == set(DOSSIER_CHECKS)
    assert {cid: o.verdict for cid, o in outcomes.items()} == {cid: Verdict.PASS for cid in DOSSIER_CHECKS}
    for cid, outcome in outcomes.items():
        assert outcome.evidence, f"{cid} passed without evidence"


def test_flawed_meter_fails_exactly_its_planted_defects():
    outcomes = assess(sample_dossier("flawed-meter"))
    failing = {cid for cid, o in outcomes.items() if o.verdict is Verdict.FAIL}
    assert failing == FLAWED_FAILS
    assert all(o.verdict is Verdict.PASS for cid, o in outcomes.items() if cid not in FLAWED_FAILS)
    assert "jtag" in outcomes["DOSSIER-DEBUG-01"].reason
    assert "unsigned" in outcomes["DOSSIER-FW-01"].reason
    assert "mbedtls@2.28.1" in outcomes["DOSSIER-VULN-01"].reason
    assert "OSV-SAMPLE-0001" in outcomes["DOSSIER-VULN-01"].reason
    assert "180" in outcomes["DOSSIER-PATCH-01"].reason
    assert "line 6" in outcomes["DOSSIER-KEYAUDIT-01"].reason


def _open_jtag(d: Path) -> None:
    edit(d / "dossier.yaml", "jtag: disabled", "jtag: present")


def _universal_password(d: Path) -> None:
    edit(d / "dossier.yaml", "default_password: unique-per-device", "default_password: universal")


def _unsigned(d: Path) -> None:
    edit(d / "dossier.yaml", "    signature: firmware/meter-fw-0.1.0.bin.sig\n", "")


def _vulnerable_component(d: Path) -> None:
    sbom = json.loads((d / "sbom.cdx.json").read_text())
    for comp in sbom["components"]:
        if comp["name"] == "mbedtls":
            comp["version"] = "2.28.7"
            comp["purl"] = "pkg:github/mbed-tls/mbedtls@2.28.7"
    (d / "sbom.cdx.json").write_text(json.dumps(sbom))


def _slow_patches(d: Path) -> None:
    edit(d / "dossier.yaml", "days_disclosure_to_fix: 30", "days_disclosure_to_fix: 180")


def _broken_chain(d: Path) -> None:
    log = d / "keys" / "injection-audit.jsonl"
    lines = log.read_text().splitlines(keepends=True)
    del lines[3]  # a record silently removed
    log.write_text("".join(lines))


def _support_ended(d: Path) -> None:
    edit(d / "dossier.yaml", "end_date: 2041-12-31", "end_date: 2020-06-30")


def _no_cvd_contact(d: Path) -> None:
    edit(d / "dossier.yaml", "contact: security@metercert.example", "contact: ask your sales rep")


def _slow_incident_report(d: Path) -> None:
    edit(d / "dossier.yaml", "notification_hours: 72", "notification_hours: 96")


def _no_eol(d: Path) -> None:
    (d / "docs" / "eol-key-destruction.md").unlink()


def _no_logging(d: Path) -> None:
    text = (d / "dossier.yaml").read_text()
    start = text.index("  events: [")
    end = text.index("]", start) + 1
    (d / "dossier.yaml").write_text(text[:start] + "  events: []" + text[end:])


def _sbom_without_purl(d: Path) -> None:
    sbom = json.loads((d / "sbom.cdx.json").read_text())
    del sbom["components"][2]["purl"]
    (d / "sbom.cdx.json").write_text(json.dumps(sbom))


DEFECTS: list[tuple[str, Callable[[Path], None]]] = [
    ("DOSSIER-DEBUG-01", _open_jtag),
    ("DOSSIER-PASSWD-01", _universal_password),
    ("DOSSIER-FW-01", _unsigned),
    ("DOSSIER-VULN-01", _vulnerable_component),
    ("DOSSIER-PATCH-01", _slow_patches),
    ("DOSSIER-KEYAUDIT-01", _broken_chain),
    ("DOSSIER-SUPPORT-01", _support_ended),
    ("DOSSIER-CVD-01", _no_cvd_contact),
    ("DOSSIER-INCIDENT-01", _slow_incident_report),
    ("DOSSIER-EOL-01", _no_eol),
    ("DOSSIER-LOG-01", _no_logging),
    ("DOSSIER-SBOM-01", _sbom_without_purl),
]


@pytest.mark.parametrize("check_id, plant", DEFECTS, ids=[d[0] for d in DEFECTS])
def test_each_defect_fails_exactly_its_check(reference: Path, check_id: str, plant: Callable[[Path], None]):
    plant(reference)
    outcomes = assess(reference)
    failing = sorted(cid for cid, o in outcomes.items() if o.verdict is not Verdict.PASS)
    assert failing == [check_id], {cid: outcomes[cid].reason for cid in failing}


def test_reordered_audit_log_breaks_the_chain(reference: Path):
    log = reference / "keys" / "injection-audit.jsonl"
    lines = log.read_text().splitlines(keepends=True)
    lines[2], lines[3] = lines[3], lines[2]
    log.write_text("".join(lines))
    outcome = assess(reference)["DOSSIER-KEYAUDIT-01"]
    assert outcome.verdict is Verdict.FAIL and "line 3" in outcome.reason


def test_rechained_log_missing_a_device_key_fails(reference: Path):
    """A log re-hashed after dropping a record has an intact chain but misses an injection."""
    log = reference / "keys" / "injection-audit.jsonl"
    records, _ = parse_lines(log.read_text())
    kept = [r for _, r in records if not (r["serial"] == "MCR0000002" and r["key_id"] == "KEK")]
    log.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in chain(kept)))
    outcome = assess(reference)["DOSSIER-KEYAUDIT-01"]
    assert outcome.verdict is Verdict.FAIL
    assert "1 device/key injection(s) unrecorded" in outcome.reason
    assert any("MCR0000002:KEK" in e.content for e in outcome.evidence)


def test_evidence_cites_file_and_line(reference: Path):
    line = edit(reference / "dossier.yaml", "jtag: disabled", "jtag: present")
    outcome = assess(reference)["DOSSIER-DEBUG-01"]
    sources = [e.source for e in outcome.evidence if e.label == "jtag"]
    assert sources == [f"dossier.yaml:{line} debug_interfaces.jtag"]


def test_patch_limit_is_configurable(reference: Path):
    edit(reference / "dossier.yaml", "limit_days: 90", "limit_days: 20")
    outcome = assess(reference)["DOSSIER-PATCH-01"]
    assert outcome.verdict is Verdict.FAIL and "20-day limit" in outcome.reason


def test_rechained_log_with_backdated_or_naive_timestamps_fails(reference: Path):
    log = reference / "keys" / "injection-audit.jsonl"
    records = [r for _, r in parse_lines(log.read_text())[0]]
    records[4]["timestamp"] = "2026-01-10T08:00:00"  # no time zone
    records[7]["timestamp"] = "2025-01-01T00:00:00Z"  # earlier than line 7
    log.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in chain(records)))
    outcome = assess(reference)["DOSSIER-KEYAUDIT-01"]
    assert outcome.verdict is Verdict.FAIL
    breaks = next(e.content for e in outcome.evidence if e.label == "chain breaks")
    assert breaks.splitlines() == [
        "line 5: timestamp has no time zone",
        "line 8: timestamp earlier than the previous line",
    ]
