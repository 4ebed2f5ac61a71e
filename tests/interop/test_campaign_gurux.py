"""The whole certification campaign against the gurux-built meter: it must finish,
give every DLMS check a verdict with a reason, and turn gurux's failures into
INCONCLUSIVE (or a justified verdict), never into a crash of the run."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("gurux_dlms")

from gurux_server import AK, CLIENT_TITLE, GUEK, KEK, MANAGEMENT_SAP, PUBLIC_SAP, SERVER_TITLE

from metercert.campaign.runner import run_campaign
from metercert.checks import all_checks
from metercert.checks.base import TargetKind, Verdict
from metercert.client.target import DlmsTarget
from metercert.security import Key, KeySet


def gurux_keyset() -> KeySet:
    """What a lab would put in the key file for the gurux meter."""
    return KeySet(guek=Key(GUEK, "guek"), ak=Key(AK, "ak"), kek=Key(KEK, "kek"),
                  client_system_title=CLIENT_TITLE, server_system_title=SERVER_TITLE,
                  extra={"client_sap": MANAGEMENT_SAP, "security_suite": 0,
                         "invocation_counter_object": "0.0.43.1.0.255",
                         "roles": [{"role": "VIEWER", "client_sap": PUBLIC_SAP}]})


def _campaign(gurux: tuple[str, int, Any]) -> dict[str, Any]:
    host, port, _ = gurux
    target = DlmsTarget(host, port, gurux_keyset(), timeout=2.0, label="gurux-dlms meter")
    run = run_campaign({TargetKind.DLMS: target}, all_checks().values(), progress=False)
    dlms_ids = {spec.id for spec in all_checks().values() if spec.target is TargetKind.DLMS}
    dlms = {r.spec.id: r for r in run.results if r.spec.target is TargetKind.DLMS}
    assert set(dlms) == dlms_ids
    for check_id, result in dlms.items():
        assert isinstance(result.outcome.verdict, Verdict), check_id
        assert result.outcome.reason.strip(), check_id
    # the non-DLMS kinds had no target: not applicable, not errors
    others = [r for r in run.results if r.spec.target is not TargetKind.DLMS]
    assert all(r.outcome.verdict is Verdict.NOT_APPLICABLE for r in others)
    return dlms


NEEDS_MANAGEMENT = ("DLMS-SUITE-01", "DLMS-FORMS-01", "DLMS-POLICY-01", "DLMS-REPLAY-01",
                    "DLMS-TAMPER-01", "DLMS-KEYWRAP-01", "DLMS-KEK-01")


def test_campaign_against_the_unpatched_gurux_meter(gurux_meter: tuple[str, int, Any]) -> None:
    """gurux's secure server cannot complete HLS-GMAC: nothing that needs the management
    association may pass, and the failure surfaces as INCONCLUSIVE with its cause."""
    dlms = _campaign(gurux_meter)
    assert dlms["DLMS-SUITE-01"].outcome.verdict is Verdict.INCONCLUSIVE
    assert "gave no answer" in dlms["DLMS-SUITE-01"].outcome.reason
    assert not [c for c in NEEDS_MANAGEMENT if dlms[c].outcome.verdict is Verdict.PASS]


def test_campaign_finds_gurux_server_flaws(gurux_hls_meter: tuple[str, int, Any]) -> None:
    """With HLS-GMAC working, the campaign catches what STANDARDS.md lists about gurux's
    server (no tag check, no replay check) and more (plaintext served on a ciphered
    association), while what the fixture configures correctly passes."""
    dlms = _campaign(gurux_hls_meter)
    verdicts = {check_id: r.outcome.verdict for check_id, r in dlms.items()}
    for flaw in ("DLMS-TAMPER-01", "DLMS-REPLAY-01", "DLMS-IC-STALE-01", "DLMS-POLICY-01"):
        assert verdicts[flaw] is Verdict.FAIL, (flaw, dlms[flaw].outcome.reason)
    for sound in ("DLMS-SUITE-01", "DLMS-SECRET-01", "DLMS-AUTH-LEGACY-01", "DLMS-HLS-01"):
        assert verdicts[sound] is Verdict.PASS, (sound, dlms[sound].outcome.reason)
    assert "plaintext get-request" in dlms["DLMS-POLICY-01"].outcome.reason
    # found since discovery, the gap-free counter view and the new conformance cases: its
    # AARE and HLS pass-4 answers reuse counters 0 and 1 in every association (the same
    # nonce under the same key), and security_activate lowers its policy
    assert verdicts["DLMS-IC-OWN-01"] is Verdict.FAIL
    assert "under the same key" in dlms["DLMS-IC-OWN-01"].outcome.reason
    assert verdicts["DLMS-ACTIVATE-01"] is Verdict.FAIL
    # the object list cannot be read (gurux closes the connection): said, not "denied"
    assert verdicts["DLMS-PUBLIC-01"] is Verdict.INCONCLUSIVE
    assert "closed the connection" in dlms["DLMS-PUBLIC-01"].outcome.reason
    # its action responses without the presence byte now decode: key transfer is judged
    assert "does not decode" not in dlms["DLMS-KEK-01"].outcome.reason
