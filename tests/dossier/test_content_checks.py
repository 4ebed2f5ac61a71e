"""Dossier checks verify what the requirement they cite asks, not that a field is filled in."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from metercert.checks.base import Verdict

from ._support import assess, edit


def test_support_ending_in_60_days_fails_cra_five_years(reference: Path):
    soon = (dt.date.today() + dt.timedelta(days=60)).isoformat()
    edit(reference / "dossier.yaml", "end_date: 2041-12-31", f"end_date: {soon}")
    outcome = assess(reference)["DOSSIER-SUPPORT-01"]
    assert outcome.verdict is Verdict.FAIL and "less than the 5 years CRA Art. 13(8)" in outcome.reason


def test_support_measured_from_placing_on_market(reference: Path):
    edit(reference / "dossier.yaml", "end_date: 2041-12-31", "end_date: 2041-12-31\n  start_date: 2038-01-01")
    assert assess(reference)["DOSSIER-SUPPORT-01"].verdict is Verdict.FAIL  # 4 years
    edit(reference / "dossier.yaml", "start_date: 2038-01-01", "start_date: 2036-01-01")
    assert assess(reference)["DOSSIER-SUPPORT-01"].verdict is Verdict.PASS


def test_shorter_support_passes_only_with_the_stated_exception(reference: Path):
    end = (dt.date.today() + dt.timedelta(days=3 * 366)).isoformat()
    edit(reference / "dossier.yaml", "end_date: 2041-12-31", f"end_date: {end}")
    assert assess(reference)["DOSSIER-SUPPORT-01"].verdict is Verdict.FAIL
    edit(reference / "dossier.yaml", f"end_date: {end}", f"end_date: {end}\n  expected_use_years: 3")
    outcome = assess(reference)["DOSSIER-SUPPORT-01"]
    assert outcome.verdict is Verdict.PASS and "exception stated: expected use 3 years" in outcome.reason


def test_eol_document_that_denies_key_destruction_fails(reference: Path):
    (reference / "docs" / "eol-key-destruction.md").write_text(
        "# End of life\n\nThis document does not describe key destruction for the GUEK, GBEK, AK or KEK.\n"
        "Keys are never erased when the meter is returned.\n")
    outcome = assess(reference)["DOSSIER-EOL-01"]
    assert outcome.verdict is Verdict.FAIL and "no key destruction step" in outcome.reason


def test_eol_document_must_name_every_key(reference: Path):
    (reference / "docs" / "eol-key-destruction.md").write_text(
        "# End of life\n\nThe SECADM role erases the GUEK and the AK with the key erase method.\n")
    outcome = assess(reference)["DOSSIER-EOL-01"]
    assert outcome.verdict is Verdict.FAIL and "GBEK, KEK missing" in outcome.reason


def test_reference_eol_document_passes_and_quotes_its_steps(reference: Path):
    outcome = assess(reference)["DOSSIER-EOL-01"]
    assert outcome.verdict is Verdict.PASS and "GUEK, GBEK, AK, KEK" in outcome.reason
    assert "overwrites its key" in outcome.evidence[0].content


def test_one_unnamed_event_kept_one_day_fails(reference: Path):
    text = (reference / "dossier.yaml").read_text()
    start = text.index("  events: [association-rejected")
    end = text.index("  retention_days: 730")
    (reference / "dossier.yaml").write_text(text[:start] + "  events: [foo]\n  retention_days: 1"
                                            + text[end + len("  retention_days: 730"):])
    outcome = assess(reference)["DOSSIER-LOG-01"]
    assert outcome.verdict is Verdict.FAIL
    assert "no logged event covers: authentication-failure" in outcome.reason
    assert "log kept 1 days, less than 90" in outcome.reason


def test_authentication_gated_jtag_is_not_disabled_in_software(reference: Path):
    """EN 303 645 5.6-4: a physically accessible debug interface is disabled in software."""
    edit(reference / "dossier.yaml", "  jtag: disabled", "  jtag: authentication-gated")
    outcome = assess(reference)["DOSSIER-DEBUG-01"]
    assert outcome.verdict is Verdict.FAIL and "not disabled in software" in outcome.reason
    assert "jtag" in outcome.reason


def test_gated_optical_port_is_not_a_debug_interface(reference: Path):
    outcome = assess(reference)["DOSSIER-DEBUG-01"]
    assert outcome.verdict is Verdict.PASS  # the sample's optical port is authentication-gated
    edit(reference / "dossier.yaml", "  optical: authentication-gated", "  optical: present")
    assert assess(reference)["DOSSIER-DEBUG-01"].verdict is Verdict.FAIL


def test_gated_jtag_fails_5_6_4_but_not_the_requirement_gating_meets(reference: Path):
    """One failing aspect must not fail every requirement the check cites (issue item 6)."""
    from metercert.catalog import load_catalog
    from metercert.catalog.gaps import analyse
    from metercert.checks.dossier import run_all
    from metercert.dossier.load import load_dossier
    from metercert.report.json import check_entry

    edit(reference / "dossier.yaml", "  jtag: disabled", "  jtag: authentication-gated")
    entries = [check_entry(r) for r in run_all(load_dossier(reference))]
    debug = next(e for e in entries if e["id"] == "DOSSIER-DEBUG-01")
    assert debug["verdict"] == "fail" and debug["requirement_verdicts"] == {"IEC62443-4-2:EDR2.13": "pass"}
    gaps = analyse(entries, load_catalog())
    state = {g.requirement.id: g.state for fw in gaps.frameworks for g in fw.requirements}
    assert state["EN303645:5.6-4"] == "failed" and state["IEC62443-4-2:EDR2.13"] == "passed"
