"""X.509 certificates as DLMS suites 1 and 2 use them (Security Setup v1, attribute 6).

The DLMS certificate profile, as the public stacks implement it (gurux
``GXAsn1Converter.systemTitleToSubject`` / ``GXx509Certificate``):

* the subject's common name is the entity's system title in hex, 16 characters;
* the certificate type is told by keyUsage: digital signature only (type 0,
  ``digitalSignature``), key agreement only (type 1, ``keyAgreement``), TLS (type 2,
  both bits, and an extendedKeyUsage naming the TLS roles); a CA certificate has
  ``keyCertSign`` and basicConstraints CA;
* the key is on the suite's curve (P-256 for suite 1, P-384 for suite 2) and the issuer
  signs with the matching hash (ECDSA-SHA256 / ECDSA-SHA384).

Everything here is sans-IO and built with ``cryptography.x509``. :func:`check_certificate`
is what a meter does before import_certificate accepts a certificate, and what a client
does before trusting a meter's: chain to a trust anchor, validity now, key usage for the
role, curve for the suite, subject = the expected system title. Every refusal is a
:class:`CertificateRefused` whose message names the reason (never key bytes).
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterable

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from metercert.cosem.security_setup import CertificateIdentification, CertificateInfo
from metercert.security.errors import SecurityError


class CertificateRefused(SecurityError):
    """A certificate that fails the DLMS profile or does not chain to a trusted anchor."""


class CertificateType(enum.IntEnum):
    """certificate_type of Security Setup v1 (and of key usage in the profile)."""

    DIGITAL_SIGNATURE = 0
    KEY_AGREEMENT = 1
    TLS = 2
    OTHER = 3


class CertificateEntity(enum.IntEnum):
    """certificate_entity of Security Setup v1."""

    SERVER = 0
    CLIENT = 1
    CERTIFICATION_AUTHORITY = 2
    OTHER = 3


_USAGE = {
    CertificateType.DIGITAL_SIGNATURE: (True, False),
    CertificateType.KEY_AGREEMENT: (False, True),
    CertificateType.TLS: (True, True),
}
_CURVE_FOR_SUITE: dict[int, type[ec.EllipticCurve]] = {1: ec.SECP256R1, 2: ec.SECP384R1}


def _hash_for(key: ec.EllipticCurvePrivateKey) -> hashes.SHA256 | hashes.SHA384:
    return hashes.SHA384() if isinstance(key.curve, ec.SECP384R1) else hashes.SHA256()


def subject_for(system_title: bytes) -> x509.Name:
    """CN = the system title in upper-case hex, as gurux writes and reads it."""
    if len(system_title) != 8:
        raise CertificateRefused(f"system title must be 8 bytes, got {len(system_title)}")
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, system_title.hex().upper())])


def system_title_of(cert: x509.Certificate) -> bytes:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    text = str(names[0].value) if names else ""
    try:
        title = bytes.fromhex(text[:16])
    except ValueError:
        title = b""
    if len(title) != 8:
        raise CertificateRefused("certificate subject CN is not a system title (16 hex digits)")
    return title


def certificate_type_of(cert: x509.Certificate) -> CertificateType:
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return CertificateType.OTHER
    pair = (usage.digital_signature, usage.key_agreement)
    for kind, bits in _USAGE.items():
        if bits == pair and not usage.key_cert_sign:
            return kind
    return CertificateType.OTHER


def _key_usage(kind: CertificateType | None) -> x509.KeyUsage:
    ds, ka = _USAGE.get(kind, (False, False)) if kind is not None else (False, False)
    return x509.KeyUsage(
        digital_signature=ds, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=ka, key_cert_sign=kind is None,
        crl_sign=kind is None, encipher_only=False, decipher_only=False)


def build_ca(key: ec.EllipticCurvePrivateKey, *, name: str = "metercert DLMS test CA",
             now: dt.datetime | None = None, days: int = 3650) -> x509.Certificate:
    """A self-signed root for tests and labs (keyCertSign, CA:TRUE)."""
    start = now or dt.datetime.now(dt.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start - dt.timedelta(minutes=5))
            .not_valid_after(start + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .add_extension(_key_usage(None), critical=True)
            .add_extension(ski, critical=False)
            .sign(key, _hash_for(key)))


def issue(public_key: ec.EllipticCurvePublicKey, *, system_title: bytes, kind: CertificateType,
          issuer: x509.Certificate, issuer_key: ec.EllipticCurvePrivateKey,
          now: dt.datetime | None = None, days: int = 825,
          not_before: dt.datetime | None = None, critical: bool = True) -> x509.Certificate:
    """An end-entity certificate in the DLMS profile (CN = system title, key usage by type).

    basicConstraints and keyUsage are critical, as RFC 5280 asks. ``critical=False`` exists
    for one peer: gurux-dlms 1.0.203 reads a critical extension's flag as its value and
    cannot parse such certificates at all.
    """
    if kind not in _USAGE:
        raise CertificateRefused(f"certificate type {kind!r} has no DLMS key usage")
    start = not_before or (now or dt.datetime.now(dt.UTC)) - dt.timedelta(minutes=5)
    aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key())
    builder = x509.CertificateBuilder()
    if kind is CertificateType.TLS:  # TLS certificates name their TLS roles (gurux insists)
        builder = builder.add_extension(x509.ExtendedKeyUsage(
            [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return (builder.subject_name(subject_for(system_title))
            .issuer_name(issuer.subject).public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=critical)
            .add_extension(_key_usage(kind), critical=critical)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(aki, critical=False)
            .sign(issuer_key, _hash_for(issuer_key)))


def certificate_request(private_key: ec.EllipticCurvePrivateKey, *, system_title: bytes,
                        kind: CertificateType) -> x509.CertificateSigningRequest:
    """PKCS #10 request as generate_certificate_request returns it (subject CN = title)."""
    return (x509.CertificateSigningRequestBuilder().subject_name(subject_for(system_title))
            .add_extension(_key_usage(kind), critical=True)
            .sign(private_key, _hash_for(private_key)))


def load_certificate(data: bytes) -> x509.Certificate:
    """DER (as import_certificate carries it) or PEM; a one-line refusal otherwise."""
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError:
        raise CertificateRefused("not an X.509 certificate (DER or PEM)") from None


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def check_certificate(cert: x509.Certificate, *, trust_anchors: Iterable[x509.Certificate],
                      intermediates: Iterable[x509.Certificate] = (),
                      kind: CertificateType | None = None, system_title: bytes | None = None,
                      suite: int | None = None, now: dt.datetime | None = None) -> None:
    """Refuse ``cert`` unless it chains to an anchor and fits the DLMS profile.

    Checked: the chain (signatures and issuer names, at most 4 links, every issuer a CA with
    keyCertSign), validity at ``now`` for every link, the key usage of ``kind``, the curve
    of ``suite``, and the subject system title.
    """
    at = now or dt.datetime.now(dt.UTC)
    anchors = list(trust_anchors)
    pool = list(intermediates)
    chain = [cert]
    for _ in range(4):
        current = chain[-1]
        if any(_issued_by(current, a) for a in anchors):
            break
        parent = next((c for c in pool if c not in chain and _issued_by(current, c)), None)
        if parent is None:
            raise CertificateRefused("certificate does not chain to a trusted certification "
                                     "authority")
        chain.append(parent)
    else:
        raise CertificateRefused("certificate chain is longer than 4 links")
    for link in chain:
        if not link.not_valid_before_utc <= at <= link.not_valid_after_utc:
            which = "certificate" if link is cert else "issuing CA certificate"
            raise CertificateRefused(f"{which} is not valid now (valid "
                                     f"{link.not_valid_before_utc:%Y-%m-%d} to "
                                     f"{link.not_valid_after_utc:%Y-%m-%d})")
    for issuer in chain[1:]:
        try:
            bc = issuer.extensions.get_extension_for_class(x509.BasicConstraints).value
            ku = issuer.extensions.get_extension_for_class(x509.KeyUsage).value
        except x509.ExtensionNotFound:
            raise CertificateRefused("an issuing certificate is not marked as a CA") from None
        if not (bc.ca and ku.key_cert_sign):
            raise CertificateRefused("an issuing certificate is not marked as a CA")
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise CertificateRefused("DLMS suites 1/2 need an elliptic-curve key")
    if suite is not None:
        curve = _CURVE_FOR_SUITE.get(suite)
        if curve is None:
            raise CertificateRefused(f"security suite {suite} uses no certificates")
        if not isinstance(key.curve, curve):
            raise CertificateRefused(f"key is on {key.curve.name}; suite {suite} needs "
                                     f"{curve.name}")
    if kind is not None and certificate_type_of(cert) is not kind:
        raise CertificateRefused(f"key usage does not make it a {kind.name.lower()} "
                                 "certificate")
    if system_title is not None and system_title_of(cert) != system_title:
        raise CertificateRefused("certificate subject is another system title")


def _serial_bytes(cert: x509.Certificate) -> bytes:
    n = cert.serial_number
    return n.to_bytes(max(1, (n.bit_length() + 8) // 8), "big")  # DER INTEGER content


def certificate_info(cert: x509.Certificate, entity: CertificateEntity) -> CertificateInfo:
    """The attribute-6 entry for ``cert``: serial as DER INTEGER content, names as DER."""
    alt = b""
    try:
        alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value \
            .public_bytes()
    except x509.ExtensionNotFound:
        pass
    return CertificateInfo(int(entity), int(certificate_type_of(cert)), _serial_bytes(cert),
                           cert.issuer.public_bytes(), cert.subject.public_bytes(), alt)


def matches(cert: x509.Certificate, ident: CertificateIdentification,
            entity: CertificateEntity | None = None) -> bool:
    """Whether export/remove_certificate's identification names ``cert``."""
    if ident.by_entity:
        try:
            title = system_title_of(cert)
        except CertificateRefused:
            return False
        return (title == ident.system_title and ident.certificate_type ==
                int(certificate_type_of(cert)) and (entity is None or ident.entity == int(entity)))
    return (ident.serial_number == _serial_bytes(cert)
            and ident.issuer == cert.issuer.public_bytes())
