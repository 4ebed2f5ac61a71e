"""DLMS checks. Invocation counters: replay, stale counters and persistence across a power cycle."""

from __future__ import annotations

import itertools

from metercert.checks.base import (
    CheckOutcome,
    Evidence,
    Severity,
    TargetKind,
    Verdict,
    check,
    fail,
    inconclusive,
    not_applicable,
    passed,
)
from metercert.checks.dlms._common import (
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
    DlmsError,
)
from metercert.client.session import DlmsClient
from metercert.client.target import DlmsTarget
from metercert.errors import ConnectionFailed


@check("DLMS-REPLAY-01", "A replayed APDU is rejected",
       severity=Severity.CRITICAL, requirements=["DLMS:IC-REPLAY", "CRA:I.2f"],
       tags=["replay", "invocation-counter"], target=TargetKind.DLMS)
async def replay_rejected(target: DlmsTarget) -> CheckOutcome:
    """The same protected GET, byte for byte, sent twice: the second must not be served."""

    async def body(c: DlmsClient) -> CheckOutcome:
        wire = c.protect_request(_clock_request(c))
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
        ahead = c.protect_request(_clock_request(c), invocation_counter=base + 10)
        c.skip_counter_to(base + 11)
        answer = await _try(c, ahead, f"counter {base + 10} (jump ahead)")
        if answer is None or not _served(c, answer):
            return inconclusive("the jump-ahead request was not served", _trace(c))
        stale = c.protect_request(_clock_request(c), invocation_counter=base + 5)
        answer = await _try(c, stale, f"counter {base + 5} (stale, never used)")
        ev = _trace(c)
        if answer is not None and _served(c, answer):
            return fail(f"stale counter {base + 5} accepted after {base + 10}", ev)
        return passed(f"stale counter {base + 5} refused after {base + 10}", ev)

    return await _with_management(target, body)



# -- destructive: power cycle ------------------------------------------------------------


@check("DLMS-IC-OWN-01", "The meter's own invocation counter strictly increases",
       severity=Severity.CRITICAL, requirements=["DLMS:IC-UNIQUE"],
       tags=["invocation-counter"], target=TargetKind.DLMS)
async def meter_counter_increases(target: DlmsTarget) -> CheckOutcome:
    """Every counter the meter used under a global key in this campaign so far (all
    associations, all roles; dedicated keys excepted), grouped by key: within an
    association each is above the one before, and none appears twice. Two associations
    that share a key and count separately repeat counters: AES-GCM nonce reuse. (Across a
    power cycle: DLMS-IC-PERSIST-01.)"""
    c = await target.management()
    for _ in range(3):
        await c.get(8, c.clock_obis, 2)
    await c.release()
    await c.close()
    spaces: dict[str, dict[int, int]] = {}
    problems: list[str] = []
    total = 0
    for index, trace in enumerate(target.traces):
        if not trace.counter_space:
            continue
        seen = spaces.setdefault(trace.counter_space, {})
        counters = _meter_counters(trace, global_only=True, with_release=True)
        total += len(counters)
        for previous, current in itertools.pairwise(counters):
            if current <= previous:
                problems.append(f"session {index}: counter {current} after {previous}")
                break
        for value in counters:
            if value in seen and seen[value] != index:
                problems.append(f"counter {value} used in sessions {seen[value]} and {index} "
                                "under the same key")
                break
            seen[value] = index
    ev = [Evidence("meter counters seen", f"{total} counters in {len(spaces)} key space(s) over "
                   f"{len(target.traces)} sessions", "value"), _trace(c)]
    if problems:
        return fail("the meter repeated or lowered its own invocation counter: "
                    + "; ".join(problems[:5]), *ev)
    if total < 2:
        return inconclusive("fewer than two ciphered answers from the meter to compare", *ev)
    return passed(f"{total} meter counters, strictly increasing per session and never "
                  "repeated under one key", *ev)


#: counters left unused below the captured requests, for the association after the restart
_GAP = 16


@check("DLMS-IC-PERSIST-01", "Invocation counters survive a power cycle (FAQ procedure)",
       severity=Severity.CRITICAL,
       requirements=["DLMS:IC-PERSIST", "DLMS:IC-UNIQUE", "DLMS:IC-REPLAY"],
       tags=["invocation-counter", "power-cycle", "replay"], destructive=True, timeout=90.0,
       target=TargetKind.DLMS)
async def counter_survives_power_cycle(target: DlmsTarget) -> CheckOutcome:
    """Capture three requests, power-cycle the meter mid-session, then judge both directions.

    Received counters: the captured requests use counters ``_GAP`` above the association's,
    leaving a gap of never-used counters below them. After the restart the client
    associates with counters from that gap (no counter read first), so that the captured
    requests are still above everything it sent since: a meter that kept its replay window
    across the power cut refuses that association (its counters are below ones it saw
    before the cut); a meter that lost it accepts, and then serves the replayed request.
    Associating with higher counters first, as a normal client would, would hide a lost
    window behind a meter that only accepts rising counters.

    Sent counters: every counter the meter uses after the restart (AARE, responses) must be
    above every one it used before: a repeat is AES-GCM nonce reuse under the same key."""
    if target.power is None:
        return not_applicable("no power controller configured (campaign 'power:')")
    c = await target.management()
    base = (c.last_sent_counter or 0) + 1
    captured = []
    for i in range(3):
        wire = c.protect_request(_clock_request(c), invocation_counter=base + _GAP + i)
        answer = await c.exchange(wire, note="captured before the power cycle")
        if not _served(c, answer):
            await c.close()
            return inconclusive("requests before the power cycle were not served", _trace(c))
        captured.append(wire)
    c.skip_counter_to(base + _GAP + 3)
    before = _meter_counters(c.trace)
    c.trace.note(f"power cycle via {target.power.description} (association still open); "
                 f"counters {base}..{base + _GAP - 1} left unused")
    await target.power.power_cycle()
    await c.close()
    problems: list[str] = []
    findings: list[str] = []
    after: list[int] = []
    # 1. associate with counters from the gap, replay the captured requests
    d = target.client(counter_dir=None)
    d._counter.value = base  # in memory: counters from the gap, never sent before
    window_kept: bool | None = None
    try:
        await d.connect()
        d.trace.note(f"association with counters from {base}, below the captured requests")
        await d.associate()
        window_kept = False
        for wire in captured:
            replayed = await _try(d, wire, "request captured before the power cycle, replayed")
            if replayed is not None and _served(d, replayed):
                problems.append("a request captured before the power cycle was served after it: "
                                "the meter lost its replay window at the power cut")
                break
        else:
            findings.append("the meter accepted counters below ones it saw before the cut, "
                            "but refused the replays")
        await _try(d, d.protect_request(_clock_request(d)), "fresh request (meter's counter)")
        after += _meter_counters(d.trace)
        await d.release()
    except AssociationRejected as exc:
        window_kept = True
        findings.append(f"association with never-used counters below the captured ones was "
                        f"refused after the restart ({exc}): the replay window survived")
    except (DlmsError, ConnectionFailed) as exc:
        d.trace.note(f"association from the gap: {exc}")
    finally:
        await d.close()
    # 2. a normal association: the meter works, and its own counters continued
    e = target.client()
    try:
        await e.open()
        await e.get(8, e.clock_obis, 2)
        if window_kept:
            for wire in captured:
                replayed = await _try(e, wire, "captured request, replayed")
                if replayed is not None and _served(e, replayed):
                    problems.append("a captured request was served after the power cycle")
                    break
        after += _meter_counters(e.trace)
        await e.release()
    except AssociationRejected as exc:
        problems.append(f"cannot associate after the power cycle: {exc}")
    finally:
        await e.close()
    replay_problem = bool(problems)
    counter_problem = bool(before and after and min(after) <= max(before))
    if counter_problem:
        repeated = sorted(set(after) & set(before))
        problems.append(f"the meter's own counters after the restart start at {min(after)}, at "
                        f"or below {max(before)} used before"
                        + (f" (repeated: {repeated[:5]})" if repeated else "")
                        + ": AES-GCM nonce reuse under the same key")
    ev = [_trace(c, label="before the power cycle"),
          _trace(d, label="after: association from the gap"),
          _trace(e, label="after: normal association"),
          Evidence("meter counters", f"before: {before}\nafter: {after}", "value"),
          Evidence("captured requests",
                   f"counters {base + _GAP}..{base + _GAP + 2}; gap {base}..{base + _GAP - 1}",
                   "value")]
    if problems:
        outcome = fail("; ".join(problems), *ev)
        # each cited requirement as this check showed it: the meter's own counters
        # (IC-UNIQUE) and the replay window (IC-REPLAY) are separate properties
        judged: dict[str, Verdict] = {}
        if not counter_problem and before and after:
            judged["DLMS:IC-UNIQUE"] = Verdict.PASS
        if not replay_problem and window_kept:
            judged["DLMS:IC-REPLAY"] = Verdict.PASS
        return outcome.with_requirement_verdicts(judged) if judged else outcome
    if window_kept is None or not before or not after:
        return inconclusive("the power cycle could not be judged: "
                            + ("no association after it" if window_kept is None
                               else "no meter counters seen on both sides"), *ev)
    return passed(f"meter counters continued ({max(before)} -> {min(after)}); "
                  + "; ".join(findings), *ev)
