"""DLMS checks. Invocation counters: replay, stale counters and persistence across a power cycle."""

from __future__ import annotations

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
    CLOCK,
    _clock_request,
    _describe,
    _meter_counters,
    _served,
    _trace,
    _try,
    _with_management,
)
from metercert.client.errors import (
    AssociationRejected,
)
from metercert.client.session import DlmsClient
from metercert.client.target import DlmsTarget


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



# -- destructive: power cycle ------------------------------------------------------------


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


