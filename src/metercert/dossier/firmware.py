"""Detached firmware signatures.

Format (metercert's own, documented in docs/catalog.md): the signature file holds
one DER-encoded ECDSA signature (``Ecdsa-Sig-Value ::= SEQUENCE { r, s }``) over
the raw bytes of the image file. The vendor certificate is an X.509 PEM file with
an EC key on P-256 (hash SHA-256, as DLMS suite 1) or P-384 (hash SHA-384, as
suite 2). Anything else is refused: RSA or other curves are not a meter vendor's
DLMS-aligned signing key.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

_HASH_FOR_CURVE: dict[str, type[hashes.HashAlgorithm]] = {
    "secp256r1": hashes.SHA256,
    "secp384r1": hashes.SHA384,
}


class SignatureProblem(Exception):
    """The signature or certificate cannot be used (as opposed to: it does not verify)."""


@dataclass(frozen=True)
class SignatureCheck:
    """What verifying one image showed; ``valid`` is the verdict."""

    valid: bool
    curve: str
    hash_name: str
    subject: str
    not_after: str
    cert_current: bool
    image_sha256: str


def load_signing_certificate(pem: bytes) -> x509.Certificate:
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise SignatureProblem(f"certificate is not a PEM X.509 certificate ({exc})") from None
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise SignatureProblem("certificate key is not an EC key (P-256 or P-384 expected)")
    if key.curve.name not in _HASH_FOR_CURVE:
        raise SignatureProblem(f"certificate curve {key.curve.name} is not P-256 or P-384")
    return cert


def verify_image(image: bytes, signature: bytes, cert_pem: bytes, *, now: dt.datetime | None = None) -> SignatureCheck:
    """Verify ``signature`` over ``image`` with the certificate's key."""
    cert = load_signing_certificate(cert_pem)
    key = cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    algorithm = _HASH_FOR_CURVE[key.curve.name]()
    try:
        decode_dss_signature(signature)
    except ValueError:
        raise SignatureProblem("signature file is not a DER ECDSA signature (SEQUENCE of r, s)") from None
    try:
        key.verify(signature, image, ec.ECDSA(algorithm))
        valid = True
    except InvalidSignature:
        valid = False
    moment = now or dt.datetime.now(dt.UTC)
    current = cert.not_valid_before_utc <= moment <= cert.not_valid_after_utc
    return SignatureCheck(
        valid=valid,
        curve=key.curve.name,
        hash_name=algorithm.name.upper(),
        subject=cert.subject.rfc4514_string(),
        not_after=cert.not_valid_after_utc.date().isoformat(),
        cert_current=current,
        image_sha256=hashlib.sha256(image).hexdigest(),
    )
