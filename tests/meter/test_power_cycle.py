"""Fifty real power cycles: SIGKILL of the meter process in the middle of a session.

After every restart the meter's responses must carry invocation counters above every
counter it used before the kill (its sending counters are reserved on disk before
use), and a request captured before the kill must be rejected after it (its received
counters are persisted before a request is executed). The ``ic-reset-on-power-cycle``
profile shows the same test catching a meter that keeps counters in RAM.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

from metercert.client.target import DlmsTarget
from metercert.cosem import (
    AARE,
    AssociationResult,
    CosemAttributeDescriptor,
    GetRequestNormal,
    ObisCode,
)
from metercert.lab.power import MeterProcess
from metercert.security import load_keyset

from ._support import CLOCK, received_counters, run

KILLS = 50
_GET_CLOCK = GetRequestNormal(CosemAttributeDescriptor(8, ObisCode.parse(CLOCK), 2)).to_bytes()


@dataclass
class CycleLog:
    counters: list[list[int]] = field(default_factory=list)   # per power-on period
    replayed_get: list[bytes] = field(default_factory=list)   # meter's answers to replays
    replayed_aarq: list[AARE] = field(default_factory=list)
    start_s: list[float] = field(default_factory=list)


async def _cycles(state: Path, client_dir: Path, profile: str, kills: int) -> CycleLog:
    log = CycleLog()
    meter = MeterProcess(state, profile=profile, port=0)
    t0 = time.perf_counter()
    host, port = await asyncio.to_thread(meter.start)
    log.start_s.append(time.perf_counter() - t0)
    target = DlmsTarget(host, port, load_keyset(meter.keys_out), counter_dir=client_dir,
                        timeout=5.0)
    captured_get: bytes | None = None
    captured_aarq: bytes | None = None
    try:
        for cycle in range(kills + 1):
            if captured_aarq is not None:
                replay = target.client(None)
                log.replayed_aarq.append(AARE.from_bytes(await replay.exchange(captured_aarq)))
                await replay.close()
            client = await target.management()
            if captured_get is not None:
                # the request captured before the power cut, replayed on a fresh association
                log.replayed_get.append(await client.exchange(captured_get, note="replay"))
            mark = client.trace.mark()
            await client.get(8, CLOCK, 2)
            captured_get = client.trace.wires(mark)[0]
            captured_aarq = [e.wire for e in client.trace.entries
                             if e.direction == "->" and e.wire[:1] == b"\x60"][-1]
            await client.get(1, "0.0.96.1.0.255", 2)
            log.counters.append(received_counters(client))
            if cycle == kills:
                await client.__aexit__(None, None, None)
                break
            # mid-session: one more request in flight, no release, then the supply goes
            assert client.stream is not None
            await client.stream.send(client.protect_request(_GET_CLOCK))
            meter.kill()
            await client.close()
            t0 = time.perf_counter()
            await asyncio.to_thread(meter.start)  # same port, same state folder
            log.start_s.append(time.perf_counter() - t0)
    finally:
        meter.stop()
    return log


def _assert_conformant(log: CycleLog, kills: int) -> None:
    assert len(log.counters) == kills + 1 and all(log.counters)
    flat = [c for period in log.counters for c in period]
    assert all(a < b for a, b in pairwise(flat)), "response counters not strictly increasing"
    for i in range(1, len(log.counters)):
        assert min(log.counters[i]) > max(max(p) for p in log.counters[:i])
    assert len(log.replayed_get) == kills
    # exception-response, service-error invocation-counter-error
    assert all(a[:3] == bytes([0xD8, 0x01, 0x06]) for a in log.replayed_get)
    assert all(a.result is not AssociationResult.ACCEPTED for a in log.replayed_aarq)


def test_fifty_kills_never_reuse_or_accept_old_counters(tmp_path: Path) -> None:
    t0 = time.perf_counter()
    log = run(lambda: _cycles(tmp_path / "state", tmp_path / "client", "conformant", KILLS),
              timeout=150.0)
    elapsed = time.perf_counter() - t0
    _assert_conformant(log, KILLS)
    starts = sorted(log.start_s)
    print(f"\n{KILLS} kills in {elapsed:.1f} s; meter start median {starts[len(starts) // 2]:.2f} s, "
          f"max {starts[-1]:.2f} s; {sum(map(len, log.counters))} response counters")


def test_the_same_test_catches_counters_in_ram(tmp_path: Path) -> None:
    log = run(lambda: _cycles(tmp_path / "state", tmp_path / "client",
                              "ic-reset-on-power-cycle", 2), timeout=60.0)
    flat = [c for period in log.counters for c in period]
    assert any(a >= b for a, b in pairwise(flat))
    # a replayed AARQ from before the power cut is taken as fresh (the GET replay is still
    # refused here: the new association's own counters moved the RAM window past it)
    assert any(a.result is AssociationResult.ACCEPTED for a in log.replayed_aarq)
