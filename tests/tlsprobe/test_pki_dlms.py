"""``metercert pki init --dlms`` (issue 16): DLMS suite-1/2 certificates for the meter and the
head-end from the operator root, in the DLMS profile, usable by ``apdu protect / inspect``."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from metercert.security import certificates as certs
from metercert.security.certificates import CertificateType

METER, CLIENT = bytes.fromhex("4D4D4D0000000001"), bytes.fromhex("4D4D4D0000BC614E")


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "metercert", *args], capture_output=True,
                          text=True, timeout=60, check=False, cwd=cwd)


@pytest.mark.parametrize("curve,suite", [("P-256", 1), ("P-384", 2)])
def test_dlms_certificates_chain_to_the_root_in_the_dlms_profile(tmp_path: Path, curve: str,
                                                                  suite: int) -> None:
    proc = _cli("pki", "init", "pki", "--dlms", "--curve", curve, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    pki = tmp_path / "pki"
    root = certs.load_certificate((pki / "ca.pem").read_bytes())
    for stem, title, kind in (("meter-dlms-signing", METER, CertificateType.DIGITAL_SIGNATURE),
                              ("meter-dlms-agreement", METER, CertificateType.KEY_AGREEMENT),
                              ("headend-dlms-signing", CLIENT, CertificateType.DIGITAL_SIGNATURE),
                              ("headend-dlms-agreement", CLIENT, CertificateType.KEY_AGREEMENT)):
        cert = certs.load_certificate((pki / f"{stem}.pem").read_bytes())
        certs.check_certificate(cert, trust_anchors=[root], kind=kind, system_title=title,
                                suite=suite)
        assert stat.S_IMODE((pki / f"{stem}.key").stat().st_mode) == 0o600


def test_dlms_certificates_sign_and_agree_for_apdu_protect_and_inspect(tmp_path: Path) -> None:
    (tmp_path / "keys.yaml").write_text(
        "client_system_title: 4D4D4D0000BC614E\nserver_system_title: 4D4D4D0000000001\n"
        "guek: 000102030405060708090A0B0C0D0E0F\nak: D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF\n")
    assert _cli("pki", "init", "pki", "--dlms", cwd=tmp_path).returncode == 0
    built = _cli("apdu", "protect", "C0010000080000010000FF0200", "--keys", "keys.yaml", "--ic",
                 "1", "--suite", "1", "--form", "general", "--key-info", "agreed-1e1s",
                 "--signing-key", "pki/headend-dlms-signing.key", "--peer-agreement-key",
                 "pki/meter-dlms-agreement.pem", "--sign", "first", cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    opened = _cli("apdu", "inspect", built.stdout.strip(), "--keys", "keys.yaml",
                  "--agreement-key", "pki/meter-dlms-agreement.key", "--signer-key",
                  "pki/headend-dlms-signing.pem", "--json", cwd=tmp_path)
    assert opened.returncode == 0, opened.stderr
    doc = json.loads(opened.stdout)
    assert [layer["tag"] for layer in doc["layers"]] == [0xDD, 0xDF]
    assert "C0010000080000010000FF0200" in opened.stdout.upper()


def test_bad_system_title_is_a_one_line_error_and_writes_nothing(tmp_path: Path) -> None:
    proc = _cli("pki", "init", "pki", "--dlms", "--client-title", "ABCD", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "metercert: error: --client-title: must be 8 bytes, got 2"]
    assert not (tmp_path / "pki").exists()
