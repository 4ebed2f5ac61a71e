"""DLMS checks. Keys: the KEK never on the wire, key transfer with RFC 3394 wrap."""

from __future__ import annotations

import os

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
    _security_setup,
    _trace,
)
from metercert.client.errors import (
    AssociationRejected,
    DlmsError,
    ResponseNotTrusted,
)
from metercert.client.session import DlmsClient
from metercert.client.target import DlmsTarget
from metercert.cosem import (
    ActionResult,
    DlmsData,
    ObisCode,
)
from metercert.errors import ConnectionFailed
from metercert.security import (
    Key,
    tag_name,
    wrap_key,
)


async def _key_transfer(c: DlmsClient, setup: ObisCode, wrapped: bytes, key_id: int = 0,
                        *more: tuple[int, bytes]) -> ActionResult:
    """key_transfer (Security Setup method 2) of one wrapped key, or several in one call."""
    params = DlmsData.array([DlmsData.structure([DlmsData.enum(i), DlmsData.octet_string(w)])
                             for i, w in ((key_id, wrapped), *more)])
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


@check("DLMS-KEYS-02", "key_transfer takes two keys in one call and refuses an unknown key id",
       severity=Severity.HIGH, requirements=["DLMS:KEY-WRAP", "CRA:I.2e"],
       tags=["keys"], destructive=True, timeout=60.0, target=TargetKind.DLMS)
async def key_transfer_cases(target: DlmsTarget) -> CheckOutcome:
    """The conformance cases beside DLMS-KEYWRAP-01: a new authentication key (key id 2)
    and a new broadcast key GBEK (key id 1; the GUEK, key id 0, when the key file names no
    GBEK), wrapped under the KEK in one key_transfer call, take effect together (the next
    association with the new AK works; the GUEK, if changed, too); a wrap under key id 7,
    which does not exist, is refused. The original keys are put back in one call."""
    kek, guek, ak, gbek = target.keys.kek, target.keys.guek, target.keys.ak, target.keys.gbek
    if kek is None or guek is None or ak is None:
        return not_applicable("the key file has no KEK, GUEK and AK")
    second_id, second_name, second = (1, "gbek", gbek) if gbek is not None else (0, "guek", guek)
    new_ak = Key(os.urandom(len(ak)), "ak")
    new_second = Key(os.urandom(len(second)), second_name)
    evidence: list[Evidence] = []
    problems: list[str] = []

    c = await target.management()
    setup = await _security_setup(c, target)
    unknown = await _key_transfer(c, setup, wrap_key(kek, Key(os.urandom(len(guek)))), 7)
    c.trace.note(f"key id 7: {unknown.name}")
    if unknown is ActionResult.SUCCESS:
        problems.append("a key_transfer for key id 7 (no such key) was accepted")
    both = await _key_transfer(c, setup, wrap_key(kek, new_ak), 2,
                               (second_id, wrap_key(kek, new_second)))
    await c.release()
    await c.close()
    evidence.append(_trace(c, label=f"unknown key id, then AK and {second_name.upper()} in one "
                                    "call"))
    if both is not ActionResult.SUCCESS:
        problems.append(f"AK and {second_name.upper()} in one call refused ({both.name})")
        return fail("; ".join(problems), *evidence)
    target.replace_key("ak", new_ak)
    target.replace_key(second_name, new_second)
    try:
        d = await target.management()
        await d.get(8, d.clock_obis, 2)
        restored = await _key_transfer(d, setup, wrap_key(kek, ak), 2,
                                       (second_id, wrap_key(kek, second)))
        await d.release()
        await d.close()
        evidence.append(_trace(d, label="association with the new AK, originals restored"))
        if restored is ActionResult.SUCCESS:
            target.replace_key("ak", ak)
            target.replace_key(second_name, second)
        else:
            problems.append(f"restoring the original keys was refused ({restored.name}); the "
                            "meter keeps the keys this check installed")
    except (AssociationRejected, DlmsError) as exc:
        target.replace_key("ak", ak)
        target.replace_key(second_name, second)
        problems.append(f"the association with the new keys failed: {exc}")
    if problems:
        return fail("; ".join(problems), *evidence)
    return passed(f"unknown key id refused; AK and {second_name.upper()} changed together in "
                  "one call; originals restored", *evidence)


async def _restore_policy(target: DlmsTarget, policy: int) -> str:
    """Put a lowered policy back (security_activate raises it), else power-cycle the meter
    (a policy raised in RAM returns to the configured one)."""
    c = target.client()
    try:
        await c.open()
        setup = await _security_setup(c, target)
        result, _ = await c.action(64, setup, 1, DlmsData.enum(policy))
        now = int((await c.get(64, setup, 2)).value)
        if result is ActionResult.SUCCESS and now == policy:
            return f"security_activate({policy}) put the policy back"
    except (DlmsError, ConnectionFailed) as exc:
        c.trace.note(f"restoring the policy: {exc}")
    finally:
        await c.release()
        await c.close()
    if target.power is not None:
        await target.power.power_cycle()
        return "the policy could not be raised back over DLMS: the meter was power-cycled"
    return "the policy could not be put back: the meter keeps the lowered policy"


@check("DLMS-ACTIVATE-01", "security_activate can raise the security policy, never lower it",
       severity=Severity.CRITICAL, requirements=["DLMS:POLICY-ENFORCED", "CRA:I.2e"],
       tags=["policy"], destructive=True, timeout=60.0, target=TargetKind.DLMS)
async def policy_never_lowered(target: DlmsTarget) -> CheckOutcome:
    """security_activate (Security Setup method 1) with the policy in force must succeed (a
    positive control); with each lower policy (nothing, authenticated only) it must be
    refused, and attribute 2 must still read the policy in force afterwards. A meter that
    lowers it is put back with security_activate. Values follow the Security Setup
    version (version 0: an enumeration, 1: bit flags)."""
    inv = target.inventory
    version = inv.security_setup_version if inv is not None and inv.security_setup_version \
        is not None else 1
    c = await target.management()
    problems: list[str] = []
    try:
        setup = await _security_setup(c, target)
        current = int((await c.get(64, setup, 2)).value)
        # version 1: 0x24 is authenticated requests and responses, without encryption
        lower = [0, 1] if version == 0 else [0x00, 0x24]
        lower = [v for v in lower if v != current and (version != 0 or v < current)]
        same, _ = await c.action(64, setup, 1, DlmsData.enum(current))
        if same is not ActionResult.SUCCESS:
            c.trace.note(f"security_activate with the policy in force answered {same.name}")
        for value in lower:
            result, _ = await c.action(64, setup, 1, DlmsData.enum(value))
            now = int((await c.get(64, setup, 2)).value)
            if result is ActionResult.SUCCESS or now != current:
                problems.append(f"security_activate({value}) answered {result.name}; policy now "
                                f"{now} (was {current})")
                await c.action(64, setup, 1, DlmsData.enum(current))  # put it back
    except ResponseNotTrusted as exc:
        problems.append(f"after a lowering request the meter answered unprotected: {exc}")
    finally:
        await c.release()
        await c.close()
    ev = _trace(c)
    if problems:
        note = await _restore_policy(target, current)
        return fail("; ".join(problems), ev, Evidence("policy restored", note))
    if same is not ActionResult.SUCCESS:
        return inconclusive(f"security_activate with the policy in force ({current}) was "
                            f"refused too ({same.name}): the refusals cannot be told from a "
                            "meter that refuses every activation", ev)
    return passed(f"policy {current} re-activated; lower policies {lower} refused and the "
                  "policy unchanged", ev)


# last: a meter that installs a corrupted wrap has lost the key every later check needs
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
