"""DLMS checks for suites 1 and 2: general-signing (0xDF) signatures, general-ciphering (0xDD)
downgrade, key agreement (Security Setup method 3) and certificates (attribute 6, methods 4-8).

They apply to a meter that serves general protection: the key file names it
(``general_protection``) or a correctly signed-then-ciphered request is served. Every check
first sends that correct request as its control; a meter that does not serve the control
gives no verdict on the forgery (INCONCLUSIVE), because refusing everything is not evidence.

How a forgery is judged served: the answer is not an exception-response and its general
layers open with the association's keys (whatever suite the answer claims: a meter that
went along with a downgrade answers in the lower suite) to a response with a result.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

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
from metercert.checks.dlms._common import (
    _clock_request,
    _security_setup,
    _trace,
    _try,
    _with_management,
)
from metercert.client.errors import DlmsError
from metercert.client.session import DlmsClient
from metercert.client.target import DlmsTarget
from metercert.cosem import (
    ActionResult,
    DataAccessResult,
    DataType,
    DlmsData,
    ObisCode,
    decode_apdu,
)
from metercert.cosem.security_setup import (
    CertificateIdentification,
    KeyAgreementItem,
    key_agreement_data,
    read_key_agreement_data,
)
from metercert.errors import ConnectionFailed, InputFileError
from metercert.security import AuthenticationFailed, Key, SecurityError, wrap_key
from metercert.security import agreement as _agreement
from metercert.security import certificates as certs
from metercert.security import general as g
from metercert.security.keys import load_pem_key

SIGNED = "signed-then-ciphered"


@dataclass(frozen=True)
class _Probe:
    """The answer to one request: served or not, and how it reads."""

    served: bool
    text: str


def _open_leniently(c: DlmsClient, apdu: bytes) -> bytes | None:
    """The plaintext under the general layers with the association's keys, any suite
    (signatures are not checked here: a deciphered, verified GCM answer is what shows the
    request was executed)."""
    keys = c.settings.keys
    data = apdu
    try:
        for _ in range(3):
            if not data or data[0] not in (g.GENERAL_CIPHERING, g.GENERAL_SIGNING):
                return data
            if data[0] == g.GENERAL_SIGNING:
                data = g.parse_general_signing(data).content
                continue
            gc = g.parse_general_ciphering(data)
            agreement = None
            if isinstance(gc.key_info, g.AgreedKey):
                from metercert.client import general as client_general

                agreement = client_general._agreement_keys(c)
            key = g.receiver_key(gc, keys=keys, agreement=agreement)
            size = len(key) if key is not None else None
            data = g.unprotect_general(gc, encryption_key=key, authentication_key=keys.ak,
                                       key_size=size).plaintext
    except (SecurityError, ValueError, DlmsError, InputFileError):
        return None
    return None


def _judge(c: DlmsClient, answer: bytes | None) -> _Probe:
    if answer is None:
        return _Probe(False, "no answer (connection closed)")
    if not answer or answer[0] == 0xD8:
        return _Probe(False, f"exception-response {answer.hex().upper()}")
    plain = _open_leniently(c, answer)
    if not plain:
        return _Probe(False, f"answer 0x{answer[0]:02X} does not open with the keys")
    try:
        decoded = decode_apdu(plain)
    except Exception:  # noqa: BLE001 - an undecodable answer is not a served request
        return _Probe(False, f"answer 0x{answer[0]:02X} holds no decodable response")
    result = getattr(decoded, "result", None)
    if isinstance(result, (DataAccessResult, ActionResult)):
        ok = result in (DataAccessResult.SUCCESS, ActionResult.SUCCESS)
        return _Probe(ok, f"{type(decoded).__name__} {result.name.lower()}")
    return _Probe(result is not None, f"{type(decoded).__name__} with data (served)")


async def _send(c: DlmsClient, wire: bytes, note: str) -> _Probe:
    return _judge(c, await _try(c, wire, note))


def _unusable(target: DlmsTarget) -> str | None:
    """Why the general-signing checks cannot run against this target (None: they can)."""
    if target.suite not in (1, 2):
        return f"security suite {target.suite}: general-signing needs suite 1 or 2"
    if target.keys.client_private_key is None:
        return "the key file gives no client signing key (client_private_key)"
    return None


async def _control(c: DlmsClient, target: DlmsTarget, note: str = "control: correctly "
                   "signed-then-ciphered GET") -> tuple[_Probe, CheckOutcome | None]:
    """Send the correct request; an outcome when the check must stop there."""
    probe = await _send(c, c.protect_request(_clock_request(c), general=SIGNED), note)
    if probe.served:
        return probe, None
    if target.keys.extra.get("general_protection"):
        return probe, inconclusive("the meter did not serve a correctly signed-then-ciphered "
                                   f"request ({probe.text}): no verdict on forgeries",
                                   _trace(c))
    return probe, not_applicable("the meter does not serve general-ciphering / general-signing "
                                 f"({probe.text}) and the key file names no general_protection",
                                 _trace(c))


def _fresh_key(target: DlmsTarget, suite: int | None = None) -> ec.EllipticCurvePrivateKey:
    return _agreement.generate_key_pair(suite or target.suite)


async def _refuses(target: DlmsTarget, what: str, build: object) -> CheckOutcome:
    """Control first, then each forgery ``build(c)`` yields as (note, wire)."""
    reason = _unusable(target)
    if reason:
        return not_applicable(reason)

    async def body(c: DlmsClient) -> CheckOutcome:
        control, stop = await _control(c, target)
        if stop is not None:
            return stop
        served: list[str] = []
        seen: list[str] = []
        for note, wire in build(c):  # type: ignore[operator]
            probe = await _send(c, wire, note)
            seen.append(f"{note}: {probe.text}")
            if probe.served:
                served.append(note)
        ev: list[Evidence] = [_trace(c), Evidence("answers", "\n".join(seen), "value")]
        if served:
            return fail(f"{what} was executed: " + "; ".join(served), *ev)
        return passed(f"{what} refused ({'; '.join(seen)}); the correct request was served "
                      f"({control.text})", *ev)

    return await _with_management(target, body)


def _tamper_outer_signed(wire: bytes) -> bytes:
    """Flip one bit of the transaction-id of the outer general-signing layer: a field the
    signature covers and the inner general-ciphering does not."""
    forged = bytearray(wire)
    forged[2] ^= 0x01  # 0xDF, length of the transaction-id, its first byte
    return bytes(forged)


def _tamper_signature(wire: bytes) -> bytes:
    forged = bytearray(wire)
    forged[-1] ^= 0x01  # last byte of s
    return bytes(forged)


@check("DLMS-GENSIGN-01", "A general-signing request whose signed fields were altered is refused",
       severity=Severity.CRITICAL, requirements=["DLMS:APDU-INTEGRITY", "DLMS:POLICY-ENFORCED"],
       tags=["suite", "general-signing", "signature"], target=TargetKind.DLMS)
async def tampered_signature(target: DlmsTarget) -> CheckOutcome:
    """Ciphered-then-signed GETs with one bit changed where only the signature protects it
    (the outer transaction-id; the signature itself): the meter must not execute them."""

    def forgeries(c: DlmsClient):  # type: ignore[no-untyped-def]
        plain = _clock_request(c)
        yield ("ciphered-then-signed, transaction-id altered after signing",
               _tamper_outer_signed(c.protect_request(plain, general="ciphered-then-signed")))
        yield ("ciphered-then-signed, one bit of the signature flipped",
               _tamper_signature(c.protect_request(plain, general="ciphered-then-signed")))

    return await _refuses(target, "a tampered signed request", forgeries)


@check("DLMS-GENSIGN-02", "A general-signing request signed by another key is refused",
       severity=Severity.CRITICAL, requirements=["DLMS:APDU-INTEGRITY", "DLMS:HLS-AUTH"],
       tags=["suite", "general-signing", "signature"], target=TargetKind.DLMS)
async def signature_by_other_key(target: DlmsTarget) -> CheckOutcome:
    """Signed-then-ciphered and ciphered-then-signed GETs whose signature is valid, but made
    with a fresh key of the right curve that is not the client's: origin not proven."""

    def forgeries(c: DlmsClient):  # type: ignore[no-untyped-def]
        other = _fresh_key(target)
        plain = _clock_request(c)
        for layering in (SIGNED, "ciphered-then-signed"):
            yield (f"{layering}, signed by a key that is not the client's",
                   c.protect_request(plain, general=layering, signing_key=other))

    return await _refuses(target, "a request signed by another key", forgeries)


@check("DLMS-GENSIGN-03", "A P-256 signature is refused by a suite-2 meter",
       severity=Severity.HIGH, requirements=["DLMS:SUITE-DOWNGRADE", "DLMS:APDU-INTEGRITY"],
       tags=["suite", "general-signing", "signature", "downgrade"], target=TargetKind.DLMS)
async def p256_on_suite_2(target: DlmsTarget) -> CheckOutcome:
    """Suite 2 signs with P-384/SHA-384; a signed-then-ciphered GET carrying an
    ECDSA P-256/SHA-256 signature (a suite-1 signature) must not be executed."""
    if target.suite != 2:
        return not_applicable(f"the meter runs suite {target.suite}: only suite 2 refuses P-256")

    def forgeries(c: DlmsClient):  # type: ignore[no-untyped-def]
        weak = _fresh_key(target, 1)
        plain = _clock_request(c)
        for layering in (SIGNED, "ciphered-then-signed"):
            yield (f"{layering}, ECDSA P-256/SHA-256 signature",
                   c.protect_request(plain, general=layering, signing_key=weak, sign_suite=1))

    return await _refuses(target, "a P-256 signature on suite 2", forgeries)


@check("DLMS-GENSIGN-04", "An unsigned general request is refused where signatures are required",
       severity=Severity.HIGH, requirements=["DLMS:POLICY-ENFORCED"],
       tags=["suite", "general-signing", "policy"], target=TargetKind.DLMS)
async def unsigned_refused(target: DlmsTarget) -> CheckOutcome:
    """With ``general_protection: signing`` (the key file says the meter requires signed
    general requests), a general-ciphering GET without a general-signing layer must not be
    executed."""
    if target.keys.extra.get("general_protection") != "signing":
        return not_applicable("the key file does not say the meter requires signed general "
                              "requests (general_protection: signing)")

    def forgeries(c: DlmsClient):  # type: ignore[no-untyped-def]
        yield ("general-ciphering without a signature",
               c.protect_request(_clock_request(c), general="ciphering"))

    return await _refuses(target, "an unsigned general request", forgeries)


@check("DLMS-GENDOWN-01", "general-ciphering in a lower suite than configured is refused",
       severity=Severity.CRITICAL, requirements=["DLMS:SUITE-DOWNGRADE", "CRA:I.2e"],
       tags=["suite", "downgrade", "general-ciphering"], target=TargetKind.DLMS)
async def general_downgrade(target: DlmsTarget) -> CheckOutcome:
    """For every suite below the configured one, a correctly signed GET in general-ciphering
    whose security control byte claims the lower suite (the association's keys, cut to the
    lower suite's size only where the suite demands it): the meter must not execute it."""
    suite = target.suite

    def forgeries(c: DlmsClient):  # type: ignore[no-untyped-def]
        plain = _clock_request(c)
        for lower in range(suite):
            yield (f"signed-then-ciphered, SC claims suite {lower}",
                   c.protect_request(plain, general=SIGNED, suite=lower, sign_suite=suite))

    return await _refuses(target, "general-ciphering in a lower suite", forgeries)


# -- key agreement (Security Setup method 3, C(2e, 0s)) and certificates (methods 4-8) --------

_KEY_AGREEMENT, _GENERATE_KEY_PAIR, _CERTIFICATE_REQUEST = 3, 4, 5
_IMPORT, _EXPORT, _REMOVE = 6, 7, 8


def _key_file_bytes(target: DlmsTarget, name: str) -> bytes | None:
    """The contents of a file the key file names (relative to the key file), or None."""
    ref = target.keys.extra.get(name)
    if not ref:
        return None
    path = Path(str(ref))
    if not path.is_absolute() and target.keys.base_dir is not None:
        path = target.keys.base_dir / path
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputFileError(f"key file: {name}: cannot read {path}: {exc.strerror}") from None


def _certificate_field(target: DlmsTarget, name: str) -> x509.Certificate | None:
    data = _key_file_bytes(target, name)
    if data is None:
        return None
    try:
        return certs.load_certificate(data)
    except certs.CertificateRefused as exc:
        raise InputFileError(f"key file: {name}: {exc}") from None


def _ca_key(target: DlmsTarget) -> ec.EllipticCurvePrivateKey | None:
    if not target.keys.extra.get("dlms_ca_key"):
        return None
    key = load_pem_key(target.keys.extra["dlms_ca_key"], target.keys.base_dir, "key file",
                       private=True)
    return key if isinstance(key, ec.EllipticCurvePrivateKey) else None


async def _setup(c: DlmsClient, target: DlmsTarget) -> ObisCode:
    return await _security_setup(c, target)


def _agreement_request(c: DlmsClient, suite: int, *, signer: ec.EllipticCurvePrivateKey | None,
                       ephemeral: ec.EllipticCurvePrivateKey, key_id: int = 0) -> DlmsData:
    """key_agreement parameter for one key: ``x || y || signature`` (none when unsigned)."""
    if signer is None:
        data = _agreement.public_key_bytes(ephemeral)
    else:
        data = _agreement.signed_ephemeral_key(key_id, ephemeral, signer, suite)
    return key_agreement_data([KeyAgreementItem(key_id, data)])


async def _agree(c: DlmsClient, setup: ObisCode, target: DlmsTarget,
                 signer: ec.EllipticCurvePrivateKey | None,
                 note: str) -> tuple[ActionResult, Key | None, bytes | None, str]:
    """Run key_agreement for the GUEK; (result, agreed key if the meter's answer verifies,
    the meter's ephemeral point, what was seen)."""
    suite = target.suite
    ephemeral = _agreement.generate_key_pair(suite)
    c.trace.note(note)
    result, data = await c.action(64, setup, _KEY_AGREEMENT,
                                  _agreement_request(c, suite, signer=signer, ephemeral=ephemeral))
    if result is not ActionResult.SUCCESS or data is None:
        return result, None, None, f"{note}: {result.name.lower()}"
    try:
        answer = read_key_agreement_data(data)[0]
        size = 2 * _agreement.coordinate_bytes(suite)
        point = answer.key_data[:size]
        server_key = target.keys.server_public_key
        if server_key is None:
            raise AuthenticationFailed()
        peer = _agreement.verify_signed_ephemeral_key(0, answer.key_data, server_key, suite)
    except (SecurityError, ValueError, IndexError):
        return result, None, None, f"{note}: success, but the meter's ephemeral key does not verify"
    assert c.settings.keys.client_system_title is not None and c.server_title is not None
    key = _agreement.ephemeral_unified_model(ephemeral, peer, suite=suite,
                                             party_u=c.settings.keys.client_system_title,
                                             party_v=c.server_title, role="guek")
    return result, key, point, f"{note}: success, meter ephemeral key verified"


async def _use_and_restore(target: DlmsTarget, agreed: Key, original: Key,
                           evidence: list[Evidence]) -> str | None:
    """Adopt the agreed GUEK, prove the meter uses it, put the original back by key_transfer.
    Returns what went wrong (None: the agreed key worked and the original is back)."""
    kek = target.keys.kek
    target.replace_key("guek", agreed)
    d = target.client()
    try:
        await d.open()
        await d.get(8, d.clock_obis, 2)
        problem = None
        if kek is not None:
            setup = await _setup(d, target)
            params = DlmsData.array([DlmsData.structure([
                DlmsData.enum(0), DlmsData.octet_string(wrap_key(kek, original))])])
            restored, _ = await d.action(64, setup, 2, params)
            if restored is ActionResult.SUCCESS:
                target.replace_key("guek", original)
            else:
                problem = f"restoring the original GUEK was refused ({restored.name})"
        await d.release()
    except (DlmsError, ConnectionFailed) as exc:
        target.replace_key("guek", original)
        problem = f"the agreed key did not work: {exc}"
    finally:
        await d.close()
        evidence.append(_trace(d, label="association with the agreed key"))
    return problem


def _names_certificates(target: DlmsTarget) -> bool:
    """Does the key file say this meter has DLMS certificates (so key agreement applies)?"""
    extra = target.keys.extra
    return bool(extra.get("general_protection") or extra.get("client_signing_certificate")
                or extra.get("server_signing_certificate"))


def _key_agreement_unusable(target: DlmsTarget) -> str | None:
    reason = _unusable(target)
    if reason:
        return reason
    if target.keys.server_public_key is None:
        return "the key file gives no meter signing key (server_public_key)"
    if target.keys.guek is None:
        return "the key file has no GUEK"
    return None


@check("DLMS-KEYAGREE-01", "key_agreement refuses an unsigned or wrongly signed ephemeral key",
       severity=Severity.CRITICAL, requirements=["EN303645:5.5-1", "EN303645:5.5-5"],
       tags=["suite", "key-agreement", "keys"], destructive=True, target=TargetKind.DLMS,
       timeout=60.0)
async def key_agreement_signature(target: DlmsTarget) -> CheckOutcome:
    """Security Setup key_agreement (C(2e, 0s)) with the client's ephemeral key unsigned, then
    signed by a key that is not the client's: both must be refused (else a man in the middle
    agrees the GUEK). Control: a correctly signed agreement succeeds, its key works, and the
    original GUEK is put back with key_transfer."""
    reason = _key_agreement_unusable(target)
    if reason:
        return not_applicable(reason)
    original = target.keys.guek
    assert original is not None
    evidence: list[Evidence] = []
    accepted: list[str] = []
    seen: list[str] = []
    forgeries = (("unsigned ephemeral key", None),
                 ("ephemeral key signed by another key", _agreement.generate_key_pair(target.suite)))
    for note, signer in forgeries:
        c = await target.management()
        try:
            setup = await _setup(c, target)
            result, key, _, text = await _agree(c, setup, target, signer, note)
            seen.append(text)
            if result is ActionResult.SUCCESS:
                accepted.append(note)
        finally:
            with contextlib.suppress(DlmsError, ConnectionFailed):
                await c.release()
            await c.close()
            evidence.append(_trace(c, label=note))
        if key is not None:  # the meter took it: follow it so the campaign can go on
            problem = await _use_and_restore(target, key, original, evidence)
            if problem:
                seen.append(problem)
    c = await target.management()
    try:
        setup = await _setup(c, target)
        result, key, _, text = await _agree(c, setup, target, target.keys.client_private_key,
                                            "control: correctly signed ephemeral key")
        seen.append(text)
    finally:
        with contextlib.suppress(DlmsError, ConnectionFailed):
            await c.release()
        await c.close()
        evidence.append(_trace(c, label="control"))
    control_problem = "the correct agreement failed" if key is None else await _use_and_restore(
        target, key, original, evidence)
    if target.keys.extra.get("server_agreement_certificate"):
        # the same in general-ciphering: an agreed key (C(1e, 1s)) whose ephemeral key is
        # signed by another key, the APDU itself correctly signed by the client
        async def agreed_key(c: DlmsClient) -> None:
            plain = _clock_request(c)
            good = await _send(c, c.protect_request(plain, general=SIGNED, agreed=True),
                               "control: agreed-key general-ciphering")
            forged = await _send(c, c.protect_request(
                plain, general=SIGNED, agreed=True,
                ephemeral_signer=_agreement.generate_key_pair(target.suite)),
                "agreed-key general-ciphering, ephemeral key signed by another key")
            seen.append(f"agreed-key GET: {good.text}; with a forged ephemeral key: "
                        f"{forged.text}")
            if forged.served:
                accepted.append("agreed key in general-ciphering whose ephemeral key another "
                                "key signed")
            evidence.append(_trace(c, label="agreed keys in general-ciphering"))

        await _with_management(target, agreed_key)  # type: ignore[arg-type]
    evidence.append(Evidence("answers", "\n".join(seen), "value"))
    if accepted:
        return fail("key_agreement accepted an " + " and an ".join(accepted), *evidence)
    if key is None and not _names_certificates(target):
        return not_applicable(f"the meter does not run key_agreement ({seen[-1]}) and the key "
                              "file names none of its certificates", *evidence)
    if control_problem:
        return inconclusive(f"forgeries refused, but {control_problem}: no verdict", *evidence)
    also = (" (and a forged ephemeral key in agreed-key general-ciphering)"
            if target.keys.extra.get("server_agreement_certificate") else "")
    return passed("unsigned and wrongly signed ephemeral keys refused" + also + "; a correctly "
                  "signed agreement succeeded and its key was in use", *evidence)


@check("DLMS-KEYAGREE-02", "Agreed keys differ per key agreement (fresh ephemeral keys)",
       severity=Severity.HIGH, requirements=["EN303645:5.5-1", "EN303645:5.5-8"],
       tags=["suite", "key-agreement", "keys"], destructive=True, target=TargetKind.DLMS,
       timeout=60.0)
async def key_agreement_fresh(target: DlmsTarget) -> CheckOutcome:
    """Two correctly signed key agreements in two associations: the meter's ephemeral keys
    and the agreed keys must differ (a reused ephemeral key makes every agreement with the
    same peer ephemeral repeatable, and loses forward secrecy)."""
    reason = _key_agreement_unusable(target)
    if reason:
        return not_applicable(reason)
    original = target.keys.guek
    assert original is not None
    evidence: list[Evidence] = []
    points: list[bytes] = []
    keys: list[Key] = []
    for round_ in (1, 2):
        c = await target.management()
        try:
            setup = await _setup(c, target)
            _, key, point, text = await _agree(c, setup, target, target.keys.client_private_key,
                                               f"key agreement {round_}")
        finally:
            with contextlib.suppress(DlmsError, ConnectionFailed):
                await c.release()
            await c.close()
            evidence.append(_trace(c, label=f"key agreement {round_}"))
        if key is None or point is None:
            if not _names_certificates(target):
                return not_applicable(f"the meter does not run key_agreement ({text}) and the "
                                      "key file names none of its certificates", *evidence)
            return inconclusive(f"{text}: no verdict on freshness", *evidence)
        problem = await _use_and_restore(target, key, original, evidence)
        if problem:
            return inconclusive(f"key agreement {round_}: {problem}", *evidence)
        points.append(point)
        keys.append(key)
    if points[0] == points[1]:
        return fail("the meter answered both key agreements with the same ephemeral key "
                    f"({points[0][:8].hex().upper()}...)", *evidence)
    if keys[0] == keys[1]:
        return fail("both key agreements gave the same key", *evidence)
    return passed("two agreements: different meter ephemeral keys and different agreed keys, "
                  "each verified and in use", *evidence)


def _certificates_unusable(target: DlmsTarget) -> str | None:
    reason = _unusable(target)
    if reason:
        return reason
    if not target.keys.extra.get("client_signing_certificate"):
        return "the key file names no client_signing_certificate (the meter's certificates)"
    return None


def _identify(cert: x509.Certificate) -> DlmsData:
    """Identification by serial number and issuer (DER forms, as attribute 6 gives them)."""
    info = certs.certificate_info(cert, certs.CertificateEntity.CLIENT)
    return CertificateIdentification(serial_number=info.serial_number,
                                     issuer=info.issuer).to_data()


@check("DLMS-CERT-01", "import_certificate refuses an untrusted or expired certificate",
       severity=Severity.CRITICAL, requirements=["EN303645:5.5-8", "EN303645:5.5-5"],
       tags=["suite", "certificates"], destructive=True, target=TargetKind.DLMS)
async def certificate_import(target: DlmsTarget) -> CheckOutcome:
    """A digital-signature certificate for the client's system title (a fresh key) from a CA
    of our own (untrusted), and, when the key file gives the operator CA's key, one from the
    operator CA that has expired: both refused. Control: the client's own certificate (same
    type and title, from the key file) is imported again, which also replaces any forgery
    the meter took; a forgery it took is removed first."""
    reason = _certificates_unusable(target)
    if reason:
        return not_applicable(reason)
    own = _certificate_field(target, "client_signing_certificate")
    assert own is not None
    title = target.keys.client_system_title
    assert title is not None
    suite = target.suite
    tests: list[tuple[str, x509.Certificate]] = []
    rogue_key = _agreement.generate_key_pair(suite)
    rogue_ca = certs.build_ca(rogue_key, name="metercert untrusted test CA")
    leaf = _agreement.generate_key_pair(suite).public_key()
    tests.append(("certificate from an untrusted CA", certs.issue(
        leaf, system_title=title, kind=certs.CertificateType.DIGITAL_SIGNATURE, issuer=rogue_ca,
        issuer_key=rogue_key)))
    ca = _certificate_field(target, "dlms_ca_certificate")
    ca_key = _ca_key(target)
    skipped = ""
    if ca is not None and ca_key is not None:
        start = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
        tests.append(("expired certificate from the operator CA", certs.issue(
            leaf, system_title=title, kind=certs.CertificateType.DIGITAL_SIGNATURE, issuer=ca,
            issuer_key=ca_key, not_before=start, days=2)))
    else:
        skipped = "; the key file gives no operator CA key (dlms_ca_key): expiry not tried"

    async def body(c: DlmsClient) -> CheckOutcome:
        setup = await _setup(c, target)
        taken: list[str] = []
        seen: list[str] = []
        for note, cert in tests:
            c.trace.note(note)
            result, _ = await c.action(64, setup, _IMPORT, DlmsData.octet_string(certs.der(cert)))
            seen.append(f"{note}: {result.name.lower()}")
            if result is ActionResult.SUCCESS:
                taken.append(note)
                await c.action(64, setup, _REMOVE, _identify(cert))
        c.trace.note("control: the client's own certificate again")
        control, _ = await c.action(64, setup, _IMPORT, DlmsData.octet_string(certs.der(own)))
        seen.append(f"control, the client's own certificate: {control.name.lower()}")
        ev = [_trace(c), Evidence("answers", "\n".join(seen), "value")]
        if taken:
            return fail("import_certificate accepted a " + " and a ".join(taken), *ev)
        if control is not ActionResult.SUCCESS:
            return inconclusive("the meter refused even its client's own certificate "
                                f"({control.name}): no verdict", *ev)
        return passed("untrusted" + (" and expired" if not skipped else "") + " certificates "
                      "refused, a trusted one imported" + skipped, *ev)

    return await _with_management(target, body)


@check("DLMS-CERT-02", "A removed client certificate can no longer sign requests",
       severity=Severity.HIGH, requirements=["EN303645:5.5-8", "EN303645:5.1-3"],
       tags=["suite", "certificates", "general-signing"], destructive=True,
       target=TargetKind.DLMS)
async def removed_certificate(target: DlmsTarget) -> CheckOutcome:
    """remove_certificate of the client's digital-signature certificate (by entity), then a
    correctly signed-then-ciphered GET: it must be refused. The certificate is imported again
    and a signed GET is served once more."""
    reason = _certificates_unusable(target)
    if reason:
        return not_applicable(reason)
    own = _certificate_field(target, "client_signing_certificate")
    assert own is not None and target.keys.client_system_title is not None
    ident = CertificateIdentification(entity=int(certs.CertificateEntity.CLIENT),
                                      certificate_type=int(certs.CertificateType.DIGITAL_SIGNATURE),
                                      system_title=target.keys.client_system_title).to_data()

    async def body(c: DlmsClient) -> CheckOutcome:
        control, stop = await _control(c, target)
        if stop is not None:
            return stop
        setup = await _setup(c, target)
        removed, _ = await c.action(64, setup, _REMOVE, ident)
        seen = [f"control before: {control.text}", f"remove_certificate: {removed.name.lower()}"]
        after = await _send(c, c.protect_request(_clock_request(c), general=SIGNED),
                            "signed GET after the removal")
        seen.append(f"signed GET after the removal: {after.text}")
        restored, _ = await c.action(64, setup, _IMPORT, DlmsData.octet_string(certs.der(own)))
        again = await _send(c, c.protect_request(_clock_request(c), general=SIGNED),
                            "signed GET after the import")
        seen.append(f"import again: {restored.name.lower()}; signed GET: {again.text}")
        ev = [_trace(c), Evidence("answers", "\n".join(seen), "value")]
        if removed is not ActionResult.SUCCESS:
            return inconclusive(f"remove_certificate answered {removed.name}: no verdict", *ev)
        if after.served:
            return fail("a request signed with the removed certificate's key was executed", *ev)
        if not again.served:
            return inconclusive("after importing the certificate again the signed request was "
                                "still refused: the refusal may not be due to the removal", *ev)
        return passed("after remove_certificate the client's signed request was refused; "
                      "after import_certificate it was served again", *ev)

    return await _with_management(target, body)


def _reveals(data: bytes, public: ec.EllipticCurvePublicKey) -> bool:
    """Does any window of ``data`` hold the private scalar of ``public``?"""
    size = (public.curve.key_size + 7) // 8
    target_point = public.public_numbers()
    order_bits = public.curve.key_size
    for i in range(max(0, len(data) - size) + 1):
        value = int.from_bytes(data[i:i + size], "big")
        if value == 0 or value.bit_length() > order_bits:
            continue
        try:
            candidate = ec.derive_private_key(value, public.curve).public_key().public_numbers()
        except ValueError:
            continue
        if candidate == target_point:
            return True
    return False


@check("DLMS-CERT-03", "generate_key_pair never reveals the private key",
       severity=Severity.CRITICAL, requirements=["EN303645:5.5-7", "EN303645:5.4-1"],
       tags=["suite", "certificates", "keys"], destructive=True, target=TargetKind.DLMS)
async def key_pair_private(target: DlmsTarget) -> CheckOutcome:
    """generate_key_pair (TLS key pair, which nothing else in the campaign uses), then
    generate_certificate_request: the request must be signed by a new key for the meter's
    system title, and no answer of the association (wire or plaintext) may hold that key's
    private scalar."""
    reason = _unusable(target)
    if reason:
        return not_applicable(reason)
    kind = DlmsData.enum(int(certs.CertificateType.TLS))

    async def body(c: DlmsClient) -> CheckOutcome:
        _, stop = await _control(c, target)
        if stop is not None:
            return stop
        setup = await _setup(c, target)
        made, returned = await c.action(64, setup, _GENERATE_KEY_PAIR, kind)
        if made is not ActionResult.SUCCESS:
            return inconclusive(f"generate_key_pair answered {made.name}: no verdict", _trace(c))
        result, request = await c.action(64, setup, _CERTIFICATE_REQUEST, kind)
        ev = [_trace(c)]
        if result is not ActionResult.SUCCESS or request is None or \
                request.type is not DataType.OCTET_STRING:
            return inconclusive(f"generate_certificate_request answered {result.name} without "
                                "a request: the new public key is unknown", *ev)
        try:
            csr = x509.load_der_x509_csr(bytes(request.value))
        except ValueError:
            return inconclusive("generate_certificate_request did not return a PKCS #10 "
                                "request", *ev)
        public = csr.public_key()
        if not isinstance(public, ec.EllipticCurvePublicKey) or not csr.is_signature_valid:
            return inconclusive("the certificate request is not signed by an EC key", *ev)
        answers = [w for e in c.trace.entries if e.direction == "<-"
                   for w in (e.wire, e.plain) if w]
        if returned is not None and returned.type is DataType.OCTET_STRING:
            answers.append(bytes(returned.value))
        if any(_reveals(a, public) for a in answers):
            return fail("the private key of the pair generate_key_pair made is in the meter's "
                        "answers", *ev)
        return passed(f"a new {public.curve.name} key pair; its request is signed and no answer "
                      f"holds its private key ({len(answers)} answers searched)", *ev)

    return await _with_management(target, body)
