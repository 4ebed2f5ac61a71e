"""asyncio adapters: APDUs in and out of a TCP (or TLS) connection, or UDP datagrams.

:func:`open_dlms_connection` is what a DLMS client calls; :func:`serve_dlms`
is what the reference meter runs (``transport="udp"``: see
:mod:`~metercert.transport.datagram`). Both hand out an :class:`ApduStream`, which
hides the framing (IEC 62056-47 wrapper or IEC 62056-46 HDLC) behind
``send(apdu)`` / ``recv()``. The framing itself lives in the sans-IO modules
:mod:`~metercert.transport.wrapper` and :mod:`~metercert.transport.hdlc`; this
module only moves bytes and turns socket trouble into
:class:`~metercert.errors.ConnectionFailed` subclasses with one-line messages.

The server is built for hostile peers: a connection that sends a malformed or
oversized frame, or that does not deliver a whole APDU within the idle timeout,
is closed on its own while every other connection keeps being served.
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket
import ssl as ssl_module
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Self

from metercert.errors import ConnectionFailed, UsageError
from metercert.transport.errors import (
    ConnectionClosed,
    ProtocolViolation,
    TransportError,
    TransportTimeout,
)
from metercert.transport.hdlc import (
    DEFAULT_PARAMETERS,
    ApduReceived,
    HdlcAddress,
    HdlcConnection,
    HdlcParameters,
    LinkClosed,
    LinkEstablished,
    PollReturned,
    Role,
)
from metercert.transport.wrapper import (
    DEFAULT_MAX_PAYLOAD,
    DEFAULT_PORT,
    WrapperDecoder,
    encode_wrapper,
)

__all__ = [
    "DEFAULT_IDLE_TIMEOUT", "DEFAULT_PORT", "ApduStream", "DlmsServer", "Framing", "Transport",
    "open_dlms_connection", "serve_dlms",
]

log = logging.getLogger("metercert.transport")

Framing = Literal["wrapper", "hdlc"]
Transport = Literal["tcp", "udp", "serial", "optical"]
DEFAULT_IDLE_TIMEOUT = 120.0  # the HDLC inactivity time-out default, used for both framings
#: What a server offers in UA: the default information field, windows up to 7 frames
#: (a client that offers none gets the standard window of 1).
SERVER_PARAMETERS = HdlcParameters(window_tx=7, window_rx=7)
_READ_CHUNK = 65536
_REPOLL_DELAY = 0.05  # HDLC client: pause before polling a server that had nothing yet


class _WrapperLink:
    """Wrapper framing for one side of a connection."""

    def __init__(self, role: Role, client_wport: int | None, server_wport: int | None,
                 max_payload: int) -> None:
        self.role = role
        self.client_address = client_wport
        self.server_address = server_wport
        self.physical_address: int | None = None
        self._decoder = WrapperDecoder(max_payload=max_payload)
        self._apdus: deque[bytes] = deque()
        self._out = bytearray()
        self.closed_reason: str | None = None
        self.send_pending = False

    def start_send(self, apdu: bytes) -> None:
        if self.client_address is None or self.server_address is None:
            raise ProtocolViolation("cannot send before the peer's wPort is known")
        if self.role is Role.CLIENT:
            self._out += encode_wrapper(self.client_address, self.server_address, apdu)
        else:
            self._out += encode_wrapper(self.server_address, self.client_address, apdu)

    def receive_data(self, data: bytes) -> None:
        self._decoder.feed(data)
        for frame in self._decoder:
            if self.role is Role.SERVER:
                self.client_address, self.server_address = frame.source_wport, frame.dest_wport
            elif (frame.source_wport, frame.dest_wport) != (self.server_address,
                                                            self.client_address):
                raise ProtocolViolation(
                    f"wrapper frame from wPort {frame.source_wport} to {frame.dest_wport}, "
                    f"expected {self.server_address} to {self.client_address}"
                )
            self._apdus.append(frame.payload)

    def pop_apdu(self) -> bytes | None:
        return self._apdus.popleft() if self._apdus else None

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out


class _HdlcLink:
    """HDLC framing for one side of a connection, over :class:`HdlcConnection`."""

    def __init__(self, conn: HdlcConnection) -> None:
        self.conn = conn
        self._apdus: deque[bytes] = deque()
        self.closed_reason: str | None = None
        self.established = False
        self.poll_returned = False

    @property
    def client_address(self) -> int | None:
        return self.conn.client_address.upper if self.conn.client_address else None

    @property
    def server_address(self) -> int | None:
        return self.conn.server_address.upper if self.conn.server_address else None

    @property
    def physical_address(self) -> int | None:
        return self.conn.server_address.lower if self.conn.server_address else None

    @property
    def send_pending(self) -> bool:
        return self.conn.sending

    def start_send(self, apdu: bytes) -> None:
        self.conn.send_apdu(apdu)

    def receive_data(self, data: bytes) -> None:
        self.conn.receive_data(data)
        while (event := self.conn.next_event()) is not None:
            if isinstance(event, ApduReceived):
                self._apdus.append(event.apdu)
            elif isinstance(event, LinkEstablished):
                self.established = True
                self._apdus.clear()
            elif isinstance(event, LinkClosed):
                self.closed_reason = event.reason
            elif isinstance(event, PollReturned):
                self.poll_returned = True
            else:
                log.debug("HDLC frame dropped: %s", event.reason)

    def pop_apdu(self) -> bytes | None:
        return self._apdus.popleft() if self._apdus else None

    def data_to_send(self) -> bytes:
        return self.conn.data_to_send()


_Link = _WrapperLink | _HdlcLink


@dataclass(frozen=True)
class _Deadline:
    """When a wait ends, and whether that limit is the server's idle timeout."""

    at: float
    idle: bool


class ApduStream:
    """APDUs over one connection, whatever the framing.

    ``recv(timeout)`` waits for one whole APDU; ``None`` means the stream's own
    timeout (the one given to :func:`open_dlms_connection`, or the server's idle
    timeout). On a server-side stream the idle timeout is also a ceiling, and
    reaching it closes the connection.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: _Link,
                 *, framing: Framing, timeout: float, idle_timeout: float | None = None) -> None:
        self._reader = reader
        self._writer = writer
        self._link = link
        self.framing: Framing = framing
        self.timeout = timeout
        self.idle_timeout = idle_timeout
        self._closed = False
        self._read_lock = asyncio.Lock()
        self._write_lock = asyncio.Lock()
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)

    def __repr__(self) -> str:
        return (f"<ApduStream {self.framing} peer={self.peer} client={self.client_address} "
                f"server={self.server_address}{' closed' if self._closed else ''}>")

    @property
    def client_address(self) -> int | None:
        """Client SAP: the client's wPort, or its HDLC address."""
        return self._link.client_address

    @property
    def server_address(self) -> int | None:
        """Server SAP: the logical device's wPort, or the upper HDLC address."""
        return self._link.server_address

    @property
    def physical_address(self) -> int | None:
        """The lower HDLC server address, when the link uses one."""
        return self._link.physical_address

    @property
    def closed(self) -> bool:
        return self._closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """Transport details (``"ssl_object"``, ``"peercert"``, ``"sockname"`` ...)."""
        return self._writer.get_extra_info(name, default)

    async def send(self, apdu: bytes) -> None:
        """Send one APDU; with HDLC, returns once every segment is acknowledged."""
        if self._closed:
            raise ConnectionClosed(f"connection to {self.peer} is closed")
        async with self._write_lock:
            self._link.start_send(bytes(apdu))  # a refusal here leaves the link as it was
            await self._flush()
            if self._link.send_pending:
                async with self._read_lock:
                    deadline = self._deadline(None)
                    while self._link.send_pending:
                        await self._read_some(deadline, "the acknowledgement of a segment")

    async def recv(self, timeout: float | None = None) -> bytes:
        """The next whole APDU from the peer."""
        async with self._read_lock:
            deadline = self._deadline(timeout)
            while True:
                apdu = self._link.pop_apdu()
                if apdu is not None:
                    return apdu
                if isinstance(self._link, _HdlcLink) and self._link.poll_returned:
                    await self._repoll(deadline)
                await self._read_some(deadline, "an APDU")

    def close(self) -> None:
        """Close the connection now (no HDLC DISC; use :meth:`aclose` for that)."""
        if not self._closed:
            self._closed = True
            self._writer.close()

    async def aclose(self) -> None:
        """Close politely: an HDLC client first sends DISC and waits briefly for UA."""
        if self._closed:
            return
        link = self._link
        if isinstance(link, _HdlcLink) and link.conn.role is Role.CLIENT:
            try:
                link.conn.disconnect()
                await self._flush()
                deadline = self._deadline(min(self.timeout, 2.0))
                while link.closed_reason is None:
                    await self._read_some(deadline, "UA answering DISC")
            except ConnectionFailed:
                pass
        self.close()
        try:
            await asyncio.wait_for(self._writer.wait_closed(), 2.0)
        except (OSError, TimeoutError, ssl_module.SSLError):
            pass

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()

    # --- internals ----------------------------------------------------------------

    async def _repoll(self, deadline: _Deadline) -> None:
        """HDLC client: the server had no answer ready; hand it the poll again."""
        assert isinstance(self._link, _HdlcLink)
        self._link.poll_returned = False
        loop = asyncio.get_running_loop()
        await asyncio.sleep(max(0.0, min(_REPOLL_DELAY, deadline.at - loop.time())))
        self._link.conn.poll()
        await self._flush()

    def _deadline(self, timeout: float | None) -> _Deadline:
        limit = self.timeout if timeout is None else timeout
        idle = self.idle_timeout is not None and self.idle_timeout <= limit
        if idle:
            assert self.idle_timeout is not None
            limit = self.idle_timeout
        return _Deadline(asyncio.get_running_loop().time() + limit, idle)

    async def _flush(self) -> None:
        data = self._link.data_to_send()
        if not data:
            return
        if self._closed:
            raise ConnectionClosed(f"connection to {self.peer} is closed")
        try:
            self._writer.write(data)
            await self._writer.drain()
        except (ConnectionError, OSError) as exc:
            self.close()
            raise ConnectionClosed(f"connection to {self.peer} lost while sending: "
                                   f"{exc.strerror or exc.__class__.__name__}") from None

    async def _read_some(self, deadline: _Deadline, what: str) -> None:
        if self._closed:
            raise ConnectionClosed(f"connection to {self.peer} is closed")
        if self._link.closed_reason is not None:
            self.close()
            raise ConnectionClosed(f"{self.peer}: {self._link.closed_reason}")
        remaining = deadline.at - asyncio.get_running_loop().time()
        try:
            if remaining <= 0:
                raise TimeoutError
            data = await asyncio.wait_for(self._reader.read(_READ_CHUNK),
                                          None if math.isinf(remaining) else remaining)
        except TimeoutError:
            if deadline.idle:  # the server's idle limit, not a shorter wait the caller chose
                self.close()
                raise TransportTimeout(f"{self.peer} idle: no whole APDU within "
                                       f"{self.idle_timeout:g} s, connection closed") from None
            raise TransportTimeout(f"timed out waiting for {what} from {self.peer}") from None
        except (ConnectionError, OSError, ssl_module.SSLError) as exc:
            self.close()
            raise ConnectionClosed(f"connection to {self.peer} lost: "
                                   f"{getattr(exc, 'strerror', None) or exc.__class__.__name__}"
                                   ) from None
        if not data:
            self.close()
            raise ConnectionClosed(f"{self.peer} closed the connection")
        try:
            self._link.receive_data(data)
        except TransportError as exc:
            self.close()
            raise type(exc)(f"{self.peer}: {exc}") from None
        await self._flush()


def _check_options(framing: str, max_frame: int, transport: str = "tcp",
                   ssl: object = None) -> None:
    if framing not in ("wrapper", "hdlc"):
        raise UsageError(f"unknown framing {framing!r}; use 'wrapper' or 'hdlc'")
    if transport not in ("tcp", "udp", "serial", "optical"):
        raise UsageError(f"transport must be tcp, udp, serial or optical, got {transport!r}")
    if transport == "udp" and (framing != "wrapper"
                               or (ssl is not None and not getattr(ssl, "dtls", False))):
        raise UsageError("over udp DLMS uses the wrapper, without TLS (DTLS: a "
                         "transport.dtls context)")
    if transport in ("serial", "optical") and (framing != "hdlc" or ssl is not None):
        raise UsageError("over a serial line DLMS uses HDLC framing, without TLS")
    limit = 0xFFFF if framing == "wrapper" else 16 * 1024 * 1024
    if not 1 <= max_frame <= limit:
        raise UsageError(f"max_frame for {framing} must be 1..{limit}, got {max_frame}")


def _connect_error(host: str, port: int, exc: BaseException, timeout: float) -> ConnectionFailed:
    where = f"cannot connect to {host}:{port}"
    if isinstance(exc, ConnectionRefusedError):
        return ConnectionFailed(f"{where}: connection refused")
    if isinstance(exc, TimeoutError):
        return ConnectionFailed(f"{where}: no answer within {timeout:g} s")
    if isinstance(exc, socket.gaierror):
        return ConnectionFailed(f"{where}: host name not resolved")
    if isinstance(exc, ssl_module.SSLError):
        return ConnectionFailed(f"{where}: TLS handshake failed ({exc.reason or exc.__class__.__name__})")
    if isinstance(exc, OSError):
        return ConnectionFailed(f"{where}: {exc.strerror or exc.__class__.__name__}")
    return ConnectionFailed(f"{where}: {exc.__class__.__name__}")


async def open_dlms_connection(
    host: str,
    port: int = DEFAULT_PORT,
    *,
    framing: Framing = "wrapper",
    client_address: int = 16,
    server_address: int = 1,
    physical_address: int | None = None,
    timeout: float = 5.0,
    ssl: ssl_module.SSLContext | None = None,
    server_hostname: str | None = None,
    max_frame: int = DEFAULT_MAX_PAYLOAD,
    hdlc_parameters: HdlcParameters = DEFAULT_PARAMETERS,
    transport: Transport = "tcp",
) -> ApduStream:
    """Connect to a DLMS server and return an :class:`ApduStream`.

    ``transport="udp"`` speaks the wrapper over UDP (one frame per datagram; no
    HDLC, no TLS there). ``transport="serial"`` (or ``"optical"``, with the
    IEC 62056-21 mode E opening first) speaks HDLC on the serial device ``host``
    at ``port`` baud (see :mod:`~metercert.transport.serial`).

    ``client_address``/``server_address`` are wPorts (wrapper) or HDLC addresses;
    ``physical_address`` adds a lower HDLC address. With HDLC the link is set
    up (SNRM/UA) before this returns. ``ssl`` is passed through to asyncio.
    ``max_frame`` bounds a received wrapper payload or reassembled HDLC APDU.
    """
    _check_options(framing, max_frame, transport, ssl)
    if transport in ("serial", "optical"):  # host is the device path, port the baud rate
        from metercert.transport.serial import open_serial_dlms

        return await open_serial_dlms(host, port, optical=transport == "optical",
                                      client_address=client_address,
                                      server_address=server_address,
                                      physical_address=physical_address, timeout=timeout,
                                      max_frame=max_frame, hdlc_parameters=hdlc_parameters)
    if transport == "udp":
        if ssl is not None:  # DTLS 1.2 (see transport.dtls)
            from metercert.transport.dtls import open_dlms_dtls

            return await open_dlms_dtls(host, port, ssl,  # type: ignore[arg-type]
                                        client_address=client_address,
                                        server_address=server_address, timeout=timeout,
                                        server_hostname=server_hostname, max_frame=max_frame)
        from metercert.transport.datagram import open_dlms_datagram

        return await open_dlms_datagram(host, port, client_address=client_address,
                                        server_address=server_address, timeout=timeout,
                                        max_frame=max_frame)
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                host, port, ssl=ssl,
                server_hostname=(server_hostname if server_hostname is not None else
                                 host if ssl is not None else None),
                ssl_handshake_timeout=timeout if ssl is not None else None,
                limit=_READ_CHUNK,
            ),
            timeout,
        )
    except (OSError, TimeoutError, ssl_module.SSLError) as exc:
        raise _connect_error(host, port, exc, timeout) from None
    link: _Link
    if framing == "wrapper":
        link = _WrapperLink(Role.CLIENT, client_address, server_address, max_frame)
    else:
        link = _HdlcLink(HdlcConnection(
            Role.CLIENT, client_address=HdlcAddress(client_address),
            server_address=HdlcAddress(server_address, physical_address),
            parameters=hdlc_parameters, max_apdu=max_frame))
    stream = ApduStream(reader, writer, link, framing=framing, timeout=timeout)
    if isinstance(link, _HdlcLink):
        await establish_hdlc(stream, link, f"{host}:{port}")
    return stream


async def establish_hdlc(stream: ApduStream, link: _HdlcLink, where: str) -> None:
    """Client: SNRM, then wait for UA (closes the stream and says where on failure)."""
    try:
        link.conn.connect()
        await stream._flush()
        deadline = stream._deadline(None)
        while not link.established:
            await stream._read_some(deadline, "UA answering SNRM")
    except ConnectionFailed as exc:
        stream.close()
        raise ConnectionFailed(f"cannot open HDLC link to {where}: {exc}") from None


Handler = Callable[[ApduStream], Awaitable[None]]


async def run_handler(server: DlmsServer, handler: Handler, stream: ApduStream) -> None:
    """Run ``handler`` for one connection of ``server``: whatever it raises closes
    only that connection (and is remembered in ``server.drops``)."""
    task = asyncio.current_task()
    if task is not None:
        server._tasks.add(task)
        task.add_done_callback(server._tasks.discard)
    server.active.add(stream)
    server.served += 1
    try:
        await handler(stream)
    except ConnectionClosed as exc:
        log.debug("connection ended: %s", exc)
    except TransportError as exc:
        server.drops.append(str(exc))
        log.info("dropped connection: %s", exc)
    except Exception as exc:  # a handler defect must not take the server down
        server.drops.append(f"{stream.peer}: handler failed: {exc.__class__.__name__}")
        log.warning("handler failed for %s: %s", stream.peer, exc.__class__.__name__,
                    exc_info=log.isEnabledFor(logging.DEBUG))
    finally:
        server.active.discard(stream)
        await stream.aclose()


class DlmsServer:
    """A running :func:`serve_dlms` listener; ``async with`` closes it."""

    def __init__(self, server: Any, framing: Framing) -> None:
        # ``server``: an asyncio.Server, or the UDP listener of transport.datagram
        self._server = server
        self.framing: Framing = framing
        self.active: set[ApduStream] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.served = 0
        #: Why recent connections were dropped (one line each, newest last).
        self.drops: deque[str] = deque(maxlen=100)
        sock = server.sockets[0].getsockname()
        self.host: str = sock[0]
        self.port: int = sock[1]

    def close(self) -> None:
        """Stop listening and close every open connection."""
        self._server.close()
        for stream in list(self.active):
            stream.close()

    async def wait_closed(self) -> None:
        """Wait for the listener and for every connection's handler to finish."""
        await self._server.wait_closed()
        pending = {task for task in self._tasks if not task.done()}
        if pending:
            _, still = await asyncio.wait(pending, timeout=2.0)
            for task in still:
                task.cancel()
            if still:
                await asyncio.wait(still, timeout=1.0)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
        await self.wait_closed()


async def serve_dlms(
    handler: Handler,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    *,
    framing: Framing = "wrapper",
    ssl: ssl_module.SSLContext | None = None,
    max_frame: int = DEFAULT_MAX_PAYLOAD,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    server_address: int | None = None,
    hdlc_parameters: HdlcParameters = SERVER_PARAMETERS,
    max_connections: int | None = None,
    transport: Transport = "tcp",
    hdlc_flaws: frozenset[str] = frozenset(),
) -> DlmsServer:
    """Listen on ``host:port`` (0 picks a free port) and run ``handler`` per connection.

    Each connection gets its own :class:`ApduStream`. A malformed or oversized
    frame, a protocol violation or ``idle_timeout`` seconds without a whole APDU
    closes that connection only (``hdlc_flaws``: the reference meter's flawed link
    layers, see :data:`~metercert.transport.hdlc.LINK_FLAWS`). With HDLC, ``server_address`` restricts the
    upper address the server answers to (default: any). An exception escaping
    the handler is logged and closes only its connection. Beyond
    ``max_connections`` open connections, new ones are closed at once.
    """
    _check_options(framing, max_frame, transport, ssl)
    if transport == "udp":
        if ssl is not None:  # DTLS 1.2 (see transport.dtls)
            from metercert.transport.dtls import serve_dlms_dtls

            return await serve_dlms_dtls(handler, host, port, ssl,  # type: ignore[arg-type]
                                         max_frame=max_frame, idle_timeout=idle_timeout,
                                         max_connections=max_connections)
        from metercert.transport.datagram import serve_dlms_datagram

        return await serve_dlms_datagram(handler, host, port, max_frame=max_frame,
                                         idle_timeout=idle_timeout,
                                         max_connections=max_connections)
    holder: list[DlmsServer] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server = holder[0]
        if max_connections is not None and len(server.active) >= max_connections:
            peer = writer.get_extra_info("peername")
            server.drops.append(f"{peer[0]}:{peer[1]}: refused, {max_connections} "
                                "connection(s) already open" if isinstance(peer, tuple)
                                else f"refused, {max_connections} connection(s) already open")
            writer.close()
            return
        link: _Link
        if framing == "wrapper":
            link = _WrapperLink(Role.SERVER, None, None, max_frame)
        else:
            link = _HdlcLink(HdlcConnection(
                Role.SERVER, client_address=None, server_address=server_address,
                parameters=hdlc_parameters, max_apdu=max_frame, flaws=hdlc_flaws))
        stream = ApduStream(reader, writer, link, framing=framing, timeout=idle_timeout,
                            idle_timeout=idle_timeout)
        await run_handler(server, handler, stream)

    try:
        raw = await asyncio.start_server(on_connect, host, port, ssl=ssl, limit=_READ_CHUNK,
                                         reuse_address=True)
    except OSError as exc:
        raise ConnectionFailed(f"cannot listen on {host}:{port}: "
                               f"{exc.strerror or exc.__class__.__name__}") from None
    holder.append(DlmsServer(raw, framing))
    return holder[0]
