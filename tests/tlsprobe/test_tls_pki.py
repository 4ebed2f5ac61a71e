"""The operator PKI: X.509 v3 profile, 0600 keys, CRL, and the deliberately bad certificates."""

from __future__ import annotations

import datetime as dt
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from metercert.cli import main
from metercert.errors import InputFileError, UsageError
from metercert.tlsprobe import pki


def _load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_write_pki_creates_a_v3_profiled_chain(tmp_path: Path) -> None:
    paths = pki.write_pki(tmp_path / "pki")
    ca, meter, headend = _load(paths.ca_cert), _load(paths.meter_cert), _load(paths.headend_cert)
    for cert in (ca, meter, headend):
        assert cert.version == x509.Version.v3
        assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
        assert cert.public_key().curve.name == "secp256r1"
    meter.verify_directly_issued_by(ca)
    headend.verify_directly_issued_by(ca)

    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    bc = meter.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca is False
    ku = meter.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and not ku.value.key_cert_sign
    assert list(meter.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH
    ]
    assert list(headend.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH
    ]
    san = meter.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    dp = meter.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert dp[0].full_name[0].value == pki.DEFAULT_CRL_URL


def test_private_keys_are_owner_only_and_crl_is_empty_and_signed(tmp_path: Path) -> None:
    paths = pki.write_pki(tmp_path)
    for key in (paths.ca_key, paths.meter_key, paths.headend_key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(paths.meter_cert.stat().st_mode) & 0o077 != 0o077  # certs are public
    crl = x509.load_pem_x509_crl(paths.crl.read_bytes())
    assert len(list(crl)) == 0
    assert crl.is_signature_valid(_load(paths.ca_cert).public_key())  # type: ignore[arg-type]


def test_an_existing_pki_is_never_overwritten(tmp_path: Path) -> None:
    """pki init over an operator's PKI refuses (it silently replaced ca.key before)."""
    loose = tmp_path / "meter.key"
    loose.write_text("old")
    loose.chmod(0o644)
    with pytest.raises(InputFileError, match=r"already holds a PKI \(meter.key\)"):
        pki.write_pki(tmp_path)
    assert loose.read_text() == "old" and stat.S_IMODE(loose.stat().st_mode) == 0o644
    assert not (tmp_path / "ca.key").exists()
    first = pki.write_pki(tmp_path / "op")
    ca_key = first.ca_key.read_bytes()
    assert main(["pki", "init", str(tmp_path / "op")]) == 2
    assert first.ca_key.read_bytes() == ca_key


def test_p384_and_lifetime(tmp_path: Path) -> None:
    paths = pki.write_pki(tmp_path, curve="P-384", days=10)
    meter = _load(paths.meter_cert)
    assert meter.public_key().curve.name == "secp384r1"  # type: ignore[union-attr]
    assert meter.signature_hash_algorithm.name == "sha384"  # type: ignore[union-attr]
    assert (meter.not_valid_after_utc - meter.not_valid_before_utc).days == 10


def test_bad_certificates_are_bad_in_the_intended_way_only() -> None:
    ca = pki.issue("ca", "ca", crl_url=None)
    sha1 = pki.sha1_signed("m", ca)
    assert sha1.certificate.signature_hash_algorithm.name == "sha1"  # type: ignore[union-attr]
    ca.key.public_key().verify(  # type: ignore[call-arg]
        sha1.certificate.signature,
        sha1.certificate.tbs_certificate_bytes,
        ec.ECDSA(hashes.SHA1()),
    )
    weak = pki.weak_rsa("m", ca)
    assert isinstance(weak.key, rsa.RSAPrivateKey) and weak.key.key_size == 1024
    weak.certificate.verify_directly_issued_by(ca.certificate)
    old = pki.expired("m", ca)
    assert old.certificate.not_valid_after_utc < dt.datetime.now(dt.UTC)
    v1 = pki.version1("m", ca)
    assert v1.certificate.version == x509.Version.v1
    assert len(v1.certificate.extensions) == 0
    v1.certificate.verify_directly_issued_by(ca.certificate)
    rsa_ca = pki.issue("rsa-ca", "ca", key_spec="RSA-2048", crl_url=None)
    assert pki.sha1_signed("m", rsa_ca).certificate.signature_hash_algorithm.name == "sha1"  # type: ignore[union-attr]


def test_issued_repr_hides_the_key() -> None:
    issued = pki.issue("m", "server")
    text = repr(issued)
    assert (
        "hidden" in text
        and "PRIVATE" not in text
        and str(issued.key.private_numbers().private_value) not in text
    )  # type: ignore[union-attr]


def test_bad_requests_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unknown key type"):
        pki.generate_key("P-999")
    with pytest.raises(UsageError, match="--days must be 1-36500"):
        pki.write_pki(tmp_path, days=0)
    with pytest.raises(UsageError, match="--days must be 1-36500"):  # was an OverflowError
        pki.write_pki(tmp_path, days=1_000_000_000)
    assert main(["pki", "init", str(tmp_path / "x"), "--days", "1000000000"]) == 2
    assert not (tmp_path / "x").exists()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InputFileError, match="not a directory"):
        pki.write_pki(blocker)


def test_pki_init_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pki", "init", str(tmp_path / "op"), "--curve", "P-384", "--days", "30"]) == 0
    assert (tmp_path / "op" / "meter.pem").exists() and (tmp_path / "op" / "ca.crl").exists()
    assert "(0600)" in capsys.readouterr().out
    blocker = tmp_path / "f"
    blocker.write_text("x")
    assert main(["pki", "init", str(blocker)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("metercert: error:") and err.count("\n") == 1
