"""DOSSIER-FW-01 judges the signer: a chain to the declared code-signing CA, validity at the
signing time, code-signing key usage. A signature that merely verifies is not enough."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from metercert.checks.base import Verdict

from ._support import assess

UTC = dt.UTC


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject: str, key, issuer: str, issuer_key, *, ca: bool = False, eku: bool = True,
          not_before=dt.datetime(2025, 1, 1, tzinfo=UTC), not_after=dt.datetime(2045, 1, 1, tzinfo=UTC)):
    builder = (
        x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(not_before).not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
    else:
        builder = builder.add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
        if eku:
            builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]),
                                            critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _resign(folder: Path, image: bytes, key, cert, anchor=None) -> None:
    """Write ``image``, its signature by ``key``, the certificate, and keep the SBOM hash in step."""
    (folder / "firmware" / "meter-fw-0.1.0.bin").write_bytes(image)
    (folder / "firmware" / "meter-fw-0.1.0.bin.sig").write_bytes(key.sign(image, ec.ECDSA(hashes.SHA256())))
    (folder / "certs" / "vendor-signing.pem").write_bytes(_pem(cert))
    if anchor is not None:
        (folder / "certs" / "vendor-ca.pem").write_bytes(_pem(anchor))
    sbom = json.loads((folder / "sbom.cdx.json").read_text())
    sbom["components"][0]["hashes"][0]["content"] = hashlib.sha256(image).hexdigest()
    (folder / "sbom.cdx.json").write_text(json.dumps(sbom))


def test_reference_firmware_passes_and_reports_its_chain(reference: Path):
    outcome = assess(reference)["DOSSIER-FW-01"]
    assert outcome.verdict is Verdict.PASS, outcome.reason
    chain = next(e for e in outcome.evidence if e.label == "certificate chain").content
    lines = chain.splitlines()
    assert lines[0].startswith("0: ") and "metercert sample firmware signing" in lines[0]
    assert lines[1].startswith("1: ") and "code-signing CA" in lines[1]
    assert "signed at 2026-01-15" in chain


def test_modified_image_signed_by_self_signed_expired_not_the_vendor_fails(reference: Path):
    """The issue's case: the old check verified against whatever certificate was supplied."""
    key = ec.generate_private_key(ec.SECP256R1())
    rogue = _cert("Not The Vendor", key, "Not The Vendor", key,
                  not_before=dt.datetime(2020, 1, 1, tzinfo=UTC), not_after=dt.datetime(2021, 1, 1, tzinfo=UTC))
    image = (reference / "firmware" / "meter-fw-0.1.0.bin").read_bytes() + b"\x90backdoor"
    _resign(reference, image, key, rogue)
    outcome = assess(reference)["DOSSIER-FW-01"]
    assert outcome.verdict is Verdict.FAIL
    assert "'CN=Not The Vendor' is self-signed and is not the declared trust anchor" in outcome.reason
    assert "was not valid at the signing time" in outcome.reason
    assert any("Not The Vendor" in e.content for e in outcome.evidence)


def test_no_declared_trust_anchor_fails(reference: Path):
    text = (reference / "dossier.yaml").read_text()
    (reference / "dossier.yaml").write_text(text.replace("firmware_trust_anchor: certs/vendor-ca.pem\n", ""))
    outcome = assess(reference)["DOSSIER-FW-01"]
    assert outcome.verdict is Verdict.FAIL and "no trust anchor" in outcome.reason


def _vendor(reference: Path):
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("Vendor Code Signing CA", ca_key, "Vendor Code Signing CA", ca_key, ca=True)
    return ca_key, ca, (reference / "firmware" / "meter-fw-0.1.0.bin").read_bytes()


def test_certificate_without_code_signing_usage_fails(reference: Path):
    ca_key, ca, image = _vendor(reference)
    key = ec.generate_private_key(ec.SECP256R1())
    _resign(reference, image, key, _cert("TLS server", key, "Vendor Code Signing CA", ca_key, eku=False), ca)
    outcome = assess(reference)["DOSSIER-FW-01"]
    assert outcome.verdict is Verdict.FAIL and "not restricted to code signing" in outcome.reason


def test_validity_is_judged_at_the_signing_time(reference: Path):
    ca_key, ca, image = _vendor(reference)
    key = ec.generate_private_key(ec.SECP256R1())
    # expired today, but valid on 2026-01-15 when the dossier says the image was signed
    leaf = _cert("Vendor signer 2025", key, "Vendor Code Signing CA", ca_key,
                 not_before=dt.datetime(2025, 6, 1, tzinfo=UTC), not_after=dt.datetime(2026, 6, 1, tzinfo=UTC))
    _resign(reference, image, key, leaf, ca)
    outcome = assess(reference)["DOSSIER-FW-01"]
    assert outcome.verdict is Verdict.PASS, outcome.reason
    text = (reference / "dossier.yaml").read_text()
    (reference / "dossier.yaml").write_text(text.replace("signed_at: 2026-01-15T00:00:00Z",
                                                         "signed_at: 2026-07-01T00:00:00Z"))
    outcome = assess(reference)["DOSSIER-FW-01"]
    assert outcome.verdict is Verdict.FAIL and "not valid at the signing time 2026-07-01" in outcome.reason


def test_signer_from_another_ca_fails_even_with_a_valid_signature(reference: Path):
    other_key = ec.generate_private_key(ec.SECP256R1())
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = _cert("Someone Else signer", key, "Someone Else CA", other_key)
    image = (reference / "firmware" / "meter-fw-0.1.0.bin").read_bytes()
    _resign(reference, image, key, leaf)
    outcome = assess(reference)["DOSSIER-FW-01"]
    assert outcome.verdict is Verdict.FAIL and "does not chain to the declared trust anchor" in outcome.reason
    sig = next(e for e in outcome.evidence if e.label == "signature").content
    assert "verifies" in sig and "DOES NOT" not in sig  # the signature itself is fine; the signer is not
