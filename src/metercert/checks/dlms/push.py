"""DLMS checks. Pushes (DataNotification): ciphered as the policy requires, counters that
never repeat (a power cycle included), and a replay a receiver can detect.

Each check starts a push listener (:mod:`metercert.push`) on a free local port, points the
meter's Push Setup (class 40) destination at it with the management association (SET of
attribute 3, put back afterwards), triggers pushes with method 1 and judges what arrives
with the key file's keys. A meter without a Push Setup object is not applicable; a meter
whose pushes do not arrive (it cannot reach this host, or pushes only on its own schedule)
is inconclusive, never a pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import socket
import time
from dataclasses import dataclass, field, replace

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
from metercert.checks.dlms._common import _probe, _security_setup, _trace
from metercert.client.errors import DlmsError
from metercert.client.session import DlmsClient
from metercert.client.target import DlmsTarget
from metercert.cosem import ActionResult, DataAccessResult, DataType, DlmsData, ObisCode
from metercert.errors import ConnectionFailed
from metercert.fleet.ingest import KeyRing
from metercert.push.listener import PushListener
from metercert.push.verify import PushRecord
from metercert.security import SecurityError, parse_ciphered

PUSH_SETUP = ObisCode(0, 0, 25, 9, 0, 255)
_CLASS = 40
_ARRIVAL_S = 5.0  # how long one triggered push may take to arrive
_COUNTER_VERDICTS = ("replay", "counter-reuse", "regression")


def _listen_host(target: DlmsTarget) -> str:
    """The local address the meter can reach: loopback for a meter on this host or on a
    serial line, else the address this host uses towards the meter."""
    try:
        if ipaddress.ip_address(target.host).is_loopback:
            return "127.0.0.1"
    except ValueError:
        if target.host == "localhost" or "/" in target.host:
            return "127.0.0.1"
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((target.host, target.port or 4059))  # no packet: only picks the route
        return str(s.getsockname()[0])
    return "127.0.0.1"


@dataclass
class _Rig:
    """One listener and the meter's Push Setup pointed at it (restored by :meth:`restore`)."""

    target: DlmsTarget
    obis: ObisCode
    listener: PushListener | None = None
    host: str = "127.0.0.1"
    port: int = 0
    original: DlmsData | None = None
    notes: list[str] = field(default_factory=list)

    async def start(self, c: DlmsClient) -> None:
        title = c.server_title or self.target.keys.server_system_title
        keys = self.target.keys if title is None else replace(self.target.keys,
                                                              server_system_title=title)
        self.listener = PushListener(KeyRing([keys]))
        self.host = _listen_host(self.target)
        self.host, self.port = await self.listener.start_tcp(self.host, 0)

    async def point(self, c: DlmsClient) -> str | None:
        """Read attribute 3, set it to the listener; a reason when the meter refuses."""
        try:
            if self.original is None:
                self.original = await c.get(_CLASS, self.obis, 3)
            destination = DlmsData.structure([
                DlmsData.enum(0), DlmsData.octet_string(f"{self.host}:{self.port}".encode()),
                DlmsData.enum(0)])
            result = await c.set(_CLASS, self.obis, 3, destination)
        except (DlmsError, ConnectionFailed) as exc:
            return f"the Push Setup destination could not be read or set: {exc}"
        if result is not DataAccessResult.SUCCESS:
            return f"SET of the Push Setup destination answered {result.name.lower()}"
        c.trace.note(f"push destination set to tcp {self.host}:{self.port}")
        return None

    async def trigger(self, c: DlmsClient, count: int) -> tuple[list[PushRecord], str | None]:
        """Method 1 ``count`` times, each push awaited; the records that arrived."""
        assert self.listener is not None
        got: list[PushRecord] = []
        for _ in range(count):
            seen = len(self.listener.records)
            try:
                result, _ = await c.action(_CLASS, self.obis, 1, DlmsData.integer(0))
            except (DlmsError, ConnectionFailed) as exc:
                return got, f"method 1 (push) failed: {exc}"
            if result is not ActionResult.SUCCESS:
                return got, f"method 1 (push) answered {result.name.lower()}"
            deadline = time.monotonic() + _ARRIVAL_S
            while len(self.listener.records) == seen and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            if len(self.listener.records) == seen:
                return got, (f"no push arrived at {self.host}:{self.port} within "
                             f"{_ARRIVAL_S:.0f} s of method 1")
            got += self.listener.records[seen:]
        return got, None

    async def restore(self, c: DlmsClient | None) -> None:
        if c is not None and self.original is not None and c.associated:
            with contextlib.suppress(DlmsError, ConnectionFailed):
                await c.set(_CLASS, self.obis, 3, self.original)
        if self.listener is not None:
            await self.listener.close()
            self.listener = None

    def evidence(self) -> Evidence:
        records = self.listener.records if self.listener is not None else []
        text = "\n".join(r.line() + (f"; date-time {r.date_time.hex().upper()}"
                                     if r.date_time else "; no date-time") for r in records)
        return Evidence("pushes received", text or "(none)", "value",
                        f"push listener tcp://{self.host}:{self.port}")


async def _push_setup(target: DlmsTarget) -> ObisCode | None:
    return await _probe(target, "push_setup", PUSH_SETUP)


async def _release(c: DlmsClient) -> None:
    with contextlib.suppress(DlmsError, ConnectionFailed):
        if c.associated and c.stream is not None and not c.stream.closed:
            await c.release()
    await c.close()


async def _required_protection(c: DlmsClient, target: DlmsTarget) -> tuple[bool, bool, str]:
    """(authenticated, encrypted) the security policy asks of the meter's APDUs, and where
    that was read; the management association's own protection when the policy is unread."""
    with contextlib.suppress(DlmsError, ConnectionFailed):
        setup = await _security_setup(c, target)
        value = await c.get(64, setup, 2)
        if value.type not in (DataType.ENUM, DataType.UNSIGNED) or not isinstance(
                value.value, int):
            raise DlmsError(f"security_policy of type {value.type.name}")
        bits = int(value.value)
        # version 0 is the enumeration 0..3; version 1 leaves bits 0 and 1 reserved, so a
        # value above 3 is version 1's flags: bit 5 authenticated, bit 6 encrypted response
        if bits <= 3:
            auth, enc = {0: (False, False), 1: (True, False), 2: (False, True),
                         3: (True, True)}[bits]
        else:
            auth, enc = bool(bits & 0x20), bool(bits & 0x40)
        return auth, enc, f"security_policy of {setup} = {value.value}"
    s = c.settings
    return s.ciphered, s.ciphered, "the management association's own protection"


def _protection(record: PushRecord) -> tuple[bool, bool]:
    """(authenticated, encrypted) as the push's security control byte says."""
    if not record.ciphered:
        return False, False
    try:
        sc = parse_ciphered(record.raw).security_control
    except SecurityError:
        return record.authenticated, False
    return sc.authenticated, sc.encrypted


_UNJUDGED = ("tag-failure", "unknown-meter", "malformed")


@check("DLMS-PUSH-01", "Pushes are ciphered (authenticated and encrypted) as the policy requires",
       severity=Severity.HIGH, requirements=["DLMS:POLICY-ENFORCED"],
       tags=["push", "ciphering"], target=TargetKind.DLMS)
async def pushes_ciphered(target: DlmsTarget) -> CheckOutcome:
    """Trigger two pushes and read the security policy: every push must carry the
    protection the policy asks of the meter's APDUs, and its tag must verify."""
    obis = await _push_setup(target)
    if obis is None:
        return not_applicable("the meter lists no Push Setup object (class 40)")
    c = await target.management()
    rig = _Rig(target, obis)
    try:
        await rig.start(c)
        auth, enc, source = await _required_protection(c, target)
        problem = await rig.point(c)
        records, problem = ([], problem) if problem else await rig.trigger(c, 2)
    finally:
        await rig.restore(c)
        await _release(c)
    ev = [rig.evidence(), Evidence("required protection", f"authenticated={auth}, "
                                   f"encrypted={enc} ({source})", "value"), _trace(c)]
    flawed = []
    for r in records:
        has_auth, has_enc = _protection(r)
        if (auth and not has_auth) or (enc and not has_enc):
            flawed.append(f"IC {r.invocation_counter if r.ciphered else '-'}: "
                          f"{'authenticated' if has_auth else 'not authenticated'}, "
                          f"{'encrypted' if has_enc else 'not encrypted'}")
    if flawed:
        return fail("pushes are less protected than the policy requires: "
                    + "; ".join(flawed[:3]), *ev)
    if problem:
        return inconclusive(problem, *ev)
    odd = [r for r in records if r.verdict in _UNJUDGED]
    if odd:
        return inconclusive(f"a push could not be verified with the key file: {odd[0].verdict} "
                            f"({odd[0].detail})", *ev)
    if not auth and not enc:
        return inconclusive("the security policy requires no protection: nothing to hold "
                            "the pushes to", *ev)
    return passed(f"{len(records)} pushes, each {'authenticated' if auth else ''}"
                  f"{' and ' if auth and enc else ''}{'encrypted' if enc else ''} with a tag "
                  "that verifies under the management keys", *ev)


@check("DLMS-PUSH-02", "The push invocation counter never repeats, across a power cycle too",
       severity=Severity.CRITICAL, requirements=["DLMS:IC-UNIQUE", "DLMS:IC-PERSIST"],
       tags=["push", "invocation-counter", "power-cycle"], destructive=True, timeout=90.0,
       target=TargetKind.DLMS)
async def push_counter_survives_power_cycle(target: DlmsTarget) -> CheckOutcome:
    """Two pushes, a power cycle, two more: every counter after the restart must be above
    every one before (a repeat is AES-GCM nonce reuse under the same key), and the
    counters within one boot strictly increase."""
    obis = await _push_setup(target)
    if obis is None:
        return not_applicable("the meter lists no Push Setup object (class 40)")
    if target.power is None:
        return not_applicable("no power controller configured (campaign 'power:')")
    c = await target.management()
    rig = _Rig(target, obis)
    d: DlmsClient | None = None
    after: list[PushRecord] = []
    try:
        await rig.start(c)
        problem = await rig.point(c)
        before, problem = ([], problem) if problem else await rig.trigger(c, 2)
        if problem is None and before and not any(r.ciphered for r in before):
            return not_applicable("the pushes carry no invocation counter (sent in the "
                                  "clear: DLMS-PUSH-01)", rig.evidence(), _trace(c))
        if problem is None:
            listener, rig.listener = rig.listener, None  # kept open across the power cut
            await rig.restore(c)  # the destination as it was, before the power cut
            await _release(c)
            c.trace.note(f"power cycle via {target.power.description}")
            await target.power.power_cycle()
            rig.listener = listener
            d = await target.management()
            problem = await rig.point(d)
            if problem is None:
                after, problem = await rig.trigger(d, 2)
    finally:
        await rig.restore(d if d is not None else c)
        await _release(c)
        if d is not None:
            await _release(d)
    ic_before = [r.invocation_counter for r in before if r.invocation_counter is not None]
    ic_after = [r.invocation_counter for r in after if r.invocation_counter is not None]
    ev = [rig.evidence(), Evidence("push counters", f"before: {ic_before}\nafter: {ic_after}",
                                   "value"), _trace(c, label="before the power cycle")]
    if d is not None:
        ev.append(_trace(d, label="after the power cycle"))
    problems = [f"IC {r.invocation_counter}: {r.verdict} ({r.detail})"
                for r in before + after if r.verdict in _COUNTER_VERDICTS]
    for label, ics in (("before", ic_before), ("after", ic_after)):
        if any(b <= a for a, b in itertools.pairwise(ics)):
            problems.append(f"counters {label} the power cycle do not increase: {ics}")
    if ic_before and ic_after and min(ic_after) <= max(ic_before):
        problems.append(f"after the restart the counter is {min(ic_after)}, at or below "
                        f"{max(ic_before)} used before")
    if problems:
        return fail("the meter reused push invocation counters (AES-GCM nonce reuse): "
                    + "; ".join(problems[:4]), *ev)
    if problem:
        return inconclusive(problem, *ev)
    if not ic_before or not ic_after:
        return inconclusive("no ciphered push on both sides of the power cycle", *ev)
    return passed(f"push counters continued across the power cycle ({ic_before} -> "
                  f"{ic_after}), never repeated", *ev)


@check("DLMS-PUSH-03", "A replayed push is detectable: fresh counter, authenticated",
       severity=Severity.HIGH, requirements=["DLMS:IC-UNIQUE", "DLMS:POLICY-ENFORCED"],
       tags=["push", "replay", "invocation-counter"], target=TargetKind.DLMS)
async def push_replay_detectable(target: DlmsTarget) -> CheckOutcome:
    """Two pushes: each must be authenticated (a copy or an edit of a plain push is
    undetectable) and carry a counter above the previous one; the first is then sent to
    the receiver again, which must flag it as a replay."""
    obis = await _push_setup(target)
    if obis is None:
        return not_applicable("the meter lists no Push Setup object (class 40)")
    c = await target.management()
    rig = _Rig(target, obis)
    replayed: PushRecord | None = None
    try:
        await rig.start(c)
        problem = await rig.point(c)
        records, problem = ([], problem) if problem else await rig.trigger(c, 2)
        if records and rig.listener is not None:
            first = records[0]
            replayed = rig.listener.handle(first.raw, meter=first.sender, listener="replay",
                                           client_sap=None, server_sap=None, link="wrapper",
                                           endpoint=first.sender)
    finally:
        await rig.restore(c)
        await _release(c)
    ev = [rig.evidence(), _trace(c)]
    if replayed is not None:
        ev.append(Evidence("the first push, sent again", replayed.line(), "value"))
    plain = [r for r in records if not _protection(r)[0]]
    if plain:
        return fail(f"{len(plain)} of {len(records)} pushes are not authenticated: a replayed "
                    "or altered copy cannot be told from a fresh push", *ev)
    if problem:
        return inconclusive(problem, *ev)
    odd = [r for r in records if r.verdict in _UNJUDGED]
    if odd or len(records) < 2:
        return inconclusive("the pushes could not be verified with the key file"
                            + (f": {odd[0].verdict} ({odd[0].detail})" if odd else ""), *ev)
    ics = [r.invocation_counter or 0 for r in records]
    if ics[1] <= ics[0]:
        return fail(f"the second push's counter {ics[1]} is not above the first's {ics[0]}: "
                    "a receiver cannot tell a fresh push from a copy", *ev)
    if replayed is None or replayed.verdict != "replay":
        return inconclusive("the receiver did not flag the re-sent push as a replay "
                            f"({replayed.verdict if replayed else 'not judged'})", *ev)
    stamped = all(len(r.date_time) == 12 for r in records)
    return passed(f"pushes authenticated with rising counters {ics}, the copy flagged as a "
                  "replay" + ("; each carries its date-time" if stamped
                              else "; the pushes carry no date-time (a receiver needs its "
                                   "counter book to spot an old copy)"), *ev)
