"""asyncio adapters end to end over real 127.0.0.1 sockets."""

from __future__ import annotations

import asyncio
import datetime
import socket
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from metercert.errors import ConnectionFailed, UsageError
from metercert.transport import (
    ApduStream,
    ConnectionClosed,
    DlmsServer,
    TransportTimeout,
    open_dlms_connection,
    serve_dlms,
)
from metercert.transport.hdlc_frame import (
    FrameKind,
    HdlcAddress,
    HdlcFrame,
    HdlcFrameDecoder,
    encode_frame,
)
from metercert.transport.wrapper import encode_wrapper

pytestmark = pytest.mark.timeout(30)
LOOPBACK = "127.0.0.1"


def run(coro: Awaitable[None]) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


async def echo(stream: ApduStream) -> None:
    while True:
        await stream.send(await stream.recv())


async def wait_for_eof(reader: asyncio.StreamReader, limit: float = 5.0) -> bytes:
    """Read until the server closes; returns what came before the close."""
    data = b""
    async with asyncio.timeout(limit):
        while chunk := await reader.read(4096):
            data += chunk
    return data


@pytest.mark.parametrize("framing", ["wrapper", "hdlc"])
def test_echo_round_trips_apdus_of_every_size(framing: str) -> None:
    async def main() -> None:
        async with (
            await serve_dlms(echo, LOOPBACK, 0, framing=framing, idle_timeout=5) as server,
            await open_dlms_connection(LOOPBACK, server.port, framing=framing,
                                       client_address=16, server_address=1) as stream,
        ):
            assert (stream.client_address, stream.server_address) == (16, 1)
            for size in (1, 60, 200, 3 * 1024, 20_000):
                apdu = bytes(i % 251 for i in range(size))
                await stream.send(apdu)
                assert await stream.recv() == apdu
            assert stream.peer == f"{LOOPBACK}:{server.port}"
    run(main())


def test_server_side_stream_reports_the_peer_addresses() -> None:
    seen: list[tuple[int | None, int | None, int | None]] = []

    async def handler(stream: ApduStream) -> None:
        await stream.recv()
        seen.append((stream.client_address, stream.server_address, stream.physical_address))
        await stream.send(b"\x61\x00")

    async def main() -> None:
        async with await serve_dlms(handler, LOOPBACK, 0, framing="hdlc") as server:
            stream = await open_dlms_connection(LOOPBACK, server.port, framing="hdlc",
                                                client_address=1, server_address=1,
                                                physical_address=17)
            await stream.send(b"\x60\x00")
            assert await stream.recv() == b"\x61\x00"
            await stream.aclose()
        async with await serve_dlms(handler, LOOPBACK, 0) as server:
            stream = await open_dlms_connection(LOOPBACK, server.port, client_address=32,
                                                server_address=3)
            await stream.send(b"\x60\x00")
            assert await stream.recv() == b"\x61\x00"
            await stream.aclose()
    run(main())
    assert seen == [(1, 1, 17), (32, 3, None)]


async def _check_other_client_survives(server: DlmsServer, framing: str,
                                       attack: Callable[[asyncio.StreamWriter], None]) -> bytes:
    good = await open_dlms_connection(LOOPBACK, server.port, framing=framing)  # type: ignore[arg-type]
    reader, writer = await asyncio.open_connection(LOOPBACK, server.port)
    attack(writer)
    leftover = await wait_for_eof(reader)
    writer.close()
    await good.send(b"\xC0\x01")
    assert await good.recv() == b"\xC0\x01"
    await good.aclose()
    return leftover


@pytest.mark.parametrize(("framing", "bad", "reason"), [
    ("wrapper", bytes.fromhex("0002001000010001C0"), "version 0x0002"),
    ("wrapper", bytes.fromhex("00010010000107D0") + bytes(100), "limit is 1000"),
    ("hdlc", bytes.fromhex("7EA0070321930F027E"), "FCS"),
    ("hdlc", b"GET / HTTP/1.1\r\n\r\n", "outside an HDLC frame"),
    ("hdlc", encode_frame(HdlcFrame(HdlcAddress(1), HdlcAddress(16), FrameKind.I, ns=5,
                                    info=b"\xE6\xE6\x00\xC0")), "N(S)=5"),
])
def test_malformed_frame_drops_only_that_connection(framing: str, bad: bytes, reason: str) -> None:
    async def main() -> None:
        async with await serve_dlms(echo, LOOPBACK, 0, framing=framing, max_frame=1000,  # type: ignore[arg-type]
                                    idle_timeout=5) as server:
            def attack(writer: asyncio.StreamWriter) -> None:
                if framing == "hdlc" and "N(S)" in reason:
                    writer.write(encode_frame(HdlcFrame(HdlcAddress(1), HdlcAddress(16),
                                                        FrameKind.SNRM)))
                writer.write(bad)
            await _check_other_client_survives(server, framing, attack)
            assert any(reason in drop for drop in server.drops), list(server.drops)
    run(main())


def test_slow_client_is_cut_at_the_idle_timeout() -> None:
    async def main() -> None:
        async with await serve_dlms(echo, LOOPBACK, 0, idle_timeout=0.5) as server:
            reader, writer = await asyncio.open_connection(LOOPBACK, server.port)
            frame = encode_wrapper(16, 1, bytes(40))
            loop = asyncio.get_running_loop()
            start = loop.time()
            closed = False
            for byte in frame[:20]:  # drip one byte every 0.1 s: never a whole APDU in time
                try:
                    writer.write(bytes([byte]))
                    await writer.drain()
                except ConnectionError:
                    closed = True
                    break
                if reader.at_eof():
                    closed = True
                    break
                await asyncio.sleep(0.1)
            assert closed or await wait_for_eof(reader, 2.0) == b""
            assert loop.time() - start < 2.0
            writer.close()
            assert any("idle" in drop for drop in server.drops), list(server.drops)
            # the server is still there for a well-behaved client
            async with await open_dlms_connection(LOOPBACK, server.port) as stream:
                await stream.send(b"\xC0")
                assert await stream.recv() == b"\xC0"
    run(main())


def test_server_handler_short_wait_does_not_count_as_idle() -> None:
    outcome: list[str] = []

    async def handler(stream: ApduStream) -> None:
        try:
            await stream.recv(timeout=0.1)
        except TransportTimeout as exc:
            outcome.append(f"{exc} closed={stream.closed}")
        await stream.send(await stream.recv())

    async def main() -> None:
        async with (
            await serve_dlms(handler, LOOPBACK, 0, idle_timeout=5) as server,
            await open_dlms_connection(LOOPBACK, server.port) as stream,
        ):
            await asyncio.sleep(0.3)
            await stream.send(b"\xC0")
            assert await stream.recv() == b"\xC0"
    run(main())
    assert len(outcome) == 1 and "timed out waiting" in outcome[0]
    assert outcome[0].endswith("closed=False")


def test_client_recv_timeout_raises_and_the_stream_stays_usable() -> None:
    async def handler(stream: ApduStream) -> None:
        first = await stream.recv()
        await asyncio.sleep(0.6)
        await stream.send(first)

    async def main() -> None:
        async with (
            await serve_dlms(handler, LOOPBACK, 0, framing="hdlc") as server,
            await open_dlms_connection(LOOPBACK, server.port, framing="hdlc") as stream,
        ):
            await stream.send(b"\xC0\x01")
            with pytest.raises(TransportTimeout, match="timed out waiting for an APDU"):
                await stream.recv(timeout=0.2)
            assert await stream.recv(timeout=2.0) == b"\xC0\x01"
    run(main())


def test_peer_closing_gives_connection_closed() -> None:
    async def handler(stream: ApduStream) -> None:
        await stream.recv()

    async def main() -> None:
        async with await serve_dlms(handler, LOOPBACK, 0) as server:
            stream = await open_dlms_connection(LOOPBACK, server.port)
            await stream.send(b"\xC0")
            with pytest.raises(ConnectionClosed, match="closed the connection"):
                await stream.recv(timeout=2.0)
            with pytest.raises(ConnectionClosed):
                await stream.send(b"\xC0")
    run(main())


def test_handler_crash_closes_only_its_connection() -> None:
    calls = 0

    async def handler(stream: ApduStream) -> None:
        nonlocal calls
        calls += 1
        apdu = await stream.recv()
        if calls == 1:
            raise RuntimeError("handler defect")
        await stream.send(apdu)

    async def main() -> None:
        async with await serve_dlms(handler, LOOPBACK, 0) as server:
            first = await open_dlms_connection(LOOPBACK, server.port)
            await first.send(b"\xC0")
            with pytest.raises(ConnectionClosed):
                await first.recv(timeout=2.0)
            async with await open_dlms_connection(LOOPBACK, server.port) as second:
                await second.send(b"\xC1")
                assert await second.recv() == b"\xC1"
            assert any("RuntimeError" in drop for drop in server.drops)
    run(main())


def test_connections_beyond_the_limit_are_refused() -> None:
    async def main() -> None:
        async with await serve_dlms(echo, LOOPBACK, 0, max_connections=1) as server:
            first = await open_dlms_connection(LOOPBACK, server.port)
            await first.send(b"\xC0")
            assert await first.recv() == b"\xC0"
            reader, writer = await asyncio.open_connection(LOOPBACK, server.port)
            assert await wait_for_eof(reader) == b""
            writer.close()
            assert any("already open" in drop for drop in server.drops)
            await first.aclose()
            await asyncio.sleep(0.05)
            async with await open_dlms_connection(LOOPBACK, server.port) as again:
                await again.send(b"\xC1")
                assert await again.recv() == b"\xC1"
    run(main())


@pytest.mark.parametrize(("framing", "reply", "error"), [
    ("wrapper", bytes.fromhex("0007000100100001C4"), "version 0x0007"),
    ("wrapper", bytes.fromhex("0001000200100001C4"), "wPort 2 to 16"),
])
def test_client_facing_a_hostile_server_raises_and_closes(framing: str, reply: bytes,
                                                          error: str) -> None:
    async def rogue(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.write(reply)
        await writer.drain()
        await reader.read(100)
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(rogue, LOOPBACK, 0)
        port = server.sockets[0].getsockname()[1]
        try:
            stream = await open_dlms_connection(LOOPBACK, port, framing=framing)  # type: ignore[arg-type]
            await stream.send(b"\xC0\x01")
            with pytest.raises(ConnectionFailed, match=error):
                await stream.recv(timeout=2.0)
            assert stream.closed
        finally:
            server.close()
            await server.wait_closed()
    run(main())


def test_hdlc_client_polls_again_when_the_meter_is_not_ready() -> None:
    """A slow meter answers the request with RR; the client must poll until the answer comes."""
    meter, client = HdlcAddress(1), HdlcAddress(16)
    polls = 0

    async def slow_meter(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal polls
        decoder = HdlcFrameDecoder()
        while data := await reader.read(4096):
            decoder.feed(data)
            for frame in decoder:
                if frame.kind is FrameKind.SNRM:
                    reply = HdlcFrame(client, meter, FrameKind.UA)
                elif frame.kind is FrameKind.I:
                    reply = HdlcFrame(client, meter, FrameKind.RR, nr=1)  # "not yet"
                elif frame.kind is FrameKind.RR and polls < 2:
                    polls += 1
                    reply = HdlcFrame(client, meter, FrameKind.RR, nr=1)
                elif frame.kind is FrameKind.RR:
                    reply = HdlcFrame(client, meter, FrameKind.I, nr=1,
                                      info=b"\xE6\xE7\x00\xC4\x01")
                else:
                    reply = HdlcFrame(client, meter, FrameKind.UA)
                writer.write(encode_frame(reply))
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(slow_meter, LOOPBACK, 0)
        port = server.sockets[0].getsockname()[1]
        try:
            async with await open_dlms_connection(LOOPBACK, port, framing="hdlc") as stream:
                await stream.send(b"\xC0\x01")
                assert await stream.recv(timeout=2.0) == b"\xC4\x01"
        finally:
            server.close()
            await server.wait_closed()
    run(main())
    assert polls == 2


def test_bad_options_are_usage_errors() -> None:
    async def main() -> None:
        with pytest.raises(UsageError, match="unknown framing 'iec'"):
            await open_dlms_connection(LOOPBACK, 4059, framing="iec")  # type: ignore[arg-type]
        with pytest.raises(UsageError, match="max_frame for wrapper must be 1..65535"):
            await serve_dlms(echo, LOOPBACK, 0, max_frame=70_000)
    run(main())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def test_connection_refused_is_a_one_line_connection_failed() -> None:
    port = _free_port()

    async def main() -> None:
        with pytest.raises(ConnectionFailed) as info:
            await open_dlms_connection(LOOPBACK, port, timeout=2.0)
        assert str(info.value) == f"cannot connect to {LOOPBACK}:{port}: connection refused"
    run(main())


def test_hdlc_link_to_the_wrong_server_address_fails_cleanly() -> None:
    async def main() -> None:
        async with await serve_dlms(echo, LOOPBACK, 0, framing="hdlc", server_address=1) as server:
            with pytest.raises(ConnectionFailed, match="cannot open HDLC link .* UA answering SNRM"):
                await open_dlms_connection(LOOPBACK, server.port, framing="hdlc",
                                           server_address=7, timeout=0.5)
    run(main())


def test_listening_on_a_busy_port_is_a_connection_failed() -> None:
    async def main() -> None:
        async with await serve_dlms(echo, LOOPBACK, 0) as server:
            with socket.socket() as sock:
                sock.bind((LOOPBACK, 0))
                sock.listen()
                with pytest.raises(ConnectionFailed, match="cannot listen"):
                    await serve_dlms(echo, LOOPBACK, sock.getsockname()[1])
            assert server.port
    run(main())


def _tls_contexts(tmp: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "meter.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("meter.test")]), False)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp / "cert.pem", tmp / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert_file, key_file)
    client_ctx = ssl.create_default_context(cafile=str(cert_file))
    return server_ctx, client_ctx


def test_tls_context_is_passed_through(tmp_path: Path) -> None:
    server_ctx, client_ctx = _tls_contexts(tmp_path)

    async def main() -> None:
        async with await serve_dlms(echo, LOOPBACK, 0, ssl=server_ctx) as server:
            async with await open_dlms_connection(LOOPBACK, server.port, ssl=client_ctx,
                                                  server_hostname="meter.test") as stream:
                assert stream.get_extra_info("ssl_object") is not None
                await stream.send(b"\xC0\x01\x02")
                assert await stream.recv() == b"\xC0\x01\x02"
            with pytest.raises(ConnectionFailed, match="TLS handshake failed"):
                await open_dlms_connection(LOOPBACK, server.port, ssl=client_ctx,
                                           server_hostname="wrong.name", timeout=2.0)
    run(main())
