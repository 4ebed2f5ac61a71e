"""Shared bench for the reference-meter tests: real meters on 127.0.0.1, our own client.

Every test here talks to a meter over a real loopback socket. ``serving`` runs
meters in-process (a :class:`MeterFleet` in the test's event loop); the power-cycle,
TLS and ``--count`` tests use :class:`MeterProcess` (a child process) instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from metercert.client.session import DlmsClient
from metercert.client.target import DlmsTarget
from metercert.meter.profile import MeterProfile, load_profile
from metercert.meter.server import MeterFleet
from metercert.security import KeySet, is_ciphered, load_key_file, parse_ciphered

T = TypeVar("T")

CLOCK = "0.0.1.0.0.255"
SERIAL = "0.0.96.1.0.255"
FIRMWARE_ID = "1.0.0.2.0.255"
ENERGY = "1.0.1.8.0.255"
CURRENT_ASSOCIATION = "0.0.40.0.0.255"
SECURITY_LOG = "0.0.99.98.0.255"
IMAGE_TRANSFER = "0.0.44.0.0.255"
DISCONNECT = "0.0.96.3.10.255"
ROLE_ASSOCIATION = {"READER": 2, "OPERATOR": 3, "ENGINEER": 4, "INSTALLER": 5, "SECADM": 6,
                    "SECAUD": 7}


def run(coro_fn: Callable[[], Awaitable[T]], timeout: float = 60.0) -> T:
    """Run one async scenario with a hard bound (a hung meter must fail the test, not block it)."""
    async def bounded() -> T:
        return await asyncio.wait_for(coro_fn(), timeout)

    return asyncio.run(bounded())


def profile(name: str = "conformant", **overrides: Any) -> MeterProfile:
    base = load_profile(name)
    return replace(base, **overrides) if overrides else base


@dataclass
class Bench:
    fleet: MeterFleet
    keysets: list[KeySet]
    client_dir: Path
    framing: str

    def target(self, index: int = 0, **kw: Any) -> DlmsTarget:
        keys = self.keysets[index]
        host, port = self.fleet.endpoints[index]
        kw.setdefault("timeout", 5.0)
        return DlmsTarget(host, port, keys, framing=self.framing,
                          counter_dir=self.client_dir / f"meter-{index}", **kw)

    @property
    def meter(self):  # type: ignore[no-untyped-def]
        return self.fleet.meters[0]


@asynccontextmanager
async def serving(state_dir: Path, prof: MeterProfile | str = "conformant", *, count: int = 1,
                  framing: str = "wrapper", client_dir: Path | None = None,
                  ssl: Any = None, transport: str = "tcp") -> AsyncIterator[Bench]:
    """Meters on free loopback ports for the body of the block, then stopped."""
    p = load_profile(prof) if isinstance(prof, str) else prof
    fleet = MeterFleet(p, state_dir, host="127.0.0.1", port=0, count=count, framing=framing,
                       ssl=ssl, idle_timeout=20.0, transport=transport)
    await fleet.start()
    try:
        key_file = fleet.write_key_file(state_dir / "client-keys.yaml")
        bench = Bench(fleet, load_key_file(key_file), client_dir or state_dir.parent / "client",
                      framing)
        yield bench
    finally:
        await fleet.stop()


def received_counters(client: DlmsClient) -> list[int]:
    """Invocation counters of every ciphered APDU the meter sent this client (AARE included)."""
    from metercert.cosem import AARE

    out: list[int] = []
    for entry in client.trace.entries:
        if entry.direction != "<-" or not entry.wire:
            continue
        wire = entry.wire
        if wire[0] == 0x61:
            wire = AARE.from_bytes(wire).user_information or b""
        if wire and is_ciphered(wire):
            out.append(parse_ciphered(wire).invocation_counter)
    return out


async def transfer_image(client: DlmsClient, blob: bytes, identifier: bytes = b"MCT-2.0.0"):  # type: ignore[no-untyped-def]
    """Image transfer initiate + blocks + verify; returns (initiate result, verify result)."""
    from metercert.cosem import ActionResult
    from metercert.cosem import DlmsData as D

    size = 192  # the meter's image_block_size (attribute 2), read below to be sure
    block_size = (await client.get(18, IMAGE_TRANSFER, 2)).value
    assert block_size == size
    started, _ = await client.action(18, IMAGE_TRANSFER, 1, D.structure(
        [D.octet_string(identifier), D.double_long_unsigned(len(blob))]))
    if started is not ActionResult.SUCCESS:
        return started, None
    for n in range((len(blob) + size - 1) // size):
        result, _ = await client.action(18, IMAGE_TRANSFER, 2, D.structure(
            [D.double_long_unsigned(n), D.octet_string(blob[n * size:(n + 1) * size])]))
        assert result is ActionResult.SUCCESS
    verified, _ = await client.action(18, IMAGE_TRANSFER, 3, D.integer(0))
    return started, verified


def key_transfer_parameters(key_id: int, wrapped: bytes):  # type: ignore[no-untyped-def]
    from metercert.cosem import DlmsData as D

    return D.array([D.structure([D.enum(key_id), D.octet_string(wrapped)])])
