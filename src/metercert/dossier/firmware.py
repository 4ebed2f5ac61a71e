"""Detached firmware signatures, judged against the manufacturer's trust anchor.

Format (metercert's own, documented in docs/catalog.md): the signature file holds
one DER-encoded ECDSA signature (``Ecdsa-Sig-Value ::= SEQUENCE { r, s }``) over
the raw bytes of the image file. The signing certificate is an X.509 PEM file with
an EC key on P-256 (hash SHA-256, as DLMS suite 1) or P-384 (hash SHA-384, as
suite 2). Anything else is refused: RSA or other curves are not a meter vendor's
DLMS-aligned signing key.

A signature that verifies with "the certificate the dossier supplies" proves only
that whoever made the dossier had a key. :func:`verify_signed_image` therefore
also requires what an auditor would: the signing certificate chains (through the
intermediates given) to the trust anchor the dossier declares, the manufacturer's
code-signing CA; every certificate of that chain was valid at the signing time;
intermediates are CAs allowed to sign certificates; and the signing certificate
is meant for code signing (digitalSignature key usage, codeSigning extended key
usage). The chain it found is reported either way.
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


@dataclass(frozen=True)
class ChainVerdict:
    """What checking one signed image against the trust anchor showed."""

    signature: SignatureCheck | None
    chain: tuple[str, ...]  # subjects, signing certificate first, trust anchor last
    problems: tuple[str, ...]
    judged_at: str
    signing_time_stated: bool

    @property
    def ok(self) -> bool:
        return not self.problems and self.signature is not None and self.signature.valid


def load_certificates(pem: bytes, what: str) -> list[x509.Certificate]:
    """Every certificate of a PEM file (one or more); :class:`SignatureProblem` if none parses."""
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise SignatureProblem(f"{what} is not a PEM X.509 certificate file ({exc})") from None
    if not certs:
        raise SignatureProblem(f"{what} holds no certificate")
    return certs


def _subject(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string() or "(empty subject)"


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _ext(cert: x509.Certificate, cls: type) -> object | None:
    try:
        return cert.extensions.get_extension_for_class(cls).value
    except x509.ExtensionNotFound:
        return None


def _valid_at(cert: x509.Certificate, moment: dt.datetime) -> bool:
    return cert.not_valid_before_utc <= moment <= cert.not_valid_after_utc


def verify_signed_image(
    image: bytes,
    signature: bytes,
    cert_pem: bytes,
    anchor_pem: bytes,
    intermediates_pem: tuple[bytes, ...] = (),
    *,
    signed_at: dt.datetime | None = None,
    now: dt.datetime | None = None,
) -> ChainVerdict:
    """Verify the signature and the signing certificate's path to the trust anchor."""
    moment_now = now or dt.datetime.now(dt.UTC)
    moment = signed_at or moment_now
    problems: list[str] = []
    leaf = load_signing_certificate(cert_pem)
    anchors = load_certificates(anchor_pem, "trust anchor")
    pool = [c for pem in intermediates_pem for c in load_certificates(pem, "chain certificate")]
    check = verify_image(image, signature, cert_pem, now=moment)
    if not check.valid:
        problems.append("signature does not verify with the signing certificate's key")
    if signed_at is not None and signed_at > moment_now:
        problems.append(f"stated signing time {signed_at.isoformat()} is in the future")

    chain = [leaf]
    anchor_hit: x509.Certificate | None = next((a for a in anchors if a == leaf), None)
    while anchor_hit is None and len(chain) <= 8:
        current = chain[-1]
        anchor_hit = next((a for a in anchors if _issued_by(current, a)), None)
        if anchor_hit is not None:
            break
        issuer = next((c for c in pool if c not in chain and _issued_by(current, c)), None)
        if issuer is None:
            break
        chain.append(issuer)
    if anchor_hit is None:
        if leaf.issuer == leaf.subject:
            problems.append(f"signing certificate '{_subject(leaf)}' is self-signed and is not the "
                            "declared trust anchor")
        else:
            problems.append(f"signing certificate '{_subject(leaf)}' does not chain to the declared "
                            f"trust anchor ({', '.join(_subject(a) for a in anchors)})")
    elif anchor_hit != chain[-1]:
        chain.append(anchor_hit)

    for cert in chain:
        if not _valid_at(cert, moment):
            problems.append(
                f"'{_subject(cert)}' was not valid at the signing time {moment.isoformat()} "
                f"(valid {cert.not_valid_before_utc.date()} to {cert.not_valid_after_utc.date()})"
            )
    for cert in chain[1:]:
        if anchor_hit is not None and cert == anchor_hit:
            continue
        bc = _ext(cert, x509.BasicConstraints)
        ku = _ext(cert, x509.KeyUsage)
        if not (isinstance(bc, x509.BasicConstraints) and bc.ca):
            problems.append(f"intermediate '{_subject(cert)}' is not a CA certificate")
        if isinstance(ku, x509.KeyUsage) and not ku.key_cert_sign:
            problems.append(f"intermediate '{_subject(cert)}' may not sign certificates")
    ku = _ext(leaf, x509.KeyUsage)
    if isinstance(ku, x509.KeyUsage) and not ku.digital_signature:
        problems.append("signing certificate's key usage lacks digitalSignature")
    eku = _ext(leaf, x509.ExtendedKeyUsage)
    if not isinstance(eku, x509.ExtendedKeyUsage):
        problems.append("signing certificate is not restricted to code signing (no extended key usage)")
    elif x509.oid.ExtendedKeyUsageOID.CODE_SIGNING not in eku:
        problems.append("signing certificate's extended key usage does not include codeSigning")
    bc = _ext(leaf, x509.BasicConstraints)
    if isinstance(bc, x509.BasicConstraints) and bc.ca and anchor_hit != leaf:
        problems.append("signing certificate is a CA certificate, not an end-entity code-signing one")
    return ChainVerdict(
        signature=check,
        chain=tuple(_subject(c) for c in chain),
        problems=tuple(problems),
        judged_at=moment.isoformat(),
        signing_time_stated=signed_at is not None,
    )
