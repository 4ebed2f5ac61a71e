"""The push checks against the reference meter (its own process, a real socket): the
conformant meter passes them, each flawed push profile fails exactly its checks, and a
meter without a Push Setup object makes them not applicable."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from metercert.campaign.runner import run_campaign
from metercert.checks import all_checks
from metercert.checks.base import TargetKind
from metercert.client.target import DlmsTarget
from metercert.lab.power import BuiltinPowerController, MeterProcess
from metercert.security import load_keyset

pytestmark = pytest.mark.timeout(180)

PUSH_CHECKS = ("DLMS-PUSH-01", "DLMS-PUSH-02", "DLMS-PUSH-03")


def _verdicts(tmp_path: Path, profile: str, *, framing: str = "wrapper") -> dict[str, tuple[str, str]]:
    meter = MeterProcess(tmp_path / "state", profile=profile, port=0,
                         extra_args=("--framing", framing))
    host, port = meter.start()
    try:
        target = DlmsTarget(host, port, load_keyset(meter.keys_out), framing=framing,
                            power=BuiltinPowerController(meter))
        run = run_campaign({TargetKind.DLMS: target}, [all_checks()[c] for c in PUSH_CHECKS],
                           progress=False, meter_profile=profile)
    finally:
        meter.stop()
    return {r.spec.id: (r.verdict.value, r.outcome.reason) for r in run.results}


def test_the_conformant_meter_passes_the_push_checks(tmp_path: Path) -> None:
    verdicts = _verdicts(tmp_path, "conformant")
    assert {k: v for k, (v, _) in verdicts.items()} == dict.fromkeys(PUSH_CHECKS, "pass"), \
        verdicts
    assert "authenticated and encrypted" in verdicts["DLMS-PUSH-01"][1]
    assert "continued across the power cycle" in verdicts["DLMS-PUSH-02"][1]
    assert "flagged as a replay" in verdicts["DLMS-PUSH-03"][1]


def test_unprotected_pushes_fail_ciphering_and_replay(tmp_path: Path) -> None:
    verdicts = _verdicts(tmp_path, "push-unprotected")
    assert {k: v for k, (v, _) in verdicts.items()} == {
        "DLMS-PUSH-01": "fail", "DLMS-PUSH-02": "not-applicable", "DLMS-PUSH-03": "fail"}, \
        verdicts
    assert "not authenticated, not encrypted" in verdicts["DLMS-PUSH-01"][1]
    assert "no invocation counter" in verdicts["DLMS-PUSH-02"][1]


def test_a_push_counter_reset_at_boot_fails_only_the_power_cycle_check(tmp_path: Path) -> None:
    verdicts = _verdicts(tmp_path, "push-counter-reset-at-boot")
    assert {k: v for k, (v, _) in verdicts.items()} == {
        "DLMS-PUSH-01": "pass", "DLMS-PUSH-02": "fail", "DLMS-PUSH-03": "pass"}, verdicts
    assert "at or below" in verdicts["DLMS-PUSH-02"][1]


def test_the_push_checks_run_over_hdlc_too(tmp_path: Path) -> None:
    verdicts = _verdicts(tmp_path, "conformant", framing="hdlc")
    assert verdicts["DLMS-PUSH-01"][0] == "pass", verdicts


def test_a_meter_without_push_setup_is_not_applicable(tmp_path: Path) -> None:
    profile = tmp_path / "no-push.yaml"
    profile.write_text(yaml.safe_dump({"name": "no-push", "description": "no push setup",
                                       "omit_objects": ["0.0.25.9.0.255"]}))
    verdicts = _verdicts(tmp_path, str(profile))
    assert {k: v for k, (v, _) in verdicts.items()} == dict.fromkeys(PUSH_CHECKS,
                                                                     "not-applicable"), verdicts
    assert all("no Push Setup" in reason for _, reason in verdicts.values())
