"""DLMS certificates for ``metercert pki init --dlms``: the operator root that ``pki init``
made also issues the suite-1/2 certificates of a meter and a head-end (client), in the DLMS
certificate profile of :mod:`metercert.security.certificates` (CN = system title, key usage
digital signature or key agreement, the curve of the suite).

Written next to the TLS files: ``meter-dlms-signing``, ``meter-dlms-agreement``,
``headend-dlms-signing`` and ``headend-dlms-agreement``, each ``.pem`` (certificate) and
``.key`` (private key, 0600). A key file names them as ``client_private_key`` (the
head-end's signing key), ``server_public_key`` (the meter's signing certificate) and
``dlms_ca_certificate`` (``ca.pem``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from metercert.errors import InputFileError
from metercert.security import agreement as agr
from metercert.security import certificates as certs
from metercert.security.certificates import CertificateType

#: the system titles of the Green Book examples, which the docs' key files use
DEFAULT_METER_TITLE = bytes.fromhex("4D4D4D0000000001")
DEFAULT_CLIENT_TITLE = bytes.fromhex("4D4D4D0000BC614E")
DLMS_STEMS = (
    "meter-dlms-signing",
    "meter-dlms-agreement",
    "headend-dlms-signing",
    "headend-dlms-agreement",
)


@dataclass(frozen=True)
class DlmsPkiPaths:
    files: dict[str, tuple[Path, Path]]  # stem -> (certificate, private key)
    suite: int


def write_dlms_certificates(
    directory: Path,
    ca_cert: Path,
    ca_key: Path,
    *,
    curve: str,
    meter_title: bytes = DEFAULT_METER_TITLE,
    client_title: bytes = DEFAULT_CLIENT_TITLE,
    days: int = 365,
) -> DlmsPkiPaths:
    """Issue the four DLMS certificates with the CA in ``ca_cert`` / ``ca_key``."""
    suite = 2 if curve == "P-384" else 1
    existing = [s for s in DLMS_STEMS if (directory / f"{s}.pem").exists()]
    if existing:
        raise InputFileError(f"{directory}: already holds DLMS certificates ({existing[0]}.pem)")
    try:
        issuer = x509.load_pem_x509_certificate(ca_cert.read_bytes())
        issuer_key = serialization.load_pem_private_key(ca_key.read_bytes(), None)
    except (OSError, ValueError) as exc:
        raise InputFileError(f"{directory}: cannot read the operator CA: {exc}") from None
    if not isinstance(issuer_key, ec.EllipticCurvePrivateKey):
        raise InputFileError(f"{ca_key}: the operator CA key is not an elliptic-curve key")
    out: dict[str, tuple[Path, Path]] = {}
    for stem, title, kind in (
        ("meter-dlms-signing", meter_title, CertificateType.DIGITAL_SIGNATURE),
        ("meter-dlms-agreement", meter_title, CertificateType.KEY_AGREEMENT),
        ("headend-dlms-signing", client_title, CertificateType.DIGITAL_SIGNATURE),
        ("headend-dlms-agreement", client_title, CertificateType.KEY_AGREEMENT),
    ):
        key = agr.generate_key_pair(suite)
        cert = certs.issue(
            key.public_key(),
            system_title=title,
            kind=kind,
            issuer=issuer,
            issuer_key=issuer_key,
            days=days,
        )
        cert_path, key_path = directory / f"{stem}.pem", directory / f"{stem}.key"
        try:
            cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
            _write_key(key_path, key)
        except OSError as exc:
            raise InputFileError(f"{directory}: cannot write {stem}: {exc.strerror}") from None
        out[stem] = (cert_path, key_path)
    return DlmsPkiPaths(out, suite)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    """PEM private key readable by the owner only (0600 from creation)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    os.chmod(path, 0o600)
