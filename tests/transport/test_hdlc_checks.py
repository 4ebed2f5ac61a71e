"""The HDLC link-layer checks: each flawed HDLC profile fails exactly its check.

Over HDLC on TCP here (tests/certify/test_serial_campaign.py runs them over a pty);
the reference meter runs as its own process, as a real meter would.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from metercert.campaign.runner import run_campaign
from metercert.checks import all_checks
from metercert.checks.base import TargetKind
from metercert.client.target import DlmsTarget
from metercert.lab.power import MeterProcess
from metercert.security import load_keyset

pytestmark = pytest.mark.timeout(120)

HDLC_CHECKS = ("DLMS-HDLC-FCS-01", "DLMS-HDLC-SEQ-01", "DLMS-HDLC-INFO-01", "DLMS-HDLC-ADDR-01")


def _hdlc_verdicts(tmp_path: Path, profile: str, framing: str) -> dict[str, tuple[str, str]]:
    meter = MeterProcess(tmp_path / "state", profile=profile, port=0,
                         extra_args=("--framing", framing))
    host, port = meter.start()
    try:
        target = DlmsTarget(host, port, load_keyset(meter.keys_out), framing=framing,
                            discover_on_open=False)
        checks = [all_checks()[c] for c in HDLC_CHECKS]
        run = run_campaign({TargetKind.DLMS: target}, checks, progress=False,
                           meter_profile=profile)
    finally:
        meter.stop()
    return {r.spec.id: (r.verdict.value, r.outcome.reason) for r in run.results}


@pytest.mark.parametrize(("profile", "failing"), [
    ("conformant", None),
    ("hdlc-bad-fcs-accepted", "DLMS-HDLC-FCS-01"),
    ("hdlc-sequence-unchecked", "DLMS-HDLC-SEQ-01"),
    ("hdlc-info-length-unchecked", "DLMS-HDLC-INFO-01"),
    ("hdlc-any-address", "DLMS-HDLC-ADDR-01"),
])
def test_each_hdlc_flaw_fails_exactly_its_check(tmp_path: Path, profile: str,
                                                failing: str | None) -> None:
    verdicts = _hdlc_verdicts(tmp_path, profile, "hdlc")
    assert {k: v for k, (v, _) in verdicts.items()} == {
        c: "fail" if c == failing else "pass" for c in HDLC_CHECKS}, verdicts
    for verdict, reason in verdicts.values():
        if verdict == "pass":  # every pass rests on the intact frame's answer (or UA)
            assert "answered" in reason or "got UA" in reason


def test_hdlc_checks_do_not_apply_to_the_wrapper(tmp_path: Path) -> None:
    verdicts = _hdlc_verdicts(tmp_path, "hdlc-bad-fcs-accepted", "wrapper")
    assert {k: v for k, (v, _) in verdicts.items()} == dict.fromkeys(HDLC_CHECKS,
                                                                     "not-applicable")
