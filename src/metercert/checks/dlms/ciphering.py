"""DLMS checks. Suites, downgrade, ciphering forms, security policy and tampering."""

from __future__ import annotations

from metercert.checks.base import (
    CheckOutcome,
    Evidence,
    Severity,
    TargetKind,
    check,
    fail,
    not_applicable,
    passed,
)
from metercert.checks.dlms._common import (
    _clock_request,
    _security_setup,
    _served,
    _trace,
    _try,
    _with_management,
)
from metercert.client.errors import (
    AssociationRejected,
    DlmsError,
)
from metercert.client.session import DlmsClient
from metercert.client.target import DlmsTarget
from metercert.cosem import (
    DataAccessResult,
)
from metercert.errors import ConnectionFailed
from metercert.security import (
    CipheringForm,
    is_ciphered,
    parse_ciphered,
)

# -- suites -------------------------------------------------------------------------------


@check("DLMS-SUITE-01", "Association succeeds with the meter's security suite",
       severity=Severity.HIGH, requirements=["DLMS:SUITE-NEGOTIATION", "EN303645:5.5-1"],
       tags=["suite", "association"], target=TargetKind.DLMS)
async def suite_negotiation(target: DlmsTarget) -> CheckOutcome:
    """The management association is set up in the suite the meter claims (Security Setup
    attribute 3) and every response is protected in that suite."""

    async def body(c: DlmsClient) -> CheckOutcome:
        setup = await _security_setup(c, target)
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
            wire = c.protect_request(_clock_request(c), suite=lower)
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
                await c.get(8, c.clock_obis, 2, form=form)
                answer = c.trace.wires(mark)[-1]
                got = parse_ciphered(answer).form
                if got is not form:
                    problems.append(f"{form.value} request answered in {got.value}")
            except DlmsError as exc:
                problems.append(f"{form.value}: {exc}")
            except ConnectionFailed as exc:   # no answer, or an answer that is not DLMS
                problems.append(f"{form.value}: {exc}")
                await c.close()
                c = target.client(dedicated_key=True)
                await c.open()
        await c.release()
    finally:
        await c.close()
    if problems:
        return fail("; ".join(problems), _trace(c))
    return passed("global, dedicated, general-glo and general-ded all answered in kind", _trace(c))


async def _clock_writer(target: DlmsTarget) -> str | None:
    """The association that may write the clock: the management one, else a role with the
    right (ENGINEER, INSTALLER), else None."""
    candidates: list[str | None] = [None] + [r for r in ("ENGINEER", "INSTALLER")
                                             if r in target.roles()]
    for role in candidates:
        c = target.client(role)
        try:
            await c.open()
            value = await c.get(8, c.clock_obis, 2)
            result = await c.set(8, c.clock_obis, 2, value)
            if result is DataAccessResult.SUCCESS:
                return "management" if role is None else role
        except (AssociationRejected, DlmsError, ConnectionFailed):
            pass
        finally:
            await c.release()
            await c.close()
    return None


@check("DLMS-FORMS-02", "SET in every ciphering form is answered in kind and verifies",
       severity=Severity.MEDIUM, requirements=["DLMS:APDU-INTEGRITY"],
       tags=["ciphering"], target=TargetKind.DLMS)
async def set_ciphering_forms(target: DlmsTarget) -> CheckOutcome:
    """SET of the clock (to the value just read) in global, dedicated, general-glo and
    general-ded ciphering, by an association allowed to write it: each is executed and
    answered in the same form with a response that verifies."""
    writer = await _clock_writer(target)
    if writer is None:
        return not_applicable("no association in the key file may write the clock")
    role = None if writer == "management" else writer
    problems: list[str] = []
    c = target.client(role, dedicated_key=True)
    try:
        await c.open()
        for form in CipheringForm:
            try:
                value = await c.get(8, c.clock_obis, 2, form=form)
                mark = c.trace.mark()
                result = await c.set(8, c.clock_obis, 2, value, form=form)
                got = parse_ciphered(c.trace.wires(mark)[-1]).form
                if result is not DataAccessResult.SUCCESS:
                    problems.append(f"{form.value} SET answered {result.name.lower()}")
                if got is not form:
                    problems.append(f"{form.value} SET answered in {got.value}")
            except DlmsError as exc:
                problems.append(f"{form.value} SET: {exc}")
    finally:
        await c.release()
        await c.close()
    if problems:
        return fail("; ".join(problems), _trace(c))
    return passed(f"SET in all four ciphering forms executed and answered in kind ({writer})",
                  _trace(c))


@check("DLMS-RELEASE-01", "A protected release is accepted on a ciphered association",
       severity=Severity.LOW, requirements=["DLMS:APDU-INTEGRITY"],
       tags=["ciphering", "association"], target=TargetKind.DLMS)
async def protected_release(target: DlmsTarget) -> CheckOutcome:
    """RLRQ carrying a ciphered xDLMS InitiateRequest (the protected release): the meter
    must answer RLRE normal (and a protected RLRE, when it sends one, must verify); the
    association is then gone: a GET on it is not served."""
    c = target.client()
    try:
        await c.open()
        released = await c.release(protected=True)
        after = await _try(c, c.protect_request(_clock_request(c)), "GET after the release")
        still = after is not None and _served(c, after)
    finally:
        await c.close()
    ev = _trace(c)
    if not released:
        return fail("the meter refused a protected release", ev)
    if still:
        return fail("the association still served a GET after the meter confirmed the release",
                    ev)
    return passed("protected release answered RLRE normal; nothing served after it", ev)


# -- protection and replay -----------------------------------------------------------------


@check("DLMS-POLICY-01", "Unprotected and under-protected requests are refused",
       severity=Severity.CRITICAL, requirements=["DLMS:POLICY-ENFORCED", "CRA:I.2e", "CRA:I.2f"],
       tags=["policy"], target=TargetKind.DLMS)
async def policy_enforced(target: DlmsTarget) -> CheckOutcome:
    """On a protected association: a plaintext GET, an encrypted-only GET and (when the policy
    demands encryption) an authenticated-only GET must not be served. The policy is read by
    the Security Setup's version: an enumeration in version 0 (3 = authenticated and
    encrypted), bit flags in version 1 (0x04 authenticated, 0x08 encrypted requests)."""
    from metercert.client.discovery import MeterInventory

    async def body(c: DlmsClient) -> CheckOutcome:
        setup = await _security_setup(c, target)
        policy = int((await c.get(64, setup, 2)).value)
        inv = target.inventory or MeterInventory()
        version = inv.security_setup_version
        if version is None:
            version = 1
            c.trace.note("Security Setup version unknown (no object list): read as version 1")
        flags = MeterInventory(security_policy=policy, security_setup_version=version)
        _wants_auth, wants_encryption = flags.policy_flags() or (True, True)
        c.trace.note(f"Security Setup {setup} version {version}: policy {policy} means "
                     f"authenticated={_wants_auth}, encrypted={wants_encryption}")
        served: list[str] = []
        probes = [("plaintext get-request", _clock_request(c)),
                  ("encrypted-only glo-get", c.protect_request(_clock_request(c), authenticated=False))]
        if wants_encryption:
            probes.append(("authenticated-only glo-get",
                           c.protect_request(_clock_request(c), encrypted=False)))
        for label, wire in probes:
            answer = await _try(c, wire, label)
            if answer is None:
                c = await target.management()  # meter closed: reconnect for the next probe
            elif _served(c, answer):
                served.append(label)
        ev = _trace(c)
        if served:
            return fail("served: " + ", ".join(served), ev)
        return passed(f"refused: {', '.join(p[0] for p in probes)} (policy {policy} of a "
                      f"version-{version} Security Setup)", ev)

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
            wire = bytearray(c.protect_request(_clock_request(c)))
            wire[index] ^= 0x01
            answer = await _try(c, bytes(wire), f"{label} bit flipped")
            if answer is None:
                c = await target.management()
            elif _served(c, answer):
                problems.append(f"{label} tamper served")
        forged = bytearray(c.protect_request(_clock_request(c), invocation_counter=0xFFFFFFF0))
        forged[-1] ^= 0x80
        await _try(c, bytes(forged), "forged APDU with counter 0xFFFFFFF0")
        try:
            await c.get(8, c.clock_obis, 2)
        except (DlmsError, ConnectionFailed) as exc:
            problems.append(f"genuine request refused after a forged high counter: {exc}")
        ev = _trace(c)
        if problems:
            return fail("; ".join(problems), ev)
        return passed("tag and ciphertext tampering refused; the window moved only on valid APDUs",
                      ev)

    return await _with_management(target, body)


