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
from metercert.tlsprobe import handshake as hs
from metercert.tlsprobe import sclient as sc
from metercert.tlsprobe.profile import TlsProfile, load_profile
from metercert.tlsprobe.sclient import SClientFacts

SCANNED_VERSIONS = ("SSL 2.0", "SSL 3.0", "TLS 1.0", "TLS 1.1", "TLS 1.2", "TLS 1.3")
_NIST_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}


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


ProbeOutcome = Literal["accepted", "rejected", "app-refused", "error", "unknown"]


@dataclass(frozen=True)
class HandshakeProbe:
    """One own handshake: what was offered and how the server answered.

    ``accepted`` and ``rejected`` are the server's answers; ``app-refused`` means the
    handshake completed and the server refused above TLS; ``error`` (our side or
    the network) and ``unknown`` (no answer in time) say nothing about the server.
    """

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
    versions_scanned: tuple[str, ...]  # versions whose suites were enumerated (maybe partly)
    highest_version: str | None
    sslyze_client_auth: str | None  # sslyze's own reading; evidence only, never judged
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
    # version -> why its suite list may miss accepted suites (scanner error, timeouts)
    incomplete: dict[str, str] = field(default_factory=dict, hash=False)
    # version -> who enumerated it ("sslyze", "sslyze + own handshakes", "own handshakes")
    suite_sources: dict[str, str] = field(default_factory=dict, hash=False)
    rtt_s: float = 0.0
    extra_probes: tuple[HandshakeProbe, ...] = ()  # foreign-CA client chain
    # operator-CA client certificates that must be refused: {"expired": probe, "revoked": ...}
    validation_probes: dict[str, HandshakeProbe] = field(default_factory=dict, hash=False)
    resumption: ResumptionFacts | None = None
    sclient: SClientFacts | None = None

    @property
    def versions_accepted(self) -> tuple[str, ...]:
        seen = {s.version for s in self.suites}
        return tuple(v for v in SCANNED_VERSIONS if v in seen)

    def suites_for(self, version: str) -> tuple[AcceptedSuite, ...]:
        return tuple(s for s in self.suites if s.version == version)

    def enumeration_gaps(self, versions: tuple[str, ...] = SCANNED_VERSIONS) -> list[str]:
        """One line per version whose accepted suites are not fully known."""
        gaps = []
        for v in versions:
            if v in self.incomplete:
                gaps.append(f"{v}: {self.incomplete[v]}")
            elif v not in self.versions_scanned:
                gaps.append(f"{v}: not tested")
        return gaps

    @property
    def leaf(self) -> CertificateFacts | None:
        return self.chain[0] if self.chain else None


@dataclass(frozen=True)
class ResumptionFacts:
    """Session resumption as the probe saw it (tickets and their announced lifetime)."""

    ticket_lifetime_s: int | None  # the server's ticket_lifetime_hint; None = no ticket
    resumed: bool | None  # a second handshake with the session resumed it
    version: str | None
    detail: str


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


@dataclass(frozen=True)
class _Peer:
    """Where and how own handshakes connect."""

    ip: str
    host: str
    port: int
    timing: hs.Timing

    @property
    def sni(self) -> str | None:
        return None if _is_ip(self.host) else self.host

    def attempt(self, ctx: ssl.SSLContext, *, settle: bool = False, **kw) -> hs.Attempt:
        return hs.handshake(
            self.ip,
            self.port,
            ctx,
            deadline_s=self.timing.handshake_s,
            sni=self.sni,
            settle_s=self.timing.settle_s if settle else 0.0,
            **kw,
        )


def _client_auth_probe(
    peer: _Peer, description: str, *, cert: str | None, key: str | None, max_version: str
) -> HandshakeProbe:
    """A handshake that waits for the server's verdict on the client certificate."""
    try:
        ctx = hs.permissive_context(cert, key, max_version=max_version)
    except ssl.SSLError as exc:
        return HandshakeProbe(description, "error", f"cannot load probe credentials: {exc.reason}")
    got = peer.attempt(ctx, settle=True)
    return HandshakeProbe(description, got.outcome, got.detail, got.version)


def _throwaway_client_credentials(directory: Path) -> dict[str, tuple[str, str]]:
    """Client certificates no operator CA ever issued: self-signed, and from a foreign CA."""
    from metercert.tlsprobe import pki  # local: only the probe needs the PKI builder

    stranger = pki.issue("metercert untrusted probe client", "client", crl_url=None)
    foreign_ca = pki.issue("metercert foreign probe CA", "ca", crl_url=None)
    foreign_leaf = pki.issue("metercert foreign-CA probe client", "client", issuer=foreign_ca)
    out = {"stranger": pki.write_issued(directory, "stranger", stranger)}
    cert, key = pki.write_issued(directory, "foreign", foreign_leaf)
    # send the foreign CA with the leaf: a server that trusts whatever chain it is sent fails
    cert.write_bytes(cert.read_bytes() + foreign_ca.cert_pem())
    out["foreign"] = (cert, key)
    return {k: (str(c), str(k2)) for k, (c, k2) in out.items()}


def _validate_chain(
    peer: _Peer, ca: str, client_cert: str | None, client_key: str | None
) -> tuple[bool | None, str]:
    """Validate the server chain against the operator CA with OpenSSL at security level 0.

    Level 0 means weak hashes and short keys do not by themselves fail validation:
    those are judged by their own checks, so this answers only "is the chain
    trusted and in date". OpenSSL verifies the server's chain as soon as it
    arrives, before the server's decision about our certificate.
    """
    ctx = hs.permissive_context()
    ctx.verify_mode = ssl.CERT_REQUIRED
    try:
        ctx.load_verify_locations(cafile=ca)
        if client_cert and client_key:
            ctx.load_cert_chain(client_cert, client_key)
    except ssl.SSLError as exc:
        return None, f"cannot load CA or client credentials: {exc.reason}"
    got = peer.attempt(ctx)
    if got.outcome == "accepted":
        return True, "chain verified"
    if "CERTIFICATE_VERIFY_FAILED" in got.detail:
        return False, _verify_reason(peer, ca)
    return None, f"handshake ended before validation was confirmed ({got.detail})"


def _verify_reason(peer: _Peer, ca: str) -> str:
    """OpenSSL's verify message, read with the blocking ssl socket (it names the reason)."""
    ctx = hs.permissive_context()
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cafile=ca)
    try:
        with (
            socket.create_connection((peer.ip, peer.port), timeout=peer.timing.handshake_s) as raw,
            ctx.wrap_socket(raw, server_hostname=peer.sni),
        ):
            return "certificate verify failed"
    except ssl.SSLCertVerificationError as exc:
        return str(exc.verify_message or exc.reason)
    except (OSError, ssl.SSLError):
        return "certificate verify failed"


SSLYZE_VERSION_COMMANDS = {
    "SSL 2.0": "ssl_2_0_cipher_suites",
    "SSL 3.0": "ssl_3_0_cipher_suites",
    "TLS 1.0": "tls_1_0_cipher_suites",
    "TLS 1.1": "tls_1_1_cipher_suites",
    "TLS 1.2": "tls_1_2_cipher_suites",
    "TLS 1.3": "tls_1_3_cipher_suites",
}
_OTHER_COMMANDS = (
    "certificate_info",
    "tls_compression",
    "session_renegotiation",
    "elliptic_curves",
)
# sslyze counts these answers as "suite rejected", but they may be about our client
# certificate or the network, not the suite: such suites are re-tested without one.
_DOUBTFUL_REJECTIONS = ("timed out", "certificate", "decrypt error", "illegal parameter")


def _run_sslyze(
    host: str,
    ip: str,
    port: int,
    *,
    client_cert: str | None,
    client_key: str | None,
    ca: str | None,
    timeout: int,
    commands: tuple[str, ...] | None = None,
    concurrency: int | None = None,
):  # -> sslyze ServerScanResult (imported lazily: sslyze is slow to import)
    import sslyze

    credentials = (
        sslyze.ClientAuthenticationCredentials(
            certificate_chain_path=Path(client_cert), key_path=Path(client_key)
        )
        if client_cert and client_key
        else None
    )
    names = commands or (*SSLYZE_VERSION_COMMANDS.values(), *_OTHER_COMMANDS)
    extra = sslyze.ScanCommandsExtraArguments(
        certificate_info=sslyze.CertificateInfoExtraArgument(custom_ca_file=Path(ca))
        if ca and "certificate_info" in names
        else None,
    )
    request = sslyze.ServerScanRequest(
        server_location=sslyze.ServerNetworkLocation(hostname=host, port=port, ip_address=ip),
        network_configuration=sslyze.ServerNetworkConfiguration(
            tls_server_name_indication=host,
            tls_client_auth_credentials=credentials,
            network_timeout=timeout,
            network_max_retries=1,
        ),
        scan_commands={sslyze.ScanCommand(n) for n in names},
        scan_commands_extra_arguments=extra,
    )
    scanner = sslyze.Scanner(per_server_concurrent_connections_limit=concurrency)
    with warnings.catch_warnings():
        # sslyze's bundled public trust stores hold certificates cryptography warns about.
        warnings.simplefilter("ignore")
        scanner.queue_scans([request])
        results = list(scanner.get_results())
    return results[0]


def _sslyze_within(budget: float, *args, **kwargs):
    """:func:`_run_sslyze` under a wall-clock budget; None when it ran out.

    sslyze's per-socket timeout cannot bound a server that answers slowly but never
    stops; its worker threads are daemons, so an abandoned scan does not hold up exit.
    """
    box: list = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            box.append(_run_sslyze(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            failure.append(exc)

    worker = threading.Thread(target=run, name="metercert-sslyze", daemon=True)
    worker.start()
    worker.join(budget)
    if failure:
        raise failure[0]
    return box[0] if box else None


def plain_error(exc_text: str) -> str:
    """An exception line without module or class names (``sslyze.errors.X: msg`` -> ``msg``)."""
    text = exc_text.strip().splitlines()[-1] if exc_text.strip() else ""
    head, sep, rest = text.partition(": ")
    if sep and " " not in head and ("." in head or head[:1].isupper()):
        text = rest
    if " -> " in text:  # sslyze prefixes "HOST:PORT -> "
        text = text.split(" -> ", 1)[1]
    return text.replace('"', "").strip()


def _attempt_error(attempt) -> str:
    """Why a scanner command gave no result, in plain words."""
    reason = attempt.error_reason.value if attempt.error_reason else attempt.status.value
    reason = reason.replace("_", " ").lower()
    last = ""
    if attempt.error_trace is not None:
        last = plain_error("".join(attempt.error_trace.format_exception_only()))
    return f"scanner error ({reason}): {last}" if last else f"scanner error ({reason})"


def _attempt_result(scan_result, name: str, errors: dict[str, str]):
    attempt = getattr(scan_result, name)
    if attempt.result is None:
        errors[name] = _attempt_error(attempt)
    return attempt.result


def _sslyze_version(version: str):
    from sslyze import TlsVersionEnum

    return TlsVersionEnum[version.replace(" ", "_").replace(".", "_")]


def _suite_universe(version: str) -> dict[str, object]:
    """Every suite the scanner knows for ``version``, by OpenSSL name."""
    from sslyze.plugins.openssl_cipher_suites.cipher_suites import CipherSuitesRepository

    return {
        s.openssl_name: s
        for s in CipherSuitesRepository.get_all_cipher_suites(_sslyze_version(version))
    }


@functools.cache
def _own_suites(version: str) -> frozenset[str]:
    """OpenSSL names of the suites our own client can offer at ``version``."""
    if version not in ("TLS 1.0", "TLS 1.1", "TLS 1.2"):
        return frozenset()
    ctx = hs.permissive_context(version=version)
    names = set()
    for c in ctx.get_ciphers():
        if c["protocol"] == "TLSv1.3" or any(t in c["name"] for t in ("PSK", "SRP")):
            continue  # PSK/SRP suites are never offered without their credentials
        if version != "TLS 1.2" and c["protocol"] == "TLSv1.2":
            continue
        names.add(c["name"])
    return frozenset(names)


def _accepted_suite(version: str, suite, eph=None) -> AcceptedSuite:
    name = suite.name
    kex_type = eph.type_name if eph else None
    if eph is None and version != "TLS 1.3":
        kex_type = (
            "ECDH"
            if "_ECDHE_" in name
            else ("DH" if "_DHE_" in name or "DH_anon" in name else None)
        )
    return AcceptedSuite(
        version=version,
        name=name,
        openssl_name=suite.openssl_name,
        key_bits=suite.key_size,
        anonymous=suite.is_anonymous,
        kex_type=kex_type,
        kex_bits=eph.size if eph else None,
        kex_group=getattr(eph, "curve_name", None) if eph else None,
    )


def _own_enumeration(
    peer: _Peer, version: str, candidates: set[str]
) -> tuple[list[str], set[str], str]:
    """Which of ``candidates`` (OpenSSL names) the server picks at ``version``.

    Offer them all, note the one the server picks (its ServerHello names it even when
    the handshake then fails on the client certificate), drop it and offer the rest,
    until the server refuses: one handshake per accepted suite, plus one. Returns
    (accepted, unknown, why unknown).
    """
    if version == "TLS 1.3":
        # ssl cannot restrict TLS 1.3 suites; one handshake tells whether TLS 1.3 is
        # spoken and names one suite (every TLS 1.3 suite is AEAD and forward-secret).
        got = peer.attempt(hs.permissive_context(version=version))
        if got.cipher:
            return [got.cipher], set(), ""
        if got.outcome == "rejected":
            return [], set(), ""
        return [], set(candidates), got.detail
    remaining = set(candidates)
    accepted: list[str] = []
    while remaining:
        ctx = hs.permissive_context(
            version=version, ciphers=":".join(sorted(remaining)) + ":@SECLEVEL=0"
        )
        got = peer.attempt(ctx)
        if got.cipher in remaining:
            accepted.append(got.cipher)
            remaining.discard(got.cipher)
            continue
        if got.outcome == "rejected" and got.cipher is None:
            return accepted, set(), ""
        return accepted, remaining, got.detail
    return accepted, set(), ""


def _enumerate_version(
    peer: _Peer, version: str, sslyze_res, sslyze_error: str | None
) -> tuple[list[AcceptedSuite], str | None, str]:
    """Accepted suites of one version: sslyze's list, checked and completed by own handshakes.

    Returns (suites, why incomplete or None, source).
    """
    universe = _suite_universe(version)
    own = _own_suites(version) | ({*universe} if version == "TLS 1.3" else set())
    found: dict[str, AcceptedSuite] = {}
    if sslyze_res is not None:
        for accepted in sslyze_res.accepted_cipher_suites:
            s = _accepted_suite(version, accepted.cipher_suite, accepted.ephemeral_key)
            found[s.openssl_name] = s
        doubtful = {
            r.cipher_suite.openssl_name
            for r in sslyze_res.rejected_cipher_suites
            if any(w in (r.error_message or "").lower() for w in _DOUBTFUL_REJECTIONS)
        }
        source = "sslyze"
        if not doubtful:
            return list(found.values()), None, source
        why_retest = (
            f"{len(doubtful)} suite(s) sslyze could not decide (timeout or certificate alert)"
        )
        to_test = doubtful
        source = "sslyze + own handshakes"
    else:
        why_retest = sslyze_error or "scanner error"
        to_test = set(universe) - set(found)
        source = "own handshakes"
    testable = to_test & own
    untestable = to_test - own
    picked, unknown, detail = _own_enumeration(peer, version, testable)
    for name in picked:
        if name in universe:
            found[name] = _accepted_suite(version, universe[name])
    gaps = []
    if unknown:
        gaps.append(f"{len(unknown)} suite(s) got no answer ({detail})")
    if untestable:
        gaps.append(f"{len(untestable)} suite(s) our client cannot offer, e.g. {min(untestable)}")
    incomplete = f"{why_retest}; own handshakes: {'; '.join(gaps)}" if gaps else None
    if sslyze_res is None and version in ("SSL 2.0", "SSL 3.0"):
        incomplete = f"{why_retest}; our client does not speak {version}"
    return list(found.values()), incomplete, source


def _resumption(
    peer: _Peer, cert: str | None, key: str | None, max_version: str
) -> ResumptionFacts:
    """Handshake, then resume with the session it gave: is there a ticket, how long does it live.

    A session that resumed without a ticket seen is probed once more: on a loaded machine the
    first handshake's ticket has been seen to go missing, and "resumes by session ID" is an
    INCONCLUSIVE verdict that a second look may turn into a judged ticket lifetime."""
    facts = _resumption_once(peer, cert, key, max_version)
    if facts.resumed and facts.ticket_lifetime_s is None:
        again = _resumption_once(peer, cert, key, max_version)
        if again.ticket_lifetime_s is not None:
            return again
    return facts


def _resumption_once(
    peer: _Peer, cert: str | None, key: str | None, max_version: str
) -> ResumptionFacts:
    try:
        ctx = hs.permissive_context(cert, key, max_version=max_version)
    except ssl.SSLError as exc:
        return ResumptionFacts(None, None, None, f"cannot load credentials: {exc.reason}")
    first = peer.attempt(ctx, settle=max_version == "TLS 1.3")
    session = first.session
    if first.outcome not in ("accepted", "app-refused") or session is None:
        return ResumptionFacts(None, None, first.version, f"first handshake: {first.detail}")
    lifetime = session.ticket_lifetime_hint if session.has_ticket else None
    second = peer.attempt(ctx, session=session)
    resumed = second.resumed if second.outcome in ("accepted", "app-refused") else None
    return ResumptionFacts(
        lifetime,
        resumed,
        first.version,
        f"ticket: {'yes, lifetime hint ' + str(lifetime) + ' s' if lifetime is not None else 'none'}; "
        f"second handshake with the session: {second.outcome}, resumed={resumed}",
    )


def _connectivity_failure(
    endpoint: str, result, preflight: hs.Attempt, client_cert: str | None
) -> ConnectionFailed:
    trace = result.connectivity_error_trace
    why = plain_error("".join(trace.format_exception_only())) if trace else "no TLS"
    hint = ""
    if preflight.outcome == "rejected" and preflight.cipher is None:
        # refused at the ClientHello: nothing in common, before any certificate talk
        hint = (
            " (the server refused every suite and key-exchange group offered: it may use "
            "only groups neither scanner offers, e.g. brainpool curves)"
        )
    elif preflight.outcome == "rejected" and client_cert is None:
        hint = " (the server may require a client certificate: give --client-cert/--client-key)"
    elif preflight.outcome == "rejected":
        hint = " (check that the server accepts --client-cert/--client-key)"
    return ConnectionFailed(
        f"TLS handshake with {endpoint} failed: {why}; own handshake: {preflight.detail}{hint}"
    )


def scan_endpoint(
    host: str,
    port: int,
    *,
    client_cert: str | None = None,
    client_key: str | None = None,
    ca: str | None = None,
    timeout: float = 5.0,
    negative_clients: dict[str, tuple[str, str]] | None = None,
) -> TlsScanResult:
    """Probe ``host:port`` once (sslyze + own handshakes) and return the facts.

    ``negative_clients`` maps "expired" / "revoked" to operator-CA client credentials
    the server must refuse (62351-3: the server validates the client chain).
    """
    import sslyze
    from sslyze.__version__ import __version__ as sslyze_version

    started = dt.datetime.now(dt.UTC)
    t0 = time.perf_counter()
    ip = _resolve(host, port, timeout)
    endpoint = f"{host}:{port}"
    try:
        rtt = hs.measure_rtt(ip, port, timeout)
    except OSError as exc:
        raise ConnectionFailed(f"cannot connect to {endpoint}: {exc.strerror or exc}") from None
    peer = _Peer(ip, host, port, hs.Timing(rtt, timeout))

    # Pre-flight: our own handshake, bounded by one deadline, so a server that hangs
    # after accept or drips its ServerHello ends the audit in bounded time.
    preflight = peer.attempt(hs.permissive_context())
    if preflight.outcome == "unknown":
        raise ConnectionFailed(f"no TLS from {endpoint}: {preflight.detail}")
    if preflight.outcome == "error" and preflight.detail.startswith("connection failed"):
        raise ConnectionFailed(f"cannot connect to {endpoint}: {preflight.detail}")
    if preflight.reply_s is not None and preflight.reply_s > rtt:
        rtt = preflight.reply_s
        peer = _Peer(ip, host, port, hs.Timing(rtt, timeout))

    budget = peer.timing.scanner_budget_s
    sslyze_args = {
        "client_cert": client_cert,
        "client_key": client_key,
        "ca": ca,
        "timeout": peer.timing.scanner_timeout_s,
    }
    result = _sslyze_within(budget, host, ip, port, **sslyze_args)
    if result is not None and result.scan_status != sslyze.ServerScanStatusEnum.COMPLETED:
        raise _connectivity_failure(endpoint, result, preflight, client_cert)

    errors: dict[str, str] = {}
    scan = result.scan_result if result is not None else None
    failed = [
        n
        for n in (*SSLYZE_VERSION_COMMANDS.values(), *_OTHER_COMMANDS)
        if scan is not None and getattr(scan, n).result is None
    ]
    retry = None
    if failed:
        # A sequential server (openssl s_server) drops sslyze's parallel connections:
        # run the failed commands again, one connection at a time.
        retry = _sslyze_within(
            budget, host, ip, port, **sslyze_args, commands=tuple(failed), concurrency=1
        )
        if retry is not None and retry.scan_status != sslyze.ServerScanStatusEnum.COMPLETED:
            retry = None

    def outcome(name: str):
        if scan is None:
            errors[name] = f"scanner error: sslyze did not finish within its {budget:.0f} s budget"
            return None
        first = getattr(scan, name)
        if first.result is None and retry is not None:
            again = getattr(retry.scan_result, name)
            if again.result is not None:
                return again.result
        return _attempt_result(scan, name, errors)

    suites: list[AcceptedSuite] = []
    versions_scanned: list[str] = []
    incomplete: dict[str, str] = {}
    sources: dict[str, str] = {}
    for version, command in SSLYZE_VERSION_COMMANDS.items():
        res = outcome(command)
        found, gap, source = _enumerate_version(peer, version, res, errors.get(command))
        suites += found
        sources[version] = source
        if gap:
            incomplete[version] = gap
        if res is not None or found or not gap:
            versions_scanned.append(version)

    chain: tuple[CertificateFacts, ...] = ()
    sslyze_validation: str | None = None
    stapled: bool | None = None
    cert_info = outcome("certificate_info")
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
    if not chain and preflight.peer_cert_der:
        # the scanner lost the chain; our own handshake still saw the leaf
        chain = (
            CertificateFacts.from_x509(x509.load_der_x509_certificate(preflight.peer_cert_der), 0),
        )
    compression = outcome("tls_compression")
    reneg = outcome("session_renegotiation")
    curves = outcome("elliptic_curves")

    # Own handshakes: prefer TLS 1.2 where the server has it, so a missing client
    # certificate is refused inside the handshake rather than after it.
    legacy = any(s.version != "TLS 1.3" for s in suites)
    max_version = "TLS 1.2" if legacy else "TLS 1.3"
    probe = functools.partial(_client_auth_probe, peer, max_version=max_version)
    without = probe("handshake without a client certificate", cert=None, key=None)
    with tempfile.TemporaryDirectory(prefix="metercert-probe-") as tmp:
        throwaway = _throwaway_client_credentials(Path(tmp))
        untrusted = probe(
            "handshake with a self-signed client certificate from an unknown CA",
            cert=throwaway["stranger"][0],
            key=throwaway["stranger"][1],
        )
        foreign = probe(
            "handshake with a client certificate chain from a foreign CA",
            cert=throwaway["foreign"][0],
            key=throwaway["foreign"][1],
        )
    validated, validation_detail = (
        (None, "no CA given") if not ca else _validate_chain(peer, ca, client_cert, client_key)
    )
    if validated is None and sslyze_validation == "valid":
        validated, validation_detail = True, f"sslyze validated the chain; {validation_detail}"
    with_cert = None
    if client_cert and client_key:
        with_cert = probe(
            "handshake with the operator client certificate", cert=client_cert, key=client_key
        )
    validation = {
        kind: probe(
            f"handshake with a {kind} client certificate from the operator CA",
            cert=pair[0],
            key=pair[1],
        )
        for kind, pair in (negative_clients or {}).items()
    }
    versions = {s.version for s in suites}
    cli_facts = sc.probe(
        ip,
        port,
        peer.sni,
        peer.timing,
        cert=client_cert,
        key=client_key,
        tls12="TLS 1.2" in versions,
        tls13="TLS 1.3" in versions,
    )
    if stapled is None and cli_facts.ocsp_stapled is not None:
        stapled = cli_facts.ocsp_stapled  # the scanner failed on the chain; s_client asked
    resumption = _resumption(
        peer,
        client_cert,
        client_key,
        "TLS 1.3" if "TLS 1.3" in versions else "TLS 1.2",
    )

    accepted_versions = [v for v in SCANNED_VERSIONS if v in versions]
    highest_label = (
        _version_label(result.connectivity_result.highest_tls_version_supported.name)
        if result is not None
        else (accepted_versions[-1] if accepted_versions else None)
    )
    return TlsScanResult(
        endpoint=endpoint,
        started_at=started.isoformat(timespec="seconds"),
        duration_s=round(time.perf_counter() - t0, 3),
        tool=f"sslyze {sslyze_version}; own handshakes with {ssl.OPENSSL_VERSION}",
        suites=tuple(suites),
        versions_scanned=tuple(versions_scanned),
        highest_version=highest_label,
        sslyze_client_auth=(
            result.connectivity_result.client_auth_requirement.value if result is not None else None
        ),
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
        incomplete=incomplete,
        suite_sources=sources,
        rtt_s=round(rtt, 4),
        extra_probes=(foreign,),
        validation_probes=validation,
        resumption=resumption,
        sclient=cli_facts,
    )


# --- DTLS (UDP) -----------------------------------------------------------------------


def _validate_chain_offline(
    chain: tuple[x509.Certificate, ...], ca: str
) -> tuple[bool | None, str]:
    """OpenSSL's path validation of a received chain against the operator CA (no network)."""
    from OpenSSL import crypto

    if not chain:
        return None, "no certificate received"
    store = crypto.X509Store()
    for cert in _pem_certificates("CA certificate", ca):
        store.add_cert(crypto.X509.from_cryptography(cert))
    ctx = crypto.X509StoreContext(
        store,
        crypto.X509.from_cryptography(chain[0]),
        [crypto.X509.from_cryptography(c) for c in chain[1:]],
    )
    try:
        ctx.verify_certificate()
    except crypto.X509StoreContextError as exc:
        return False, str(exc.args[0] if exc.args else exc)
    return True, "chain verified"


def scan_dtls_endpoint(
    host: str,
    port: int,
    *,
    client_cert: str | None = None,
    client_key: str | None = None,
    ca: str | None = None,
    timeout: float = 5.0,
    negative_clients: dict[str, tuple[str, str]] | None = None,
) -> TlsScanResult:
    """Probe a DTLS endpoint (``udp://HOST:PORT``) with own DTLS handshakes only.

    Versions: DTLS 1.0 is judged as TLS 1.1 and DTLS 1.2 as TLS 1.2 (the TLS versions
    they are built on); DTLS has no SSL 2/3 or TLS 1.0 form, and DTLS 1.3 cannot be
    offered (OpenSSL has none), so TLS-13-01 stays INCONCLUSIVE. Compression and the
    key-exchange groups are not readable this way and stay unknown; renegotiation and
    resumption come from ``openssl s_client -dtls1_2``.
    """
    from OpenSSL import SSL

    from metercert.tlsprobe import dtls

    started = dt.datetime.now(dt.UTC)
    t0 = time.perf_counter()
    endpoint = f"udp://{host}:{port}"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except socket.gaierror:
        raise ConnectionFailed(f"cannot resolve host {host!r}") from None
    ip = str(infos[0][4][0])
    sni = None if _is_ip(host) else host
    timing = hs.Timing(0.0, timeout)

    def attempt(ctx) -> dtls.DtlsAttempt:
        return dtls.handshake(ip, port, ctx, deadline_s=timing.handshake_s, sni=sni)

    def ctx_for(cert: str | None, key: str | None, **kw):
        try:
            return dtls.context(cert, key, **kw)
        except SSL.Error as exc:
            raise InputFileError(f"cannot load DTLS client credentials: {exc}") from None

    preflight = attempt(ctx_for(client_cert, client_key))
    if preflight.outcome == "unknown":
        raise ConnectionFailed(f"no DTLS answer from {endpoint}: {preflight.detail}")
    if preflight.outcome == "error":
        raise ConnectionFailed(f"DTLS handshake with {endpoint} failed: {preflight.detail}")
    if preflight.reply_s:
        timing = hs.Timing(preflight.reply_s, timeout)

    suites: list[AcceptedSuite] = []
    incomplete: dict[str, str] = {}
    sources: dict[str, str] = {}
    scanned: list[str] = []
    for version in SCANNED_VERSIONS:
        if version not in dtls.DTLS_VERSIONS:
            if version == "TLS 1.3":
                incomplete[version] = "DTLS 1.3 cannot be offered (OpenSSL has no DTLS 1.3)"
                sources[version] = "not testable"
            else:
                scanned.append(version)  # no DTLS form of this version exists
                sources[version] = "no DTLS form"
            continue
        universe = _suite_universe(version)
        remaining = set(dtls.offerable_suites(version))
        sources[version] = f"own DTLS handshakes ({dtls.DTLS_VERSIONS[version][1]})"
        scanned.append(version)
        while remaining:
            got = attempt(
                ctx_for(
                    None,
                    None,
                    version=version,
                    ciphers=":".join(sorted(remaining)) + ":@SECLEVEL=0",
                )
            )
            if got.cipher in remaining:
                remaining.discard(got.cipher)
                if got.cipher in universe:
                    suites.append(_accepted_suite(version, universe[got.cipher]))
                continue
            if got.outcome == "rejected" and got.cipher is None:
                break
            incomplete[version] = f"{len(remaining)} suite(s) got no answer ({got.detail})"
            break

    chain_certs = preflight.chain
    chain = tuple(CertificateFacts.from_x509(c, i) for i, c in enumerate(chain_certs))
    validated, validation_detail = (
        (None, "no CA given") if not ca else _validate_chain_offline(chain_certs, ca)
    )

    def probe(description: str, cert: str | None, key: str | None) -> HandshakeProbe:
        got = attempt(ctx_for(cert, key))
        return HandshakeProbe(description, got.outcome, got.detail, got.version)

    without = probe("DTLS handshake without a client certificate", None, None)
    with tempfile.TemporaryDirectory(prefix="metercert-probe-") as tmp:
        throwaway = _throwaway_client_credentials(Path(tmp))
        untrusted = probe(
            "DTLS handshake with a self-signed client certificate from an unknown CA",
            *throwaway["stranger"],
        )
        foreign = probe(
            "DTLS handshake with a client certificate chain from a foreign CA",
            *throwaway["foreign"],
        )
    with_cert = (
        probe("DTLS handshake with the operator client certificate", client_cert, client_key)
        if client_cert and client_key
        else None
    )
    validation = {
        kind: probe(f"DTLS handshake with a {kind} client certificate from the operator CA", *pair)
        for kind, pair in (negative_clients or {}).items()
    }
    versions = {s.version for s in suites}
    cli_facts = sc.probe(
        ip, port, sni, timing, cert=client_cert, key=client_key,
        tls12="TLS 1.2" in versions, tls13=False, dtls=True,
    )  # fmt: skip
    not_dtls = "not readable over DTLS with this probe"
    return TlsScanResult(
        endpoint=endpoint,
        started_at=started.isoformat(timespec="seconds"),
        duration_s=round(time.perf_counter() - t0, 3),
        tool=f"own DTLS handshakes with pyOpenSSL ({SSL.OpenSSL_version(SSL.OPENSSL_VERSION).decode()})",
        suites=tuple(suites),
        versions_scanned=tuple(scanned),
        highest_version=max(versions, key=SCANNED_VERSIONS.index) if versions else None,
        sslyze_client_auth=None,
        chain=chain,
        chain_validated_with_ca=validated,
        chain_validation_detail=validation_detail,
        sslyze_chain_validation=None,
        ocsp_stapled=cli_facts.ocsp_stapled,
        compression=None,
        secure_renegotiation=cli_facts.secure_renegotiation,
        client_renegotiation_accepted=cli_facts.client_renegotiation,
        ecdh_groups=None,
        probe_without_cert=without,
        probe_untrusted_cert=untrusted,
        probe_with_cert=with_cert,
        errors={
            "tls_compression": f"compression {not_dtls}",
            "session_renegotiation": f"renegotiation {not_dtls}: {cli_facts.renegotiation_detail}",
            "elliptic_curves": f"groups {not_dtls}",
        },
        incomplete=incomplete,
        suite_sources=sources,
        rtt_s=round(timing.rtt_s, 4),
        extra_probes=(foreign,),
        validation_probes=validation,
        resumption=ResumptionFacts(
            cli_facts.ticket_lifetime_s,
            cli_facts.resumed,
            "DTLSv1.2" if "TLS 1.2" in versions else None,
            f"openssl s_client -dtls1_2: {cli_facts.resumption_detail}",
        ),
        sclient=cli_facts,
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


def _read(label: str, path: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read {label}: {exc.strerror or exc}") from None
    if not data.strip():
        raise InputFileError(f"{path}: {label} is empty")
    return data


def _pem_certificates(label: str, path: str) -> list[x509.Certificate]:
    data = _read(label, path)
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        certs = []
    if not certs:
        try:
            certs = [x509.load_der_x509_certificate(data)]
        except ValueError:
            raise InputFileError(f"{path}: {label} is not a PEM or DER certificate") from None
    return certs


def check_ca_file(path: str) -> None:
    """A --ca that is not a CA certificate must stop the audit, not weaken it."""
    certs = _pem_certificates("CA certificate", path)
    for cert in certs:
        try:
            bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        except (x509.ExtensionNotFound, ValueError):
            continue  # v1 / legacy roots carry no basicConstraints
        if not bc.ca:
            raise InputFileError(
                f"{path}: CA certificate {cert.subject.rfc4514_string()} is not a CA "
                "(basicConstraints CA:FALSE)"
            )


def check_client_credentials(cert_path: str, key_path: str) -> None:
    """Load the client certificate and key once, so a bad pair is one clear line.

    The key is parsed only to compare public keys; it is never kept or printed.
    """
    certs = _pem_certificates("client certificate", cert_path)
    data = _read("client private key", key_path)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise InputFileError(
            f"{key_path}: client private key is encrypted; give an unencrypted PEM key"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        try:
            key = serialization.load_der_private_key(data, password=None)
        except TypeError:
            raise InputFileError(
                f"{key_path}: client private key is encrypted; give an unencrypted PEM key"
            ) from None
        except (ValueError, UnsupportedAlgorithm):
            raise InputFileError(f"{key_path}: not a PEM private key") from None
    der = serialization.Encoding.DER
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(der, spki) != certs[0].public_key().public_bytes(der, spki):
        raise InputFileError(
            f"{key_path}: client private key does not match the certificate in {cert_path}"
        )


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
        server_name: str | None = None,
        expired_client: tuple[str, str] | None = None,
        revoked_client: tuple[str, str] | None = None,
        transport: Literal["tcp", "udp"] = "tcp",
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
        if self.ca is not None:
            check_ca_file(self.ca)
        if self.client_cert is not None and self.client_key is not None:
            check_client_credentials(self.client_cert, self.client_key)
        self.profile = profile if isinstance(profile, TlsProfile) else load_profile(profile)
        self.timeout = timeout
        self.server_name = server_name or host  # the name the certificate must carry
        if transport not in ("tcp", "udp"):
            raise UsageError(f"transport must be tcp or udp, not {transport!r}")
        self.transport = transport  # udp = DTLS
        self.negative_clients: dict[str, tuple[str, str]] = {}
        for kind, pair in (("expired", expired_client), ("revoked", revoked_client)):
            if pair is None:
                continue
            cert = _existing_file(f"{kind} client certificate", pair[0])
            key = _existing_file(f"{kind} client private key", pair[1])
            assert cert is not None and key is not None
            check_client_credentials(cert, key)
            self.negative_clients[kind] = (cert, key)
        self._lock = threading.Lock()
        self._result: TlsScanResult | None = None
        self._error: str | None = None

    @classmethod
    def from_endpoint(cls, endpoint: str, **kwargs: object) -> TlsTarget:
        """``HOST:PORT`` or ``tcp://HOST:PORT`` (TLS), ``udp://HOST:PORT`` (DTLS)."""
        scheme, sep, rest = endpoint.partition("://")
        if not sep:
            scheme, rest = "tcp", endpoint
        scheme = {"tls": "tcp", "dtls": "udp"}.get(scheme.lower(), scheme.lower())
        if scheme not in ("tcp", "udp"):
            raise UsageError(f"endpoint {endpoint!r}: scheme must be tcp:// or udp://")
        host, port = parse_endpoint(rest)
        return cls(host, port, transport=scheme, **kwargs)  # type: ignore[arg-type]

    @property
    def endpoint(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def describe(self) -> str:
        auth = "mutual TLS" if self.client_cert else "no client certificate"
        if self.transport == "udp":
            return f"udp://{self.endpoint} (DTLS, {auth}, profile {self.profile.name})"
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
                    scanner = scan_dtls_endpoint if self.transport == "udp" else scan_endpoint
                    self._result = scanner(
                        self.host,
                        self.port,
                        client_cert=self.client_cert,
                        client_key=self.client_key,
                        ca=self.ca,
                        timeout=self.timeout,
                        negative_clients=self.negative_clients,
                    )
                except ConnectionFailed as exc:
                    self._error = str(exc)
            if self._error is not None:
                raise ConnectionFailed(self._error)
            assert self._result is not None
            return self._result
