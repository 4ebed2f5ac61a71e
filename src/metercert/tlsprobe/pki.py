"""A small operator PKI for IEC 62351-3 mutual TLS, built with ``cryptography``.

``metercert pki init DIR`` writes a root CA, a meter (TLS server) certificate and
a head-end (TLS client) certificate, all X.509 v3 with the extensions a 62351-3
certificate profile expects: basicConstraints, keyUsage, extendedKeyUsage, SAN
(``localhost`` + ``127.0.0.1``), a CRL distribution point, and an empty CRL signed
by the CA. Keys are ECDSA P-256 unless asked otherwise; private keys are written
with mode 0600.

The same building blocks issue *deliberately bad* certificates (SHA-1 signed,
RSA-1024, expired, X.509 v1) so the TLS audit can be proven to catch them.
``cryptography`` refuses to build SHA-1 signed or v1 certificates, so those two are
made by rewriting a normal certificate's DER and re-signing it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from metercert.errors import InputFileError, UsageError

KeySpec = Literal["P-256", "P-384", "RSA-1024", "RSA-2048", "RSA-3072"]
Role = Literal["ca", "server", "client"]
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

DEFAULT_CRL_URL = "http://pki.metercert.invalid/operator-root.crl"
_CURVES: dict[str, ec.EllipticCurve] = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1()}
# Hashes cryptography's X.509 builders accept (SHA-1 is refused, see sha1_signed).
SigningHash = hashes.SHA224 | hashes.SHA256 | hashes.SHA384 | hashes.SHA512
_HASH_FOR_CURVE: dict[str, SigningHash] = {
    "P-256": hashes.SHA256(),
    "P-384": hashes.SHA384(),
}


class PkiError(UsageError):
    """A PKI request that cannot be honoured (unknown key type, bad lifetime)."""


def generate_key(spec: KeySpec | str = "P-256") -> PrivateKey:
    """A fresh private key: ``P-256``/``P-384`` ECDSA or ``RSA-<bits>``."""
    if spec in _CURVES:
        return ec.generate_private_key(_CURVES[spec])
    if spec.startswith("RSA-") and spec[4:].isdigit():
        bits = int(spec[4:])
        if bits < 512:
            raise PkiError(f"RSA key size {bits} is too small to generate")
        # RSA-1024 is only ever created on purpose, as a flawed test certificate.
        return rsa.generate_private_key(public_exponent=65537, key_size=bits)
    raise PkiError(f"unknown key type {spec!r} (use P-256, P-384 or RSA-<bits>)")


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "metercert test operator"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


@dataclass(frozen=True)
class Issued:
    """A certificate with its private key (the key never appears in the repr)."""

    certificate: x509.Certificate
    key: PrivateKey

    def __repr__(self) -> str:
        return f"Issued(subject={self.certificate.subject.rfc4514_string()!r}, key=<hidden>)"

    def cert_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def issue(
    common_name: str,
    role: Role,
    *,
    issuer: Issued | None = None,
    key: PrivateKey | None = None,
    key_spec: KeySpec | str = "P-256",
    days: int = 365,
    not_before: dt.datetime | None = None,
    signature_hash: SigningHash | None = None,
    crl_url: str | None = DEFAULT_CRL_URL,
    ocsp_url: str | None = None,
    san_dns: tuple[str, ...] = ("localhost",),
    san_ip: tuple[str, ...] = ("127.0.0.1",),
    extensions: bool = True,
) -> Issued:
    """Issue one certificate; ``issuer=None`` makes it self-signed.

    The defaults follow the 62351-3 profile; the arguments that weaken it
    (``key_spec="RSA-1024"``, a past ``not_before``, ``crl_url=None``,
    ``extensions=False``) exist to build flawed test fixtures.
    """
    if days == 0:
        raise PkiError("certificate lifetime must not be 0 days")
    key = key or generate_key(key_spec)
    start = not_before or (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5))
    end = start + dt.timedelta(days=days)
    if end < start:
        start, end = end, start
    signer_key = issuer.key if issuer else key
    issuer_name = issuer.certificate.subject if issuer else _name(common_name)
    if signature_hash is None:
        curve = getattr(signer_key, "curve", None)
        signature_hash = _HASH_FOR_CURVE.get(_curve_label(curve), hashes.SHA256())

    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
    )
    if extensions:
        builder = _add_profile_extensions(
            builder, role, key, issuer, crl_url, ocsp_url, san_dns, san_ip
        )
    return Issued(builder.sign(signer_key, signature_hash), key)


def _curve_label(curve: ec.EllipticCurve | None) -> str:
    if isinstance(curve, ec.SECP384R1):
        return "P-384"
    return "P-256"


def _add_profile_extensions(
    builder: x509.CertificateBuilder,
    role: Role,
    key: PrivateKey,
    issuer: Issued | None,
    crl_url: str | None,
    ocsp_url: str | None,
    san_dns: tuple[str, ...],
    san_ip: tuple[str, ...],
) -> x509.CertificateBuilder:
    is_ca = role == "ca"
    builder = builder.add_extension(
        x509.BasicConstraints(ca=is_ca, path_length=0 if is_ca else None), critical=True
    )
    builder = builder.add_extension(
        x509.KeyUsage(
            digital_signature=not is_ca,
            content_commitment=False,
            # Static-RSA key transport needs keyEncipherment; ECDSA keys never do.
            key_encipherment=(not is_ca) and isinstance(key, rsa.RSAPrivateKey),
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=is_ca,
            crl_sign=is_ca,
            encipher_only=False,
            decipher_only=False,
        ),
        critical=True,
    )
    builder = builder.add_extension(
        x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    if not is_ca:
        usage = (
            ExtendedKeyUsageOID.SERVER_AUTH if role == "server" else ExtendedKeyUsageOID.CLIENT_AUTH
        )
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        names: list[x509.GeneralName] = [x509.DNSName(d) for d in san_dns]
        names += [x509.IPAddress(ipaddress.ip_address(i)) for i in san_ip]
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        if crl_url:
            point = x509.DistributionPoint(
                full_name=[x509.UniformResourceIdentifier(crl_url)],
                relative_name=None,
                reasons=None,
                crl_issuer=None,
            )
            builder = builder.add_extension(x509.CRLDistributionPoints([point]), critical=False)
        if ocsp_url:
            builder = builder.add_extension(
                x509.AuthorityInformationAccess(
                    [
                        x509.AccessDescription(
                            x509.oid.AuthorityInformationAccessOID.OCSP,
                            x509.UniformResourceIdentifier(ocsp_url),
                        )
                    ]
                ),
                critical=False,
            )
    return builder


def empty_crl(ca: Issued, *, days: int = 30) -> x509.CertificateRevocationList:
    """A CRL with no revoked entries, signed by ``ca`` (published at the CRL DP URL)."""
    now = dt.datetime.now(dt.UTC)
    curve = getattr(ca.key, "curve", None)
    return (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.certificate.subject)
        .last_update(now)
        .next_update(now + dt.timedelta(days=days))
        .add_extension(x509.CRLNumber(1), critical=False)
        .sign(ca.key, _HASH_FOR_CURVE.get(_curve_label(curve), hashes.SHA256()))
    )


def crl_revoking(
    ca: Issued, revoked: list[x509.Certificate], *, days: int = 30
) -> x509.CertificateRevocationList:
    """A CRL signed by ``ca`` listing ``revoked`` (tests: a server that checks revocation)."""
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.certificate.subject)
        .last_update(now)
        .next_update(now + dt.timedelta(days=days))
        .add_extension(x509.CRLNumber(2), critical=False)
    )
    for cert in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(cert.serial_number)
            .revocation_date(now - dt.timedelta(minutes=1))
            .build()
        )
    curve = getattr(ca.key, "curve", None)
    return builder.sign(ca.key, _HASH_FOR_CURVE.get(_curve_label(curve), hashes.SHA256()))


@dataclass(frozen=True)
class PkiPaths:
    """Where ``write_pki`` put each file."""

    directory: Path
    ca_cert: Path
    ca_key: Path
    crl: Path
    meter_cert: Path
    meter_key: Path
    headend_cert: Path
    headend_key: Path


def write_private_key(path: Path, issued: Issued) -> None:
    """Write a PEM private key readable by the owner only (0600 from creation)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(issued.key_pem())
    os.chmod(path, 0o600)  # an existing file keeps its old mode through O_CREAT


def write_issued(directory: Path, stem: str, issued: Issued) -> tuple[Path, Path]:
    """Write ``<stem>.pem`` (certificate) and ``<stem>.key`` (0600) into ``directory``."""
    cert_path, key_path = directory / f"{stem}.pem", directory / f"{stem}.key"
    cert_path.write_bytes(issued.cert_pem())
    write_private_key(key_path, issued)
    return cert_path, key_path


MAX_DAYS = 36500
#: what pki init writes (none of them may exist beforehand)
PKI_FILES = ("ca.pem", "ca.key", "ca.crl", "meter.pem", "meter.key", "headend.pem", "headend.key")


def write_pki(
    directory: str | os.PathLike[str],
    *,
    curve: Literal["P-256", "P-384"] = "P-256",
    days: int = 365,
    crl_url: str = DEFAULT_CRL_URL,
) -> PkiPaths:
    """Create the operator PKI in ``directory`` (created if missing) and return the paths."""
    if curve not in _CURVES:
        raise PkiError(f"curve must be P-256 or P-384, not {curve!r}")
    if not 1 <= days <= MAX_DAYS:
        # the CA lives twice as long, and X.509 dates end at 9999-12-31
        raise PkiError(f"--days must be 1-{MAX_DAYS} (100 years), not {days}")
    out = Path(directory)
    if out.exists() and not out.is_dir():
        raise InputFileError(f"{out}: exists and is not a directory")
    existing = [n for n in PKI_FILES if (out / n).exists()]
    if existing:  # an operator's CA key is never silently replaced
        raise InputFileError(
            f"{out}: already holds a PKI ({', '.join(existing)}); pki init "
            "does not overwrite it: choose an empty folder"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputFileError(f"{out}: cannot create directory: {exc.strerror}") from None

    ca = issue("metercert operator root CA", "ca", key_spec=curve, days=days * 2, crl_url=None)
    meter = issue("meter-0001", "server", issuer=ca, key_spec=curve, days=days, crl_url=crl_url)
    headend = issue("head-end-01", "client", issuer=ca, key_spec=curve, days=days, crl_url=crl_url)
    try:
        ca_cert, ca_key = write_issued(out, "ca", ca)
        crl_path = out / "ca.crl"
        crl_path.write_bytes(empty_crl(ca).public_bytes(serialization.Encoding.PEM))
        meter_cert, meter_key = write_issued(out, "meter", meter)
        headend_cert, headend_key = write_issued(out, "headend", headend)
    except OSError as exc:
        raise InputFileError(f"{out}: cannot write PKI files: {exc.strerror}") from None
    return PkiPaths(
        out, ca_cert, ca_key, crl_path, meter_cert, meter_key, headend_cert, headend_key
    )


# Deliberately flawed certificates, for proving the audit fails them.


def sha1_signed(common_name: str, issuer: Issued, role: Role = "server") -> Issued:
    """A leaf signed with SHA-1 (forbidden by 62351-3).

    ``cryptography`` refuses to build SHA-1 signed certificates, so the leaf is
    built normally and its TBS part is re-signed: the signature AlgorithmIdentifier
    is swapped in the DER and the issuer key signs the result with SHA-1.
    """
    good = issue(common_name, role, issuer=issuer)
    return Issued(_rewrite_and_sign(good.certificate, issuer.key, "sha1"), good.key)


# DER surgery for sha1_signed / version1: just enough TLV handling for a Certificate.
_ALGORITHM_ID = {
    ("ec", "sha1"): bytes.fromhex("300906072a8648ce3d0401"),  # ecdsa-with-SHA1
    ("ec", "sha256"): bytes.fromhex("300a06082a8648ce3d040302"),  # ecdsa-with-SHA256
    ("rsa", "sha1"): bytes.fromhex("300d06092a864886f70d0101050500"),  # sha1WithRSAEncryption
    ("rsa", "sha256"): bytes.fromhex("300d06092a864886f70d01010b0500"),  # sha256WithRSA
}


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _der_tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _der_length(len(content)) + content


def _der_elements(content: bytes) -> list[bytes]:
    """Split DER content into its complete TLV elements (single-byte tags only)."""
    out, i = [], 0
    while i < len(content):
        first = content[i + 1]
        if first < 0x80:
            header, length = 2, first
        else:
            count = first & 0x7F
            header, length = 2 + count, int.from_bytes(content[i + 2 : i + 2 + count], "big")
        out.append(content[i : i + header + length])
        i += header + length
    return out


def _der_content(element: bytes) -> bytes:
    first = element[1]
    return element[2 + (first & 0x7F if first >= 0x80 else 0) :]


def _rewrite_and_sign(
    cert: x509.Certificate, issuer_key: PrivateKey, hash_name: str, *, version1: bool = False
) -> x509.Certificate:
    """Re-sign ``cert``'s TBS with ``hash_name``; ``version1`` drops version and extensions."""
    family = "rsa" if isinstance(issuer_key, rsa.RSAPrivateKey) else "ec"
    algorithm_id = _ALGORITHM_ID[(family, hash_name)]
    parts = _der_elements(_der_content(cert.tbs_certificate_bytes))
    # TBSCertificate: [0] version, serialNumber, signature AlgorithmIdentifier, issuer,
    # validity, subject, subjectPublicKeyInfo, [3] extensions.
    parts[2] = algorithm_id
    if version1:
        parts = [p for p in parts if p[0] not in (0xA0, 0xA3)]
    tbs = _der_tlv(0x30, b"".join(parts))
    hash_alg: hashes.HashAlgorithm = hashes.SHA1() if hash_name == "sha1" else hashes.SHA256()
    if isinstance(issuer_key, rsa.RSAPrivateKey):
        signature = issuer_key.sign(tbs, padding.PKCS1v15(), hash_alg)
    else:
        signature = issuer_key.sign(tbs, ec.ECDSA(hash_alg))
    der = _der_tlv(0x30, tbs + algorithm_id + _der_tlv(0x03, b"\x00" + signature))
    return x509.load_der_x509_certificate(der)


def version1(common_name: str, issuer: Issued) -> Issued:
    """An X.509 v1 leaf (no extensions at all), SHA-256 signed.

    ``cryptography`` only builds v3, so a v3 certificate without extensions is
    rewritten without its version field and re-signed.
    """
    plain = issue(common_name, "server", issuer=issuer, extensions=False)
    return Issued(
        _rewrite_and_sign(plain.certificate, issuer.key, "sha256", version1=True), plain.key
    )


def weak_rsa(common_name: str, issuer: Issued, role: Role = "server", bits: int = 1024) -> Issued:
    """A leaf with an RSA key below the 2048-bit floor."""
    return issue(common_name, role, issuer=issuer, key_spec=f"RSA-{bits}")


def expired(common_name: str, issuer: Issued, role: Role = "server") -> Issued:
    """A leaf whose validity ended a day ago."""
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=31)
    return issue(common_name, role, issuer=issuer, not_before=start, days=30)
