"""Serving reference meters over TCP (wrapper or HDLC framing, optionally TLS).

Requests are answered in the event loop, without a thread hop per request: a session
only *appends* the counters it accepts to the process's replay journal (deferred mode),
and its answer is written only once the journal has made that record durable (group
commit: one fsync serves many requests, on any meter). So no response leaves before the
window that accepted its request is durable.

* Plain TCP wrapper meters (no TLS, capture or connection slots) are served by
  callbacks, :class:`_WrapperMeterConnection`: no task, future, lock or timer per
  request. By default (``MeterFleet.commit = "inline"``) the requests handled in one
  pass of the event loop wait for one sync made at the start of the next pass, in the
  loop, then all their answers leave; ``"thread"`` hands each batch to the journal's
  writer thread instead (:meth:`ReplayJournal.when_durable`), which keeps the loop
  running during the sync but costs two thread wake-ups per batch.
* Everything else (TLS, HDLC, UDP, serial lines, captures, connection slots) goes
  through :func:`serve_session` on an :class:`ApduStream`, which awaits
  :meth:`ReplayJournal.durable` (the writer thread) before it sends.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl as ssl_module
import weakref
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from metercert.cosem import ExceptionResponse, ServiceError, StateError
from metercert.errors import ConnectionFailed, UsageError
from metercert.meter.capture import ConnectionRecorder, PcapRecorder
from metercert.meter.limits import (
    Connection,
    ConnectionGate,
    ConnectionLimits,
    default_total,
    quiet_accept_errors,
)
from metercert.meter.model import Meter
from metercert.meter.profile import MeterProfile
from metercert.meter.rbac import load_rbac
from metercert.meter.session import CloseConnection, MeterSession
from metercert.security import CounterStoreError, write_key_file
from metercert.security.journal import ReplayJournal
from metercert.security.keys import keyset_from_mapping
from metercert.transport.errors import FrameTooLarge, TransportError
from metercert.transport.hdlc import LINK_FLAWS
from metercert.transport.stream import ApduStream, DlmsServer, serve_dlms
from metercert.transport.wrapper import (
    MAX_PAYLOAD_FIELD,
    WrapperDecoder,
    WrapperFrame,
    encode_wrapper,
)

log = logging.getLogger("metercert.meter")
#: the HDLC upper address the meter answers: its management logical device (IEC 62056-46)
_LOGICAL_DEVICE = 1


_STORE_FAILED = ExceptionResponse(StateError.SERVICE_NOT_ALLOWED,
                                  ServiceError.OPERATION_NOT_POSSIBLE).to_bytes()


async def _durable(meter: Meter) -> bool:
    """Wait until every counter this meter's process accepted so far is durable; False
    (logged) when the journal cannot persist: the answer must not leave."""
    journal = meter.state.journal
    if journal is None or not journal.pending:
        return True
    try:
        await journal.durable()
    except CounterStoreError as exc:
        log.error("meter %d: %s", meter.state.index, exc)
        return False
    return True


def _handle_locked(meter: Meter, session: MeterSession, apdu: bytes) -> bytes | None:
    with meter.lock:  # one request at a time per meter, as a real meter's firmware does
        return session.handle(apdu)


def _recorder_for(stream: ApduStream, pcap: PcapRecorder | None) -> ConnectionRecorder | None:
    if pcap is None:
        return None
    peer = stream.get_extra_info("peername")
    local = stream.get_extra_info("sockname")
    if not (isinstance(peer, tuple) and isinstance(local, tuple)):
        return None
    return pcap.connection((peer[0], peer[1]), (local[0], local[1]))


_SESSIONS_PER_CONNECTION = 16


def _session_for(sessions: dict[int, MeterSession], meter: Meter,
                 client_sap: int) -> MeterSession:
    """The association of ``client_sap`` on one connection, made on its first frame; the
    oldest goes when a connection holds :data:`_SESSIONS_PER_CONNECTION` of them."""
    session = sessions.get(client_sap)
    if session is None:
        if len(sessions) >= _SESSIONS_PER_CONNECTION:
            del sessions[next(iter(sessions))]
        session = sessions[client_sap] = MeterSession(meter, client_sap)
    return session


def _oversized_frame(meter: Meter) -> None:
    """A frame over the size limit: the connection closes, and a meter with the
    ``wedged-by-oversized-frame`` flaw goes deaf on every connection until restart."""
    if meter.profile.has("wedged-by-oversized-frame"):
        meter.wedged = True
        log.info("meter %d wedged by an oversized frame", meter.state.index)


async def serve_session(meter: Meter, stream: ApduStream, *, idle_timeout: float = 120.0,
                        executor: Executor | None = None,
                        pcap: PcapRecorder | None = None,
                        on_frame: Callable[[], None] | None = None) -> None:
    """Run associations on one connection until the peer leaves or a frame is bad.

    ``on_frame`` is called for every whole frame received (the connection gate sheds
    connections that never send one first).

    Requests are answered in the event loop (see the module text: the journal's group
    commit makes the window durable before the answer leaves). With an ``executor`` each
    request is handled in a worker thread instead (a meter state without a deferred
    journal, whose accept syncs in place).
    """
    # One association per client SAP: frames on one connection (or, over UDP, from one
    # address, which a new client socket may reuse) can come from several client wPorts.
    sessions: dict[int, MeterSession] = {}
    loop = asyncio.get_running_loop()
    record = _recorder_for(stream, pcap)
    try:
        while not stream.closed:
            try:
                apdu = await stream.recv(timeout=idle_timeout)
            except FrameTooLarge:
                _oversized_frame(meter)
                raise
            if on_frame is not None:
                on_frame()
            if meter.wedged:
                continue  # accepted and read, never answered
            client_sap, server_sap = stream.client_address or 16, stream.server_address or 1
            if record is not None:
                record.from_client(client_sap, server_sap, apdu)
            session = _session_for(sessions, meter, client_sap)
            try:
                if executor is None:
                    answer = session.handle(apdu)
                else:
                    answer = await loop.run_in_executor(executor, _handle_locked, meter,
                                                        session, apdu)
            except CloseConnection as close:
                answer = close.last
                if not await _durable(meter):
                    answer = _STORE_FAILED
                if answer:
                    if record is not None:
                        record.from_meter(server_sap, client_sap, answer)
                    await stream.send(answer)
                break
            if not await _durable(meter):
                answer = _STORE_FAILED  # the window is not durable: the answer must not leave
                if record is not None:
                    record.from_meter(server_sap, client_sap, answer)
                await stream.send(answer)
                break
            if answer is not None:
                if record is not None:
                    record.from_meter(server_sap, client_sap, answer)
                await stream.send(answer)
    except TransportError:
        pass
    finally:
        stream.close()
        if not meter.wedged:
            meter.state.save_volatile_counters()  # a clean disconnect (replay-window flaw)


class _WrapperMeterConnection(asyncio.Protocol):
    """One plain TCP connection of a wrapper meter, driven by the event loop's callbacks.

    The service is :func:`serve_session`'s (which serves TLS, HDLC, UDP, serial lines,
    captures and connection slots): one association per client wPort, requests handled
    one at a time in arrival order, an answer written only once the journal says the
    window that accepted its request is durable (:meth:`ReplayJournal.when_durable`;
    a journal that cannot persist: the plain exception-response and the connection
    closes), a frame that breaks the framing closes the connection, so does
    ``idle_timeout`` seconds without a whole frame while no answer is due. What it saves
    is the machinery: no task, future, lock or timer per request.
    """

    def __init__(self, fleet: MeterFleet, meter: Meter, max_frame: int,
                 server: list[DlmsServer]) -> None:
        self.fleet, self.meter, self.max_frame, self._server = fleet, meter, max_frame, server
        self.transport: asyncio.Transport | None = None
        self.conn: Connection | None = None
        self.closed = False
        self.sessions: dict[int, MeterSession] = {}
        self.queue: deque[WrapperFrame] = deque()
        self.busy = False           # an answer awaits the journal
        self.write_paused = False
        self.read_paused = False
        self.last = 0.0             # the last whole frame or answer (the idle clock)
        self.timer: asyncio.TimerHandle | None = None
        self.peer = "?"

    # -- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        gate = self.fleet.gate
        if gate is not None and isinstance(peer, tuple):
            self.conn = gate.admit(str(peer[0]), self.close)
            if self.conn is None:
                self.closed = True
                transport.close()
                return
        else:
            self.conn = Connection("", self.close, 0.0)
        self.decoder = WrapperDecoder(max_payload=self.max_frame)
        if self._server:
            self._server[0].active.add(self)  # type: ignore[arg-type]
            self._server[0].served += 1
        loop = asyncio.get_running_loop()
        self.last = loop.time()
        self.timer = loop.call_at(self.last + self.fleet.idle_timeout, self._idle)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        meter = self.meter
        try:
            self.decoder.feed(data)
            frames = list(self.decoder)
        except FrameTooLarge:
            _oversized_frame(meter)
            self.close()
            return
        except TransportError:
            self.close()
            return
        for frame in frames:
            assert self.conn is not None
            self.conn.touch()
            self.last = asyncio.get_running_loop().time()
            if not meter.wedged:  # wedged: accepted and read, never answered
                self.queue.append(frame)
        if len(self.queue) > _QUEUED_FRAMES and not self.read_paused:
            assert self.transport is not None
            self.read_paused = True  # a peer that sends faster than it is answered waits
            self.transport.pause_reading()
        self._serve()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._serve()

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended()

    # -- serving ---------------------------------------------------------------------------
    def _serve(self) -> None:
        """Handle queued requests until one must wait for the journal (or the peer)."""
        meter = self.meter
        while self.queue and not (self.busy or self.write_paused or self.closed):
            frame = self.queue.popleft()
            session = _session_for(self.sessions, meter, frame.source_wport or 16)
            last = False
            try:
                answer = session.handle(frame.payload)
            except CloseConnection as close:
                answer, last = close.last, True
            except Exception as exc:  # a defect must close this connection only
                log.warning("meter %d: handler failed for %s: %s", meter.state.index,
                            self.peer, exc.__class__.__name__,
                            exc_info=log.isEnabledFor(logging.DEBUG))
                self.close()
                return
            reply = (frame.dest_wport, frame.source_wport, answer, last)
            journal = meter.state.journal
            if journal is not None and journal.pending:
                self.busy = True  # the answer leaves once its window is durable
                if self.fleet.commit == "inline":
                    _InlineCommit.of(journal).add(self, reply)
                else:
                    journal.when_durable(functools.partial(self._durable, reply=reply))
                return
            self._answer(*reply)
        if self.read_paused and not self.queue and not self.closed:
            assert self.transport is not None
            self.read_paused = False
            self.transport.resume_reading()

    def _durable(self, error: BaseException | None,
                 reply: tuple[int, int, bytes | None, bool]) -> None:
        self.busy = False
        if self.closed:
            return
        if error is not None:
            log.error("meter %d: %s", self.meter.state.index, error)
            # the window is not durable: the answer must not leave
            self._answer(reply[0], reply[1], _STORE_FAILED, True)
            return
        self._answer(*reply)
        self._serve()

    def _answer(self, source: int, dest: int, answer: bytes | None, last: bool) -> None:
        if answer and not self.closed:
            assert self.transport is not None
            self.transport.write(encode_wrapper(source, dest, answer))
            self.last = asyncio.get_running_loop().time()
        if last:
            self.close()

    def _idle(self) -> None:
        """The idle clock: a connection without a whole frame for idle_timeout seconds
        (and no answer due) is closed; otherwise look again when that time is up."""
        if self.closed:
            return
        loop = asyncio.get_running_loop()
        due = self.last + self.fleet.idle_timeout
        if self.busy or self.queue or loop.time() < due:
            self.timer = loop.call_at(max(due, loop.time() + 0.01), self._idle)
            return
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.transport is not None:
            self.transport.close()  # connection_lost follows: _ended

    def _ended(self) -> None:
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.conn is None:
            return  # refused at the gate: it never served
        conn, self.conn = self.conn, None
        if self._server:
            self._server[0].active.discard(self)  # type: ignore[arg-type]
        if self.fleet.gate is not None:
            self.fleet.gate.release(conn)
        if not self.meter.wedged:
            self.meter.state.save_volatile_counters()  # a disconnect (replay-window flaw)


class _InlineCommit:
    """Group commit in the event loop: the requests handled in one pass of the loop (on
    any meter of the journal) wait for one sync, made at the start of the next pass,
    then all their answers leave. No thread: the loop waits for the disk once a batch."""

    _by_journal: ClassVar[weakref.WeakKeyDictionary[ReplayJournal, _InlineCommit]] = (
        weakref.WeakKeyDictionary())

    def __init__(self, journal: ReplayJournal) -> None:
        self.journal = journal
        self.waiting: list[tuple[_WrapperMeterConnection, tuple[int, int, bytes | None, bool]]] = []

    @classmethod
    def of(cls, journal: ReplayJournal) -> _InlineCommit:
        commit = cls._by_journal.get(journal)
        if commit is None:
            commit = cls._by_journal[journal] = cls(journal)
        return commit

    def add(self, conn: _WrapperMeterConnection,
            reply: tuple[int, int, bytes | None, bool]) -> None:
        if not self.waiting:
            asyncio.get_running_loop().call_soon(self.run)
        self.waiting.append((conn, reply))

    def run(self) -> None:
        waiting, self.waiting = self.waiting, []
        error: BaseException | None = None
        try:
            self.journal.sync()
        except CounterStoreError as exc:
            error = exc
        for conn, reply in waiting:
            conn._durable(error, reply)


#: frames read ahead on one connection before it stops reading until they are answered
_QUEUED_FRAMES = 64


async def _serve_wrapper_tcp(fleet: MeterFleet, meter: Meter, host: str, port: int,
                             max_frame: int) -> DlmsServer:
    """Listen for one wrapper meter over plain TCP (see :class:`_WrapperMeterConnection`)."""
    holder: list[DlmsServer] = []
    loop = asyncio.get_running_loop()
    try:
        raw = await loop.create_server(
            lambda: _WrapperMeterConnection(fleet, meter, max_frame, holder), host, port,
            reuse_address=True)
    except OSError as exc:
        raise ConnectionFailed(f"cannot listen on {host}:{port}: "
                               f"{exc.strerror or exc.__class__.__name__}") from None
    holder.append(DlmsServer(raw, "wrapper"))
    return holder[0]


@dataclass
class MeterFleet:
    """``count`` meters on consecutive ports, each with its own state folder."""

    profile: MeterProfile
    state_dir: Path
    host: str = "127.0.0.1"
    port: int = 4059
    count: int = 1
    framing: str = "wrapper"
    transport: str = "tcp"  # or "udp": the wrapper, one frame per datagram
    ssl: ssl_module.SSLContext | None = None
    idle_timeout: float = 120.0
    meters: list[Meter] = field(default_factory=list)
    servers: list[DlmsServer] = field(default_factory=list)
    executor: ThreadPoolExecutor | None = None
    capture_dir: Path | None = None
    pcap: PcapRecorder | None = None
    #: caps on open TCP connections (see metercert.meter.limits)
    limits: ConnectionLimits = field(default_factory=ConnectionLimits)
    gate: ConnectionGate | None = None
    #: serve HDLC on a serial line instead: a device path, or "pty:LINK" for a new
    #: pseudo-terminal reached through the symlink LINK (see transport.serial)
    line: str | None = None
    baud: int = 9600
    optical: bool = False  # IEC 62056-21 mode E opening before each HDLC session
    #: pushes: ``tcp://HOST:PORT`` or ``udp://HOST:PORT`` gets one at power-up, then one
    #: every ``push_interval`` seconds (meter/push.py)
    push_to: str | None = None
    push_interval: float | None = None
    push_tasks: list[asyncio.Task[None]] = field(default_factory=list)
    #: how plain TCP wrapper meters wait for the journal: "inline" (one sync per pass of
    #: the event loop, in the loop) or "thread" (the journal's writer thread)
    commit: str = "inline"

    async def start(self) -> None:
        rbac = load_rbac(self.profile.rbac)
        if self.line is not None and (self.count != 1 or self.framing != "hdlc"):
            raise UsageError("a serial line carries one meter, in HDLC framing")
        if self.capture_dir is not None:
            if self.framing != "wrapper" or self.transport != "tcp":
                raise UsageError("--capture records the wrapper over tcp only")
            self.pcap = PcapRecorder(self.capture_dir)
        # requests are answered in the loop, their windows made durable by the journal's
        # group commit; the executor stays for callers that run blocking meter work
        self.executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="meter")
        self.gate = ConnectionGate(self.limits, self.limits.total or default_total(self.count))
        self._loud_accept = quiet_accept_errors(asyncio.get_running_loop(), self.gate.log)
        # the wedge flaw must see a 65535-byte header as soon as it arrives: one byte below
        # the field's maximum makes the framing refuse it at once
        max_frame = (MAX_PAYLOAD_FIELD - 1 if self.profile.has("wedged-by-oversized-frame")
                     else MAX_PAYLOAD_FIELD)
        link_flaws = frozenset(f for f in self.profile.flaws if f in LINK_FLAWS)  # HDLC ones
        # plain TCP wrapper meters without connection slots or capture are served by
        # _WrapperMeterConnection (callbacks, no task per request); the rest by serve_session
        fast = (self.line is None and self.framing == "wrapper" and self.transport == "tcp"
                and self.ssl is None and self.pcap is None and not self.profile.max_connections)
        for i in range(self.count):
            meter = Meter(self.profile, self.state_dir, i, rbac)
            self.meters.append(meter)  # closed by stop() even if it never serves
            if meter.state.journal is not None:
                meter.state.journal.deferred = True  # serve_session awaits it (group commit)
            port = 0 if self.port == 0 else self.port + i
            # max_connections: further connections wait, unread, for a free slot
            slots = (asyncio.Semaphore(self.profile.max_connections)
                     if self.profile.max_connections else None)

            async def handler(stream: ApduStream, meter: Meter = meter,
                              slots: asyncio.Semaphore | None = slots) -> None:
                conn = self._admit(stream)
                if conn is None:
                    return
                try:
                    if slots is None:
                        await serve_session(meter, stream, idle_timeout=self.idle_timeout,
                                            pcap=self.pcap,
                                            on_frame=conn.touch)
                        return
                    async with slots:
                        if not stream.closed:
                            await serve_session(meter, stream, idle_timeout=self.idle_timeout,
                                                pcap=self.pcap,
                                                on_frame=conn.touch)
                finally:
                    if self.gate is not None:
                        self.gate.release(conn)

            if fast:
                server = await _serve_wrapper_tcp(self, meter, self.host, port, max_frame)
                self.servers.append(server)
                continue
            if self.line is not None:
                from metercert.transport.serial import serve_meter_line

                server = await serve_meter_line(handler, self.line, self.baud,
                                                optical=self.optical, max_frame=max_frame,
                                                idle_timeout=self.idle_timeout,
                                                hdlc_flaws=link_flaws,
                                                server_address=_LOGICAL_DEVICE)
            else:
                server = await serve_dlms(handler, self.host, port, framing=self.framing,  # type: ignore[arg-type]
                                          ssl=self.ssl, idle_timeout=self.idle_timeout,
                                          transport=self.transport,  # type: ignore[arg-type]
                                          max_frame=max_frame, hdlc_flaws=link_flaws,
                                          server_address=_LOGICAL_DEVICE)
            self.servers.append(server)
        if self.push_to is not None:
            from metercert.meter.push import PushSender

            for meter in self.meters:
                sender = PushSender(meter, self.push_to, self.push_interval)
                self.push_tasks.append(asyncio.create_task(sender.run()))

    def _admit(self, stream: ApduStream) -> Connection | None:
        """Register a new TCP connection with the gate (None: it was refused and closed)."""
        peer = stream.get_extra_info("peername")
        if self.gate is None or self.transport != "tcp" or not isinstance(peer, tuple):
            return Connection("", stream.close, 0.0)  # datagram sessions cost no descriptor
        conn = self.gate.admit(str(peer[0]), stream.close)
        if conn is None:
            stream.close()
        return conn

    @property
    def endpoints(self) -> list[tuple[str, int]]:
        return [(s.host, s.port) for s in self.servers]

    def write_key_file(self, path: Path) -> Path:
        entries = [m.state.client_entry(host, port, key_dir=path.parent)
                   for m, (host, port) in zip(self.meters, self.endpoints)]
        sets = [keyset_from_mapping(e, base_dir=path.parent) for e in entries]
        return write_key_file(path, sets)

    async def stop(self) -> None:
        for task in self.push_tasks:
            task.cancel()
        if self.push_tasks:
            await asyncio.wait(self.push_tasks, timeout=2.0)
        restore = getattr(self, "_loud_accept", None)
        if restore is not None:
            restore()
            self._loud_accept = None
        for server in self.servers:
            server.close()
        for server in self.servers:
            await server.wait_closed()
        if self.executor is not None:
            self.executor.shutdown(wait=True)
            self.executor = None
        for meter in self.meters:
            meter.close()
        if self.pcap is not None:
            self.pcap.close()
