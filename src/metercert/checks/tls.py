"""IEC 62351-3 checks of a TLS endpoint (target kind ``tls``).

Each check reads the one cached probe of its :class:`~metercert.tlsprobe.audit.TlsTarget`
(``target.scan()``) and judges it against ``target.profile``, the thresholds as
data. A check fails only on a flaw it has seen; when the probe could not answer
(e.g. renegotiation was not testable without a client certificate) it says
INCONCLUSIVE and why.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterable

from metercert.checks.base import (
    CheckOutcome,
    Evidence,
    Severity,
    TargetKind,
    check,
    fail,
    inconclusive,
    not_applicable,
    passed,
)
from metercert.tlsprobe.audit import (
    SSLYZE_VERSION_COMMANDS,
    AcceptedSuite,
    TlsScanResult,
    TlsTarget,
)
from metercert.tlsprobe.profile import TLS_VERSIONS

# The probe itself (sslyze + own handshakes) runs inside whichever check comes first.
_TIMEOUT = 90.0
_CRYPTO = ["EN303645:5.5-1", "CRA:I.2e"]


def _source(target: TlsTarget, what: str) -> str:
    return f"{target.endpoint} ({what})"


def _suites_evidence(target: TlsTarget, suites: Iterable[AcceptedSuite], label: str) -> Evidence:
    lines = [s.describe() for s in suites]
    return Evidence(
        label, "\n".join(lines) or "(none)", "value", _source(target, "sslyze cipher suites")
    )


def _versions_evidence(target: TlsTarget, scan: TlsScanResult) -> Evidence:
    accepted = scan.versions_accepted
    lines = []
    for v in TLS_VERSIONS:
        source = scan.suite_sources.get(v, "sslyze")
        if v in accepted:
            line = f"{v}: accepted"
        elif v in scan.versions_scanned and v not in scan.incomplete:
            line = f"{v}: rejected"
        else:
            line = f"{v}: unknown"
        if v in scan.incomplete:
            line += f" (enumeration incomplete: {scan.incomplete[v]})"
        elif v not in scan.versions_scanned:
            line += f" (not tested: {scan.errors.get(SSLYZE_VERSION_COMMANDS[v], 'scan error')})"
        lines.append(f"{line} [{source}]")
    return Evidence(
        "protocol versions", "\n".join(lines), "value", _source(target, "sslyze + own handshakes")
    )


# Every TLS 1.3 suite is AEAD with ephemeral key exchange: a gap there cannot hide a
# weak suite, so suite-quality checks look at the versions below it.
_BELOW_13 = TLS_VERSIONS[:-1]


def _gap_reason(scan: TlsScanResult, versions: tuple[str, ...] = TLS_VERSIONS) -> str | None:
    """Why the accepted-suite list may be incomplete (never a PASS then), or None."""
    gaps = scan.enumeration_gaps(versions)
    if not gaps:
        return None
    return "suite enumeration incomplete, so no PASS: " + "; ".join(gaps)


def _profile_evidence(target: TlsTarget, *settings: str) -> Evidence:
    p = target.profile
    lines = [f"{s} = {getattr(p, s)!r}  # {p.source(s)}" for s in settings]
    return Evidence("profile thresholds", "\n".join(lines), "value", p.path)


def _chain_evidence(target: TlsTarget, scan: TlsScanResult) -> Evidence:
    text = "\n".join(c.describe() for c in scan.chain) or "(no certificate received)"
    return Evidence(
        "certificate chain sent by the server", text, "value", _source(target, "sslyze")
    )


@check(
    "TLS-VERSION-01",
    "No protocol version below the profile's TLS floor is accepted",
    severity=Severity.HIGH,
    target=TargetKind.TLS,
    requirements=["IEC62351-3:TLS-VERSION", *_CRYPTO],
    tags=["tls", "iec62351-3"],
    timeout=_TIMEOUT,
)
def tls_version_floor(target: TlsTarget) -> CheckOutcome:
    """SSL 2.0/3.0, TLS 1.0/1.1 (anything below the profile floor) must be refused."""
    scan = target.scan()
    floor = target.profile.min_tls_version
    below = [v for v in TLS_VERSIONS if TLS_VERSIONS.index(v) < TLS_VERSIONS.index(floor)]
    evidence = (_versions_evidence(target, scan), _profile_evidence(target, "min_tls_version"))
    weak = [v for v in below if v in scan.versions_accepted]
    if weak:
        return fail(f"accepts {', '.join(weak)} (floor is {floor})", *evidence)
    untested = [v for v in below if v not in scan.versions_scanned or v in scan.incomplete]
    if untested:
        gap = _gap_reason(scan, tuple(untested)) or ""
        return inconclusive(f"could not fully test {', '.join(untested)}: {gap}", *evidence)
    if not scan.versions_accepted:
        return inconclusive("no protocol version was accepted at all", *evidence)
    return passed(f"only {', '.join(scan.versions_accepted)} accepted (floor {floor})", *evidence)


@check(
    "TLS-13-01",
    "TLS 1.3 is offered (recommended)",
    severity=Severity.LOW,
    target=TargetKind.TLS,
    requirements=["IEC62351-3:TLS13", "EN303645:5.5-1"],
    tags=["tls", "iec62351-3", "recommended"],
    timeout=_TIMEOUT,
)
def tls13_offered(target: TlsTarget) -> CheckOutcome:
    """62351-3 ed.2 recommends TLS 1.3; a meter that only speaks TLS 1.2 is flagged."""
    if not target.profile.recommend_tls13:
        return not_applicable("the profile does not recommend TLS 1.3")
    scan = target.scan()
    evidence = (
        _versions_evidence(target, scan),
        _suites_evidence(target, scan.suites_for("TLS 1.3"), "TLS 1.3 suites"),
    )
    if "TLS 1.3" in scan.versions_accepted:
        return passed(f"TLS 1.3 offered with {len(scan.suites_for('TLS 1.3'))} suites", *evidence)
    if "TLS 1.3" not in scan.versions_scanned or "TLS 1.3" in scan.incomplete:
        return inconclusive(
            f"TLS 1.3 could not be tested: {_gap_reason(scan, ('TLS 1.3',))}", *evidence
        )
    return fail(f"TLS 1.3 not offered (highest is {scan.highest_version})", *evidence)


def _is_forward_secret(suite: AcceptedSuite) -> bool:
    if suite.version == "TLS 1.3":
        return True  # every TLS 1.3 key exchange is ephemeral
    return suite.name.startswith(("TLS_ECDHE_", "TLS_DHE_", "SSL_DHE_"))


@check(
    "TLS-FS-01",
    "Only forward-secret key exchange (no static RSA / static DH)",
    severity=Severity.HIGH,
    target=TargetKind.TLS,
    requirements=["IEC62351-3:CIPHER-FS", *_CRYPTO],
    tags=["tls", "iec62351-3"],
    timeout=_TIMEOUT,
)
def tls_forward_secrecy(target: TlsTarget) -> CheckOutcome:
    """A recorded session must stay secret when the meter's key leaks later."""
    if not target.profile.require_forward_secrecy:
        return not_applicable("the profile does not require forward secrecy")
    scan = target.scan()
    if not scan.suites:
        return inconclusive("no cipher suite was accepted", _versions_evidence(target, scan))
    static = [s for s in scan.suites if not _is_forward_secret(s)]
    if static:
        return fail(
            f"{len(static)} suites without forward secrecy, e.g. {static[0].version} {static[0].name}",
            _suites_evidence(target, static, "suites without forward secrecy"),
            _suites_evidence(target, scan.suites, "all accepted suites"),
        )
    gap = _gap_reason(scan, _BELOW_13)
    if gap:
        return inconclusive(
            f"no static key exchange among {len(scan.suites)} suites seen, but {gap}",
            _suites_evidence(target, scan.suites, "all accepted suites"),
            _versions_evidence(target, scan),
        )
    return passed(
        f"all {len(scan.suites)} accepted suites use ephemeral (EC)DHE",
        _suites_evidence(target, scan.suites, "all accepted suites"),
    )


def cipher_families(suite: AcceptedSuite) -> set[str]:
    """The weak families a suite belongs to, judged from its IANA name."""
    name = suite.name.upper()
    found: set[str] = set()
    if "NULL" in name:
        found.add("NULL")
    if suite.anonymous or "_ANON_" in name:
        found.add("anon")
    if "EXPORT" in name:
        found.add("EXPORT")
    if "RC4" in name:
        found.add("RC4")
    if "3DES" in name or "DES_192" in name:
        found.add("3DES")
    elif "_DES" in name or "DES40" in name:
        found.add("DES")
    if name.endswith("_MD5"):
        found.add("MD5")
    if "_CBC" in name:
        found.add("CBC")
        if name.endswith("_SHA"):
            found.add("CBC-SHA1")
    if "PSK" in name:
        found.add("PSK")
    if "IDEA" in name:
        found.add("IDEA")
    if "SEED" in name:
        found.add("SEED")
    return found


@check(
    "TLS-CIPHER-01",
    "No forbidden cipher families (NULL, anon, export, RC4, 3DES, CBC-SHA1 ...) or weak key sizes",
    severity=Severity.HIGH,
    target=TargetKind.TLS,
    requirements=["IEC62351-3:CIPHER-STRENGTH", *_CRYPTO],
    tags=["tls", "iec62351-3"],
    timeout=_TIMEOUT,
)
def tls_cipher_families(target: TlsTarget) -> CheckOutcome:
    """Every accepted suite must avoid the profile's forbidden families and bit floor."""
    scan = target.scan()
    profile = target.profile
    forbidden = set(profile.forbidden_cipher_families)
    bad: list[str] = []
    for suite in scan.suites:
        hits = sorted(cipher_families(suite) & forbidden)
        if suite.key_bits and suite.key_bits < profile.min_cipher_bits:
            hits.append(f"{suite.key_bits}-bit key")
        if hits:
            bad.append(f"{suite.version} {suite.name}: {', '.join(hits)}")
    evidence = [
        _suites_evidence(target, scan.suites, "all accepted suites"),
        _profile_evidence(target, "forbidden_cipher_families", "min_cipher_bits"),
    ]
    if bad:
        evidence.insert(
            0,
            Evidence(
                "forbidden suites accepted", "\n".join(bad), "value", _source(target, "sslyze")
            ),
        )
        return fail(f"{len(bad)} forbidden suites accepted, e.g. {bad[0]}", *evidence)
    if not scan.suites:
        return inconclusive("no cipher suite was accepted", *evidence)
    gap = _gap_reason(scan, _BELOW_13)
    if gap:
        evidence.append(_versions_evidence(target, scan))
        return inconclusive(
            f"no forbidden suite among {len(scan.suites)} seen, but {gap}", *evidence
        )
    return passed(f"none of {len(scan.suites)} accepted suites is in a forbidden family", *evidence)


@check(
    "TLS-MUTUAL-01",
    "The server requires and verifies a client certificate (mutual authentication)",
    severity=Severity.CRITICAL,
    target=TargetKind.TLS,
    requirements=["IEC62351-3:MUTUAL-AUTH", "CRA:I.2d", "EN303645:5.5-1"],
    tags=["tls", "iec62351-3"],
    timeout=_TIMEOUT,
)
def tls_mutual_auth(target: TlsTarget) -> CheckOutcome:
    """A head-end without the operator's certificate must not get a session."""
    if not target.profile.require_client_auth:
        return not_applicable("the profile does not require client authentication")
    scan = target.scan()
    without, stranger = scan.probe_without_cert, scan.probe_untrusted_cert
    negatives = [p for p in (without, stranger, *scan.extra_probes) if p is not None]
    control = scan.probe_with_cert
    evidence = [
        Evidence(
            "own handshakes",
            "\n".join(p.describe() for p in [*negatives, *([control] if control else [])]),
            "value",
            _source(target, f"ssl module, waits scaled to RTT {scan.rtt_s * 1000:.0f} ms"),
        ),
    ]
    if without is None or stranger is None:
        return inconclusive("the client-certificate handshakes did not run", *evidence)
    accepted = [p for p in negatives if p.outcome == "accepted"]
    if accepted:
        what = accepted[0].description.replace("handshake ", "a handshake ", 1)
        return fail(f"{what} was accepted ({accepted[0].detail})", *evidence)
    app = [p for p in negatives if p.outcome == "app-refused"]
    if app:
        return inconclusive(
            f"TLS does not enforce client authentication: {app[0].description} completed, "
            f"then the server refused at the application layer ({app[0].detail}); "
            "judge that refusal by hand",
            *evidence,
        )
    if control is None:
        return inconclusive(
            "refusals seen, but without the operator certificate they cannot be attributed to "
            "client authentication (give --client-cert/--client-key)",
            *evidence,
        )
    if control.outcome != "accepted":
        return inconclusive(
            f"the operator client certificate was not accepted either ({control.outcome}: "
            f"{control.detail}), so the other refusals say nothing about client authentication",
            *evidence,
        )
    unsure = [p for p in negatives if p.outcome != "rejected"]
    if unsure:
        return inconclusive(
            f"{unsure[0].description}: {unsure[0].outcome} ({unsure[0].detail})", *evidence
        )
    return passed(
        "the operator certificate is accepted; no certificate, a self-signed one and a "
        "foreign-CA chain are refused",
        *evidence,
    )


@check(
    "TLS-CERT-01",
    "Server certificate follows the X.509 v3 profile (key usage, EKU, CA flag, SAN, size)",
    severity=Severity.MEDIUM,
    target=TargetKind.TLS,
    requirements=["IEC62351-3:CERT-PROFILE"],
    tags=["tls", "iec62351-3", "pki"],
    timeout=_TIMEOUT,
)
def tls_certificate_profile(target: TlsTarget) -> CheckOutcome:
    """Wrongly profiled certificates break interoperability and path validation."""
    scan = target.scan()
    leaf = scan.leaf
    evidence = (
        _chain_evidence(target, scan),
        _profile_evidence(
            target,
            "require_x509_v3",
            "require_key_usage",
            "require_subject_alt_name",
            "max_certificate_bytes",
        ),
    )
    if leaf is None:
        return inconclusive("no server certificate was received", *evidence)
    p = target.profile
    problems: list[str] = []
    if p.require_x509_v3 and leaf.version != 3:
        problems.append(f"leaf is X.509 v{leaf.version}, not v3")
    if leaf.extension_error:
        problems.append(leaf.extension_error)
    if p.require_key_usage:
        if leaf.key_usage is None:
            problems.append("leaf has no keyUsage extension")
        elif "digital_signature" not in leaf.key_usage and "key_encipherment" not in leaf.key_usage:
            problems.append(
                f"leaf keyUsage {list(leaf.key_usage)} allows neither digitalSignature nor keyEncipherment"
            )
        if leaf.key_usage and "key_cert_sign" in leaf.key_usage:
            problems.append("leaf keyUsage includes keyCertSign")
    if leaf.extended_key_usage is not None and not (
        {"serverAuth", "anyExtendedKeyUsage"} & set(leaf.extended_key_usage)
    ):
        problems.append(f"leaf extendedKeyUsage {list(leaf.extended_key_usage)} lacks serverAuth")
    if leaf.is_ca:
        problems.append("leaf has basicConstraints CA:TRUE")
    if p.require_subject_alt_name and leaf.version == 3 and not leaf.subject_alt_names:
        problems.append("leaf has no subjectAltName")
    for cert in scan.chain:
        if cert.der_size > p.max_certificate_bytes:
            problems.append(
                f"certificate #{cert.position} is {cert.der_size} bytes (> {p.max_certificate_bytes})"
            )
    facts = Evidence(
        "leaf certificate extensions",
        f"version: v{leaf.version}\nkeyUsage: {leaf.key_usage}\nextendedKeyUsage: {leaf.extended_key_usage}\n"
        f"basicConstraints CA: {leaf.is_ca}\nsubjectAltName: {list(leaf.subject_alt_names)}\n"
        f"size: {leaf.der_size} bytes",
        "value",
        _source(target, "sslyze certificate_info"),
    )
    if problems:
        return fail("; ".join(problems), facts, *evidence)
    return passed(
        f"leaf is X.509 v3 with keyUsage {list(leaf.key_usage or ())} and serverAuth",
        facts,
        *evidence,
    )


@check(
    "TLS-KEY-01",
    "Certificate keys and ephemeral key exchange meet the key-strength floor",
    severity=Severity.HIGH,
    target=TargetKind.TLS,
    requirements=["IEC62351-3:KEY-STRENGTH", *_CRYPTO],
    tags=["tls", "iec62351-3", "pki"],
    timeout=_TIMEOUT,
)
def tls_key_strength(target: TlsTarget) -> CheckOutcome:
    """RSA >= the floor, ECDSA on an allowed curve, finite-field DHE >= its floor."""
    scan = target.scan()
    p = target.profile
    problems: list[str] = []
    for cert in scan.chain:
        where = f"certificate #{cert.position} ({cert.subject})"
        if cert.key_type == "RSA" and cert.key_bits < p.min_rsa_bits:
            problems.append(f"{where}: RSA {cert.key_bits} bits < {p.min_rsa_bits}")
        elif cert.key_type in ("EC", "Ed25519", "Ed448") and cert.curve not in p.allowed_curves:
            problems.append(f"{where}: curve {cert.curve} not in {list(p.allowed_curves)}")
        elif cert.key_type not in ("RSA", "EC", "Ed25519", "Ed448"):
            problems.append(f"{where}: key type {cert.key_type} not allowed")
    weak_dh = sorted(
        {
            f"{s.version} {s.name}: DH {s.kex_bits} bits"
            for s in scan.suites
            if s.kex_type == "DH" and s.kex_bits is not None and s.kex_bits < p.min_dh_bits
        }
    )
    problems += weak_dh
    evidence = (
        Evidence(
            "certificate keys",
            "\n".join(
                f"#{c.position} {c.subject}: {c.key_type} {c.curve or c.key_bits}"
                for c in scan.chain
            )
            or "(none)",
            "value",
            _source(target, "sslyze certificate_info"),
        ),
        Evidence(
            "key-exchange groups accepted (reported, not judged)",
            ", ".join(scan.ecdh_groups) if scan.ecdh_groups is not None else "not tested",
            "value",
            _source(target, "sslyze elliptic_curves"),
        ),
        _profile_evidence(target, "min_rsa_bits", "allowed_curves", "min_dh_bits"),
    )
    if not scan.chain:
        return inconclusive("no server certificate was received", *evidence)
    if problems:
        return fail("; ".join(problems), *evidence)
    unsized = sorted(
        {f"{s.version} {s.name}" for s in scan.suites if s.kex_type == "DH" and s.kex_bits is None}
    )
    if unsized:
        return inconclusive(
            f"the DH group size of {len(unsized)} suite(s) is unknown, e.g. {unsized[0]}", *evidence
        )
    gap = _gap_reason(scan, _BELOW_13)
    if gap:
        return inconclusive(f"certificate keys meet the floor, but DH groups: {gap}", *evidence)
    return passed("all certificate keys and DH groups meet the floor", *evidence)


@check(
    "TLS-SIG-01",
    "No certificate in the chain is signed with SHA-1 or MD5",
    severity=Severity.HIGH,
    target=TargetKind.TLS,
    requirements=["IEC62351-3:SIG-HASH", *_CRYPTO],
    tags=["tls", "iec62351-3", "pki"],
    timeout=_TIMEOUT,
)
def tls_signature_hash(target: TlsTarget) -> CheckOutcome:
    """Collisions in SHA-1/MD5 let an attacker forge a certificate the CA never signed."""
    scan = target.scan()
    forbidden = set(target.profile.forbidden_signature_hashes)
    judged = [c for c in scan.chain if not (c.self_signed and c.position > 0)]
    bad = [c for c in judged if (c.signature_hash or "").lower() in forbidden]
    evidence = (
        Evidence(
            "certificate signatures",
            "\n".join(
                f"#{c.position} {c.subject}: {c.signature_algorithm}"
                + (" (self-signed trust anchor: not judged)" if c not in judged else "")
                for c in scan.chain
            )
            or "(none)",
            "value",
            _source(target, "sslyze certificate_info"),
        ),
        _profile_evidence(target, "forbidden_signature_hashes"),
    )
    if not scan.chain:
        return inconclusive("no server certificate was received", *evidence)
    if bad:
        return fail(
            "; ".join(
                f"certificate #{c.position} ({c.subject}) signed with {c.signature_algorithm}"
                for c in bad
            ),
            *evidence,
        )
    return passed(f"signatures of {len(judged)} certificate(s) use an allowed hash", *evidence)


@check(
    "TLS-VALID-01",
    "Certificates are within their validity period and chain to the operator CA",
    severity=Severity.HIGH,
    target=TargetKind.TLS,
    requirements=["IEC62351-3:CERT-VALIDITY"],
    tags=["tls", "iec62351-3", "pki"],
    timeout=_TIMEOUT,
)
def tls_certificate_validity(target: TlsTarget) -> CheckOutcome:
    """An expired or untrusted meter certificate must make a conformant head-end refuse it."""
    scan = target.scan()
    now = dt.datetime.now(dt.UTC)
    problems: list[str] = []
    for cert in scan.chain:
        if now < cert.not_before:
            problems.append(
                f"certificate #{cert.position} not valid before {cert.not_before:%Y-%m-%d %H:%M} UTC"
            )
        if now > cert.not_after:
            problems.append(
                f"certificate #{cert.position} expired on {cert.not_after:%Y-%m-%d} UTC"
            )
    if scan.chain_validated_with_ca is False:
        problems.append(
            f"chain does not validate against the given CA: {scan.chain_validation_detail}"
        )
    leaf = scan.leaf
    days_left = (leaf.not_after - now).days if leaf else None
    evidence = (
        Evidence(
            "validity",
            "\n".join(
                f"#{c.position} {c.subject}: {c.not_before:%Y-%m-%d} .. {c.not_after:%Y-%m-%d} UTC "
                f"({(c.not_after - now).days} days left)"
                for c in scan.chain
            )
            or "(none)",
            "value",
            _source(target, "sslyze certificate_info"),
        ),
        Evidence(
            "path validation against --ca",
            f"OpenSSL (weak algorithms tolerated, judged by TLS-SIG-01/TLS-KEY-01): "
            f"{scan.chain_validated_with_ca} - {scan.chain_validation_detail}\n"
            f"sslyze (strict): {scan.sslyze_chain_validation or 'not run'}",
            "value",
            _source(target, "path validation"),
        ),
        _profile_evidence(target, "expiry_warning_days"),
    )
    if leaf is None:
        return inconclusive("no server certificate was received", *evidence)
    if problems:
        return fail("; ".join(problems), *evidence)
    warning = ""
    if days_left is not None and days_left < target.profile.expiry_warning_days:
        warning = (
            f" WARNING: leaf expires in {days_left} days (< {target.profile.expiry_warning_days})"
        )
    if scan.chain_validated_with_ca is None and target.ca is not None:
        return inconclusive(
            f"dates valid, but the chain could not be validated: {scan.chain_validation_detail}",
            *evidence,
        )
    if scan.chain_validated_with_ca is None:
        return passed(
            f"dates valid, {days_left} days to expiry; chain not validated "
            f"({scan.chain_validation_detail}){warning}",
            *evidence,
        )
    return passed(
        f"chain valid against the operator CA, {days_left} days to expiry{warning}", *evidence
    )


@check(
    "TLS-REVOC-01",
    "Certificates name a CRL distribution point or an OCSP responder",
    severity=Severity.MEDIUM,
    target=TargetKind.TLS,
    requirements=["IEC62351-3:REVOCATION"],
    tags=["tls", "iec62351-3", "pki"],
    timeout=_TIMEOUT,
)
def tls_revocation_info(target: TlsTarget) -> CheckOutcome:
    """Without a CRL DP or OCSP URL a compromised meter certificate cannot be revoked in practice."""
    if not target.profile.require_revocation_info:
        return not_applicable("the profile does not require revocation information")
    scan = target.scan()
    judged = [c for c in scan.chain if not c.self_signed]
    missing = [c for c in judged if not c.crl_urls and not c.ocsp_urls]
    evidence = (
        Evidence(
            "revocation pointers",
            "\n".join(
                f"#{c.position} {c.subject}: CRL {list(c.crl_urls)} OCSP {list(c.ocsp_urls)}"
                + (" (self-signed: not judged)" if c.self_signed else "")
                for c in scan.chain
            )
            + f"\nOCSP response stapled: {scan.ocsp_stapled}",
            "value",
            _source(target, "sslyze certificate_info"),
        ),
    )
    if not scan.chain:
        return inconclusive("no server certificate was received", *evidence)
    if not judged:
        return fail("the server certificate is self-signed: nothing can revoke it", *evidence)
    if missing:
        return fail(
            "; ".join(
                f"certificate #{c.position} ({c.subject}) has no CRL DP and no OCSP URL"
                for c in missing
            ),
            *evidence,
        )
    return passed(f"{len(judged)} certificate(s) carry revocation pointers", *evidence)


@check(
    "TLS-RENEG-01",
    "Secure renegotiation (RFC 5746) only; no client-initiated renegotiation",
    severity=Severity.MEDIUM,
    target=TargetKind.TLS,
    requirements=["IEC62351-3:RENEGOTIATION"],
    tags=["tls", "iec62351-3"],
    timeout=_TIMEOUT,
)
def tls_renegotiation(target: TlsTarget) -> CheckOutcome:
    """Insecure renegotiation allows prefix injection; client renegotiation is a DoS lever."""
    if not target.profile.require_secure_renegotiation:
        return not_applicable("the profile does not judge renegotiation")
    scan = target.scan()
    legacy = [v for v in scan.versions_accepted if v != "TLS 1.3"]
    evidence = (
        Evidence(
            "renegotiation",
            f"secure renegotiation (RFC 5746): {scan.secure_renegotiation}\n"
            f"client-initiated renegotiation accepted: {scan.client_renegotiation_accepted}",
            "value",
            _source(target, "sslyze session_renegotiation"),
        ),
        _versions_evidence(target, scan),
    )
    if not legacy and scan.versions_accepted:
        return passed("only TLS 1.3 is accepted, which has no renegotiation", *evidence)
    if scan.secure_renegotiation is None:
        why = scan.errors.get("session_renegotiation", "not tested")
        hint = " (give --client-cert/--client-key)" if "client certificate" in why.lower() else ""
        return inconclusive(f"renegotiation could not be tested: {why}{hint}", *evidence)
    problems = []
    if not scan.secure_renegotiation:
        problems.append("no secure renegotiation (RFC 5746)")
    if scan.client_renegotiation_accepted:
        problems.append("client-initiated renegotiation accepted")
    if problems:
        return fail("; ".join(problems), *evidence)
    return passed(
        "secure renegotiation supported and client-initiated renegotiation refused", *evidence
    )


@check(
    "TLS-COMP-01",
    "TLS compression is off",
    severity=Severity.MEDIUM,
    target=TargetKind.TLS,
    requirements=["IEC62351-3:COMPRESSION", "CRA:I.2e"],
    tags=["tls", "iec62351-3"],
    timeout=_TIMEOUT,
)
def tls_compression(target: TlsTarget) -> CheckOutcome:
    """Compression before encryption leaks secrets through length (CRIME)."""
    if not target.profile.forbid_compression:
        return not_applicable("the profile does not judge compression")
    scan = target.scan()
    evidence = Evidence(
        "TLS compression",
        f"supported: {scan.compression}",
        "value",
        _source(target, "sslyze tls_compression"),
    )
    if scan.compression is None:
        return inconclusive(
            f"compression could not be tested: {scan.errors.get('tls_compression', '')}", evidence
        )
    if scan.compression:
        return fail("the server accepts TLS compression (DEFLATE)", evidence)
    return passed("the server refuses TLS compression", evidence)


# --- checks added for issue 18: identity, resumption, client-chain validation, key refresh,
# groups, signature algorithms, extended master secret, OCSP stapling -------------------


def _name_matches(pattern: str, name: str) -> bool:
    """RFC 6125 matching: case-insensitive, a wildcard only as the whole left-most label."""
    pattern, name = pattern.lower().rstrip("."), name.lower().rstrip(".")
    if pattern.startswith("*."):
        head, _, rest = name.partition(".")
        return bool(head) and rest == pattern[2:]
    return pattern == name


def _san_names_endpoint(sans: tuple[str, ...], name: str) -> bool:
    try:
        wanted = ipaddress.ip_address(name)
    except ValueError:
        return any(_name_matches(s[4:], name) for s in sans if s.startswith("DNS:"))
    for s in sans:
        if s.startswith("IP:"):
            try:
                if ipaddress.ip_address(s[3:]) == wanted:
                    return True
            except ValueError:
                continue
    return False


@check(
    "TLS-SAN-01",
    "The server certificate names this endpoint, not another device",
    severity=Severity.HIGH,
    target=TargetKind.TLS,
    requirements=["IEC62351-3:CERT-PROFILE", "IEC62351-3:MUTUAL-AUTH"],
    tags=["tls", "iec62351-3", "pki"],
    timeout=_TIMEOUT,
)
def tls_san_identity(target: TlsTarget) -> CheckOutcome:
    """A meter presenting another meter's certificate can impersonate it to the head-end."""
    scan = target.scan()
    leaf = scan.leaf
    name = target.server_name
    evidence = (
        Evidence(
            "identity",
            f"endpoint name checked: {name}\n"
            f"subjectAltName: {list(leaf.subject_alt_names) if leaf else None}\n"
            f"subject: {leaf.subject if leaf else None}",
            "value",
            _source(target, "certificate chain"),
        ),
    )
    if leaf is None:
        return inconclusive("no server certificate was received", *evidence)
    if not leaf.subject_alt_names:
        return fail(
            f"the leaf has no subjectAltName, so nothing binds it to {name} "
            "(RFC 6125: a CN is not checked when identities are required)",
            *evidence,
        )
    if _san_names_endpoint(leaf.subject_alt_names, name):
        return passed(f"subjectAltName names {name}", *evidence)
    return fail(
        f"the certificate names {', '.join(leaf.subject_alt_names)}, not {name} "
        "(another device's certificate, or audit with --server-name NAME)",
        *evidence,
    )


@check(
    "TLS-RESUME-01",
    "Session resumption is bounded (ticket lifetime within the profile limit)",
    severity=Severity.MEDIUM,
    target=TargetKind.TLS,
    requirements=["IEC62351-3:RENEGOTIATION"],
    tags=["tls", "iec62351-3"],
    timeout=_TIMEOUT,
)
def tls_resumption_bounded(target: TlsTarget) -> CheckOutcome:
    """A 7-day ticket lets a stolen session key be reused for a week without a handshake."""
    scan = target.scan()
    limit = target.profile.max_session_lifetime_s
    r = scan.resumption
    evidence = (
        Evidence(
            "session resumption",
            r.detail if r else "not probed",
            "value",
            _source(target, f"own handshakes, {r.version if r else ''}"),
        ),
        _profile_evidence(target, "max_session_lifetime_s"),
    )
    if r is None or (r.resumed is None and r.ticket_lifetime_s is None):
        return inconclusive(f"resumption could not be probed ({r.detail if r else ''})", *evidence)
    if r.ticket_lifetime_s is not None:
        if r.ticket_lifetime_s == 0:
            return fail("the session ticket announces no lifetime (0 = unspecified)", *evidence)
        if r.ticket_lifetime_s > limit:
            return fail(
                f"session tickets live {r.ticket_lifetime_s} s "
                f"({r.ticket_lifetime_s / 86400:.1f} days) > {limit} s",
                *evidence,
            )
        return passed(f"session ticket lifetime {r.ticket_lifetime_s} s <= {limit} s", *evidence)
    if r.resumed:
        return inconclusive(
            "sessions resume by session ID; how long the server caches them cannot be read "
            "from the handshake",
            *evidence,
        )
    return passed("the server issued no ticket and did not resume the session", *evidence)


@check(
    "TLS-CLIENTVAL-01",
    "The server refuses expired and revoked client certificates of the operator CA",
    severity=Severity.HIGH,
    target=TargetKind.TLS,
    requirements=[
        "IEC62351-3:MUTUAL-AUTH",
        "IEC62351-3:REVOCATION",
        "IEC62351-3:CERT-VALIDITY",
    ],
    tags=["tls", "iec62351-3", "pki"],
    timeout=_TIMEOUT,
)
def tls_client_chain_validation(target: TlsTarget) -> CheckOutcome:
    """62351-3 mutual authentication means the server validates the client chain and revocation."""
    if not target.profile.require_client_auth:
        return not_applicable("the profile does not require client authentication")
    scan = target.scan()
    probes = scan.validation_probes
    control = scan.probe_with_cert
    lines = [p.describe() for p in probes.values()] + ([control.describe()] if control else [])
    evidence = (
        Evidence("own handshakes", "\n".join(lines) or "(none)", "value", _source(target, "ssl")),
    )
    accepted = [k for k, p in probes.items() if p.outcome == "accepted"]
    if accepted:
        return fail(f"a {' and a '.join(accepted)} client certificate was accepted", *evidence)
    missing = [k for k in ("expired", "revoked") if k not in probes]
    if control is None or control.outcome != "accepted":
        return inconclusive(
            "the operator client certificate was not accepted (or not given), so refusals "
            "cannot be attributed to validation",
            *evidence,
        )
    unsure = [p for p in probes.values() if p.outcome != "rejected"]
    if unsure:
        return inconclusive(f"{unsure[0].description}: {unsure[0].detail}", *evidence)
    if missing:
        flags = " ".join(f"--{k}-client CERT KEY" for k in missing)
        return inconclusive(
            f"not tested: {', '.join(missing)} certificate (give {flags})", *evidence
        )
    return passed("expired and revoked client certificates are refused", *evidence)


@check(
    "TLS-KEYUPDATE-01",
    "TLS 1.3 sessions survive a KeyUpdate (periodic key refresh)",
    severity=Severity.MEDIUM,
    target=TargetKind.TLS,
    requirements=["IEC62351-3:KEY-REFRESH"],
    tags=["tls", "iec62351-3"],
    timeout=_TIMEOUT,
)
def tls_key_update(target: TlsTarget) -> CheckOutcome:
    """Long-lived meter sessions refresh keys: KeyUpdate in TLS 1.3 (renegotiation: TLS-RENEG-01)."""
    scan = target.scan()
    if "TLS 1.3" not in scan.versions_accepted:
        return not_applicable("TLS 1.3 is not offered; TLS 1.2 key refresh is TLS-RENEG-01")
    facts = scan.sclient
    detail = facts.key_update_detail if facts else "not probed"
    evidence = (Evidence("KeyUpdate", detail, "value", _source(target, "openssl s_client")),)
    if facts is None or facts.key_update is None:
        return inconclusive(f"KeyUpdate could not be tested: {detail}", *evidence)
    if facts.key_update == "dropped":
        return fail(detail, *evidence)
    return passed(detail, *evidence)


# Approximate security strength of named key-exchange groups (NIST SP 800-57 part 1).
_GROUP_BITS = {
    "X25519": 128, "X448": 224, "secp256r1": 128, "prime256v1": 128, "secp384r1": 192,
    "secp521r1": 256, "brainpoolP256r1": 128, "brainpoolP384r1": 192, "brainpoolP512r1": 256,
    "secp224r1": 112, "secp192r1": 96, "prime192v1": 96, "secp160r1": 80, "secp160k1": 80,
    "secp160r2": 80, "secp192k1": 96, "secp224k1": 112, "secp256k1": 128, "sect163k1": 80,
    "sect163r1": 80, "sect163r2": 80, "sect193r1": 96, "sect193r2": 96, "sect233k1": 112,
    "sect233r1": 112, "sect239k1": 112, "sect283k1": 128, "sect283r1": 128, "sect409k1": 192,
    "sect409r1": 192, "sect571k1": 256, "sect571r1": 256,
}  # fmt: skip


@check(
    "TLS-GROUPS-01",
    "No key-exchange group below the profile's security strength",
    severity=Severity.MEDIUM,
    target=TargetKind.TLS,
    requirements=["IEC62351-3:KEY-STRENGTH", *_CRYPTO],
    tags=["tls", "iec62351-3"],
    timeout=_TIMEOUT,
)
def tls_groups(target: TlsTarget) -> CheckOutcome:
    """Weak curves (secp192r1, secp224r1, sect163) undo the strength of the suites."""
    scan = target.scan()
    floor = target.profile.min_group_security_bits
    groups = scan.ecdh_groups
    evidence = (
        Evidence(
            "key-exchange groups accepted",
            "\n".join(f"{g}: {_GROUP_BITS.get(g, '?')} bits" for g in groups or ())
            or ("(none)" if groups is not None else "not tested"),
            "value",
            _source(target, "sslyze elliptic_curves"),
        ),
        _profile_evidence(target, "min_group_security_bits"),
    )
    if groups is None:
        why = scan.errors.get("elliptic_curves", "not tested")
        return inconclusive(f"groups could not be enumerated: {why}", *evidence)
    weak = [g for g in groups if _GROUP_BITS.get(g, floor) < floor]
    if weak:
        return fail(f"accepts groups below {floor}-bit security: {', '.join(weak)}", *evidence)
    unknown = [g for g in groups if g not in _GROUP_BITS]
    if unknown:
        return inconclusive(f"strength of group(s) {', '.join(unknown)} unknown", *evidence)
    if not groups:
        return not_applicable("no elliptic-curve key exchange (DH groups: TLS-KEY-01)", *evidence)
    return passed(f"all {len(groups)} groups give >= {floor}-bit security", *evidence)


@check(
    "TLS-SIGALG-01",
    "The server refuses SHA-1 handshake signatures (TLS 1.2)",
    severity=Severity.HIGH,
    target=TargetKind.TLS,
    requirements=["IEC62351-3:SIG-HASH", *_CRYPTO],
    tags=["tls", "iec62351-3"],
    timeout=_TIMEOUT,
)
def tls_signature_algorithms(target: TlsTarget) -> CheckOutcome:
    """A SHA-1-signed key exchange is open to collision-based downgrade (SLOTH)."""
    scan = target.scan()
    if "TLS 1.2" not in scan.versions_accepted:
        return not_applicable("TLS 1.2 is not offered (TLS 1.3 has no SHA-1 signatures)")
    facts = scan.sclient
    detail = facts.sigalg_detail if facts else "not probed"
    evidence = (
        Evidence("signature algorithms", detail, "value", _source(target, "openssl s_client")),
    )
    if facts is None or facts.sha1_signatures_accepted is None:
        return inconclusive(f"signature algorithms could not be tested: {detail}", *evidence)
    if facts.sha1_signatures_accepted:
        return fail(detail, *evidence)
    return passed(detail, *evidence)


@check(
    "TLS-EMS-01",
    "TLS 1.2 sessions use the extended master secret (RFC 7627)",
    severity=Severity.MEDIUM,
    target=TargetKind.TLS,
    requirements=["IEC62351-3:EXT-MASTER-SECRET"],
    tags=["tls", "iec62351-3"],
    timeout=_TIMEOUT,
)
def tls_extended_master_secret(target: TlsTarget) -> CheckOutcome:
    """Without it a TLS 1.2 session can be synchronised across two servers (triple handshake)."""
    if not target.profile.require_extended_master_secret:
        return not_applicable("the profile does not require the extended master secret")
    scan = target.scan()
    if "TLS 1.2" not in scan.versions_accepted:
        return not_applicable("TLS 1.2 is not offered (TLS 1.3 always binds the session)")
    facts = scan.sclient
    detail = facts.ems_detail if facts else "not probed"
    evidence = (
        Evidence("extended master secret", detail, "value", _source(target, "openssl s_client")),
        _profile_evidence(target, "require_extended_master_secret"),
    )
    if facts is None or facts.extended_master_secret is None:
        hint = "" if target.client_cert else " (give --client-cert/--client-key)"
        return inconclusive(f"could not be tested: {detail}{hint}", *evidence)
    if not facts.extended_master_secret:
        return fail("the TLS 1.2 session was made without the extended master secret", *evidence)
    return passed("the TLS 1.2 session uses the extended master secret", *evidence)


@check(
    "TLS-OCSP-01",
    "A leaf that names an OCSP responder comes with a stapled OCSP response",
    severity=Severity.LOW,
    target=TargetKind.TLS,
    requirements=["IEC62351-3:REVOCATION"],
    tags=["tls", "iec62351-3", "pki", "recommended"],
    timeout=_TIMEOUT,
)
def tls_ocsp_stapling(target: TlsTarget) -> CheckOutcome:
    """Without stapling every head-end must reach the responder from the field network."""
    scan = target.scan()
    leaf = scan.leaf
    evidence = (
        Evidence(
            "OCSP",
            f"leaf OCSP responders: {list(leaf.ocsp_urls) if leaf else None}\n"
            f"response stapled: {scan.ocsp_stapled}",
            "value",
            _source(target, "sslyze certificate_info"),
        ),
    )
    if leaf is None or scan.ocsp_stapled is None:
        return inconclusive("stapling could not be read", *evidence)
    if scan.ocsp_stapled:
        return passed("an OCSP response is stapled", *evidence)
    if not leaf.ocsp_urls:
        return not_applicable("the leaf names no OCSP responder (revocation by CRL)", *evidence)
    return fail("the leaf names an OCSP responder but no response is stapled", *evidence)


def tls_check_ids() -> tuple[str, ...]:
    """The ids of the checks in this module, in declaration order."""
    return (
        "TLS-VERSION-01",
        "TLS-13-01",
        "TLS-FS-01",
        "TLS-CIPHER-01",
        "TLS-MUTUAL-01",
        "TLS-CERT-01",
        "TLS-KEY-01",
        "TLS-SIG-01",
        "TLS-VALID-01",
        "TLS-REVOC-01",
        "TLS-RENEG-01",
        "TLS-COMP-01",
        "TLS-SAN-01",
        "TLS-RESUME-01",
        "TLS-CLIENTVAL-01",
        "TLS-KEYUPDATE-01",
        "TLS-GROUPS-01",
        "TLS-SIGALG-01",
        "TLS-EMS-01",
        "TLS-OCSP-01",
    )
