"""DLMS over the UDP wrapper (IEC 62056-47): one wrapper frame per datagram.

Many meters on cellular (NB-IoT, LTE-M) or IPv6 mesh links speak the wrapper over
UDP. Rather than a second stream class, this module gives :class:`ApduStream` a
reader/writer pair made of datagrams, so the client, the meter and every check
work the same over both transports:

* the reader hands over one datagram per ``read``; a datagram that is not exactly
  one well-formed frame is dropped and counted here, so a single bad packet can
  neither desynchronise the framing nor end an association;
* the writer sends each frame as one datagram (to the peer's address on a server).

The server keeps one :class:`ApduStream` per peer address: its first datagram
opens a "connection", the idle timeout (or the handler ending) closes it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from metercert.errors import ConnectionFailed
from metercert.transport.errors import BadFrame, FrameTooLarge
from metercert.transport.hdlc import Role
from metercert.transport.stream import (
    DEFAULT_IDLE_TIMEOUT,
    ApduStream,
    DlmsServer,
    Handler,
    _WrapperLink,
    run_handler,
)
from metercert.transport.wrapper import DEFAULT_MAX_PAYLOAD, decode_datagram

_QUEUE = 64  # datagrams waiting per peer; more are dropped, as a full socket buffer would


class _DatagramReader:
    """What :class:`ApduStream` reads from: whole, valid datagrams."""

    def __init__(self, max_payload: int) -> None:
        self._queue: asyncio.Queue[bytes | BaseException] = asyncio.Queue(_QUEUE)
        self._max_payload = max_payload
        self.dropped = 0
        self.last_drop = ""

    def feed(self, data: bytes) -> None:
        try:
            decode_datagram(data, max_payload=self._max_payload)
        except (BadFrame, FrameTooLarge) as exc:
            self.dropped += 1
            self.last_drop = str(exc)
            return
        self._put(data)

    def feed_error(self, exc: BaseException) -> None:
        self._put(exc)

    def feed_eof(self) -> None:
        self._put(b"")

    def _put(self, item: bytes | BaseException) -> None:
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self.dropped += 1

    async def read(self, _n: int = -1) -> bytes:
        item = await self._queue.get()
        if isinstance(item, BaseException):
            raise item
        return item


class _DatagramWriter:
    """What :class:`ApduStream` writes to: every write is one datagram."""

    def __init__(self, transport: asyncio.DatagramTransport, peer: tuple[Any, ...] | None,
                 on_close: Any) -> None:
        self._transport = transport
        self._peer = peer  # None: a connected (client) socket
        self._on_close = on_close
        self._closed = False

    def write(self, data: bytes) -> None:
        if self._closed:
            raise ConnectionResetError("datagram endpoint closed")
        if self._peer is None:
            self._transport.sendto(data)
        else:
            self._transport.sendto(data, self._peer)

    async def drain(self) -> None:
        return None

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._on_close()

    async def wait_closed(self) -> None:
        return None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return self._peer or self._transport.get_extra_info("peername", default)
        return self._transport.get_extra_info(name, default)


class _ClientProtocol(asyncio.DatagramProtocol):
    def __init__(self, reader: _DatagramReader) -> None:
        self.reader = reader

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.reader.feed(data)

    def error_received(self, exc: Exception) -> None:
        self.reader.feed_error(exc)  # e.g. ICMP port unreachable: nobody listens there

    def connection_lost(self, exc: Exception | None) -> None:
        self.reader.feed_eof()


async def open_dlms_datagram(host: str, port: int, *, client_address: int, server_address: int,
                             timeout: float, max_frame: int = DEFAULT_MAX_PAYLOAD) -> ApduStream:
    """An :class:`ApduStream` to a meter that speaks the wrapper over UDP."""
    loop = asyncio.get_running_loop()
    reader = _DatagramReader(max_frame)
    try:
        transport, _ = await asyncio.wait_for(loop.create_datagram_endpoint(
            lambda: _ClientProtocol(reader), remote_addr=(host, port)), timeout)
    except (OSError, TimeoutError) as exc:
        reason = getattr(exc, "strerror", None) or exc.__class__.__name__
        raise ConnectionFailed(f"cannot reach udp://{host}:{port}: {reason}") from None
    writer = _DatagramWriter(transport, None, transport.close)
    link = _WrapperLink(Role.CLIENT, client_address, server_address, max_frame)
    return ApduStream(reader, writer, link, framing="wrapper", timeout=timeout)  # type: ignore[arg-type]


class _UdpListener:
    """The bits of asyncio.Server that :class:`DlmsServer` uses, for a UDP socket."""

    def __init__(self, transport: asyncio.DatagramTransport) -> None:
        self.transport = transport
        self.sockets = [transport.get_extra_info("socket")]
        self._closed = asyncio.get_running_loop().create_future()

    def close(self) -> None:
        self.transport.close()

    def lost(self) -> None:
        if not self._closed.done():
            self._closed.set_result(None)

    async def wait_closed(self) -> None:
        await self._closed


class _ServerProtocol(asyncio.DatagramProtocol):
    """Routes each datagram to its peer's stream, opening one for a new peer."""

    def __init__(self, handler: Handler, *, max_frame: int, idle_timeout: float,
                 max_connections: int | None) -> None:
        self.handler = handler
        self.max_frame = max_frame
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.server: DlmsServer | None = None
        self.listener: _UdpListener | None = None
        self.peers: dict[Any, _DatagramReader] = {}
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        server, reader = self.server, self.peers.get(addr)
        if server is None or self.transport is None:
            return
        if reader is None:
            try:  # a peer is only taken on with a well-formed frame
                decode_datagram(data, max_payload=self.max_frame)
            except (BadFrame, FrameTooLarge) as exc:
                server.drops.append(f"{addr[0]}:{addr[1]}: datagram dropped: {exc}")
                return
            if self.max_connections is not None and len(self.peers) >= self.max_connections:
                server.drops.append(f"{addr[0]}:{addr[1]}: refused, {self.max_connections} "
                                    "peer(s) already served")
                return
            reader = _DatagramReader(self.max_frame)
            self.peers[addr] = reader
            writer = _DatagramWriter(self.transport, addr,
                                     lambda a=addr: self.peers.pop(a, None))
            link = _WrapperLink(Role.SERVER, None, None, self.max_frame)
            stream = ApduStream(reader, writer, link, framing="wrapper",  # type: ignore[arg-type]
                                timeout=self.idle_timeout, idle_timeout=self.idle_timeout)
            asyncio.get_running_loop().create_task(run_handler(server, self.handler, stream))
        before = reader.dropped
        reader.feed(data)
        if reader.dropped != before:
            server.drops.append(f"{addr[0]}:{addr[1]}: datagram dropped: {reader.last_drop}")

    def connection_lost(self, exc: Exception | None) -> None:
        for reader in list(self.peers.values()):
            reader.feed_eof()
        self.peers.clear()
        if self.listener is not None:
            self.listener.lost()


async def serve_dlms_datagram(handler: Handler, host: str, port: int, *,
                              max_frame: int = DEFAULT_MAX_PAYLOAD,
                              idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
                              max_connections: int | None = None) -> DlmsServer:
    """Listen for wrapper datagrams on ``host:port`` and run ``handler`` per peer address."""
    loop = asyncio.get_running_loop()
    protocol = _ServerProtocol(handler, max_frame=max_frame, idle_timeout=idle_timeout,
                               max_connections=max_connections)
    try:
        transport, _ = await loop.create_datagram_endpoint(lambda: protocol,
                                                           local_addr=(host, port))
    except OSError as exc:
        raise ConnectionFailed(f"cannot listen on udp {host}:{port}: "
                               f"{exc.strerror or exc.__class__.__name__}") from None
    listener = _UdpListener(transport)
    protocol.listener = listener
    server = DlmsServer(listener, "wrapper")
    protocol.server = server
    return server
