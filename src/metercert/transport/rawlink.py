"""Raw HDLC frames to and from a meter, with no link state machine in between.

Link-layer checks must send what a conformant client never sends (a frame with a
wrong FCS, a repeated N(S), an information field above the negotiated maximum) and
see exactly which frames come back, so they go around :class:`HdlcConnection`.
Works over TCP (HDLC framing on the connection) and over serial lines (with the
IEC 62056-21 mode E opening first on an optical port).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from metercert.errors import ConnectionFailed
from metercert.transport.errors import BadFrame
from metercert.transport.hdlc_frame import (
    LLC_COMMAND,
    FrameKind,
    HdlcAddress,
    HdlcFrame,
    HdlcFrameDecoder,
    encode_frame,
)

__all__ = ["RawHdlcLink", "corrupt_fcs", "i_frame"]


def i_frame(client: int, server: int | HdlcAddress, ns: int, nr: int, apdu: bytes, *,
            pf: bool = True) -> bytes:
    """One unsegmented command I-frame carrying ``apdu`` behind the LLC header."""
    dest = server if isinstance(server, HdlcAddress) else HdlcAddress(server)
    return encode_frame(HdlcFrame(dest, HdlcAddress(client), FrameKind.I, pf,
                                  ns, nr, False, LLC_COMMAND + apdu))


def corrupt_fcs(frame: bytes) -> bytes:
    """The same frame with its FCS inverted (the flags stay)."""
    return frame[:-3] + bytes(b ^ 0xFF for b in frame[-3:-1]) + frame[-1:]


class RawHdlcLink:
    """Bytes out, decoded frames in; every frame the meter sends is kept in ``seen``."""

    def __init__(self, reader: Any, writer: Any, where: str) -> None:
        self._reader, self._writer, self.where = reader, writer, where
        self._decoder = HdlcFrameDecoder()
        self.seen: list[HdlcFrame] = []
        self.closed = False

    @classmethod
    async def open(cls, transport: str, host: str, port: int, *, timeout: float = 5.0
                   ) -> RawHdlcLink:
        if transport in ("serial", "optical"):
            from metercert.transport.serial import (
                SIGN_ON_BAUD,
                client_mode_e,
                line_address,
                open_serial_line,
            )

            path, _ = line_address(host)
            line = await open_serial_line(path, SIGN_ON_BAUD if transport == "optical" else port)
            try:
                if transport == "optical":
                    await client_mode_e(line, port, timeout)
            except BaseException:
                line.close()
                raise
            channel = line.channel(owns_line=True)
            return cls(channel, channel, host)
        if transport != "tcp":
            raise ConnectionFailed(f"HDLC runs over tcp or a serial line, not {transport}")
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        except (OSError, TimeoutError) as exc:
            raise ConnectionFailed(f"cannot connect to {host}:{port}: "
                                   f"{getattr(exc, 'strerror', None) or 'no answer'}") from None
        return cls(reader, writer, f"{host}:{port}")

    async def send(self, data: bytes) -> None:
        try:
            self._writer.write(data)
            await self._writer.drain()
        except (OSError, ConnectionError):
            self.closed = True

    async def collect(self, within: float, *, until: FrameKind | None = None
                      ) -> list[HdlcFrame]:
        """Frames that arrive within ``within`` seconds (early return on ``until``)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        got: list[HdlcFrame] = []
        while not self.closed and (remaining := deadline - loop.time()) > 0:
            try:
                data = await asyncio.wait_for(self._reader.read(65536), remaining)
            except TimeoutError:
                break
            except (OSError, ConnectionError):
                self.closed = True
                break
            if not data:
                self.closed = True  # the meter closed the connection (or the line hung up)
                break
            self._decoder.feed(data)
            while True:
                try:
                    frame = self._decoder.next_frame()
                except BadFrame:
                    continue
                if frame is None:
                    break
                got.append(frame)
            if until is not None and any(f.kind is until for f in got):
                break
        self.seen += got
        return got

    async def close(self) -> None:
        self.closed = True
        with contextlib.suppress(Exception):
            self._writer.close()
            await self._writer.wait_closed()
