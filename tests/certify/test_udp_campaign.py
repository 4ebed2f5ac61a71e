"""The DLMS campaign against a meter that speaks the wrapper over UDP."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from metercert.campaign.runner import run_campaign
from metercert.checks import all_checks
from metercert.checks.base import TargetKind
from metercert.client.target import DlmsTarget
from metercert.lab.power import BuiltinPowerController, MeterProcess
from metercert.security import load_keyset

pytestmark = pytest.mark.timeout(300)


def _verdicts(tmp_path: Path, profile: str) -> dict[str, str]:
    meter = MeterProcess(tmp_path / profile, profile=profile, port=0, extra_args=("--udp",))
    host, port = meter.start()
    try:
        target = DlmsTarget(host, port, load_keyset(meter.keys_out), transport="udp",
                            power=BuiltinPowerController(meter))
        checks = [c for c in all_checks().values() if c.target is TargetKind.DLMS]
        run = run_campaign({TargetKind.DLMS: target}, checks, progress=False,
                           meter_profile=profile)
    finally:
        meter.stop()
    verdicts = {r.spec.id: r.verdict.value for r in run.results}
    # no HDLC link layer on UDP: those checks do not apply, and say so
    assert {k: v for k, v in verdicts.items() if k.startswith("DLMS-HDLC-")} == dict.fromkeys(
        ("DLMS-HDLC-FCS-01", "DLMS-HDLC-SEQ-01", "DLMS-HDLC-INFO-01", "DLMS-HDLC-ADDR-01"),
        "not-applicable")
    # general-ciphering/signing, key agreement and certificates need a meter that runs general
    # protection with certificates (the suite1-general/suite2-general profiles): not here
    general = {k: v for k, v in verdicts.items() if k.startswith(_GENERAL)}
    assert general and set(general.values()) == {"not-applicable"}, general
    return {k: v for k, v in verdicts.items()
            if not k.startswith("DLMS-HDLC-") and not k.startswith(_GENERAL)}


_GENERAL = ("DLMS-GENSIGN-", "DLMS-GENDOWN-", "DLMS-KEYAGREE-", "DLMS-CERT-")


def test_every_dlms_check_passes_on_the_conformant_meter_over_udp(tmp_path: Path) -> None:
    verdicts = _verdicts(tmp_path, "conformant")
    assert len(verdicts) >= 20
    assert {k: v for k, v in verdicts.items() if v != "pass"} == {}


def test_a_flawed_meter_over_udp_fails_its_checks(tmp_path: Path) -> None:
    verdicts = _verdicts(tmp_path, "no-replay-check")
    assert {k for k, v in verdicts.items() if v == "fail"} == {
        "DLMS-REPLAY-01", "DLMS-IC-STALE-01", "DLMS-IC-PERSIST-01"}
    assert {k: v for k, v in verdicts.items() if v not in ("pass", "fail")} == {}


def test_metercert_test_takes_a_udp_target(tmp_path: Path) -> None:
    meter = MeterProcess(tmp_path / "m", profile="default-lls-password", port=0,
                         extra_args=("--udp",))
    host, port = meter.start()
    try:
        out = tmp_path / "out"
        proc = subprocess.run(
            [sys.executable, "-m", "metercert", "test", f"udp://{host}:{port}", "--keys",
             str(meter.keys_out), "--out", str(out), "--quiet", "--only", "DLMS-AUTH-DEFAULT-01",
             "--only", "DLMS-REPLAY-01"], capture_output=True, text=True, timeout=180,
            check=False)
    finally:
        meter.stop()
    assert proc.returncode == 1, proc.stderr  # the factory password works: a failure
    results = json.loads((out / "results.json").read_text())
    assert {c["id"]: c["verdict"] for c in results["checks"]} == {
        "DLMS-AUTH-DEFAULT-01": "fail", "DLMS-REPLAY-01": "pass"}
    assert f"udp://{host}:{port}" in json.dumps(results["run"])


def test_udp_with_hdlc_or_tls_is_refused_in_one_line(tmp_path: Path) -> None:
    for argv in (["meter", "serve", "--udp", "--framing", "hdlc", "--port", "0"],
                 ["test", "udp://127.0.0.1:4059", "--framing", "hdlc", "--keys", "k.yaml"]):
        (tmp_path / "k.yaml").write_text("guek: " + "00" * 16 + "\n")
        proc = subprocess.run([sys.executable, "-m", "metercert", *argv], capture_output=True,
                              text=True, timeout=60, cwd=tmp_path, check=False)
        assert proc.returncode == 2, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and "udp" in proc.stderr
