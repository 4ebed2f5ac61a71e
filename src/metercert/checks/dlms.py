"""DLMS/COSEM security checks against a live meter (target kind ``dlms``).

Each check drives the meter through :class:`metercert.client.target.DlmsTarget`
and returns a verdict with the APDU trace as evidence. A check only FAILs when
it has seen the flaw (the meter executed what it must refuse); when it cannot
tell, it raises or returns INCONCLUSIVE.

Counters are never reused with different content: attacks replay identical
bytes, and "stale counter" probes use counters the client skipped on purpose.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

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
from metercert.client.errors import AssociationRejected, DlmsError, NoResponse, ResponseNotTrusted
from metercert.client.session import DlmsClient
from metercert.client.target import DlmsTarget
from metercert.cosem import (
    AcseServiceUserDiagnostic,
    ActionResult,
    CosemAttributeDescriptor,
    CosemDecodeError,
    DataAccessResult,
    DlmsData,
    GetRequestNormal,
    ObisCode,
    decode_apdu,
)
from metercert.errors import ConnectionFailed
from metercert.security.firmware_image import build_signed_image
from metercert.meter.objects import ImageTransfer  # image_transfer_status values
from metercert.security import (
    CipheringForm,
    Key,
    KeySet,
    Mechanism,
    SecurityError,
    is_ciphered,
    parse_ciphered,
    tag_name,
    wrap_key,
)

CLOCK = ObisCode(0, 0, 1, 0, 0, 255)
ENERGY = ObisCode(1, 0, 1, 8, 0, 255)
FIRMWARE_ID = ObisCode(1, 0, 0, 2, 0, 255)
CURRENT_ASSOCIATION = ObisCode(0, 0, 40, 0, 0, 255)
IMAGE_TRANSFER = ObisCode(0, 0, 44, 0, 0, 255)
DISCONNECT = ObisCode(0, 0, 96, 3, 10, 255)
SECURITY_LOG = ObisCode(0, 0, 99, 98, 0, 255)
DENIED = {ActionResult.READ_WRITE_DENIED, ActionResult.OBJECT_UNDEFINED,
          ActionResult.SCOPE_OF_ACCESS_VIOLATED}
DENIED_DATA = {DataAccessResult.READ_WRITE_DENIED, DataAccessResult.OBJECT_UNDEFINED,
               DataAccessResult.SCOPE_OF_ACCESS_VIOLATED}
WELL_KNOWN_LLS_PASSWORDS = [b"00000000", b"12345678", b"11111111", b"ABCDEFGH", b"Gurux",
                            b"0000000000000000", b"1234567890123456", b"password"]

def _trace(client: DlmsClient, since: int = 0, label: str = "APDU trace") -> Evidence:
    return Evidence(label, client.trace.text(since), "apdu-trace",
                    f"tcp://{client.host}:{client.port} client SAP {client.settings.client_sap}")


def _clock_request() -> bytes:
    return GetRequestNormal(CosemAttributeDescriptor(8, CLOCK, 2)).to_bytes()


def _served(client: DlmsClient, answer: bytes) -> bool:
    """Did the meter execute the request (a response carrying data or success)?"""
    if not answer or answer[0] == 0xD8:
        return False
    plain = client.peek(answer)
    if plain is None or not plain:
        return False
    try:
        decoded = decode_apdu(plain)
    except Exception:  # noqa: BLE001 - an undecodable answer is not a served request
        return False
    result = getattr(decoded, "result", None)
    if isinstance(result, (DataAccessResult, ActionResult)):
        return result in (DataAccessResult.SUCCESS, ActionResult.SUCCESS)
    return result is not None


def _describe(client: DlmsClient, answer: bytes | None) -> str:
    if answer is None:
        return "no answer (connection closed)"
    if not answer:
        return "empty answer"
    if answer[0] == 0xD8:
        return f"exception-response {answer.hex().upper()}"
    plain = client.peek(answer)
    shown = tag_name(plain[0]) if plain else "unverifiable"
    return f"{tag_name(answer[0])} -> {shown}"


async def _try(client: DlmsClient, wire: bytes, note: str) -> bytes | None:
    try:
        return await client.exchange(wire, note=note)
    except NoResponse:
        return None


async def _wait_for_management(target: DlmsTarget, roles: tuple[str | None, ...] = (None,),
                               limit_s: float = 30.0) -> None:
    """After deliberate authentication failures, wait until the meter lets each of the given
    roles (None = the management client) back in, so later checks are not locked out."""
    deadline = time.monotonic() + limit_s
    for role in roles:
        while True:
            c = target.client(role)
            try:
                await c.open()
                await c.release()
                break
            except AssociationRejected:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)
            finally:
                await c.close()


async def _with_management(target: DlmsTarget,
                           body: Callable[[DlmsClient], Awaitable[CheckOutcome]]) -> CheckOutcome:
    c = await target.management()
    try:
        return await body(c)
    finally:
        try:
            if c.associated and c.stream is not None and not c.stream.closed:
                await c.release()
        except (DlmsError, ConnectionFailed):
            pass
        await c.close()


async def _security_setup(client: DlmsClient) -> ObisCode:
    ref = await client.get(15, CURRENT_ASSOCIATION, 9)
    return ObisCode.from_bytes(bytes(ref.value))


# -- suites -------------------------------------------------------------------------------


@check("DLMS-SUITE-01", "Association succeeds with the meter's security suite",
       severity=Severity.HIGH, requirements=["DLMS:SUITE-NEGOTIATION", "EN303645:5.5-1"],
       tags=["suite", "association"], target=TargetKind.DLMS)
async def suite_negotiation(target: DlmsTarget) -> CheckOutcome:
    """The management association is set up in the suite the meter claims (Security Setup
    attribute 3) and every response is protected in that suite."""

    async def body(c: DlmsClient) -> CheckOutcome:
        setup = await _security_setup(c)
        claimed = int((await c.get(64, setup, 3)).value)
        suites = {parse_ciphered(w).security_control.suite
                  for w in c.trace.wires() if is_ciphered(w)}
        ev = _trace(c)
        if claimed != c.settings.suite:
            return fail(f"meter claims suite {claimed} in {setup} but associated in suite "
                        f"{c.settings.suite}", ev)
        if suites != {claimed}:
            return fail(f"APDUs used suites {sorted(suites)}, the meter claims {claimed}", ev)
        return passed(f"associated in suite {claimed}, as Security Setup {setup} claims", ev)

    return await _with_management(target, body)


@check("DLMS-DOWNGRADE-01", "A lower security suite than configured is refused",
       severity=Severity.CRITICAL, requirements=["DLMS:SUITE-DOWNGRADE", "CRA:I.2e"],
       tags=["suite", "downgrade"], target=TargetKind.DLMS)
async def downgrade_rejected(target: DlmsTarget) -> CheckOutcome:
    """For every suite below the configured one: the association is refused, and a request
    in the lower suite on an established association is not served."""
    suite = target.suite
    if suite == 0:
        return not_applicable("the meter is configured for suite 0: nothing lower to propose")
    evidence: list[Evidence] = []
    accepted: list[str] = []
    for lower in range(suite):
        c = target.client()
        try:
            await c.open(suite=lower)
            accepted.append(f"association proposing suite {lower} was accepted")
        except AssociationRejected as exc:
            c.trace.note(f"suite {lower}: {exc}")
        finally:
            evidence.append(_trace(c, label=f"association in suite {lower}"))
            await c.close()

    async def body(c: DlmsClient) -> CheckOutcome:
        for lower in range(suite):
            wire = c.protect_request(_clock_request(), suite=lower)
            answer = await _try(c, wire, f"glo-get in suite {lower}")
            if answer is not None and _served(c, answer):
                accepted.append(f"request in suite {lower} was served")
        evidence.append(_trace(c, label="requests in lower suites"))
        if accepted:
            return fail("downgrade accepted: " + "; ".join(accepted), *evidence)
        return passed(f"suites {list(range(suite))} refused at association and per request",
                      *evidence)

    return await _with_management(target, body)


@check("DLMS-FORMS-01", "Every ciphering form is answered in kind and verifies",
       severity=Severity.MEDIUM, requirements=["DLMS:APDU-INTEGRITY"],
       tags=["ciphering"], target=TargetKind.DLMS)
async def ciphering_forms(target: DlmsTarget) -> CheckOutcome:
    """GET in global, dedicated, general-glo and general-ded ciphering: each answer uses the
    same form, verifies and comes with a fresh counter."""
    problems: list[str] = []
    c = target.client(dedicated_key=True)
    try:
        await c.open()
        for form in CipheringForm:
            try:
                mark = c.trace.mark()
                await c.get(8, CLOCK, 2, form=form)
                answer = c.trace.wires(mark)[-1]
                got = parse_ciphered(answer).form
                if got is not form:
                    problems.append(f"{form.value} request answered in {got.value}")
            except DlmsError as exc:
                problems.append(f"{form.value}: {exc}")
        await c.release()
    finally:
        await c.close()
    if problems:
        return fail("; ".join(problems), _trace(c))
    return passed("global, dedicated, general-glo and general-ded all answered in kind", _trace(c))


# -- protection and replay -----------------------------------------------------------------


@check("DLMS-POLICY-01", "Unprotected and under-protected requests are refused",
       severity=Severity.CRITICAL, requirements=["DLMS:POLICY-ENFORCED", "CRA:I.2e", "CRA:I.2f"],
       tags=["policy"], target=TargetKind.DLMS)
async def policy_enforced(target: DlmsTarget) -> CheckOutcome:
    """On a protected association: a plaintext GET, an encrypted-only GET and (when the policy
    demands encryption) an authenticated-only GET must not be served."""

    async def body(c: DlmsClient) -> CheckOutcome:
        setup = await _security_setup(c)
        policy = int((await c.get(64, setup, 2)).value)
        wants_encryption = bool(policy & 0x08)
        served: list[str] = []
        probes = [("plaintext get-request", _clock_request()),
                  ("encrypted-only glo-get", c.protect_request(_clock_request(), authenticated=False))]
        if wants_encryption:
            probes.append(("authenticated-only glo-get",
                           c.protect_request(_clock_request(), encrypted=False)))
        for label, wire in probes:
            answer = await _try(c, wire, label)
            if answer is None:
                c = await target.management()  # meter closed: reconnect for the next probe
            elif _served(c, answer):
                served.append(label)
        ev = _trace(c)
        if served:
            return fail("served: " + ", ".join(served), ev)
        return passed(f"refused: {', '.join(p[0] for p in probes)} (policy 0x{policy:02X})", ev)

    return await _with_management(target, body)


@check("DLMS-REPLAY-01", "A replayed APDU is rejected",
       severity=Severity.CRITICAL, requirements=["DLMS:IC-REPLAY", "CRA:I.2f"],
       tags=["replay", "invocation-counter"], target=TargetKind.DLMS)
async def replay_rejected(target: DlmsTarget) -> CheckOutcome:
    """The same protected GET, byte for byte, sent twice: the second must not be served."""

    async def body(c: DlmsClient) -> CheckOutcome:
        wire = c.protect_request(_clock_request())
        first = await _try(c, wire, "original")
        if first is None or not _served(c, first):
            return inconclusive("the original request was not served", _trace(c))
        again = await _try(c, wire, "replay of the same bytes")
        ev = _trace(c)
        if again is not None and _served(c, again):
            return fail(f"replay served: {_describe(c, again)}", ev)
        return passed(f"replay refused: {_describe(c, again)}", ev)

    return await _with_management(target, body)


@check("DLMS-IC-STALE-01", "A never-used but stale invocation counter is rejected",
       severity=Severity.HIGH, requirements=["DLMS:IC-REPLAY"],
       tags=["replay", "invocation-counter"], target=TargetKind.DLMS)
async def stale_counter_rejected(target: DlmsTarget) -> CheckOutcome:
    """Jump the counter ahead by 10, then send a fresh request with a skipped (lower,
    never used) counter: it must be refused."""

    async def body(c: DlmsClient) -> CheckOutcome:
        base = (c.last_sent_counter or 0) + 1
        ahead = c.protect_request(_clock_request(), invocation_counter=base + 10)
        c.skip_counter_to(base + 11)
        answer = await _try(c, ahead, f"counter {base + 10} (jump ahead)")
        if answer is None or not _served(c, answer):
            return inconclusive("the jump-ahead request was not served", _trace(c))
        stale = c.protect_request(_clock_request(), invocation_counter=base + 5)
        answer = await _try(c, stale, f"counter {base + 5} (stale, never used)")
        ev = _trace(c)
        if answer is not None and _served(c, answer):
            return fail(f"stale counter {base + 5} accepted after {base + 10}", ev)
        return passed(f"stale counter {base + 5} refused after {base + 10}", ev)

    return await _with_management(target, body)


@check("DLMS-TAMPER-01", "Tampered tags and ciphertexts are rejected without moving the window",
       severity=Severity.CRITICAL, requirements=["DLMS:APDU-INTEGRITY", "CRA:I.2f"],
       tags=["integrity"], target=TargetKind.DLMS)
async def tamper_rejected(target: DlmsTarget) -> CheckOutcome:
    """A flipped tag bit and a flipped ciphertext bit are refused; a forged APDU with a very
    high counter does not lock out the next genuine request."""

    async def body(c: DlmsClient) -> CheckOutcome:
        problems = []
        for label, index in (("tag", -1), ("ciphertext", 8)):
            wire = bytearray(c.protect_request(_clock_request()))
            wire[index] ^= 0x01
            answer = await _try(c, bytes(wire), f"{label} bit flipped")
            if answer is None:
                c = await target.management()
            elif _served(c, answer):
                problems.append(f"{label} tamper served")
        forged = bytearray(c.protect_request(_clock_request(), invocation_counter=0xFFFFFFF0))
        forged[-1] ^= 0x80
        await _try(c, bytes(forged), "forged APDU with counter 0xFFFFFFF0")
        try:
            await c.get(8, CLOCK, 2)
        except (DlmsError, ConnectionFailed) as exc:
            problems.append(f"genuine request refused after a forged high counter: {exc}")
        ev = _trace(c)
        if problems:
            return fail("; ".join(problems), ev)
        return passed("tag and ciphertext tampering refused; the window moved only on valid APDUs",
                      ev)

    return await _with_management(target, body)


# -- authentication ------------------------------------------------------------------------


async def _attempt(target: DlmsTarget, role: str | None, note: str, **settings: Any) -> tuple[bool, DlmsClient]:
    c = target.client(role, **settings)
    try:
        await c.connect()
        c.trace.note(note)
        await c.associate()
        return True, c
    except AssociationRejected:
        return False, c
    except (DlmsError, ConnectionFailed) as exc:
        c.trace.note(f"refused: {exc}")
        return False, c
    finally:
        if c.associated:
            try:
                await c.release()
            except (DlmsError, ConnectionFailed):
                pass
        await c.close()


@check("DLMS-AUTH-LLS-01", "No authentication and LLS are refused on the management association",
       severity=Severity.CRITICAL, requirements=["DLMS:HLS-AUTH", "CRA:I.2d", "IEC62443-4-2:CR1.1"],
       tags=["authentication"], target=TargetKind.DLMS)
async def lls_refused(target: DlmsTarget) -> CheckOutcome:
    """The management client SAP with mechanism 0 (none) and with LLS and a random password."""
    accepted, ev = [], []
    for mech, password, label in ((Mechanism.NONE, None, "no authentication"),
                                  (Mechanism.LLS, os.urandom(6).hex().encode(), "LLS, random password")):
        ok, c = await _attempt(target, None, label, mechanism=mech, password=password)
        ev.append(_trace(c, label=label))
        if ok:
            accepted.append(label)
    await _wait_for_management(target)
    if accepted:
        return fail("management association accepted: " + ", ".join(accepted), *ev)
    return passed("no authentication and LLS both refused", *ev)


@check("DLMS-AUTH-LEGACY-01", "HLS mechanisms 3 (MD5) and 4 (SHA-1) are refused",
       severity=Severity.HIGH, requirements=["DLMS:HLS-AUTH", "EN303645:5.5-1"],
       tags=["authentication"], target=TargetKind.DLMS)
async def legacy_mechanisms_refused(target: DlmsTarget) -> CheckOutcome:
    accepted, ev = [], []
    role = "ENGINEER" if "ENGINEER" in target.roles() else None
    for mech in (Mechanism.HLS_MD5, Mechanism.HLS_SHA1):
        c = target.client(role)
        try:
            await c.connect()
            await c.sync_counter()
            aarq, _ = c.build_aarq()
            from metercert.cosem import AARQ, AuthenticationMechanism

            legacy = dataclasses.replace(AARQ.from_bytes(aarq),
                                         mechanism_name=AuthenticationMechanism(int(mech)).oid)
            answer = await _try(c, legacy.to_bytes(), f"AARQ naming mechanism {int(mech)}")
            from metercert.cosem import AARE, AssociationResult

            if answer and answer[0] == 0x61 and AARE.from_bytes(answer).result is AssociationResult.ACCEPTED:
                accepted.append(f"mechanism {int(mech)} ({mech.name})")
        finally:
            ev.append(_trace(c, label=f"mechanism {int(mech)}"))
            await c.close()
    await _wait_for_management(target, (role,))
    if accepted:
        return fail("accepted legacy " + ", ".join(accepted), *ev)
    return passed("mechanisms 3 and 4 refused", *ev)


async def _clock_served(c: DlmsClient, note: str) -> bool:
    """Send a ciphered GET of the clock as this client would; did the meter serve it?"""
    answer = await _try(c, c.protect_request(_clock_request()), note)
    return answer is not None and _served(c, answer)


def _flip_last_byte(reply: bytes) -> bytes:
    return reply[:-1] + bytes((reply[-1] ^ 0x01,)) if reply else b"\x00"


@check("DLMS-HLS-01", "HLS pass 3 is verified, and nothing is served before it",
       severity=Severity.CRITICAL, requirements=["DLMS:HLS-AUTH", "CRA:I.2d", "IEC62443-4-2:CR1.1"],
       tags=["authentication"], target=TargetKind.DLMS)
async def hls_reply_verified(target: DlmsTarget) -> CheckOutcome:
    """The management association, twice: a GET sent after the AARE but before
    reply_to_HLS_authentication must not be served; a reply whose f(StoC) has one bit
    flipped must not complete the association (nor may a GET after it be served). Then the
    right reply must still work, so the refusals are not a meter that refuses everything.
    An HLS role other checks do not already fail against (SECAUD, READER) is used when the
    key file has one, so this failure does not add up to a lockout with theirs."""
    role = next((r for r in ("SECAUD", "READER") if r in target.roles()
                 and target.settings(r).mechanism.is_hls), None)
    problems: list[str] = []
    ev: list[Evidence] = []
    c = target.client(role)
    try:
        await c.connect()
        await c.sync_counter()
        aare = await c.associate(hls_reply=False)
        if aare.result_source_diagnostic is not AcseServiceUserDiagnostic.AUTHENTICATION_REQUIRED:
            return not_applicable(f"the {role or 'management'} association asks for no HLS "
                                  "pass 3", _trace(c, label="AARQ/AARE"))
        if await _clock_served(c, "GET before HLS pass 3"):
            problems.append("a GET was served between the AARE and HLS pass 3")
    finally:
        ev.append(_trace(c, label="request before HLS pass 3"))
        await c.close()
    c = target.client(role)
    try:
        await c.connect()
        await c.sync_counter()
        c.trace.note("f(StoC) with its last bit flipped")
        try:
            await c.associate(tamper_hls_reply=_flip_last_byte)
            problems.append("a wrong f(StoC) completed the association")
        except (AssociationRejected, ConnectionFailed):
            pass   # refused, or the meter dropped the connection (the GET below shows which)
        except ResponseNotTrusted as exc:   # it answered; whether it serves is what counts
            c.trace.note(f"meter's answer to the wrong reply: {exc}")
        if await _clock_served(c, "GET after the wrong f(StoC)"):
            problems.append("a GET was served after the wrong f(StoC)")
    finally:
        ev.append(_trace(c, label="wrong f(StoC)"))
        await c.close()
    await _wait_for_management(target, (role,))   # the right reply works (any lockout is over)
    if problems:
        return fail("; ".join(problems), *ev)
    return passed("nothing served before pass 3; a wrong f(StoC) refused; the right one accepted",
                  *ev)


@check("DLMS-AUTH-DEFAULT-01", "Well-known default LLS passwords are refused",
       severity=Severity.CRITICAL, requirements=["EN303645:5.1-1", "CRA:I.2b", "DLMS:HLS-AUTH"],
       tags=["authentication", "default-credentials"], target=TargetKind.DLMS)
async def default_passwords_refused(target: DlmsTarget) -> CheckOutcome:
    """LLS with factory passwords on the management client SAP and every role SAP."""
    saps = {target.settings().client_sap} | {
        s for s in (target.role_sap(r) for r in target.roles()) if s is not None and s != 16}
    accepted, ev = [], []
    for sap in sorted(saps):
        for password in WELL_KNOWN_LLS_PASSWORDS:
            ok, c = await _attempt(target, None, f"LLS '{password.decode()}' on SAP {sap}",
                                   client_sap=sap, mechanism=Mechanism.LLS, password=password)
            if ok:
                accepted.append(f"SAP {sap} with '{password.decode()}'")
                ev.append(_trace(c, label=f"accepted on SAP {sap}"))
    await _wait_for_management(target, (None, *[r for r in target.roles()
                                                if target.role_sap(r) in saps]))
    if accepted:
        return fail("default password accepted: " + ", ".join(accepted), *ev)
    return passed(f"{len(WELL_KNOWN_LLS_PASSWORDS)} factory passwords refused on SAPs "
                  f"{sorted(saps)}", Evidence("passwords tried", ", ".join(
                      p.decode() for p in WELL_KNOWN_LLS_PASSWORDS), "value"))


@check("DLMS-THROTTLE-01", "Repeated authentication failures are throttled",
       severity=Severity.HIGH, requirements=["DLMS:AUTH-THROTTLE", "EN303645:5.1-5",
                                             "IEC62443-4-2:CR1.11"],
       tags=["authentication", "brute-force"], target=TargetKind.DLMS)
async def failures_throttled(target: DlmsTarget) -> CheckOutcome:
    """Five associations with a wrong key, then one with the right key straight away: a
    throttling meter refuses or delays it."""
    role = "INSTALLER" if "INSTALLER" in target.roles() else None
    good = target.settings(role)
    wrong = KeySet(client_system_title=good.keys.client_system_title,
                   server_system_title=good.keys.server_system_title,
                   guek=Key(os.urandom(len(good.keys.guek or b"0" * 16))),
                   ak=Key(os.urandom(len(good.keys.ak or b"0" * 16))))
    ev = []
    for i in range(5):
        ok, c = await _attempt(target, role, f"wrong key, attempt {i + 1}", keys=wrong)
        if ok:
            return inconclusive("an association with a wrong key was accepted", _trace(c))
    start = time.monotonic()
    ok, c = await _attempt(target, role, "right key, straight after the failures")
    took = time.monotonic() - start
    ev.append(_trace(c, label="right key after five failures"))
    await _wait_for_management(target, (role,))
    if ok and took < 1.0:
        return fail(f"correct credentials accepted {took:.2f} s after 5 failures: no throttling", *ev)
    how = "refused" if not ok else f"delayed {took:.1f} s"
    return passed(f"after 5 failures the right credentials were {how}", *ev)


@check("DLMS-SECRET-01", "The association secret (attribute 7) cannot be read",
       severity=Severity.CRITICAL, requirements=["DLMS:SECRET-PROTECT", "EN303645:5.4-1"],
       tags=["secrets"], target=TargetKind.DLMS)
async def secret_not_readable(target: DlmsTarget) -> CheckOutcome:
    async def body(c: DlmsClient) -> CheckOutcome:
        result = await c.get_result(15, CURRENT_ASSOCIATION, 7)
        ev = _trace(c)
        if isinstance(result, DataAccessResult):
            return passed(f"secret read refused ({result.name.lower()})", ev)
        size = len(result.value) if isinstance(result.value, (bytes, str)) else len(result.to_bytes())
        return fail(f"attribute 7 was readable ({result.type.name.lower()}, {size} bytes)",
                    Evidence("APDU trace", "(responses withheld: they carry the secret)", "text"))

    return await _with_management(target, body)


@check("DLMS-PUBLIC-01", "The public client sees only a minimal object list",
       severity=Severity.MEDIUM, requirements=["DLMS:ACCESS-RIGHTS", "CRA:I.2j", "CRA:I.2g"],
       tags=["access-rights", "public-client"], target=TargetKind.DLMS)
async def public_minimal(target: DlmsTarget) -> CheckOutcome:
    """No Security Setup, image transfer, disconnect control or profile (log) objects, no
    write access and no method but reply_to_HLS for the public client."""
    c = target.public()
    async with c:
        listing = await c.get(15, CURRENT_ASSOCIATION, 2)
    forbidden_classes = {64: "Security Setup", 18: "Image Transfer", 70: "Disconnect control",
                         7: "Profile generic"}
    problems, seen = [], []
    for entry in listing.value:
        fields = entry.value
        class_id, obis = int(fields[0].value), ObisCode.from_bytes(bytes(fields[2].value))
        seen.append(f"{class_id}/{obis}")
        if class_id in forbidden_classes:
            problems.append(f"{forbidden_classes[class_id]} {obis} visible")
        rights = fields[3].value
        for attr in rights[0].value:
            if int(attr.value[1].value) & 2:
                problems.append(f"{obis} attribute {attr.value[0].value} writable")
        for method in rights[1].value:
            if int(method.value[1].value) and not (class_id == 15 and int(method.value[0].value) == 1):
                problems.append(f"{obis} method {method.value[0].value} callable")
    ev = [Evidence("public object list", "\n".join(seen), "value"), _trace(c)]
    if problems:
        return fail("; ".join(problems[:8]), *ev)
    return passed(f"{len(seen)} objects, read-only, nothing security-relevant", *ev)


# -- firmware --------------------------------------------------------------------------------


async def _await_image_status(c: DlmsClient, busy: int, done: int, failed: int,
                              timeout: float) -> ActionResult:
    """Meters that check an image in the background answer temporary-failure and show
    the outcome later in image_transfer_status: poll it until it leaves ``busy``."""
    deadline = time.monotonic() + timeout
    while True:
        status = int((await c.get(18, IMAGE_TRANSFER, 6)).value)
        if status == done:
            c.trace.note(f"image_transfer_status {status}: done")
            return ActionResult.SUCCESS
        if status == failed or status != busy:
            c.trace.note(f"image_transfer_status {status}: not done")
            return ActionResult.OTHER_REASON
        if time.monotonic() >= deadline:
            c.trace.note(f"image_transfer_status still {status} after {timeout:g} s")
            return ActionResult.TEMPORARY_FAILURE
        await asyncio.sleep(min(0.25, timeout / 20))


async def _transfer_image(c: DlmsClient, image: bytes, ident: bytes, *, activate: bool = True,
                          timeout: float = 60.0) -> tuple[ActionResult, ActionResult | None]:
    block = int((await c.get(18, IMAGE_TRANSFER, 2)).value)
    res, _ = await c.action(18, IMAGE_TRANSFER, 1, DlmsData.structure(
        [DlmsData.octet_string(ident), DlmsData.double_long_unsigned(len(image))]))
    if res is not ActionResult.SUCCESS:
        raise DlmsError(f"image_transfer_initiate refused: {res.name}")
    for n in range((len(image) + block - 1) // block):
        res, _ = await c.action(18, IMAGE_TRANSFER, 2, DlmsData.structure(
            [DlmsData.double_long_unsigned(n), DlmsData.octet_string(image[n * block:(n + 1) * block])]))
        if res is not ActionResult.SUCCESS:
            raise DlmsError(f"image_block_transfer {n} refused: {res.name}")
    verify, _ = await c.action(18, IMAGE_TRANSFER, 3, DlmsData.integer(0))
    if verify is ActionResult.TEMPORARY_FAILURE:
        verify = await _await_image_status(c, ImageTransfer.VERIFY_INITIATED,
                                           ImageTransfer.VERIFIED, ImageTransfer.VERIFY_FAILED,
                                           timeout)
    if not activate:
        return verify, None
    activated, _ = await c.action(18, IMAGE_TRANSFER, 4, DlmsData.integer(0))
    if activated is ActionResult.TEMPORARY_FAILURE:
        activated = await _await_image_status(c, ImageTransfer.ACTIVATION_INITIATED,
                                              ImageTransfer.ACTIVATED,
                                              ImageTransfer.ACTIVATION_FAILED, timeout)
    return verify, activated


def _tampered_copies(image: bytes) -> dict[str, bytes]:
    """Copies of a genuine image that no signature over the whole image can cover:
    one byte changed in the middle, and the last bytes (where most formats keep the
    signature) cut off."""
    mid = len(image) // 2
    cut = max(1, min(256, len(image) // 4))
    return {f"vendor image with byte {mid} changed":
            image[:mid] + bytes([image[mid] ^ 0xFF]) + image[mid + 1:],
            f"vendor image without its last {cut} bytes": image[:-cut]}


@check("DLMS-FW-01", "Images with a bad or missing signature fail verification and never activate",
       severity=Severity.CRITICAL,
       requirements=["DLMS:FW-SIGNED", "EN303645:5.3-10", "IEC62443-4-2:EDR3.10", "CRA:I.2c"],
       tags=["firmware"], target=TargetKind.DLMS)
async def firmware_signature_enforced(target: DlmsTarget) -> CheckOutcome:
    """Bad images, each through initiate, block transfer, verify and activate; the active
    firmware identifier must not change. A positive control first: a genuine image must
    verify (it is not activated), or a refusal could be a refusal of the format rather
    than of the signature. With a vendor image (campaign ``firmware:``) the bad images
    are tampered copies of it; otherwise metercert's own envelope is signed with the key
    file's ``firmware_signing_key`` and the bad images are an unsigned one and one signed
    by an unknown key. Background verification (temporary-failure) is polled."""
    from cryptography.hazmat.primitives.asymmetric import ec

    vendor = target.read_firmware_image()
    timeout = target.firmware_verify_timeout
    if vendor is not None:
        good, good_id = vendor
        images = {label: (img, b"MCT-tampered") for label, img in _tampered_copies(good).items()}
    elif target.firmware_signing_key is not None:
        curve = ec.SECP384R1() if target.suite == 2 else ec.SECP256R1()
        payload = os.urandom(700)
        good = build_signed_image("MCT-control", payload, target.firmware_signing_key)
        good_id = b"control"
        images = {
            "unsigned": (build_signed_image("MCT-evil-unsigned", payload, None), b"unsigned"),
            "signed by an unknown key": (build_signed_image(
                "MCT-evil-foreign", payload, ec.generate_private_key(curve)), b"foreign-signed")}
    else:
        return inconclusive("no genuine image to compare with: give a vendor-signed image "
                            "(campaign 'firmware: image:') or metercert's signing key (key file "
                            "'firmware_signing_key'); a refused image cannot be told from a "
                            "refused format without one")

    async def body(c: DlmsClient) -> CheckOutcome:
        before = (await c.get(1, FIRMWARE_ID, 2)).value
        control, _ = await _transfer_image(c, good, good_id, activate=False, timeout=timeout)
        if control is not ActionResult.SUCCESS:
            return inconclusive(f"even the genuine image failed verify ({control.name}): "
                                "the meter does not take this image format", _trace(c))
        problems = []
        for label, (image, ident) in images.items():
            verify, activate = await _transfer_image(c, image, ident, timeout=timeout)
            c.trace.note(f"{label}: verify {verify.name}, activate "
                         f"{activate.name if activate else '-'}")
            if verify is ActionResult.SUCCESS:
                problems.append(f"{label}: verified")
            if activate is ActionResult.SUCCESS:
                problems.append(f"{label}: activated")
        after = (await c.get(1, FIRMWARE_ID, 2)).value
        if after != before:
            problems.append(f"active firmware changed from {before!r} to {after!r}")
        ev = _trace(c)
        if problems:
            return fail("; ".join(problems), ev)
        refused = " and ".join(images)
        return passed(f"genuine image verified; {refused} refused at verify; firmware still "
                      f"{before!r}", ev)

    return await _with_management(target, body)


@check("DLMS-FW-02", "A correctly signed image verifies and activates",
       severity=Severity.MEDIUM, requirements=["DLMS:FW-SIGNED", "EN303645:5.3-10"],
       tags=["firmware"], destructive=True, target=TargetKind.DLMS)
async def firmware_signed_accepted(target: DlmsTarget) -> CheckOutcome:
    """Positive control for DLMS-FW-01 (destructive: activates new firmware)."""
    if target.firmware_signing_key is None:
        return not_applicable("no firmware signing key in the key file or campaign")
    ident = f"MCT-{os.urandom(3).hex()}"
    image = build_signed_image(ident, os.urandom(900), target.firmware_signing_key)

    async def body(c: DlmsClient) -> CheckOutcome:
        verify, activate = await _transfer_image(c, image, ident.encode(),
                                                 timeout=target.firmware_verify_timeout)
        now = (await c.get(1, FIRMWARE_ID, 2)).value
        ev = _trace(c)
        if verify is ActionResult.SUCCESS and activate is ActionResult.SUCCESS and now == ident:
            return passed(f"signed image {ident} verified and activated", ev)
        shown = activate.name if activate else "-"
        return fail(f"signed image: verify {verify.name}, activate {shown}, active {now!r}", ev)

    return await _with_management(target, body)


# -- roles (IEC 62351-8) -------------------------------------------------------------------------


def _outcome(result: object) -> str:
    if isinstance(result, (ActionResult, DataAccessResult)):
        if result in DENIED or result in DENIED_DATA:
            return "denied"
        return "allowed"
    return "allowed"


async def _probe_role(target: DlmsTarget, role: str) -> dict[str, str]:
    c = target.client(role)
    out: dict[str, str] = {}
    try:
        async with c:
            out["read-energy"] = _outcome(await c.get_result(3, ENERGY, 2))
            clock = await c.get_result(8, CLOCK, 2)
            if isinstance(clock, DlmsData):
                out["set-clock"] = _outcome(await c.set(8, CLOCK, 2, clock))
            else:
                out["set-clock"] = "denied"
            out["reconnect"] = _outcome((await c.action(70, DISCONNECT, 2, DlmsData.integer(0)))[0])
            try:
                setup = await _security_setup(c)
                out["key-transfer"] = _outcome(
                    (await c.action(64, setup, 2, DlmsData.array([])))[0])
            except DlmsError:
                out["key-transfer"] = "denied"
            out["firmware-activate"] = _outcome(
                (await c.action(18, IMAGE_TRANSFER, 4, DlmsData.integer(0)))[0])
            out["read-security-log"] = _outcome(await c.get_result(7, SECURITY_LOG, 7))
    except AssociationRejected as exc:
        out["association"] = f"rejected: {exc}"
    target.traces.append(c.trace)
    return out


async def _role_matrix(target: DlmsTarget) -> dict[str, dict[str, str]] | None:
    cache = getattr(target, "_role_matrix", None)
    if cache is None:
        if not target.roles():
            return None
        cache = {role: await _probe_role(target, role) for role in target.roles()}
        target._role_matrix = cache  # type: ignore[attr-defined]
    return cache


def _matrix_evidence(matrix: dict[str, dict[str, str]]) -> Evidence:
    ops = ["read-energy", "set-clock", "reconnect", "key-transfer", "firmware-activate",
           "read-security-log"]
    lines = [f"{'role':<10} " + " ".join(f"{o:>18}" for o in ops)]
    for role, result in matrix.items():
        lines.append(f"{role:<10} " + " ".join(f"{result.get(o, '-'):>18}" for o in ops))
    return Evidence("role x operation matrix", "\n".join(lines), "value")


async def _role_check(target: DlmsTarget, rule: Callable[[str, dict[str, str]], list[str]],
                      what: str) -> CheckOutcome:
    matrix = await _role_matrix(target)
    if matrix is None:
        return not_applicable("no roles in the key file or campaign (IEC 62351-8 mapping)")
    problems = [p for role, result in matrix.items() for p in rule(role, result)]
    ev = _matrix_evidence(matrix)
    if problems:
        return fail("; ".join(problems), ev)
    return passed(what, ev)


@check("DLMS-RBAC-ENFORCE-01", "Each role can do what its rights give",
       severity=Severity.HIGH, requirements=["IEC62351-8:RBAC-ENFORCE", "DLMS:ACCESS-RIGHTS"],
       tags=["rbac"], target=TargetKind.DLMS)
async def roles_positive(target: DlmsTarget) -> CheckOutcome:
    expected = {"READER": ["read-energy"], "OPERATOR": ["reconnect"], "ENGINEER": ["set-clock"],
                "INSTALLER": ["set-clock"], "SECADM": ["key-transfer", "firmware-activate"],
                "SECAUD": ["read-security-log"]}

    def rule(role: str, result: dict[str, str]) -> list[str]:
        if "association" in result:
            return [f"{role}: {result['association']}"]
        return [f"{role} cannot {op}" for op in expected.get(role, []) if result.get(op) != "allowed"]

    return await _role_check(target, rule, "every role can use its rights")


@check("DLMS-RBAC-CONTROL-01", "Only the OPERATOR issues controls",
       severity=Severity.HIGH, requirements=["IEC62351-8:OPERATOR-CONTROL", "DLMS:ACCESS-RIGHTS"],
       tags=["rbac"], target=TargetKind.DLMS)
async def only_operator_controls(target: DlmsTarget) -> CheckOutcome:
    def rule(role: str, result: dict[str, str]) -> list[str]:
        if role != "OPERATOR" and result.get("reconnect") == "allowed":
            return [f"{role} can issue remote_reconnect"]
        return []

    return await _role_check(target, rule, "remote connect/disconnect reserved to OPERATOR")


@check("DLMS-RBAC-SECADM-01", "Only the security administrator changes security settings",
       severity=Severity.CRITICAL,
       requirements=["IEC62351-8:SECADM-SECURITY", "DLMS:ACCESS-RIGHTS", "CRA:I.2d"],
       tags=["rbac"], target=TargetKind.DLMS)
async def only_secadm_security(target: DlmsTarget) -> CheckOutcome:
    """key_transfer and firmware activation are refused to every other role (an operator
    cannot transfer keys or activate firmware)."""

    def rule(role: str, result: dict[str, str]) -> list[str]:
        if role == "SECADM":
            return []
        return [f"{role} can {op}" for op in ("key-transfer", "firmware-activate")
                if result.get(op) == "allowed"]

    return await _role_check(target, rule, "key transfer and firmware activation: SECADM only")


@check("DLMS-RBAC-READONLY-01", "VIEWER and SECAUD never write",
       severity=Severity.HIGH, requirements=["IEC62351-8:READ-ONLY-ROLES", "DLMS:ACCESS-RIGHTS"],
       tags=["rbac"], target=TargetKind.DLMS)
async def read_only_roles(target: DlmsTarget) -> CheckOutcome:
    def rule(role: str, result: dict[str, str]) -> list[str]:
        if role not in ("VIEWER", "SECAUD"):
            return []
        return [f"{role} can {op}" for op in ("set-clock", "reconnect", "key-transfer",
                                              "firmware-activate") if result.get(op) == "allowed"]

    return await _role_check(target, rule, "VIEWER and SECAUD are read-only")


@check("DLMS-RBAC-SECAUD-01", "The security auditor reads the security log",
       severity=Severity.MEDIUM, requirements=["IEC62351-8:SECAUD-LOG", "CRA:I.2l"],
       tags=["rbac", "logging"], target=TargetKind.DLMS)
async def auditor_reads_log(target: DlmsTarget) -> CheckOutcome:
    def rule(role: str, result: dict[str, str]) -> list[str]:
        if role == "SECAUD" and result.get("read-security-log") != "allowed":
            return ["SECAUD cannot read the security event log"]
        return []

    return await _role_check(target, rule, "SECAUD reads the security event log")


# -- robustness ------------------------------------------------------------------------------


@check("DLMS-ROBUST-01", "A burst of malformed frames does not stop the meter",
       severity=Severity.HIGH, requirements=["DLMS:ROBUSTNESS", "EN303645:5.13-1", "CRA:I.2h"],
       tags=["robustness"], timeout=60.0, target=TargetKind.DLMS)
async def malformed_burst(target: DlmsTarget) -> CheckOutcome:
    """Raw garbage, an oversized wrapper length, truncated and nonsense APDUs on several
    connections; afterwards the public and the management associations still work."""
    try:  # both must work before the burst, or the burst cannot be blamed
        async with target.public() as p0:
            await p0.get(8, CLOCK, 2)
        m0 = await target.management()
        await m0.release()
        await m0.close()
    except (DlmsError, ConnectionFailed) as exc:
        return inconclusive(f"the associations did not work before the burst: {exc}")
    sent = 0
    for payload in (os.urandom(64), b"\x00\x01\x00\x10\x00\x01\xff\xff" + os.urandom(32),
                    b"\x7e\xa0\x07\x03\x21\x93\x0f\x01\x7e" * 3, b"\x00" * 40):
        try:
            if target.transport == "udp":  # each payload is one datagram
                loop = asyncio.get_running_loop()
                udp, _ = await loop.create_datagram_endpoint(
                    asyncio.DatagramProtocol, remote_addr=(target.host, target.port))
                udp.sendto(payload)
                udp.close()
            else:
                _reader, writer = await asyncio.open_connection(target.host, target.port,
                                                                ssl=target.ssl)
                writer.write(payload)
                await writer.drain()
                writer.close()
            sent += 1
        except OSError:
            pass
    c = target.public()
    for apdu in (b"\x60", b"\x60\x80", b"\xc0\x01", b"\xc8\x05\x30\x00", b"\xdb\x08" + b"A" * 8,
                 b"\x62\xff\x00", os.urandom(300), b"\xd8", b"\x01\x00\x00"):
        try:
            await c.exchange(apdu, note="malformed", timeout=2.0)
        except (NoResponse, ConnectionFailed):
            await c.close()
        sent += 1
    await c.close()
    try:
        async with target.public() as p:
            await p.get(8, CLOCK, 2)
        m = await target.management()
        await m.get(8, CLOCK, 2)
        await m.release()
        await m.close()
    except (DlmsError, ConnectionFailed) as exc:
        return fail(f"meter stopped answering after {sent} malformed frames: {exc}", _trace(c))
    return passed(f"{sent} malformed frames; public and management associations still work",
                  _trace(c))


# -- destructive: power cycle and keys ---------------------------------------------------------


def _meter_counters(client: DlmsClient, since: int = 0) -> list[int]:
    out = []
    for entry in client.trace.entries[since:]:
        if entry.direction != "<-" or not entry.wire:
            continue
        wire = entry.wire
        if wire[0] == 0x61:
            from metercert.cosem import AARE

            try:
                wire = AARE.from_bytes(wire).user_information or b""
            except CosemDecodeError:
                continue  # an answer that does not decode shows no counter
        if is_ciphered(wire):
            with contextlib.suppress(SecurityError):
                out.append(parse_ciphered(wire).invocation_counter)
    return out


@check("DLMS-IC-PERSIST-01", "Invocation counters survive a power cycle (FAQ procedure)",
       severity=Severity.CRITICAL,
       requirements=["DLMS:IC-PERSIST", "DLMS:IC-UNIQUE", "DLMS:IC-REPLAY"],
       tags=["invocation-counter", "power-cycle", "replay"], destructive=True, timeout=90.0, target=TargetKind.DLMS)
async def counter_survives_power_cycle(target: DlmsTarget) -> CheckOutcome:
    """Capture requests, power-cycle the meter mid-session, replay a captured request after
    the restart (must be refused), and check that the meter's own counters continue above
    every counter it used before."""
    if target.power is None:
        return not_applicable("no power controller configured (campaign 'power:')")
    c = await target.management()
    captured = []
    for _ in range(3):
        wire = c.protect_request(_clock_request())
        answer = await c.exchange(wire, note="captured before the power cycle")
        if not _served(c, answer):
            await c.close()
            return inconclusive("requests before the power cycle were not served", _trace(c))
        captured.append(wire)
    before = _meter_counters(c)
    c.trace.note(f"power cycle via {target.power.description} (association still open)")
    await target.power.power_cycle()
    await c.close()
    d = target.client()
    problems = []
    try:
        await d.open()
        await d.get(8, CLOCK, 2)
        after = _meter_counters(d)
        if before and after and min(after) <= max(before):
            problems.append(f"meter counters after restart start at {min(after)}, at or below "
                            f"{max(before)} used before: counter reuse (AES-GCM IV repeated)")
        replayed = await _try(d, captured[0], "request captured before the power cycle, replayed")
        if replayed is not None and _served(d, replayed):
            problems.append("a request captured before the power cycle was served after it")
        await d.release()
    except AssociationRejected as exc:
        problems.append(f"cannot associate after the power cycle: {exc}")
        after = []
    finally:
        await d.close()
    ev = [_trace(c, label="before the power cycle"), _trace(d, label="after the power cycle"),
          Evidence("meter counters", f"before: {before}\nafter: {after}", "value")]
    if problems:
        return fail("; ".join(problems), *ev)
    return passed(f"counters continued ({max(before)} -> {min(after)}) and the replay was refused",
                  *ev)


async def _key_transfer(c: DlmsClient, setup: ObisCode, wrapped: bytes, key_id: int = 0) -> ActionResult:
    params = DlmsData.array([DlmsData.structure([DlmsData.enum(key_id),
                                                 DlmsData.octet_string(wrapped)])])
    result, _ = await c.action(64, setup, 2, params)
    return result


@check("DLMS-KEK-01", "The KEK never appears in any APDU of the campaign",
       severity=Severity.CRITICAL, requirements=["DLMS:KEK-CONFIDENTIAL", "CRA:I.2e"],
       tags=["keys"], destructive=True, target=TargetKind.DLMS)
async def kek_never_transmitted(target: DlmsTarget) -> CheckOutcome:
    """Re-installs the current GUEK through key_transfer (so the key path is on the wire),
    then searches every APDU sent and received in the campaign, wire and plaintext."""
    kek, guek = target.keys.kek, target.keys.guek
    if kek is None or guek is None:
        return not_applicable("the key file has no KEK (master key)")
    c = await target.management()
    setup = await _security_setup(c)
    await _key_transfer(c, setup, wrap_key(kek, guek))
    await c.release()
    await c.close()
    count, hits = 0, []
    for trace in target.traces:
        for entry in trace.entries:
            for blob in (entry.wire, entry.plain or b""):
                count += 1
                if kek.secret in blob:
                    hits.append(f"{entry.direction} {tag_name(blob[0]) if blob else '?'}")
    if hits:
        return fail(f"KEK found in {len(hits)} APDUs: {', '.join(hits[:5])}")
    return passed(f"KEK absent from {count} APDU images (wire and plaintext) in "
                  f"{len(target.traces)} sessions", _trace(c, label="key_transfer of the current GUEK"))


@check("DLMS-KEYWRAP-01", "key_transfer installs a correctly wrapped key and refuses a corrupted wrap",
       severity=Severity.CRITICAL, requirements=["DLMS:KEY-WRAP", "CRA:I.2e"],
       tags=["keys"], destructive=True, timeout=60.0, target=TargetKind.DLMS)
async def key_wrap(target: DlmsTarget) -> CheckOutcome:
    """New GUEK wrapped under the KEK (RFC 3394): it takes effect; then a wrap with one bit
    flipped: refused, and the key in use still works. The original key is restored."""
    kek, original = target.keys.kek, target.keys.guek
    if kek is None or original is None:
        return not_applicable("the key file has no KEK (master key)")
    new = Key(os.urandom(len(original)), "guek")
    evidence: list[Evidence] = []
    problems: list[str] = []
    c = await target.management()
    setup = await _security_setup(c)
    result = await _key_transfer(c, setup, wrap_key(kek, new))
    await c.release()
    await c.close()
    evidence.append(_trace(c, label="key_transfer with a correct wrap"))
    if result is not ActionResult.SUCCESS:
        return fail(f"a correctly wrapped key was refused ({result.name})", *evidence)
    target.replace_key("guek", new)
    try:
        d = await target.management()
    except AssociationRejected as exc:
        target.replace_key("guek", original)
        return fail(f"the transferred key did not take effect: {exc}", *evidence)
    bad = bytearray(wrap_key(kek, Key(os.urandom(len(original)))))
    bad[5] ^= 0x10
    result = await _key_transfer(d, setup, bytes(bad))
    await d.release()
    await d.close()
    evidence.append(_trace(d, label="key_transfer with a corrupted wrap"))
    if result is ActionResult.SUCCESS:
        problems.append("a corrupted wrap was accepted")
    try:
        e = await target.management()
        await _key_transfer(e, setup, wrap_key(kek, original))  # leave the meter as found
        await e.release()
        await e.close()
        target.replace_key("guek", original)
    except AssociationRejected as exc:
        problems.append(f"the key in use stopped working after the corrupted wrap: {exc}")
    if problems:
        return fail("; ".join(problems), *evidence)
    return passed("correct wrap installed the key; corrupted wrap refused, old key kept; "
                  "original key restored", *evidence)


