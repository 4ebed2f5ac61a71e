"""DLMS checks. Access rights: the association secret, the public object list, IEC 62351-8 roles."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

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
    DENIED,
    DENIED_DATA,
    DISCONNECT,
    ENERGY,
    IMAGE_TRANSFER,
    SECURITY_LOG,
    _probe,
    _security_setup,
    _trace,
    _with_management,
)
from metercert.client.errors import (
    AssociationRejected,
    DataAccessFailed,
    DlmsError,
    ExceptionResponseReceived,
)
from metercert.client.session import DlmsClient
from metercert.client.target import DlmsTarget
from metercert.cosem import (
    ActionResult,
    DataAccessResult,
    DlmsData,
    ObisCode,
)
from metercert.errors import ConnectionFailed


@check("DLMS-SECRET-01", "No association's secret (attribute 7) can be read",
       severity=Severity.CRITICAL, requirements=["DLMS:SECRET-PROTECT", "EN303645:5.4-1"],
       tags=["secrets"], target=TargetKind.DLMS)
async def secret_not_readable(target: DlmsTarget) -> CheckOutcome:
    """Attribute 7 (secret) of the current association and of every Association LN instance
    discovery found, read by the public client and by the management association. A secret
    read back with content fails; an empty value (an association without a secret) or a
    refusal passes that object."""
    associations = [CURRENT_ASSOCIATION]
    if target.inventory is not None:
        associations += sorted(target.inventory.associations, key=str)
    readable: list[str] = []
    refused: list[str] = []
    notes: list[str] = []
    traces = []

    async def read_all(c: DlmsClient, who: str) -> None:
        for obis in associations:
            try:
                result = await c.get_result(15, obis, 7)
            except ExceptionResponseReceived as exc:
                refused.append(f"{who} {obis}: exception-response ({exc})")
                continue
            except DlmsError as exc:
                notes.append(f"{who} {obis}: {exc}")
                continue
            if isinstance(result, DataAccessResult):
                refused.append(f"{who} {obis}: {result.name.lower()}")
                continue
            value = result.value
            size = len(value) if isinstance(value, (bytes, str)) else len(result.to_bytes())
            if isinstance(value, (bytes, str)) and size == 0:
                refused.append(f"{who} {obis}: empty (no secret)")
            else:
                readable.append(f"{who} read {obis} attribute 7 ({result.type.name.lower()}, "
                                f"{size} bytes)")

    public = target.public()
    try:
        await public.open()
        await read_all(public, "public client")
    except (AssociationRejected, DlmsError, ConnectionFailed) as exc:
        notes.append(f"public client: {exc}")
    finally:
        await public.release()
        await public.close()

    async def body(c: DlmsClient) -> CheckOutcome:
        await read_all(c, "management")
        traces.append(Evidence("objects read", "\n".join(refused + notes), "value"))
        if readable:
            return fail("secret readable: " + "; ".join(readable),
                        Evidence("APDU trace", "(responses withheld: they carry the secret)"),
                        *traces)
        if not refused:
            return inconclusive("no secret read got an answer: " + "; ".join(notes), *traces)
        return passed(f"attribute 7 refused or empty on {len(associations)} association "
                      f"object(s) for the public and the management client", *traces)

    return await _with_management(target, body)


@check("DLMS-PUBLIC-01", "The public client sees only a minimal object list",
       severity=Severity.MEDIUM, requirements=["DLMS:ACCESS-RIGHTS", "CRA:I.2j"],
       tags=["access-rights", "public-client"], target=TargetKind.DLMS)
async def public_minimal(target: DlmsTarget) -> CheckOutcome:
    """No Security Setup, image transfer, disconnect control or profile (log) objects, no
    write access and no method but reply_to_HLS for the public client."""
    c = target.public()
    try:
        async with c:
            listing = await c.get(15, CURRENT_ASSOCIATION, 2)
    except ConnectionFailed as exc:
        return inconclusive("the meter closed the connection (or stopped answering) when the "
                            f"public client asked for its object list: {exc}", _trace(c))
    except DataAccessFailed as exc:
        return inconclusive(f"the public client may not read its object list ({exc}): what it "
                            "can reach cannot be listed", _trace(c))
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


# -- roles (IEC 62351-8) -------------------------------------------------------------------------


#: what one probe of the role matrix showed
ALLOWED, DENIED_, ATTEMPTED, ABSENT, NO_ANSWER = "allowed", "denied", "attempted", "absent", "error"
_OPS = ("read-energy", "set-clock", "reconnect", "key-transfer", "firmware-activate",
        "read-security-log")


def _outcome(result: object) -> str:
    """allowed: executed; denied: refused for access (read-write-denied, scope of access
    violated, object-undefined on a listed object); attempted: the access check let it through
    but the operation failed (e.g. type-unmatched for our deliberately empty key_transfer)."""
    if isinstance(result, (ActionResult, DataAccessResult)):
        if result in (ActionResult.SUCCESS, DataAccessResult.SUCCESS):
            return ALLOWED
        if result in DENIED or result in DENIED_DATA:
            return DENIED_
        return f"{ATTEMPTED} ({result.name.lower().replace('_', '-')})"
    return ALLOWED


async def _one_probe(c: DlmsClient, op: str, obis: ObisCode | None,
                     call: Callable[[ObisCode], Awaitable[object]]) -> str:
    if obis is None:
        return ABSENT
    try:
        return _outcome(await call(obis))
    except ExceptionResponseReceived as exc:  # a refusal, not an error in the campaign
        c.trace.note(f"{op}: exception-response ({exc}): refused")
        return DENIED_
    except DlmsError as exc:
        text = str(exc)
        if "ConfirmedServiceError" in text or "confirmed-service-error" in text:
            return DENIED_
        c.trace.note(f"{op}: {exc}")
        return NO_ANSWER


async def _probe_role(target: DlmsTarget, role: str) -> dict[str, str]:
    energy = await _probe(target, "register", ENERGY)
    disconnect = await _probe(target, "disconnect", DISCONNECT)
    image = await _probe(target, "image_transfer", IMAGE_TRANSFER)
    log = await _probe(target, "security_log", SECURITY_LOG)
    c = target.client(role)
    out: dict[str, str] = {}
    try:
        async with c:
            clock_obis = c.clock_obis
            out["read-energy"] = await _one_probe(
                c, "read-energy", energy,
                lambda o: c.get_result(3 if target.inventory is None
                                       else target.inventory.class_of(o, 3), o, 2))
            clock = await c.get_result(8, clock_obis, 2)
            if isinstance(clock, DlmsData):
                out["set-clock"] = await _one_probe(c, "set-clock", clock_obis,
                                                    lambda o: c.set(8, o, 2, clock))
            else:
                out["set-clock"] = NO_ANSWER
                c.trace.note(f"set-clock: the clock could not be read ({clock.name.lower()}) "
                             "to write it back unchanged")

            async def act(o: ObisCode, class_id: int, method: int, value: DlmsData) -> object:
                return (await c.action(class_id, o, method, value))[0]

            out["reconnect"] = await _one_probe(c, "reconnect", disconnect,
                                                lambda o: act(o, 70, 2, DlmsData.integer(0)))
            try:
                setup: ObisCode | None = await _security_setup(c, target)
            except DlmsError:
                setup = None
            out["key-transfer"] = await _one_probe(c, "key-transfer", setup,
                                                   lambda o: act(o, 64, 2, DlmsData.array([])))
            out["firmware-activate"] = await _one_probe(
                c, "firmware-activate", image, lambda o: act(o, 18, 4, DlmsData.integer(0)))
            out["read-security-log"] = await _one_probe(c, "read-security-log", log,
                                                        lambda o: c.get_result(7, o, 7))
    except AssociationRejected as exc:
        out["association"] = f"rejected: {exc}"
    except (DlmsError, ConnectionFailed) as exc:
        out["association"] = f"failed: {exc}"
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
    ops = _OPS
    lines = [f"{'role':<10} " + " ".join(f"{o:>28}" for o in ops)]
    for role, result in matrix.items():
        lines.append(f"{role:<10} " + " ".join(f"{result.get(o, '-'):>28}" for o in ops))
    return Evidence("role x operation matrix", "\n".join(lines), "value")


Judge = Callable[[str, str, str], str | None]
#: a judge's answer that is no flaw but a failed positive control: the check proves nothing
_CONTROL_FAILED = "control: "


def _with_control(holder: str, judge: Judge) -> Judge:
    """The role that holds the right must be able to use it, or the other roles' refusals
    could be a meter (or a key file) that refuses everyone."""
    def judged(role: str, op: str, outcome: str) -> str | None:
        if role != holder:
            return judge(role, op, outcome)
        if outcome == ALLOWED or outcome.startswith(ATTEMPTED):
            return None
        return (f"{_CONTROL_FAILED}{holder} (who holds the right) could not {op} either "
                f"({outcome}): the refusals of the other roles prove nothing")

    return judged


async def _role_check(target: DlmsTarget, scope: Callable[[str], tuple[str, ...]], judge: Judge,
                      what: str) -> CheckOutcome:
    """Judge the role matrix: ``scope(role)`` names the operations this check looks at for a
    role, ``judge(role, op, outcome)`` returns a problem or None. A flaw seen is a FAIL; a
    role that could not associate, or a probe that got no usable answer, leaves the check
    INCONCLUSIVE (it proves nothing); an absent probe object is left out."""
    matrix = await _role_matrix(target)
    if matrix is None:
        return not_applicable("no roles in the key file or campaign (IEC 62351-8 mapping)")
    problems: list[str] = []
    unresolved: list[str] = []
    absent: list[str] = []
    judged = 0
    for role, result in matrix.items():
        ops = scope(role)
        if not ops:
            continue
        if "association" in result:
            unresolved.append(f"{role} {result['association']}")
            continue
        for op in ops:
            outcome = result.get(op, NO_ANSWER)
            if outcome == ABSENT:
                absent.append(f"{role}/{op}")
            elif outcome == NO_ANSWER:
                unresolved.append(f"{role}/{op}: no usable answer")
            else:
                judged += 1
                problem = judge(role, op, outcome)
                if problem and problem.startswith(_CONTROL_FAILED):
                    unresolved.append(problem[len(_CONTROL_FAILED):])
                elif problem:
                    problems.append(problem)
    ev = [_matrix_evidence(matrix)]
    if absent:
        ev.append(Evidence("not probed (the meter has no such object)", ", ".join(absent)))
    if problems:
        return fail("; ".join(problems), *ev)
    if unresolved:
        return inconclusive("roles or operations that could not be tested: "
                            + "; ".join(unresolved), *ev)
    if not judged:
        return not_applicable("the meter has none of the objects this check probes", *ev)
    return passed(what, *ev)


_EXPECTED = {"READER": ("read-energy",), "OPERATOR": ("reconnect",), "ENGINEER": ("set-clock",),
             "INSTALLER": ("set-clock",), "SECADM": ("key-transfer", "firmware-activate"),
             "SECAUD": ("read-security-log",)}
#: probes whose parameters are deliberately not executable (an empty key list, nothing to
#: activate): reaching the method past the access check is what shows the right
_REACH_ONLY = ("key-transfer", "firmware-activate")


@check("DLMS-RBAC-ENFORCE-01", "Each role can do what its rights give",
       severity=Severity.HIGH, requirements=["IEC62351-8:RBAC-ENFORCE", "DLMS:ACCESS-RIGHTS"],
       tags=["rbac"], target=TargetKind.DLMS)
async def roles_positive(target: DlmsTarget) -> CheckOutcome:
    def judge(role: str, op: str, outcome: str) -> str | None:
        if outcome == ALLOWED or (op in _REACH_ONLY and outcome.startswith(ATTEMPTED)):
            return None
        return f"{role} cannot {op} ({outcome})"

    return await _role_check(target, lambda r: _EXPECTED.get(r, ()), judge,
                             "every role can use its rights")


def _must_not() -> Judge:
    def judge(role: str, op: str, outcome: str) -> str | None:
        if outcome == ALLOWED:
            return f"{role} can {op}"
        if outcome.startswith(ATTEMPTED):
            # DLMS checks access before it executes: any answer but read-write-denied /
            # scope-of-access-violated / object-undefined means the request got past it
            return (f"{role} got past the access check for {op}: answered "
                    f"{outcome[len(ATTEMPTED):].strip(' ()')} instead of read-write-denied")
        return None

    return judge


@check("DLMS-RBAC-CONTROL-01", "Only the OPERATOR issues controls",
       severity=Severity.HIGH, requirements=["IEC62351-8:OPERATOR-CONTROL", "DLMS:ACCESS-RIGHTS"],
       tags=["rbac"], target=TargetKind.DLMS)
async def only_operator_controls(target: DlmsTarget) -> CheckOutcome:
    return await _role_check(target, lambda r: ("reconnect",),
                             _with_control("OPERATOR", _must_not()),
                             "remote connect/disconnect reserved to OPERATOR")


@check("DLMS-RBAC-SECADM-01", "Only the security administrator changes security settings",
       severity=Severity.CRITICAL,
       requirements=["IEC62351-8:SECADM-SECURITY", "DLMS:ACCESS-RIGHTS", "CRA:I.2d"],
       tags=["rbac"], target=TargetKind.DLMS)
async def only_secadm_security(target: DlmsTarget) -> CheckOutcome:
    """key_transfer and firmware activation are refused to every other role (an operator
    cannot transfer keys or activate firmware)."""
    return await _role_check(
        target, lambda r: ("key-transfer", "firmware-activate"),
        _with_control("SECADM", _must_not()),
        "key transfer and firmware activation: SECADM only")


@check("DLMS-RBAC-READONLY-01", "VIEWER and SECAUD never write",
       severity=Severity.HIGH, requirements=["IEC62351-8:READ-ONLY-ROLES", "DLMS:ACCESS-RIGHTS"],
       tags=["rbac"], target=TargetKind.DLMS)
async def read_only_roles(target: DlmsTarget) -> CheckOutcome:
    writes = ("set-clock", "reconnect", "key-transfer", "firmware-activate")
    return await _role_check(target, lambda r: writes if r in ("VIEWER", "SECAUD") else (),
                             _must_not(), "VIEWER and SECAUD are read-only")


@check("DLMS-RBAC-SECAUD-01", "The security auditor reads the security log",
       severity=Severity.MEDIUM, requirements=["IEC62351-8:SECAUD-LOG", "CRA:I.2l"],
       tags=["rbac", "logging"], target=TargetKind.DLMS)
async def auditor_reads_log(target: DlmsTarget) -> CheckOutcome:
    def judge(role: str, op: str, outcome: str) -> str | None:
        return None if outcome == ALLOWED else f"SECAUD cannot read the security event log ({outcome})"

    return await _role_check(target, lambda r: ("read-security-log",) if r == "SECAUD" else (),
                             judge, "SECAUD reads the security event log")
