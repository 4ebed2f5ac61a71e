"""DLMS checks for suites 1 and 2 in the general forms: general-signing (0xDF) signatures and
general-ciphering (0xDD) downgrade.

They apply to a meter that serves general protection: the key file names it
(``general_protection``) or a correctly signed-then-ciphered request is served. Every check
first sends that correct request as its control; a meter that does not serve the control
gives no verdict on the forgery (INCONCLUSIVE), because refusing everything is not evidence.

How a forgery is judged served: the answer is not an exception-response and its general
layers open with the association's keys (whatever suite the answer claims: a meter that
went along with a downgrade answers in the lower suite) to a response with a result.
"""

from __future__ import annotations

from dataclasses import dataclass

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
from metercert.checks.dlms._common import _clock_request, _trace, _try, _with_management
from metercert.client.session import DlmsClient
from metercert.client.target import DlmsTarget
from metercert.cosem import ActionResult, DataAccessResult, decode_apdu
from metercert.security import SecurityError
from metercert.security import agreement as _agreement
from metercert.security import general as g

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
            key = g.receiver_key(gc, keys=keys)
            size = len(key) if key is not None else None
            data = g.unprotect_general(gc, encryption_key=key, authentication_key=keys.ak,
                                       key_size=size).plaintext
    except (SecurityError, ValueError):
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
