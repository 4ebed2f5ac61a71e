"""Sample checks and a real loopback target for the runner tests.

The checks are registered with the real ``@check`` decorator and removed from the
global registry afterwards, so the catalog tests (which walk every registered
check) never see them.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from metercert.checks import base
from metercert.checks.base import (
    CheckSpec,
    Evidence,
    Severity,
    TargetKind,
    check,
    fail,
    passed,
)

APDU_TRACE = (
    "-> C8 1E 30 01234567 411312FF935A47566827C467BC 7D825C3BE4A77C3FCC056B6B\n"
    "<- CC 1E 30 01234567 (replayed invocation counter accepted)"
)


class EchoTarget:
    """A DLMS-like target: ``open()`` starts a TCP echo server on 127.0.0.1 and connects to it.

    Async checks use the connection, so they only work when they run in the same
    event loop that ran ``open()``.
    """

    def __init__(self) -> None:
        self.events: list[str] = []
        self.server: asyncio.AbstractServer | None = None
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.port = 0
        self.loop: asyncio.AbstractEventLoop | None = None

    def describe(self) -> str:
        return f"echo meter tcp://127.0.0.1:{self.port}"

    async def open(self) -> None:
        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while data := await reader.read(1024):
                    writer.write(data)
                    await writer.drain()
            finally:
                writer.close()

        self.server = await asyncio.start_server(echo, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.loop = asyncio.get_running_loop()
        self.events.append("open")

    async def exchange(self, data: bytes) -> bytes:
        assert self.writer is not None and self.reader is not None
        self.writer.write(data)
        await self.writer.drain()
        return await self.reader.readexactly(len(data))

    async def close(self) -> None:
        self.events.append("close")
        if self.writer is not None:
            self.writer.close()
            await self.writer.wait_closed()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


class BrokenTarget:
    """A target whose ``open()`` fails the way an unreachable meter does."""

    async def open(self) -> None:
        from metercert.errors import ConnectionFailed

        raise ConnectionFailed("tcp://127.0.0.1:9: connection refused")

    async def close(self) -> None:  # pragma: no cover - must not be called after a failed open
        raise AssertionError("close() after failed open()")


@dataclass
class SampleChecks:
    specs: dict[str, CheckSpec]
    order: list[str] = field(default_factory=list)
    released: threading.Event = field(default_factory=threading.Event)

    def all(self) -> list[CheckSpec]:
        return list(self.specs.values())


@pytest.fixture
def samples() -> Iterator[SampleChecks]:
    box = SampleChecks({})
    ids: list[str] = []

    def register(id: str, **kw: object):  # type: ignore[no-untyped-def]
        def wrap(func):  # type: ignore[no-untyped-def]
            kw.setdefault("severity", Severity.HIGH)
            kw.setdefault("target", TargetKind.DLMS)
            kw.setdefault("requirements", ["DLMS:IC-REPLAY"])
            check(id, f"sample {id}", **kw)(func)  # type: ignore[arg-type]
            ids.append(id)
            return func

        return wrap

    @register("test.destructive-power-cycle", destructive=True, tags=["power"],
              requirements=["DLMS:IC-PERSIST"])
    async def destructive(target: EchoTarget):  # type: ignore[no-untyped-def]
        box.order.append("test.destructive-power-cycle")
        return passed("counter survived the power cycle")

    @register("test.pass-sync", tags=["smoke"], severity=Severity.LOW)
    def pass_sync(target: EchoTarget):  # type: ignore[no-untyped-def]
        box.order.append("test.pass-sync")
        assert threading.current_thread() is not threading.main_thread()
        return passed("suite 0 negotiated", Evidence("suite", "0", "value", "AARE"))

    @register("test.fail-async", tags=["replay", "smoke"], severity=Severity.CRITICAL)
    async def fail_async(target: EchoTarget):  # type: ignore[no-untyped-def]
        box.order.append("test.fail-async")
        echoed = await target.exchange(b"\xc8\x1e\x30")
        assert echoed == b"\xc8\x1e\x30"
        assert asyncio.get_running_loop() is target.loop
        return fail(
            "meter accepted a replayed invocation counter",
            Evidence("replayed request", APDU_TRACE, "apdu-trace", "association 0.0.40.0.3.255"),
        )

    @register("test.raises", severity=Severity.MEDIUM)
    def raises(target: EchoTarget):  # type: ignore[no-untyped-def]
        box.order.append("test.raises")
        raise ValueError("unexpected tag 0x7E in response")

    @register("test.hangs-async", timeout=0.3)
    async def hangs_async(target: EchoTarget):  # type: ignore[no-untyped-def]
        box.order.append("test.hangs-async")
        await asyncio.sleep(30)
        return passed("never")

    @register("test.hangs-sync", timeout=0.3)
    def hangs_sync(target: EchoTarget):  # type: ignore[no-untyped-def]
        box.order.append("test.hangs-sync")
        box.released.wait(5)  # bounded: the thread ends even if the test forgets it
        return passed("never")

    @register("test.wrong-return")
    def wrong_return(target: EchoTarget):  # type: ignore[no-untyped-def]
        box.order.append("test.wrong-return")
        return "PASS"

    @register("test.tls-version", target=TargetKind.TLS, requirements=["IEC62351-3:TLS-VERSION"])
    def tls_version(target: object):  # type: ignore[no-untyped-def]
        box.order.append("test.tls-version")
        return passed("TLS 1.2 floor")

    registry = base.registered()
    box.specs = {i: registry[i] for i in ids}
    try:
        yield box
    finally:
        box.released.set()
        for i in ids:
            base._REGISTRY.pop(i, None)


@pytest.fixture
def echo_target() -> EchoTarget:
    return EchoTarget()


@pytest.fixture
def broken_target() -> BrokenTarget:
    return BrokenTarget()
