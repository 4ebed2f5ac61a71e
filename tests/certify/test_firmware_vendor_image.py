"""DLMS-FW-01 with a vendor image from the campaign file, and with meters that verify
images in the background (image_verify answers temporary-failure, the verdict shows
later in image_transfer_status)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from metercert.client.target import DlmsTarget
from metercert.security.firmware_image import build_signed_image
from metercert.lab.power import MeterProcess
from metercert.security import load_keyset


def _profile(tmp_path: Path, name: str) -> str:
    if name in ("conformant", "unsigned-firmware-accepted"):
        return name
    flawed = name.endswith("+flaw")
    text = "name: background-verify\nimage_verify_seconds: 0.4\n"
    if flawed:
        text += "flaws: [unsigned-firmware-accepted]\n"
    path = tmp_path / "background.yaml"
    path.write_text(text, "utf-8")
    return str(path)


def _run(tmp_path: Path, profile: str, timeout_s: float = 30) -> dict:
    meter = MeterProcess(tmp_path / "state", profile=_profile(tmp_path, profile), port=0)
    host, port = meter.start()
    try:
        # a genuine image, signed with the vendor key the meter trusts, stands in for
        # a vendor's own file; the check only ever sees the file
        key = DlmsTarget(host, port, load_keyset(meter.keys_out)).firmware_signing_key
        assert key is not None
        image = tmp_path / "meter-fw-9.9-signed.bin"
        image.write_bytes(build_signed_image("FW-9.9", bytes(range(256)) * 6, key))
        campaign = tmp_path / "campaign.yaml"
        campaign.write_text(
            f"target: tcp://{host}:{port}\nkeys: {meter.keys_out}\nonly: [DLMS-FW-01]\n"
            f"firmware:\n  image: {image.name}\n  verify_timeout_s: {timeout_s}\n", "utf-8")
        out = tmp_path / "out"
        proc = subprocess.run(
            [sys.executable, "-m", "metercert", "test", "--campaign", str(campaign), "--out",
             str(out), "--quiet"], capture_output=True, text=True, timeout=180, check=False)
        results = json.loads((out / "results.json").read_text())
        # 0 pass, 1 fail, 4 a critical check without a verdict (the run is not complete)
        expected = {"pass": 0, "fail": 1, "inconclusive": 4}[results["checks"][0]["verdict"]]
        assert proc.returncode == expected, proc.stderr
    finally:
        meter.stop()
    (check,) = results["checks"]
    return check


@pytest.mark.parametrize("profile", ["conformant", "background"])
def test_tampered_copies_of_the_vendor_image_are_refused(tmp_path: Path, profile: str) -> None:
    check = _run(tmp_path, profile)
    assert check["verdict"] == "pass", check
    assert "genuine image verified" in check["reason"]
    assert "byte" in check["reason"] and "last" in check["reason"]


@pytest.mark.parametrize("profile", ["unsigned-firmware-accepted", "background+flaw"])
def test_a_meter_that_skips_the_signature_fails(tmp_path: Path, profile: str) -> None:
    check = _run(tmp_path, profile)
    assert check["verdict"] == "fail", check
    assert "changed: verified" in check["reason"]


def test_verification_that_never_ends_in_time_is_inconclusive(tmp_path: Path) -> None:
    check = _run(tmp_path, "background", timeout_s=0.1)
    assert check["verdict"] == "inconclusive", check
    assert "TEMPORARY_FAILURE" in check["reason"]
