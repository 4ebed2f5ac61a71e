"""DLMS checks. Authentication: no-auth/LLS, legacy HLS, HLS pass 3, default passwords, throttling."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time

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
    CURRENT_ASSOCIATION,
    WELL_KNOWN_LLS_PASSWORDS,
    _attempt,
    _clock_served,
    _trace,
    _try,
    _wait_for_management,
)
from metercert.client.errors import (
    AssociationRejected,
    DlmsError,
    ResponseNotTrusted,
)
from metercert.client.target import DlmsTarget
from metercert.cosem import (
    AARE,
    AARQ,
    AcseServiceUserDiagnostic,
    ActionResult,
    AssociationResult,
    AuthenticationMechanism,
    CosemDecodeError,
    DlmsData,
)
from metercert.errors import ConnectionFailed
from metercert.security import (
    Key,
    KeySet,
    Mechanism,
)

# -- authentication ------------------------------------------------------------------------


@check("DLMS-AUTH-LLS-01", "No authentication and LLS are refused on the management association",
       severity=Severity.CRITICAL, requirements=["DLMS:HLS-AUTH", "CRA:I.2d", "IEC62443-4-2:CR1.2"],
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
       severity=Severity.HIGH, requirements=["DLMS:HLS-AUTH", "EN303645:5.1-3"],
       tags=["authentication"], target=TargetKind.DLMS)
async def legacy_mechanisms_refused(target: DlmsTarget) -> CheckOutcome:
    """An AARQ naming mechanism 3 (MD5) or 4 (SHA-1). Refused in the AARE: pass. When the
    meter answers "accepted, authentication required", what counts is whether it serves
    anything: a GET before pass 3, and pass 3 itself with the MD5/SHA-1 reply computed over
    the key file's ``hls_secret`` when it has one. A FAIL needs something served."""
    served, pending, refused_later, ev = [], [], [], []
    role = "ENGINEER" if "ENGINEER" in target.roles() else None
    for mech, digest in ((Mechanism.HLS_MD5, hashlib.md5), (Mechanism.HLS_SHA1, hashlib.sha1)):
        c = target.client(role)
        label = f"mechanism {int(mech)} ({mech.name})"
        try:
            await c.sync_counter()
            await c.connect()
            aarq, _ = c.build_aarq()
            legacy = dataclasses.replace(AARQ.from_bytes(aarq),
                                         mechanism_name=AuthenticationMechanism(int(mech)).oid)
            answer = await _try(c, legacy.to_bytes(), f"AARQ naming {label}")
            if not answer or answer[0] != 0x61:
                continue
            aare = AARE.from_bytes(answer)
            if aare.result is not AssociationResult.ACCEPTED:
                continue
            if aare.result_source_diagnostic is not AcseServiceUserDiagnostic.AUTHENTICATION_REQUIRED:
                if await _clock_served(c, f"GET on the {label} association"):
                    served.append(f"{label}: associated without pass 3 and served a GET")
                else:
                    pending.append(f"{label}: AARE accepted, nothing served")
                continue
            if await _clock_served(c, f"GET before pass 3 of {label}"):
                served.append(f"{label}: a GET was served before pass 3")
                continue
            secret = c.settings.hls_secret
            stoc = aare.responding_authentication_value or b""
            if secret is None:
                pending.append(f"{label}: AARE 'authentication required', nothing served; no "
                               "hls_secret in the key file to try a correct pass 3")
                continue
            reply = digest(stoc + secret).digest()
            result, _data = await c.action(15, CURRENT_ASSOCIATION, 1,
                                           DlmsData.octet_string(reply), _during_hls=True)
            if result is ActionResult.SUCCESS and await _clock_served(c, f"GET after {label} "
                                                                         "pass 3"):
                served.append(f"{label}: pass 3 with the {digest().name} reply completed the "
                              "association and a GET was served")
            else:
                refused_later.append(f"{label}: AARE 'authentication required', nothing served "
                                     f"before pass 3, and pass 3 with the {digest().name} reply "
                                     f"over the association's secret answered {result.name}")
        except (DlmsError, ConnectionFailed, CosemDecodeError) as exc:
            # an error of ours or an answer we cannot read shows no refusal: no PASS on it
            c.trace.note(f"{label}: {exc}")
            pending.append(f"{label}: no verdict ({exc})")
        finally:
            ev.append(_trace(c, label=label))
            await c.close()
    await _wait_for_management(target, (role,))
    if served:
        return fail("legacy mechanism usable: " + "; ".join(served), *ev)
    if pending:
        return inconclusive("the legacy mechanisms were not shown refused: "
                            + "; ".join(pending), *ev)
    if refused_later:
        return passed("legacy mechanisms gave no access: " + "; ".join(refused_later), *ev)
    return passed("mechanisms 3 and 4 refused in the AARE", *ev)


def _flip_last_byte(reply: bytes) -> bytes:
    return reply[:-1] + bytes((reply[-1] ^ 0x01,)) if reply else b"\x00"


@check("DLMS-HLS-01", "HLS pass 3 is verified, and nothing is served before it",
       severity=Severity.CRITICAL, requirements=["DLMS:HLS-AUTH", "CRA:I.2d", "IEC62443-4-2:CR1.2"],
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
        await c.sync_counter()
        await c.connect()
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
        await c.sync_counter()
        await c.connect()
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
    """LLS with factory passwords on the management client SAP, every role SAP and every
    client SAP the meter's Association LN objects name (associated_partners_id), whether
    the key file knows them or not. The public client (SAP 16) is left out: it needs no
    password, so accepting one there shows nothing."""
    saps = {target.settings().client_sap} | {
        s for s in (target.role_sap(r) for r in target.roles()) if s is not None and s != 16}
    if target.inventory is not None:
        saps |= {s for s in target.inventory.association_saps() if s != 16}
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
                                             "IEC62443-4-2:CR1.11", "EN18031-1:AUM-6"],
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


