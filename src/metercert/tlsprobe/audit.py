"""Probe a TLS endpoint once and record the facts the IEC 62351-3 checks judge.

The probe has two halves:

* ``sslyze`` enumerates what the server accepts: every cipher suite of SSL 2.0 to
  TLS 1.3 (with the ephemeral key of each), the certificate chain and its path
  validation against the operator CA, compression, renegotiation and the
  supported key-exchange groups.
* Own handshakes with the ``ssl`` module answer what sslyze cannot: does the
  server complete a handshake with *no* client certificate, or with a
  self-signed client certificate from an unknown CA, and does it accept the
  operator's credentials. In TLS 1.3 the server judges the client certificate
  after the client's handshake has finished, so these probes wait briefly for
  the server's alert before calling a handshake accepted.

:class:`TlsTarget` is the object TLS checks receive. It probes on first use and
caches the :class:`TlsScanResult` (or the connection error) under a lock, so
checks running in parallel threads share one probe.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import ipaddress
import os
import socket
import ssl
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypedDict

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtensionOID

from metercert.errors import ConnectionFailed, InputFileError, UsageError
from metercert.tlsprobe.profile import TlsProfile, load_profile

SCANNED_VERSIONS = ("SSL 2.0", "SSL 3.0", "TLS 1.0", "TLS 1.1", "TLS 1.2", "TLS 1.3")
_NIST_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
# How long a TLS 1.3 probe waits for the server's verdict on the client certificate.
_TLS13_SETTLE_S = 1.0


def parse_endpoint(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT`` -> (host, port), with a one-line error if malformed."""
    raw = text.strip()
    if raw.startswith("["):
        host, sep, rest = raw[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        host, sep, port_text = raw.rpartition(":")
    if not host or not sep or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise UsageError(f"endpoint {text!r} is not HOST:PORT (port 1-65535)")
    return host, int(port_text)


# --- facts -------------------------------------------------------------------------


@dataclass(frozen=True)
class AcceptedSuite:
    """One cipher suite the server accepted, with its ephemeral key if any."""

    version: str  # "TLS 1.2"
    name: str  # IANA name, e.g. TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
    openssl_name: str
    key_bits: int  # symmetric key size
    anonymous: bool
    kex_type: str | None = None  # "ECDH" / "DH" for ephemeral key exchange
    kex_bits: int | None = None
    kex_group: str | None = None  # curve name (X25519, secp256r1) when ECDH

    def describe(self) -> str:
        kex = (
            f" [{self.kex_type} {self.kex_group or ''} {self.kex_bits} bits]"
            if self.kex_type
            else ""
        )
        return f"{self.version} {self.name}{kex}".replace("  ", " ")


@dataclass(frozen=True)
class CertificateFacts:
    """What the audit needs to know about one certificate of the server's chain."""

    position: int  # 0 = leaf
    subject: str
    issuer: str
    version: int
    serial_hex: str
    sha256_fingerprint: str
    not_before: dt.datetime
    not_after: dt.datetime
    signature_algorithm: str
    signature_hash: str | None  # "sha256"; None for Ed25519/Ed448
    key_type: str  # RSA, EC, Ed25519, Ed448, DSA, other
    key_bits: int
    curve: str | None  # "P-256" for NIST curves, else the curve's own name
    self_signed: bool
    der_size: int
    key_usage: tuple[str, ...] | None  # None = extension absent
    extended_key_usage: tuple[str, ...] | None
    is_ca: bool | None  # None = basicConstraints absent
    subject_alt_names: tuple[str, ...]
    crl_urls: tuple[str, ...]
    ocsp_urls: tuple[str, ...]
    extension_error: str | None = None

    @classmethod
    def from_x509(cls, cert: x509.Certificate, position: int) -> CertificateFacts:
        key_type, key_bits, curve = _key_facts(cert)
        try:
            sig_hash = cert.signature_hash_algorithm
            signature_hash = sig_hash.name if sig_hash is not None else None
        except UnsupportedAlgorithm:
            signature_hash = "unknown"
        ext = _extension_facts(cert)
        return cls(
            position=position,
            subject=cert.subject.rfc4514_string(),
            issuer=cert.issuer.rfc4514_string(),
            version=1 if cert.version == x509.Version.v1 else 3,
            serial_hex=format(cert.serial_number, "x"),
            sha256_fingerprint=cert.fingerprint(hashes.SHA256()).hex(),
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            signature_algorithm=getattr(cert.signature_algorithm_oid, "_name", None)
            or cert.signature_algorithm_oid.dotted_string,
            signature_hash=signature_hash,
            key_type=key_type,
            key_bits=key_bits,
            curve=curve,
            self_signed=_is_self_signed(cert),
            der_size=len(cert.public_bytes(serialization.Encoding.DER)),
            **ext,
        )

    def describe(self) -> str:
        key = f"{self.key_type} {self.curve or self.key_bits}"
        return (
            f"#{self.position} {self.subject} (v{self.version}, {key}, "
            f"signed {self.signature_algorithm}, {self.not_before:%Y-%m-%d}..{self.not_after:%Y-%m-%d}, "
            f"{self.der_size} bytes)"
        )


def _key_facts(cert: x509.Certificate) -> tuple[str, int, str | None]:
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return "unsupported", 0, None
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA", key.key_size, None
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "EC", key.key_size, _NIST_CURVES.get(key.curve.name, key.curve.name)
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519", 256, "Ed25519"
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448", 456, "Ed448"
    if isinstance(key, dsa.DSAPublicKey):
        return "DSA", key.key_size, None
    return type(key).__name__, 0, None


def _is_self_signed(cert: x509.Certificate) -> bool:
    if cert.subject != cert.issuer:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, UnsupportedAlgorithm, Exception):  # noqa: BLE001 - any failure = not self-signed
        return False
    return True


class _ExtensionFacts(TypedDict):
    key_usage: tuple[str, ...] | None
    extended_key_usage: tuple[str, ...] | None
    is_ca: bool | None
    subject_alt_names: tuple[str, ...]
    crl_urls: tuple[str, ...]
    ocsp_urls: tuple[str, ...]
    extension_error: str | None


def _extension_facts(cert: x509.Certificate) -> _ExtensionFacts:
    facts: _ExtensionFacts = {
        "key_usage": None,
        "extended_key_usage": None,
        "is_ca": None,
        "subject_alt_names": (),
        "crl_urls": (),
        "ocsp_urls": (),
        "extension_error": None,
    }
    if cert.version == x509.Version.v1:
        return facts
    try:
        extensions = cert.extensions
    except ValueError as exc:
        facts["extension_error"] = f"extensions do not parse: {exc}"
        return facts
    for ext in extensions:
        value = ext.value
        if ext.oid == ExtensionOID.KEY_USAGE:
            facts["key_usage"] = _key_usage_names(value)
        elif ext.oid == ExtensionOID.EXTENDED_KEY_USAGE:
            facts["extended_key_usage"] = tuple(
                getattr(oid, "_name", None) or oid.dotted_string for oid in value
            )
        elif ext.oid == ExtensionOID.BASIC_CONSTRAINTS:
            facts["is_ca"] = bool(value.ca)
        elif ext.oid == ExtensionOID.SUBJECT_ALTERNATIVE_NAME:
            names = [f"DNS:{n}" for n in value.get_values_for_type(x509.DNSName)]
            names += [f"IP:{n}" for n in value.get_values_for_type(x509.IPAddress)]
            names += [f"URI:{n}" for n in value.get_values_for_type(x509.UniformResourceIdentifier)]
            facts["subject_alt_names"] = tuple(names)
        elif ext.oid == ExtensionOID.CRL_DISTRIBUTION_POINTS:
            facts["crl_urls"] = tuple(
                name.value
                for point in value
                for name in (point.full_name or [])
                if isinstance(name, x509.UniformResourceIdentifier)
            )
        elif ext.oid == ExtensionOID.AUTHORITY_INFORMATION_ACCESS:
            facts["ocsp_urls"] = tuple(
                d.access_location.value
                for d in value
                if d.access_method == x509.oid.AuthorityInformationAccessOID.OCSP
                and isinstance(d.access_location, x509.UniformResourceIdentifier)
            )
    return facts


def _key_usage_names(ku: x509.KeyUsage) -> tuple[str, ...]:
    names = [
        "digital_signature",
        "content_commitment",
        "key_encipherment",
        "data_encipherment",
        "key_agreement",
        "key_cert_sign",
        "crl_sign",
    ]
    present = [n for n in names if getattr(ku, n)]
    if ku.key_agreement:  # these two are only defined when key_agreement is set
        present += [n for n in ("encipher_only", "decipher_only") if getattr(ku, n)]
    return tuple(present)


ProbeOutcome = Literal["accepted", "rejected", "error"]


@dataclass(frozen=True)
class HandshakeProbe:
    """One own handshake: what was offered and how the server answered."""

    description: str
    outcome: ProbeOutcome
    detail: str
    version: str | None = None

    def describe(self) -> str:
        version = f" ({self.version})" if self.version else ""
        return f"{self.description}: {self.outcome}{version} - {self.detail}"


@dataclass(frozen=True)
class TlsScanResult:
    """Every fact the TLS checks judge, gathered in one probe of one endpoint."""

    endpoint: str
    started_at: str
    duration_s: float
    tool: str
    suites: tuple[AcceptedSuite, ...]
    versions_scanned: tuple[str, ...]  # versions sslyze could test
    highest_version: str | None
    sslyze_client_auth: str | None  # sslyze's own reading (DISABLED/OPTIONAL/REQUIRED)
    chain: tuple[CertificateFacts, ...]
    chain_validated_with_ca: bool | None  # OpenSSL, level 0; None = no --ca or not testable
    chain_validation_detail: str
    sslyze_chain_validation: str | None  # sslyze's stricter verdict (rejects SHA-1, RSA-1024)
    ocsp_stapled: bool | None
    compression: bool | None
    secure_renegotiation: bool | None
    client_renegotiation_accepted: bool | None
    ecdh_groups: tuple[str, ...] | None
    probe_without_cert: HandshakeProbe | None
    probe_untrusted_cert: HandshakeProbe | None
    probe_with_cert: HandshakeProbe | None
    errors: dict[str, str] = field(default_factory=dict, hash=False)

    @property
    def versions_accepted(self) -> tuple[str, ...]:
        seen = {s.version for s in self.suites}
        return tuple(v for v in SCANNED_VERSIONS if v in seen)

    def suites_for(self, version: str) -> tuple[AcceptedSuite, ...]:
        return tuple(s for s in self.suites if s.version == version)

    @property
    def leaf(self) -> CertificateFacts | None:
        return self.chain[0] if self.chain else None


# --- probing -----------------------------------------------------------------------


def _resolve(host: str, port: int, timeout: float) -> str:
    """Resolve and TCP-connect once so an unreachable endpoint is one clear line."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise ConnectionFailed(f"cannot resolve host {host!r}") from None
    ip = str(infos[0][4][0])
    try:
        with socket.create_connection((ip, port), timeout=timeout):
            pass
    except ConnectionRefusedError:
        raise ConnectionFailed(f"cannot connect to {host}:{port}: connection refused") from None
    except TimeoutError:
        raise ConnectionFailed(
            f"cannot connect to {host}:{port}: timed out after {timeout:g} s"
        ) from None
    except OSError as exc:
        raise ConnectionFailed(f"cannot connect to {host}:{port}: {exc.strerror or exc}") from None
    return ip


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _probe_context(cert: str | None, key: str | None, tls13: bool) -> ssl.SSLContext:
    """A permissive client: it must reach the server's client-certificate decision
    even when the server's own certificate or suites are weak."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        ctx.maximum_version = ssl.TLSVersion.TLSv1_3 if tls13 else ssl.TLSVersion.TLSv1_2
    if cert and key:
        ctx.load_cert_chain(cert, key)
    return ctx


def _handshake(
    description: str,
    ip: str,
    host: str,
    port: int,
    *,
    cert: str | None,
    key: str | None,
    tls13: bool,
    timeout: float,
) -> HandshakeProbe:
    try:
        ctx = _probe_context(cert, key, tls13)
    except ssl.SSLError as exc:
        return HandshakeProbe(description, "error", f"cannot load probe credentials: {exc.reason}")
    try:
        sni = None if _is_ip(host) else host
        with (
            socket.create_connection((ip, port), timeout=timeout) as raw,
            ctx.wrap_socket(raw, server_hostname=sni) as tls,
        ):
            version = tls.version()
            if version != "TLSv1.3":
                return HandshakeProbe(description, "accepted", "handshake completed", version)
            # TLS 1.3: the server's verdict on our certificate arrives after our Finished.
            tls.settimeout(_TLS13_SETTLE_S)
            try:
                data = tls.recv(1)
            except TimeoutError:
                return HandshakeProbe(
                    description,
                    "accepted",
                    f"handshake completed, connection still open after {_TLS13_SETTLE_S:g} s",
                    version,
                )
            except ssl.SSLError as exc:
                return HandshakeProbe(
                    description, "rejected", f"server alert: {exc.reason}", version
                )
            except (ConnectionResetError, BrokenPipeError):
                return HandshakeProbe(
                    description, "rejected", "server reset the connection", version
                )
            if data:
                return HandshakeProbe(
                    description, "accepted", "server sent application data", version
                )
            return HandshakeProbe(
                description, "rejected", "server closed the connection after the handshake", version
            )
    except ssl.SSLError as exc:
        return HandshakeProbe(description, "rejected", f"handshake failed: {exc.reason or exc}")
    except (ConnectionResetError, BrokenPipeError):
        return HandshakeProbe(
            description, "rejected", "server reset the connection during the handshake"
        )
    except TimeoutError:
        return HandshakeProbe(description, "error", f"no answer within {timeout:g} s")
    except OSError as exc:
        return HandshakeProbe(description, "error", f"connection failed: {exc.strerror or exc}")


def _throwaway_client_credentials(directory: Path) -> tuple[str, str]:
    """A self-signed client certificate no operator CA ever issued."""
    from metercert.tlsprobe import pki  # local: only the probe needs the PKI builder

    stranger = pki.issue("metercert untrusted probe client", "client", crl_url=None)
    cert_path, key_path = pki.write_issued(directory, "stranger", stranger)
    return str(cert_path), str(key_path)


def _validate_chain(
    ip: str,
    host: str,
    port: int,
    ca: str,
    timeout: float,
    client_cert: str | None = None,
    client_key: str | None = None,
) -> tuple[bool | None, str]:
    """Validate the server chain against the operator CA with OpenSSL at security level 0.

    Level 0 means weak hashes and short keys do not by themselves fail validation:
    those are judged by their own checks, so this answers only "is the chain
    trusted and in date". OpenSSL verifies the server's chain as soon as it
    arrives; the client credentials only help the handshake run to its end.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    try:
        ctx.load_verify_locations(cafile=ca)
        if client_cert and client_key:
            ctx.load_cert_chain(client_cert, client_key)
    except ssl.SSLError as exc:
        return None, f"cannot load CA or client credentials: {exc.reason}"
    try:
        sni = None if _is_ip(host) else host
        with (
            socket.create_connection((ip, port), timeout=timeout) as raw,
            ctx.wrap_socket(raw, server_hostname=sni),
        ):
            return True, "chain verified"
    except ssl.SSLCertVerificationError as exc:
        return False, str(exc.verify_message or exc.reason)
    except ssl.SSLError as exc:
        # Could have failed before or after the server's certificate arrived.
        return None, f"handshake ended before validation was confirmed ({exc.reason})"
    except (ConnectionResetError, BrokenPipeError):
        return None, "connection reset before validation was confirmed"
    except OSError as exc:
        return None, f"connection failed: {exc.strerror or exc}"


SSLYZE_VERSION_COMMANDS = {
    "SSL 2.0": "ssl_2_0_cipher_suites",
    "SSL 3.0": "ssl_3_0_cipher_suites",
    "TLS 1.0": "tls_1_0_cipher_suites",
    "TLS 1.1": "tls_1_1_cipher_suites",
    "TLS 1.2": "tls_1_2_cipher_suites",
    "TLS 1.3": "tls_1_3_cipher_suites",
}


def _run_sslyze(
    host: str,
    ip: str,
    port: int,
    *,
    client_cert: str | None,
    client_key: str | None,
    ca: str | None,
    timeout: float,
):  # -> sslyze ServerScanResult (imported lazily: sslyze is slow to import)
    import sslyze

    credentials = (
        sslyze.ClientAuthenticationCredentials(
            certificate_chain_path=Path(client_cert), key_path=Path(client_key)
        )
        if client_cert and client_key
        else None
    )
    commands = {sslyze.ScanCommand(name) for name in SSLYZE_VERSION_COMMANDS.values()} | {
        sslyze.ScanCommand.CERTIFICATE_INFO,
        sslyze.ScanCommand.TLS_COMPRESSION,
        sslyze.ScanCommand.SESSION_RENEGOTIATION,
        sslyze.ScanCommand.ELLIPTIC_CURVES,
    }
    extra = sslyze.ScanCommandsExtraArguments(
        certificate_info=sslyze.CertificateInfoExtraArgument(custom_ca_file=Path(ca))
        if ca
        else None,
    )
    request = sslyze.ServerScanRequest(
        server_location=sslyze.ServerNetworkLocation(hostname=host, port=port, ip_address=ip),
        network_configuration=sslyze.ServerNetworkConfiguration(
            tls_server_name_indication=host,
            tls_client_auth_credentials=credentials,
            network_timeout=max(1, int(timeout)),
            network_max_retries=1,
        ),
        scan_commands=commands,
        scan_commands_extra_arguments=extra,
    )
    scanner = sslyze.Scanner()
    with warnings.catch_warnings():
        # sslyze's bundled public trust stores hold certificates cryptography warns about.
        warnings.simplefilter("ignore")
        scanner.queue_scans([request])
        results = list(scanner.get_results())
    return results[0]


def _attempt_result(scan_result, name: str, errors: dict[str, str]):
    attempt = getattr(scan_result, name)
    if attempt.result is None:
        reason = attempt.error_reason.value if attempt.error_reason else attempt.status.value
        last = ""
        if attempt.error_trace is not None:
            last = "".join(attempt.error_trace.format_exception_only()).strip().splitlines()[-1]
        errors[name] = f"{reason}: {last}" if last else reason
    return attempt.result


def scan_endpoint(
    host: str,
    port: int,
    *,
    client_cert: str | None = None,
    client_key: str | None = None,
    ca: str | None = None,
    timeout: float = 5.0,
) -> TlsScanResult:
    """Probe ``host:port`` once (sslyze + own handshakes) and return the facts."""
    import sslyze
    from sslyze.__version__ import __version__ as sslyze_version

    started = dt.datetime.now(dt.UTC)
    t0 = time.perf_counter()
    ip = _resolve(host, port, timeout)
    result = _run_sslyze(
        host, ip, port, client_cert=client_cert, client_key=client_key, ca=ca, timeout=timeout
    )
    endpoint = f"{host}:{port}"
    if result.scan_status != sslyze.ServerScanStatusEnum.COMPLETED:
        trace = result.connectivity_error_trace
        why = "".join(trace.format_exception_only()).strip().splitlines()[-1] if trace else "no TLS"
        hint = " (check --client-cert/--client-key)" if client_cert else ""
        raise ConnectionFailed(f"TLS handshake with {endpoint} failed: {why}{hint}")

    errors: dict[str, str] = {}
    scan = result.scan_result
    suites: list[AcceptedSuite] = []
    versions_scanned: list[str] = []
    for version, command in SSLYZE_VERSION_COMMANDS.items():
        res = _attempt_result(scan, command, errors)
        if res is None:
            continue
        versions_scanned.append(version)
        for accepted in res.accepted_cipher_suites:
            suite, eph = accepted.cipher_suite, accepted.ephemeral_key
            suites.append(
                AcceptedSuite(
                    version=version,
                    name=suite.name,
                    openssl_name=suite.openssl_name,
                    key_bits=suite.key_size,
                    anonymous=suite.is_anonymous,
                    kex_type=eph.type_name if eph else None,
                    kex_bits=eph.size if eph else None,
                    kex_group=getattr(eph, "curve_name", None) if eph else None,
                )
            )

    chain: tuple[CertificateFacts, ...] = ()
    sslyze_validation: str | None = None
    stapled: bool | None = None
    cert_info = _attempt_result(scan, "certificate_info", errors)
    if cert_info is not None and cert_info.certificate_deployments:
        deployment = cert_info.certificate_deployments[0]
        chain = tuple(
            CertificateFacts.from_x509(c, i)
            for i, c in enumerate(deployment.received_certificate_chain)
        )
        stapled = deployment.ocsp_response is not None
        if ca:
            ca_path = Path(ca).resolve()
            for pv in deployment.path_validation_results:
                if Path(pv.trust_store.path).resolve() == ca_path:
                    sslyze_validation = (
                        "valid"
                        if pv.was_validation_successful
                        else f"invalid: {pv.validation_error}"
                    )
    compression = _attempt_result(scan, "tls_compression", errors)
    reneg = _attempt_result(scan, "session_renegotiation", errors)
    curves = _attempt_result(scan, "elliptic_curves", errors)

    # Own handshakes: prefer TLS 1.2 where the server has it, so a missing client
    # certificate is refused inside the handshake rather than after it.
    tls12_or_lower = any(v != "TLS 1.3" for v in {s.version for s in suites})
    tls13_only = not tls12_or_lower
    probe = functools.partial(
        _handshake, ip=ip, host=host, port=port, tls13=tls13_only, timeout=timeout
    )
    without = probe("handshake without a client certificate", cert=None, key=None)
    with tempfile.TemporaryDirectory(prefix="metercert-probe-") as tmp:
        stranger_cert, stranger_key = _throwaway_client_credentials(Path(tmp))
        untrusted = probe(
            "handshake with a self-signed client certificate from an unknown CA",
            cert=stranger_cert,
            key=stranger_key,
        )
    validated, validation_detail = (
        (None, "no CA given")
        if not ca
        else _validate_chain(ip, host, port, ca, timeout, client_cert, client_key)
    )
    if validated is None and sslyze_validation == "valid":
        validated, validation_detail = True, f"sslyze validated the chain; {validation_detail}"
    with_cert = None
    if client_cert and client_key:
        with_cert = probe(
            "handshake with the operator client certificate", cert=client_cert, key=client_key
        )

    return TlsScanResult(
        endpoint=endpoint,
        started_at=started.isoformat(timespec="seconds"),
        duration_s=round(time.perf_counter() - t0, 3),
        tool=f"sslyze {sslyze_version}; own handshakes with {ssl.OPENSSL_VERSION}",
        suites=tuple(suites),
        versions_scanned=tuple(versions_scanned),
        highest_version=_version_label(
            result.connectivity_result.highest_tls_version_supported.name
        ),
        sslyze_client_auth=result.connectivity_result.client_auth_requirement.value,
        chain=chain,
        chain_validated_with_ca=validated,
        chain_validation_detail=validation_detail,
        sslyze_chain_validation=sslyze_validation,
        ocsp_stapled=stapled,
        compression=compression.supports_compression if compression is not None else None,
        secure_renegotiation=reneg.supports_secure_renegotiation if reneg is not None else None,
        client_renegotiation_accepted=(
            reneg.client_renegotiations_success_count > 0 if reneg is not None else None
        ),
        ecdh_groups=(
            tuple(c.name for c in curves.supported_curves or ())
            if curves is not None and curves.supports_ecdh_key_exchange
            else (() if curves is not None else None)
        ),
        probe_without_cert=without,
        probe_untrusted_cert=untrusted,
        probe_with_cert=with_cert,
        errors=errors,
    )


def _version_label(enum_name: str) -> str:
    # sslyze's TlsVersionEnum names: SSL_2_0, SSL_3_0, TLS_1_0 ... TLS_1_3
    proto, major, minor = enum_name.split("_")
    return f"{proto} {major}.{minor}"


# --- the target the checks receive ---------------------------------------------------


def _existing_file(label: str, path: str | os.PathLike[str] | None) -> str | None:
    if path is None:
        return None
    text = os.fspath(path)
    if not os.path.isfile(text):
        raise InputFileError(f"{text}: {label} not found")
    return text


class TlsTarget:
    """A TLS endpoint under test, with its credentials, profile and cached probe.

    Key files are only passed by path to the TLS libraries; their contents are
    never read into this object, logged or shown in its repr.
    """

    def __init__(
        self,
        host: str,
        port: int,
        client_cert: str | os.PathLike[str] | None = None,
        client_key: str | os.PathLike[str] | None = None,
        ca: str | os.PathLike[str] | None = None,
        profile: TlsProfile | str | os.PathLike[str] | None = None,
        *,
        timeout: float = 5.0,
    ) -> None:
        if not host:
            raise UsageError("TLS target needs a host")
        if not isinstance(port, int) or not 0 < port < 65536:
            raise UsageError(f"TLS target port {port!r} is not in 1-65535")
        if (client_cert is None) != (client_key is None):
            raise UsageError("give both --client-cert and --client-key, or neither")
        self.host = host
        self.port = port
        self.client_cert = _existing_file("client certificate", client_cert)
        self.client_key = _existing_file("client private key", client_key)
        self.ca = _existing_file("CA certificate", ca)
        self.profile = profile if isinstance(profile, TlsProfile) else load_profile(profile)
        self.timeout = timeout
        self._lock = threading.Lock()
        self._result: TlsScanResult | None = None
        self._error: str | None = None

    @classmethod
    def from_endpoint(cls, endpoint: str, **kwargs: object) -> TlsTarget:
        host, port = parse_endpoint(endpoint)
        return cls(host, port, **kwargs)  # type: ignore[arg-type]

    @property
    def endpoint(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def describe(self) -> str:
        auth = "mutual TLS" if self.client_cert else "no client certificate"
        return f"tls://{self.endpoint} ({auth}, profile {self.profile.name})"

    def __repr__(self) -> str:
        return (
            f"TlsTarget({self.endpoint!r}, client_cert={self.client_cert!r}, "
            f"client_key={'<path given>' if self.client_key else None}, ca={self.ca!r})"
        )

    async def open(self) -> None:
        """Campaign-runner hook: probe at target setup, off the event loop thread.

        A connection failure raises :class:`ConnectionFailed` here, so the runner
        reports the endpoint as unreachable instead of timing out the first check.
        """
        await asyncio.to_thread(self.scan)

    def scan(self) -> TlsScanResult:
        """The probe result, probing on first call; concurrent callers wait for one probe."""
        with self._lock:
            if self._result is None and self._error is None:
                try:
                    self._result = scan_endpoint(
                        self.host,
                        self.port,
                        client_cert=self.client_cert,
                        client_key=self.client_key,
                        ca=self.ca,
                        timeout=self.timeout,
                    )
                except ConnectionFailed as exc:
                    self._error = str(exc)
            if self._error is not None:
                raise ConnectionFailed(self._error)
            assert self._result is not None
            return self._result
