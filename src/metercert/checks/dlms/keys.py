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
    not_applicable,
    passed,
)
from metercert.checks.dlms._common import (
    _security_setup,
    _trace,
)
from metercert.client.errors import (
    AssociationRejected,
)
from metercert.client.session import DlmsClient
from metercert.client.target import DlmsTarget
from metercert.cosem import (
    ActionResult,
    DlmsData,
    ObisCode,
)
from metercert.security import (
    Key,
    tag_name,
    wrap_key,
)


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


