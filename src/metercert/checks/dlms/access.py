"""DLMS checks. Access rights: the association secret, the public object list, IEC 62351-8 roles."""

from __future__ import annotations

from collections.abc import Callable

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
    CLOCK,
    CURRENT_ASSOCIATION,
    DENIED,
    DENIED_DATA,
    DISCONNECT,
    ENERGY,
    IMAGE_TRANSFER,
    SECURITY_LOG,
    _security_setup,
    _trace,
    _with_management,
)
from metercert.client.errors import (
    AssociationRejected,
    DlmsError,
)
from metercert.client.session import DlmsClient
from metercert.client.target import DlmsTarget
from metercert.cosem import (
    ActionResult,
    DataAccessResult,
    DlmsData,
    ObisCode,
)


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


