"""dlms-cosem's own TCP-wrapper and HDLC-over-TCP clients talk to our server over sockets."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("dlms_cosem")

from dlms_cosem.io import BlockingTcpIO, HdlcTransport, TcpTransport

from metercert.transport import ApduStream, serve_dlms

pytestmark = pytest.mark.timeout(30)


async def reverse(stream: ApduStream) -> None:
    """Answer each APDU with its bytes reversed, so an echo bug cannot pass."""
    while True:
        apdu = await stream.recv()
        await stream.send(apdu[::-1])


def _peer_client(framing: str, port: int, apdus: list[bytes]) -> list[bytes]:
    io = BlockingTcpIO("127.0.0.1", port, timeout=5)
    transport_class = HdlcTransport if framing == "hdlc" else TcpTransport
    transport = transport_class(client_logical_address=16, server_logical_address=1, io=io)
    transport.connect()
    try:
        return [bytes(transport.send_request(apdu)) for apdu in apdus]
    finally:
        transport.disconnect()


@pytest.mark.parametrize("framing", ["wrapper", "hdlc"])
def test_dlms_cosem_client_against_our_server(framing: str) -> None:
    apdus = [b"\xC0\x01\xC1" + bytes(i % 256 for i in range(n)) for n in (2, 300, 3 * 1024)]

    async def main() -> list[bytes]:
        async with await serve_dlms(reverse, "127.0.0.1", 0, framing=framing,  # type: ignore[arg-type]
                                    idle_timeout=10) as server:
            return await asyncio.to_thread(_peer_client, framing, server.port, apdus)

    assert asyncio.run(main()) == [apdu[::-1] for apdu in apdus]
