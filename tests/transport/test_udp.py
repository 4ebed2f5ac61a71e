"""The wrapper over UDP (one frame per datagram), client and server, on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable

import pytest

from metercert.errors import UsageError
from metercert.transport import ApduStream, ConnectionClosed, open_dlms_connection, serve_dlms
from metercert.transport.wrapper import encode_wrapper

pytestmark = pytest.mark.timeout(30)
LOOPBACK = "127.0.0.1"


def run(coro: Awaitable[None]) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


async def echo(stream: ApduStream) -> None:
    while True:
        apdu = await stream.recv()
        await stream.send(b"\x99" + apdu)


def _raw(port: int, payload: bytes) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.3)
    s.sendto(payload, (LOOPBACK, port))
    return s


def test_round_trip_and_saps() -> None:
    async def main() -> None:
        seen: list[tuple[int | None, int | None]] = []

        async def handler(stream: ApduStream) -> None:
            apdu = await stream.recv()
            seen.append((stream.client_address, stream.server_address))
            await stream.send(b"\x99" + apdu)

        async with (await serve_dlms(handler, LOOPBACK, 0, transport="udp") as server,
                    await open_dlms_connection(LOOPBACK, server.port, transport="udp",
                                               client_address=17, server_address=1,
                                               timeout=2) as client):
            await client.send(b"\x01" * 1500)  # bigger than one Ethernet frame
            assert await client.recv() == b"\x99" + b"\x01" * 1500
        assert seen == [(17, 1)]

    run(main())


def test_bad_datagrams_are_dropped_without_ending_anything() -> None:
    async def main() -> None:
        async with (await serve_dlms(echo, LOOPBACK, 0, transport="udp") as server,
                    await open_dlms_connection(LOOPBACK, server.port, transport="udp",
                                               timeout=2) as client):
            await client.send(b"\x01")
            assert await client.recv() == b"\x99\x01"
            # garbage, a frame whose length lies, a wrong version, from a stranger
            for junk in (b"garbage", encode_wrapper(16, 1, b"\xc0\x01")[:-1],
                         b"\x00\x02\x00\x10\x00\x01\x00\x01\x00"):
                with _raw(server.port, junk) as s, pytest.raises(TimeoutError):
                    s.recv(100)  # no answer to a bad datagram
            await asyncio.sleep(0.05)
            assert len(server.drops) == 3 and all("dropped" in d for d in server.drops)
            assert server.served == 1  # strangers with bad frames get no session
            await client.send(b"\x02")  # the real association carries on
            assert await client.recv() == b"\x99\x02"

    run(main())


def test_each_peer_has_its_own_session_and_idle_ones_end() -> None:
    async def main() -> None:
        async with await serve_dlms(echo, LOOPBACK, 0, transport="udp",
                                    idle_timeout=0.3) as server:
            a = await open_dlms_connection(LOOPBACK, server.port, transport="udp", timeout=2)
            b = await open_dlms_connection(LOOPBACK, server.port, transport="udp", timeout=2)
            await a.send(b"\x0a")
            await b.send(b"\x0b")
            assert (await a.recv(), await b.recv()) == (b"\x99\x0a", b"\x99\x0b")
            assert server.served == 2 and len(server.active) == 2
            await asyncio.sleep(0.6)
            assert len(server.active) == 0  # both idle sessions were closed
            await a.send(b"\x0c")  # a new datagram opens a new session
            assert await a.recv() == b"\x99\x0c"
            assert server.served == 3
            await a.aclose()
            await b.aclose()

    run(main())


def test_nobody_listening_is_a_one_line_error() -> None:
    async def attempt() -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((LOOPBACK, 0))
            port = s.getsockname()[1]
        client = await open_dlms_connection(LOOPBACK, port, transport="udp", timeout=2)
        try:
            if client.get_extra_info("sockname")[1] == port:
                return False  # the freed port became our own source port: we would talk to us
            await client.send(b"\x01")
            with pytest.raises(ConnectionClosed, match="refused") as info:
                await client.recv()
            assert "\n" not in str(info.value)
            return True
        finally:
            await client.aclose()

    async def main() -> None:
        for _ in range(5):  # another test (or worker) may take the freed port meanwhile
            if await attempt():
                return
        pytest.fail("no free UDP port stayed free")

    run(main())


def test_udp_means_the_wrapper_without_tls() -> None:
    async def main() -> None:
        with pytest.raises(UsageError, match="wrapper"):
            await open_dlms_connection(LOOPBACK, 4059, transport="udp", framing="hdlc")
        with pytest.raises(UsageError, match="wrapper"):
            await serve_dlms(echo, LOOPBACK, 0, transport="udp", framing="hdlc")
        with pytest.raises(UsageError, match="tcp, udp"):
            await serve_dlms(echo, LOOPBACK, 0, transport="sctp")  # type: ignore[arg-type]

    run(main())
