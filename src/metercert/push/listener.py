"""Receiving pushes: TCP and UDP (IEC 62056-47 wrapper) and serial lines (HDLC UI/I frames).

Every push is judged by :class:`~metercert.push.verify.PushVerifier` and becomes one row
of the fleet audit's table (built by the fleet's own :class:`ApduRecorder`, so tag
verdicts, counter spaces and meter identities are the ones ``fleet ingest`` gives);
:meth:`PushListener.flush` appends them to a dataset that ``metercert fleet scan`` reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from metercert.errors import ConnectionFailed
from metercert.fleet.ingest import ApduRecorder, KeyRing
from metercert.fleet.pcap import WireApdu
from metercert.fleet.schema import next_id, table_from_rows, write_dataset
from metercert.push.verify import CounterBook, PushRecord, PushVerifier
from metercert.transport.errors import TransportError
from metercert.transport.hdlc_frame import LLC_RESPONSE, FrameKind, HdlcFrameDecoder
from metercert.transport.wrapper import WrapperDecoder

__all__ = ["PushListener"]

log = logging.getLogger("metercert.push")
_SOURCE = "push-listener"


class PushListener:
    """Listeners on any mix of TCP, UDP and serial; one verifier and one record set."""

    def __init__(self, keys: KeyRing, *, out_dir: Path | None = None,
                 state: Path | None = None,
                 on_record: Callable[[PushRecord], None] | None = None) -> None:
        self.verifier = PushVerifier(keys, CounterBook(state))
        self.out_dir = out_dir
        self.on_record = on_record
        self.records: list[PushRecord] = []
        self._recorder = ApduRecorder(keys=keys, source=_SOURCE,
                                      first_id=next_id(out_dir) if out_dir else 0)
        self._rows: list[dict[str, Any]] = []
        self._servers: list[Any] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self.arrived = asyncio.Event()
        self.endpoints: list[str] = []

    # -- one push ------------------------------------------------------------------------
    def handle(self, apdu: bytes, *, meter: str, listener: str, client_sap: int | None,
               server_sap: int | None, link: str, endpoint: str) -> PushRecord:
        record = self.verifier.verify(apdu, meter, endpoint=endpoint, client_sap=client_sap)
        self.records.append(record)
        self._rows += self._recorder.record(WireApdu(
            int(time.time() * 1_000_000), "s2c", listener, meter, client_sap, server_sap,
            link, f"push {meter}", apdu, endpoint, _SOURCE))
        if self.on_record is not None:
            self.on_record(record)
        self.arrived.set()
        return record

    def flush(self) -> list[Path]:
        """Write the rows so far to the dataset (and the counter book to its file)."""
        self._rows += self._recorder.flush()
        self.verifier.book.save()
        if self.out_dir is None or not self._rows:
            return []
        rows, self._rows = self._rows, []
        return write_dataset(table_from_rows(rows), self.out_dir)

    # -- TCP -----------------------------------------------------------------------------
    async def start_tcp(self, host: str, port: int) -> tuple[str, int]:
        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            peer = writer.get_extra_info("peername")
            local = writer.get_extra_info("sockname")
            meter = f"{peer[0]}:{peer[1]}"
            decoder = WrapperDecoder()
            try:
                while data := await reader.read(65536):
                    decoder.feed(data)
                    for frame in decoder:
                        self.handle(frame.payload, meter=meter,
                                    listener=f"{local[0]}:{local[1]}",
                                    client_sap=frame.dest_wport, server_sap=frame.source_wport,
                                    link="wrapper", endpoint=f"{meter}/{frame.source_wport}")
            except (TransportError, OSError) as exc:
                log.info("push connection from %s dropped: %s", meter, exc)
            finally:
                writer.close()

        try:
            server = await asyncio.start_server(on_connect, host, port, reuse_address=True)
        except OSError as exc:
            raise ConnectionFailed(f"cannot listen on {host}:{port}: "
                                   f"{exc.strerror or exc}") from None
        self._servers.append(server)
        bound = server.sockets[0].getsockname()
        self.endpoints.append(f"tcp://{bound[0]}:{bound[1]}")
        return bound[0], bound[1]

    # -- UDP -----------------------------------------------------------------------------
    async def start_udp(self, host: str, port: int) -> tuple[str, int]:
        listener = self

        class _Proto(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                decoder = WrapperDecoder()
                meter = f"{addr[0]}:{addr[1]}"
                try:
                    decoder.feed(data)
                    for frame in decoder:
                        listener.handle(frame.payload, meter=meter, listener=f"{host}:{port}",
                                        client_sap=frame.dest_wport,
                                        server_sap=frame.source_wport, link="wrapper",
                                        endpoint=f"{addr[0]}/{frame.source_wport}")
                except TransportError as exc:
                    log.info("push datagram from %s dropped: %s", meter, exc)

        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_datagram_endpoint(_Proto, local_addr=(host, port))
        except OSError as exc:
            raise ConnectionFailed(f"cannot listen on udp {host}:{port}: "
                                   f"{exc.strerror or exc}") from None
        self._servers.append(transport)
        bound = transport.get_extra_info("sockname")
        self.endpoints.append(f"udp://{bound[0]}:{bound[1]}")
        return bound[0], bound[1]

    # -- serial --------------------------------------------------------------------------
    async def start_serial(self, path: str, baud: int) -> None:
        """Pushes on an HDLC line: UI frames (or I-frames) whose field starts with the LLC
        response header; frames with a bad FCS are dropped, as the link layer does."""
        from metercert.transport.serial import open_serial_line

        line = await open_serial_line(path, baud)
        self._servers.append(line)
        self.endpoints.append(f"serial://{path}?baud={baud}")

        async def run() -> None:
            decoder = HdlcFrameDecoder()
            while data := await line.read():
                decoder.feed(data)
                while True:
                    try:
                        frame = decoder.next_frame()
                    except TransportError:
                        continue
                    if frame is None:
                        break
                    if frame.kind in (FrameKind.UI, FrameKind.I) and frame.info.startswith(
                            LLC_RESPONSE):
                        self.handle(frame.info[len(LLC_RESPONSE):], meter=path,
                                    listener=path, client_sap=frame.dest.upper,
                                    server_sap=frame.source.upper, link="hdlc",
                                    endpoint=f"{path}/hdlc {frame.source.upper}/"
                                             f"{frame.source.lower or 0}")

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for server in self._servers:
            server.close()
            if isinstance(server, asyncio.AbstractServer):
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(server.wait_closed(), 2.0)
        self._servers.clear()
