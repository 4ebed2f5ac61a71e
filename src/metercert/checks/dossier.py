"""Checks of a device dossier (target kind ``dossier``).

Each check takes a loaded :class:`metercert.dossier.model.Dossier` and judges
one statement or artefact of it. The dossier *is* the evidence here, so a
statement the dossier does not make counts as not evidenced (FAIL, saying what
is missing), while tool-side gaps (no advisory export supplied) are
INCONCLUSIVE. Every evidence item cites ``dossier.yaml:LINE field`` or the
artefact file it came from.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import re
import time
from collections.abc import Callable

from metercert.checks.base import (
    CheckOutcome,
    CheckResult,
    CheckSpec,
    Evidence,
    Severity,
    TargetKind,
    Verdict,
    check,
    fail,
    inconclusive,
    passed,
    registered,
)
from metercert.dossier.audit import verify_chain
from metercert.dossier.firmware import SignatureProblem, verify_signed_image
from metercert.dossier.model import Artifact, Dossier
from metercert.dossier.osv import match, newest_record_date

_T = TargetKind.DOSSIER
_OK_DEBUG = ("disabled", "authentication-gated", "absent")
_DEBUG_OFF = ("disabled", "absent")
_DEBUG_PORTS = ("uart", "jtag", "swd")
_REQUIRED_DEBUG = ("uart", "jtag")
#: CRA Art. 13(8): a support period of at least five years, unless the product is
#: expected to be in use for less (then the expected use time).
_MIN_SUPPORT_YEARS = 5
#: Security events a meter's log must record (by the dossier's names) for the logging
#: requirements to be met: access control, authentication, key, firmware and
#: security-configuration changes (IEC 62443-4-2 CR 2.8 categories, in DLMS terms).
_REQUIRED_LOG_EVENTS = {
    "authentication-failure": ("authentication-failure", "authentication-failed", "hls-failure"),
    "access-denied": ("association-rejected", "access-denied", "access-violation"),
    "key-change": ("key-change", "key-changed", "key-transfer"),
    "firmware-change": ("firmware-activation", "firmware-update", "firmware-upgrade"),
    "security-configuration-change": ("security-policy-change", "security-setup-change",
                                      "configuration-change"),
}
#: Retention below this is too short to back an incident report (a policy default;
#: neither the CRA nor EN 303 645 gives a number).
_MIN_RETENTION_DAYS = 90
_DESTROY = re.compile(r"\b(destroy\w*|destruction|eras\w*|overwrit\w*|zeroi[sz]\w*|delet\w*|wip\w*|revok\w*)\b",
                      re.IGNORECASE)
_NEGATION = re.compile(r"\b(not|no|never|without|cannot)\b|n't\b", re.IGNORECASE)
_URL = re.compile(r"^https://[^\s/]+\.[^\s]+$")
_CONTACT = re.compile(r"^(mailto:)?[^@\s]+@[^@\s]+\.[^@\s]+$|^https://\S+$")
#: Start of the reason of a check that met a ``dossier init`` example (``!placeholder``).
PLACEHOLDER_REASON = "the dossier still holds the template's placeholder for"


def _file_ev(label: str, art: Artifact, d: Dossier, content: str = "") -> Evidence:
    text = content or (f"{art.reference}: {art.problem}" if art.problem else art.reference)
    return Evidence(label, text, "file", f"{d.cite(*_split(art.field))} -> {art.reference}")


def _split(field: str) -> list[str | int]:
    out: list[str | int] = []
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", field):
        out.append(int(part[1:-1]) if part.startswith("[") else part)
    return out


def _value(label: str, value: object, d: Dossier, *where: str | int) -> Evidence:
    return Evidence(label, str(value), "value", d.cite(*where))


_DossierCheck = Callable[[Dossier], CheckOutcome]


def _reads(*fields: str) -> Callable[[_DossierCheck], _DossierCheck]:
    """Declare the dossier fields a check reads (``meter`` always: a statement about the
    template's reference meter is none about the product). A field still holding the
    ``dossier init`` example (``!placeholder``) is not judged: the check is INCONCLUSIVE
    naming it, whichever runner calls the check."""
    reads = ("meter", *fields)

    def wrap(func: _DossierCheck) -> _DossierCheck:
        @functools.wraps(func)
        def guarded(d: Dossier) -> CheckOutcome:
            held = d.placeholders_in(*reads)
            if held:
                return inconclusive(
                    f"{PLACEHOLDER_REASON} {', '.join(held)}",
                    *(_value("template placeholder", "!placeholder: replace the value, then remove "
                             "the mark", d, *_split(path)) for path in held),
                )
            return func(d)

        guarded.reads = reads  # type: ignore[attr-defined]
        return guarded

    return wrap


@check(
    "DOSSIER-SBOM-01",
    "SBOM present, parseable, every component identified (name, version, purl or CPE)",
    severity=Severity.HIGH,
    target=_T,
    requirements=["CRA:II.1", "EN303645:5.2-3"],
    tags=["sbom", "supply-chain"],
)
@_reads("sbom")
def sbom_complete(d: Dossier) -> CheckOutcome:
    """CRA Annex I Part II (1) asks for an SBOM; an SBOM whose components cannot be
    matched to advisories (no version, no purl/CPE) does not serve its purpose."""
    if d.sbom_file is None:
        return fail("the dossier names no SBOM", _value("sbom", "(absent)", d, "sbom"))
    if d.sbom is None:
        return fail(f"SBOM unusable: {d.sbom_file.problem}", _file_ev("SBOM", d.sbom_file, d))
    if not d.sbom.components:
        return fail("SBOM lists no components", _file_ev("SBOM", d.sbom_file, d, d.sbom.format))
    bad = [
        f"{c.name or '(unnamed)'}@{c.version or '?'}"
        for c in d.sbom.components
        if not (c.name and c.version and (c.purl or c.cpe))
    ]
    summary = f"{d.sbom.format}, {len(d.sbom.components)} components"
    if bad:
        return fail(
            f"{len(bad)} of {len(d.sbom.components)} SBOM components lack name, version or purl/CPE",
            _file_ev("SBOM", d.sbom_file, d, summary),
            Evidence("incomplete components", ", ".join(bad), "value", d.sbom_file.reference),
        )
    return passed(f"{summary}, all identified", _file_ev("SBOM", d.sbom_file, d, summary))


@check(
    "DOSSIER-VULN-01",
    "No SBOM component version is affected by a known vulnerability (offline OSV export)",
    severity=Severity.CRITICAL,
    target=_T,
    requirements=["CRA:I.2a", "CRA:II.2", "EN303645:5.2-3", "EN18031-1:GEC-1"],
    tags=["sbom", "vulnerabilities"],
)
@_reads("sbom", "advisories", "advisories_retrieved", "advisories_max_age_days")
def known_vulnerabilities(d: Dossier) -> CheckOutcome:
    """CRA Annex I Part I (2)(a): no known exploitable vulnerabilities at release.
    The verdict is only as current as the advisory export the user supplied, so an
    empty or stale export, or a version that cannot be compared, is no PASS."""
    if d.advisories_file is None:
        return inconclusive("no advisory export (advisories:) supplied with the dossier")
    if d.sbom is None:
        return inconclusive("no usable SBOM to match advisories against")
    newest = newest_record_date(d.advisories)
    set_date = d.advisories_retrieved or newest
    dated_by = "retrieved (advisories_retrieved)" if d.advisories_retrieved else "newest record modified"
    facts = (f"{len(d.advisories)} OSV records; set dated {set_date.isoformat() if set_date else 'unknown'}"
             f" ({dated_by}); newest record {newest.isoformat() if newest else 'undated'}; "
             f"age limit {d.advisories_max_age_days} days")
    src = _file_ev("advisories", d.advisories_file, d, facts)
    if not d.advisories:
        return inconclusive("the advisory export holds no records: an empty set shows nothing", src)
    if set_date is None:
        return inconclusive("the advisory set has no date (no 'modified' in any record, no "
                            "advisories_retrieved in the dossier): its currency is unknown", src)
    age = (dt.date.today() - set_date).days
    if age > d.advisories_max_age_days:
        return inconclusive(f"the advisory set dated {set_date.isoformat()} is {age} days old "
                            f"(limit {d.advisories_max_age_days}): refresh the export", src)
    result = match(d.sbom, d.advisories)
    evidence = [src, Evidence("version schemes", ", ".join(result.schemes) or "(no package matched)",
                              "value", d.advisories_file.reference)]
    if result.affected:
        lines = [f"{c.name}@{c.version}: {a.id}" + (f" ({a.summary})" if a.summary else "")
                 for c, a in result.affected]
        evidence.append(Evidence("affected components", "\n".join(lines), "value", d.advisories_file.reference))
        return fail(
            f"{len(result.affected)} affected component(s): "
            + "; ".join(f"{c.name}@{c.version} {a.id}" for c, a in result.affected),
            *evidence,
        )
    if result.undecidable:
        lines = [f"{c.name}@{c.version} vs {a.id}: {why}" for c, a, why in result.undecidable]
        evidence.append(Evidence("undecidable", "\n".join(lines), "value", d.advisories_file.reference))
        return inconclusive(f"{len(result.undecidable)} component/advisory pair(s) could not be compared: "
                            + "; ".join(lines[:3]), *evidence)
    return passed(
        f"{len(d.sbom.components)} components checked against {len(d.advisories)} advisories "
        f"(set dated {set_date.isoformat()}), none affected",
        *evidence,
    )


@check(
    "DOSSIER-FW-01",
    "Firmware images are signed by a key chaining to the manufacturer's code-signing CA and match the SBOM hash",
    severity=Severity.CRITICAL,
    target=_T,
    requirements=["EN303645:5.3-10", "EN303645:5.3-7", "IEC62443-4-2:EDR3.10", "CRA:I.2f",
                  "ENISA:GP-TM-18", "EN18031-1:SUM-2"],
    tags=["firmware", "signature"],
)
@_reads("firmware", "firmware_trust_anchor", "sbom")
def firmware_signed(d: Dossier) -> CheckOutcome:
    """Update authenticity is the control against firmware tampering: the signer must be
    the manufacturer (a certificate chaining to the declared code-signing CA, valid when
    it signed, meant for code signing), and the SBOM hash ties the signed image to the
    component list an auditor reviews."""
    if not d.firmware:
        return fail("the dossier lists no firmware image", _value("firmware", "(absent)", d, "firmware"))
    evidence: list[Evidence] = []
    problems: list[str] = []
    anchor = d.firmware_trust_anchor
    for fw in d.firmware:
        tag = f"firmware[{fw.index}]"
        if not fw.image.usable:
            problems.append(f"{tag} image {fw.image.reference}: {fw.image.problem}")
            evidence.append(_file_ev("image", fw.image, d))
            continue
        image = fw.image.path.read_bytes()
        digest = hashlib.sha256(image).hexdigest()
        evidence.append(_file_ev("image", fw.image, d, f"{fw.image.reference} SHA-256 {digest}"))
        if fw.signature is None:
            problems.append(f"{tag} is unsigned (no signature file)")
        elif not fw.signature.usable:
            problems.append(f"{tag} signature {fw.signature.reference}: {fw.signature.problem}")
        elif fw.certificate is None or not fw.certificate.usable:
            why = fw.certificate.problem if fw.certificate else "no certificate named"
            problems.append(f"{tag} signing certificate: {why}")
        elif anchor is None or not anchor.usable:
            why = anchor.problem if anchor else "the dossier declares no firmware_trust_anchor"
            problems.append(f"{tag}: no trust anchor to judge the signer by ({why}); a signature that "
                            "verifies with whatever certificate is supplied proves nothing")
        elif bad_chain := [c for c in fw.chain if not c.usable]:
            problems.append(f"{tag} chain certificate {bad_chain[0].reference}: {bad_chain[0].problem}")
        else:
            try:
                result = verify_signed_image(
                    image, fw.signature.path.read_bytes(), fw.certificate.path.read_bytes(),
                    anchor.path.read_bytes(), tuple(c.path.read_bytes() for c in fw.chain),
                    signed_at=fw.signed_at,
                )
            except SignatureProblem as exc:
                problems.append(f"{tag}: {exc}")
            else:
                sig = result.signature
                when = (f"signed at {result.judged_at} (stated)" if result.signing_time_stated
                        else f"no signing time stated: judged at {result.judged_at}")
                evidence.append(
                    _file_ev(
                        "signature",
                        fw.signature,
                        d,
                        (f"ECDSA {sig.curve}/{sig.hash_name} by {sig.subject}: "
                         + ("verifies" if sig.valid else "DOES NOT verify")) if sig else "not checked",
                    )
                )
                evidence.append(Evidence("certificate chain", "\n".join(
                    [f"{i}: {subject}" for i, subject in enumerate(result.chain)]
                    + [when, f"trust anchor: {anchor.reference}"]), "value",
                    d.cite("firmware", fw.index, "certificate")))
                problems.extend(f"{tag}: {p}" for p in result.problems)
        if not fw.sbom_component:
            problems.append(f"{tag} names no sbom_component to match its hash")
        elif d.sbom is None:
            problems.append(f"{tag}: no usable SBOM to compare the image hash with")
        else:
            comp = d.sbom.find(fw.sbom_component)
            if comp is None:
                problems.append(f"{tag}: SBOM has no component {fw.sbom_component!r}")
            elif not comp.sha256:
                problems.append(f"{tag}: SBOM component {fw.sbom_component!r} records no SHA-256")
            elif comp.sha256 != digest:
                problems.append(f"{tag}: image SHA-256 differs from SBOM component {fw.sbom_component!r}")
                evidence.append(Evidence("SBOM hash", comp.sha256, "value", d.sbom_file.reference if d.sbom_file else ""))
            else:
                evidence.append(Evidence("SBOM hash", f"{comp.name}@{comp.version} SHA-256 matches", "value",
                                         d.sbom_file.reference if d.sbom_file else ""))
    if problems:
        return fail("; ".join(problems), *evidence)
    return passed(f"{len(d.firmware)} image(s) signed, verified and matching the SBOM", *evidence)


@check(
    "DOSSIER-DEBUG-01",
    "Debug interfaces (UART, JTAG, SWD) are disabled in software or absent; other service ports "
    "are not open",
    severity=Severity.HIGH,
    target=_T,
    requirements=["EN303645:5.6-4", "IEC62443-4-2:EDR2.13", "CRA:I.2j", "ENISA:GP-TM-33"],
    tags=["hardware", "debug"],
)
@_reads("debug_interfaces")
def debug_interfaces(d: Dossier) -> CheckOutcome:
    """EN 303 645 provision 5.6-4 asks that a physically accessible debug interface be
    disabled in software: "authentication-gated" is not disabled, so a gated UART or JTAG
    fails. The optical port (IEC 62056-21) is a metering interface, not a debug one; it
    may be authentication-gated but not open."""
    evidence = [_value(name, state, d, "debug_interfaces", name) for name, state in d.debug_interfaces.items()]
    debug = {n: s for n, s in d.debug_interfaces.items() if n in _DEBUG_PORTS}
    gated = [n for n, s in debug.items() if s == "authentication-gated"]
    open_debug = [n for n, s in debug.items() if s not in _DEBUG_OFF + ("authentication-gated",)]
    open_other = [n for n, s in d.debug_interfaces.items() if n not in _DEBUG_PORTS and s not in _OK_DEBUG]
    undeclared = [n for n in _REQUIRED_DEBUG if n not in d.debug_interfaces]
    problems = []
    if open_debug:
        problems.append(f"debug interface(s) open: {', '.join(open_debug)}")
    if gated:
        problems.append(f"debug interface(s) only authentication-gated, not disabled in software "
                        f"(EN 303 645 5.6-4): {', '.join(gated)}")
    if open_other:
        problems.append(f"service interface(s) open without authentication: {', '.join(open_other)}")
    if undeclared:
        problems.append(f"state of {', '.join(undeclared)} not declared")
    if problems:
        outcome = fail("; ".join(problems), *evidence)
        if gated and not (open_debug or open_other or undeclared):
            # gating is the protection IEC 62443-4-2 EDR 2.13 asks for; only 5.6-4 wants it off
            return outcome.with_requirement_verdicts({"IEC62443-4-2:EDR2.13": Verdict.PASS})
        return outcome
    return passed("debug interfaces disabled in software or absent; other service ports gated or off",
                  *evidence)


@check(
    "DOSSIER-PASSWD-01",
    "No universal default password; per-device secrets",
    severity=Severity.CRITICAL,
    target=_T,
    requirements=["EN303645:5.1-1", "EN303645:5.1-2", "CRA:I.2b", "ENISA:GP-TM-09", "IEC62443-4-2:CR1.5",
                  "EN18031-1:AUM-5"],
    tags=["credentials"],
)
@_reads("credentials")
def default_password(d: Dossier) -> CheckOutcome:
    """A password shared by every meter of a model is known to every attacker once one leaks."""
    ev = [
        _value("default_password", d.default_password or "(not stated)", d, "credentials", "default_password"),
        _value("per_device_secrets", d.per_device_secrets, d, "credentials", "per_device_secrets"),
    ]
    if d.default_password is None:
        return fail("the dossier does not state its default-password policy", *ev)
    if d.default_password == "universal":
        return fail("devices ship with a universal default password", *ev)
    if d.per_device_secrets is not True:
        return fail("per-device secrets are not stated", *ev)
    return passed(f"default password policy '{d.default_password}' with per-device secrets", *ev)


@check(
    "DOSSIER-PATCH-01",
    "Security fixes ship within the patch window (default 90 days, configurable)",
    severity=Severity.MEDIUM,
    target=_T,
    requirements=["CRA:II.2", "EN303645:5.3-8", "EN303645:5.2-2"],
    tags=["lifecycle"],
)
@_reads("patch_policy")
def patch_window(d: Dossier) -> CheckOutcome:
    """The CRA says "without delay"; the 90-day figure is the seed's policy default."""
    ev = [
        _value("days_disclosure_to_fix", d.patch_days, d, "patch_policy", "days_disclosure_to_fix"),
        _value("limit_days", d.patch_limit_days, d, "patch_policy", "limit_days"),
    ]
    if d.patch_days is None:
        return fail("the dossier states no disclosure-to-fix time", *ev)
    if d.patch_days > d.patch_limit_days:
        return fail(f"patch window {d.patch_days} days exceeds the {d.patch_limit_days}-day limit", *ev)
    return passed(f"patch window {d.patch_days} days within {d.patch_limit_days}", *ev)


@check(
    "DOSSIER-SUPPORT-01",
    "The support period is stated and lasts at least five years from placing on the market "
    "(or the stated expected use time, if shorter)",
    severity=Severity.MEDIUM,
    target=_T,
    requirements=["EN303645:5.3-13", "CRA:ART13.8"],
    tags=["lifecycle"],
)
@_reads("support_period")
def support_period(d: Dossier) -> CheckOutcome:
    """CRA Art. 13(8): security updates for at least five years, unless the product is
    expected to be in use for less; EN 303 645 5.3-13: the period is published. A date
    that is merely in the future (60 days ahead) meets neither."""
    ev = [_value("end_date", d.support_end or "(not stated)", d, "support_period", "end_date"),
          _value("start_date", d.support_start or "(not stated: measured from today)", d,
                 "support_period", "start_date")]
    if d.support_expected_use_years is not None:
        ev.append(_value("expected_use_years", d.support_expected_use_years, d,
                         "support_period", "expected_use_years"))
    if d.support_end is None:
        return fail("no support period end date stated", *ev)
    today = dt.date.today()
    if d.support_end < today:
        return fail(f"support period ended on {d.support_end.isoformat()}", *ev)
    start = d.support_start or today
    years = (d.support_end - start).days / 365.25
    needed = float(_MIN_SUPPORT_YEARS)
    exception = ""
    if d.support_expected_use_years is not None and d.support_expected_use_years < _MIN_SUPPORT_YEARS:
        needed = float(d.support_expected_use_years)
        exception = f" (exception stated: expected use {d.support_expected_use_years:g} years)"
    if years + 1e-9 < needed:
        return fail(f"support period {start.isoformat()} to {d.support_end.isoformat()} is {years:.1f} years, "
                    f"less than the {needed:g} years CRA Art. 13(8) asks for{exception}", *ev)
    return passed(f"security support {start.isoformat()} to {d.support_end.isoformat()} "
                  f"({years:.1f} years, at least {needed:g}){exception}", *ev)


@check(
    "DOSSIER-CVD-01",
    "A vulnerability disclosure policy (https URL) and a reporting contact are published",
    severity=Severity.MEDIUM,
    target=_T,
    requirements=["EN303645:5.2-1", "CRA:II.5", "CRA:II.6"],
    tags=["lifecycle", "cvd"],
)
@_reads("cvd")
def disclosure_policy(d: Dossier) -> CheckOutcome:
    """Researchers need a way to report; the CRA makes both policy and contact mandatory."""
    ev = [
        _value("policy_url", d.cvd_policy_url or "(not stated)", d, "cvd", "policy_url"),
        _value("contact", d.cvd_contact or "(not stated)", d, "cvd", "contact"),
    ]
    problems = []
    if not _URL.match(d.cvd_policy_url):
        problems.append("no https policy URL")
    if not _CONTACT.match(d.cvd_contact):
        problems.append("no e-mail or https contact")
    if problems:
        return fail("; ".join(problems), *ev)
    return passed("disclosure policy and contact published", *ev)


@check(
    "DOSSIER-INCIDENT-01",
    "Incident reporting meets CRA Art. 14 timelines (24 h / 72 h / final report 14 days after a fix, "
    "1 month after a severe incident's notification)",
    severity=Severity.MEDIUM,
    target=_T,
    requirements=["CRA:ART14"],
    tags=["incident"],
)
@_reads("incident_notification")
def incident_reporting(d: Dossier) -> CheckOutcome:
    """Art. 14: early warning within 24 h, notification within 72 h; the final report
    on an actively exploited vulnerability within 14 days after a corrective measure is
    available, on a severe incident within one month of the incident notification."""
    limits = (
        ("early_warning_hours", d.early_warning_hours, 24),
        ("notification_hours", d.notification_hours, 72),
        ("final_report_days", d.final_report_days, 14),
        ("severe_incident_final_report_days", d.severe_incident_final_report_days, 30),
    )
    ev = [_value(name, value if value is not None else "(not stated)", d, "incident_notification", name)
          for name, value, _ in limits]
    problems = []
    for name, value, limit in limits:
        if value is None:
            problems.append(f"{name} not stated")
        elif value > limit:
            problems.append(f"{name} {value} exceeds {limit}")
    if problems:
        return fail("; ".join(problems), *ev)
    return passed("incident reporting within 24 h / 72 h / 14 days after a fix / "
                  "1 month after a severe incident's notification", *ev)


@check(
    "DOSSIER-KEYAUDIT-01",
    "Key-injection audit trail is hash-chained and covers every listed device and key",
    severity=Severity.HIGH,
    target=_T,
    requirements=["EN303645:5.5-8", "EN303645:5.4-4", "ENISA:GP-TM-35"],
    tags=["keys", "supply-chain"],
)
@_reads("key_injection")
def key_injection_audit(d: Dossier) -> CheckOutcome:
    """Master-key injection at the factory is where DLMS security is most exposed
    and DLMS conformance testing does not look; a tamper-evident log closes that gap."""
    if d.audit_log is None:
        return fail("no key-injection audit log named", _value("audit_log", "(absent)", d, "key_injection"))
    if not d.audit_log.usable:
        return fail(f"audit log unusable: {d.audit_log.problem}", _file_ev("audit log", d.audit_log, d))
    if not d.audit_devices:
        return fail("key_injection.devices lists no device serials to account for",
                    _file_ev("audit log", d.audit_log, d))
    verdict = verify_chain([(r.line, r.data) for r in d.audit_records], d.audit_devices, d.audit_required_keys)
    ev = [_file_ev("audit log", d.audit_log, d,
                   f"{verdict.records} records, {len(verdict.devices_covered)}/{len(d.audit_devices)} devices complete")]
    if verdict.findings:
        ev.append(Evidence("chain breaks", "\n".join(f"line {f.line}: {f.problem}" for f in verdict.findings[:20]),
                           "value", d.audit_log.reference))
    if verdict.missing:
        ev.append(Evidence("missing injections", ", ".join(verdict.missing[:50]), "value", d.audit_log.reference))
    if not verdict.ok:
        first = verdict.findings[0] if verdict.findings else None
        what = f"chain broken at line {first.line}: {first.problem}" if first else ""
        miss = f"{len(verdict.missing)} device/key injection(s) unrecorded" if verdict.missing else ""
        return fail("; ".join(x for x in (what, miss) if x), *ev)
    return passed(f"{verdict.records} records chain intact, all {len(d.audit_devices)} devices have "
                  f"{', '.join(d.audit_required_keys)}", *ev)


@check(
    "DOSSIER-EOL-01",
    "End-of-life procedure states how every key type is destroyed",
    severity=Severity.LOW,
    target=_T,
    requirements=["EN303645:5.5-8", "IEC62443-4-2:CR4.2", "ENISA:GP-TM-35"],
    tags=["keys", "lifecycle"],
)
@_reads("end_of_life")
def eol_key_destruction(d: Dossier) -> CheckOutcome:
    """A decommissioned meter still holding fleet keys is a key-extraction target."""
    art = d.eol_procedure
    if art is None:
        return fail("no end-of-life key destruction procedure named",
                    _value("end_of_life", "(absent)", d, "end_of_life"))
    if not art.usable:
        return fail(f"procedure document unusable: {art.problem}", _file_ev("procedure", art, d))
    text = art.path.read_text(encoding="utf-8", errors="replace")
    sentences = [" ".join(x.split()) for x in re.split(r"(?<=[.!?])\s+|\n\s*\n|\n\s*(?=\d+\.|[-*] )", text)]
    steps = [x for x in sentences if re.search(r"\bkeys?\b", x, re.IGNORECASE) and _DESTROY.search(x)
             and not _NEGATION.search(x[: _DESTROY.search(x).start()])]
    wanted = d.audit_required_keys or ("GUEK", "GBEK", "AK", "KEK")
    named = [k for k in wanted if re.search(rf"\b{re.escape(k)}\b", text)]
    missing = [k for k in wanted if k not in named]
    if not steps:
        return fail("procedure document states no key destruction step (a sentence naming keys and "
                    "how they are destroyed, not negated)", _file_ev("procedure", art, d))
    if missing:
        return fail(f"procedure document does not name every key it must destroy: {', '.join(missing)} missing",
                    _file_ev("procedure", art, d, "\n".join(steps[:5])))
    return passed(f"end-of-life procedure destroys {', '.join(named)} ({len(steps)} destruction step(s))",
                  _file_ev("procedure", art, d, "\n".join(steps[:5])))


@check(
    "DOSSIER-LOG-01",
    "Security events (authentication, access, key, firmware, security configuration) are logged "
    "and kept at least 90 days",
    severity=Severity.LOW,
    target=_T,
    requirements=["CRA:I.2l", "IEC62443-4-2:CR2.8", "ENISA:GP-TM-55"],
    tags=["logging"],
)
@_reads("security_logging")
def security_logging(d: Dossier) -> CheckOutcome:
    """Without a security log there is nothing to base an incident report on; a log of
    one unnamed event kept for a day is not one. The events must cover authentication
    failures, denied access, key, firmware and security-configuration changes, and be
    kept long enough to investigate (policy default 90 days)."""
    ev = [
        _value("events", ", ".join(d.logging_events) or "(none)", d, "security_logging", "events"),
        _value("retention_days", d.logging_retention_days, d, "security_logging", "retention_days"),
    ]
    declared = {e.lower() for e in d.logging_events}
    missing = [cat for cat, names in _REQUIRED_LOG_EVENTS.items() if not declared & set(names)]
    problems = []
    if not d.logging_events:
        problems.append("no security events are logged")
    elif missing:
        problems.append(f"no logged event covers: {', '.join(missing)}")
    if not d.logging_retention_days:
        problems.append("log retention not stated")
    elif d.logging_retention_days < _MIN_RETENTION_DAYS:
        problems.append(f"log kept {d.logging_retention_days} days, less than {_MIN_RETENTION_DAYS}")
    if problems:
        return fail("; ".join(problems), *ev)
    return passed(f"{len(d.logging_events)} security event kinds logged, covering "
                  f"{len(_REQUIRED_LOG_EVENTS)} required categories, kept {d.logging_retention_days} days", *ev)


def dossier_checks() -> list[CheckSpec]:
    """The registered dossier checks, in declaration order."""
    return [spec for spec in registered().values() if spec.target is TargetKind.DOSSIER]


def run_all(d: Dossier) -> list[CheckResult]:
    """Run every dossier check on ``d`` (they are quick and local, so sequentially).

    Returns :class:`CheckResult` values; a check that raises becomes INCONCLUSIVE
    with the exception named, as the campaign runner would record it.
    """
    out = []
    for spec in dossier_checks():
        began = time.perf_counter()
        try:
            outcome = spec.func(d)
        except Exception as exc:  # noqa: BLE001 - a defect in one check must not stop the others
            outcome = inconclusive(f"check raised {exc.__class__.__name__}: {exc}")
        out.append(CheckResult(spec, outcome, time.perf_counter() - began))
    return out
