"""HDLC over a serial line: RS-232/RS-485 adapters, IEC 62056-21 optical probes, pseudo-terminals.

A serial line is one link, not a listener: there is no accept(), and whoever holds the
line talks to the meter. :class:`SerialLine` owns the file descriptor (a pyserial port,
or the master side of a pseudo-terminal for the reference meter) and reads it without
blocking the event loop; :class:`_LineChannel` is one HDLC session on it, shaped like
the asyncio reader/writer pair :class:`~metercert.transport.stream.ApduStream` takes,
so the HDLC state machine and the APDU stream are the very ones TCP uses.

Bytes a session did not consume stay in the line's buffer for the next one: after a
client's DISC the next client's SNRM (or, on an optical port, its sign-on) is not lost.

IEC 62056-21 mode E (optical probes): the client signs on at 300 baud, 7 data bits,
even parity, with ``/?!`` CR LF; the meter answers with its identification
``/XXXZ\\2ident`` CR LF (``XXX`` manufacturer, ``Z`` the highest baud rate it offers,
``\\2`` says it speaks HDLC); the client acknowledges with ACK ``2 Z 2`` CR LF (protocol
control ``2`` = HDLC, the baud-rate character it takes, mode control ``2`` = binary
HDLC); both switch to that rate at 8 data bits, no parity, and HDLC starts. The
characters are those of IEC 62056-21 as implemented by the public stacks (Gurux's
optical-head opening sends the same ACK ``06 32 Z 32 0D 0A``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import re
import tty
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from metercert.errors import ConnectionFailed, UsageError
from metercert.transport.errors import ConnectionClosed, TransportTimeout
from metercert.transport.hdlc import DEFAULT_PARAMETERS, HdlcAddress, HdlcConnection, Role
from metercert.transport.stream import (
    SERVER_PARAMETERS,
    ApduStream,
    DlmsServer,
    _HdlcLink,
    establish_hdlc,
    run_handler,
)

__all__ = [
    "BAUD_CHARS", "SerialLine", "SerialServer", "SerialSpec", "baud_char", "open_pty_line",
    "open_serial_dlms", "open_serial_line", "parse_serial_url", "serve_serial_dlms",
]

log = logging.getLogger("metercert.transport.serial")

#: IEC 62056-21 baud-rate characters of modes C and E.
BAUD_CHARS: dict[str, int] = {"0": 300, "1": 600, "2": 1200, "3": 2400, "4": 4800, "5": 9600,
                              "6": 19200}
SIGN_ON_BAUD = 300
SIGN_ON = b"/?!\r\n"
ACK = 0x06
PROTOCOL_HDLC = "2"    # protocol control character: HDLC (IEC 62056-46), mode E
MODE_BINARY = "2"      # mode control character: binary (HDLC) mode
_MAX_OPENING_LINE = 128
_DRAIN_LIMIT = 10.0    # seconds a write may wait for a line nobody reads
_READ_CHUNK = 65536


def baud_char(baud: int) -> str:
    """The IEC 62056-21 character for ``baud`` (UsageError when it has none)."""
    for char, rate in BAUD_CHARS.items():
        if rate == baud:
            return char
    raise UsageError(f"baud rate {baud} has no IEC 62056-21 character; use one of "
                     + ", ".join(str(b) for b in BAUD_CHARS.values()))


@dataclass(frozen=True)
class SerialSpec:
    """Where a serial meter is and how to open the line."""

    path: str
    baud: int = 9600
    optical: bool = False  # IEC 62056-21 mode E opening at 300 baud first
    #: the lower (physical device) HDLC address: meters sharing an RS-485 bus differ here
    address: int | None = None

    @property
    def transport(self) -> str:
        return "optical" if self.optical else "serial"

    @property
    def host(self) -> str:
        """What the client takes as its host: the path, ``#N`` naming the lower address."""
        return self.path if self.address is None else f"{self.path}#{self.address}"

    def url(self) -> str:
        return (f"serial://{self.path}?baud={self.baud}" + ("&optical=1" if self.optical else "")
                + ("" if self.address is None else f"&address={self.address}"))


def line_address(host: str) -> tuple[str, int | None]:
    """Split a client host ``/dev/ttyX#17`` into the device path and the lower address."""
    path, sep, lower = host.rpartition("#")
    if sep and lower.isdigit():
        return path, int(lower)
    return host, None


_URL_HELP = ("expected serial:///dev/ttyUSB0?baud=9600 (add &optical=1 for an optical probe, "
             "&address=N for the meter's physical HDLC address)")


def parse_serial_url(url: str) -> SerialSpec:
    """``serial:///dev/ttyX?baud=9600[&optical=1]`` as a :class:`SerialSpec`."""
    parts = urlsplit(url)
    if parts.scheme != "serial" or not parts.path or parts.netloc:
        raise UsageError(f"bad target {url!r}: {_URL_HELP}")
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = set(query) - {"baud", "optical", "address"}
    if unknown:
        raise UsageError(f"bad target {url!r}: unknown option(s) {', '.join(sorted(unknown))}; "
                         f"{_URL_HELP}")
    baud_text = query.get("baud", ["9600"])[-1]
    if not baud_text.isdigit() or not 50 <= int(baud_text) <= 4_000_000:
        raise UsageError(f"bad target {url!r}: baud must be a rate such as 9600, "
                         f"not {baud_text!r}")
    optical_text = query.get("optical", ["0"])[-1].lower()
    if optical_text not in ("0", "1", "yes", "no", "true", "false", ""):
        raise UsageError(f"bad target {url!r}: optical must be 0 or 1")
    optical = optical_text in ("1", "yes", "true", "")
    baud = int(baud_text)
    if optical:
        baud_char(baud)  # mode E can only switch to a rate that has a character
    address: int | None = None
    if "address" in query:
        text = query["address"][-1]
        if not text.isdigit() or not 0 <= int(text) <= 0x3FFF:
            raise UsageError(f"bad target {url!r}: address is the physical HDLC address, "
                             f"0..16383, not {text!r}")
        address = int(text)
    return SerialSpec(parts.path, baud, optical, address)


class SerialLine:
    """A serial line read and written from the event loop.

    ``port`` is a pyserial ``Serial`` (its baud rate and character format are set
    through pyserial); without one the line is the master of a pseudo-terminal,
    where a rate change has no effect and is only recorded.
    """

    def __init__(self, fd: int, name: str, *, port: Any = None, baud: int = 9600,
                 keep_fds: tuple[int, ...] = (), link: Path | None = None) -> None:
        self.fd = fd
        self.name = name
        self.port = port
        self.baud = baud
        self.bytesize = 8
        self._keep_fds = keep_fds
        self._link = link
        self._buffer = bytearray()
        self._out = bytearray()
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self.error: str | None = None
        self.closed = False
        os.set_blocking(fd, False)
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(fd, self._on_readable)

    def __repr__(self) -> str:
        return f"<SerialLine {self.name} {self.baud} baud{' closed' if self.closed else ''}>"

    # -- line settings -----------------------------------------------------------------
    def configure(self, baud: int, *, seven_even: bool = False) -> None:
        """Switch rate and character format (7E1 for the IEC 62056-21 opening, else 8N1)."""
        self.baud, self.bytesize = baud, 7 if seven_even else 8
        if self.port is None:
            return  # a pseudo-terminal has no rate; changing its termios would race the peer
        import termios

        import serial

        try:
            self.port.baudrate = baud
        except (serial.SerialException, ValueError, OSError, termios.error) as exc:
            raise ConnectionFailed(f"{self.name}: cannot set {baud} baud: {exc}") from None
        try:
            self.port.bytesize = serial.SEVENBITS if seven_even else serial.EIGHTBITS
            self.port.parity = serial.PARITY_EVEN if seven_even else serial.PARITY_NONE
        except (serial.SerialException, ValueError, OSError, termios.error) as exc:
            # a pseudo-terminal (or a socat link) refuses 7E1: its bytes carry no parity
            if not self.name.startswith("/dev/pts/") and not os.path.realpath(
                    self.name).startswith("/dev/pts/"):
                raise ConnectionFailed(f"{self.name}: cannot set the character format: "
                                       f"{exc}") from None
            log.debug("%s: character format unchanged (%s)", self.name, exc)

    async def wait_sent(self) -> None:
        """Until every byte written has left the UART (tcdrain), before a rate change."""
        await self.drain()
        if self.port is not None:
            import termios

            with contextlib.suppress(OSError, termios.error):
                await asyncio.to_thread(termios.tcdrain, self.fd)

    def discard_input(self) -> None:
        self._buffer.clear()

    # -- reading -------------------------------------------------------------------------
    def _on_readable(self) -> None:
        try:
            data = os.read(self.fd, _READ_CHUNK)
        except BlockingIOError:
            return
        except OSError as exc:
            # EIO: the other side of a pseudo-terminal went away (a meter lost its power)
            self._fail("the line hung up" if exc.errno == errno.EIO
                       else exc.strerror or exc.__class__.__name__)
            return
        if not data:
            self._fail("the line was closed")
            return
        self._buffer += data
        self._readable.set()

    def _fail(self, reason: str) -> None:
        if self.error is None:
            self.error = reason
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_reader(self.fd)
        self._readable.set()
        self._writable.set()

    async def read(self, n: int = _READ_CHUNK, timeout: float | None = None) -> bytes:
        """Up to ``n`` buffered bytes, waiting for at least one; b"" once the line failed."""
        while not self._buffer:
            if self.closed or self.error is not None:
                return b""
            self._readable.clear()
            if timeout is None:
                await self._readable.wait()
            else:
                await asyncio.wait_for(self._readable.wait(), timeout)
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data

    def unread(self, data: bytes) -> None:
        """Give bytes back: the next reader gets them first."""
        if data:
            self._buffer[:0] = data
            self._readable.set()

    async def read_line(self, timeout: float) -> bytes:
        """One IEC 62056-21 message up to and including LF (bytes after it stay buffered)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        got = bytearray()
        while True:
            chunk = await self.read(_READ_CHUNK, max(0.0, deadline - loop.time()))
            if not chunk:
                raise ConnectionClosed(f"{self.name}: {self.error or 'closed'}")
            got += chunk
            end = got.find(b"\n")
            if end >= 0:
                self.unread(bytes(got[end + 1:]))
                return bytes(got[:end + 1])
            if len(got) > _MAX_OPENING_LINE:
                self.unread(bytes(got[-_MAX_OPENING_LINE:]))
                return bytes(got)

    # -- writing -------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if self.closed or self.error is not None:
            raise ConnectionClosed(f"{self.name}: {self.error or 'closed'}")
        self._out += data
        self._try_write()

    def _try_write(self) -> None:
        while self._out:
            try:
                sent = os.write(self.fd, self._out)
            except BlockingIOError:
                if self._writable.is_set():
                    self._writable.clear()
                    self._loop.add_writer(self.fd, self._on_writable)
                return
            except OSError as exc:
                self._out.clear()
                self._fail(exc.strerror or exc.__class__.__name__)
                return
            del self._out[:sent]
        self._writable.set()

    def _on_writable(self) -> None:
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_writer(self.fd)
        self._writable.set()
        self._try_write()

    async def drain(self) -> None:
        if self._out:
            try:
                await asyncio.wait_for(self._writable.wait(), _DRAIN_LIMIT)
            except TimeoutError:
                self._out.clear()
                raise ConnectionClosed(f"{self.name}: nobody reads the line, "
                                       f"{_DRAIN_LIMIT:g} s without progress") from None
        if self.error is not None:
            raise ConnectionClosed(f"{self.name}: {self.error}")

    # -- lifetime ------------------------------------------------------------------------
    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._fail("closed")
        if self.port is not None:
            with contextlib.suppress(Exception):
                self.port.close()
        else:
            with contextlib.suppress(OSError):
                os.close(self.fd)
        for fd in self._keep_fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        if self._link is not None:
            with contextlib.suppress(OSError):
                if self._link.is_symlink() and os.readlink(self._link) == self.name:
                    self._link.unlink()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def channel(self, *, owns_line: bool,
                sign_on_ends: Callable[[], bool] | None = None) -> _LineChannel:
        return _LineChannel(self, owns_line=owns_line, sign_on_ends=sign_on_ends)


class _LineChannel:
    """One HDLC session on a :class:`SerialLine`, with the reader/writer methods ApduStream uses.

    ``owns_line``: closing the session closes the line (a client); otherwise the line
    stays open for the next session (the meter).
    """

    def __init__(self, line: SerialLine, *, owns_line: bool,
                 sign_on_ends: Callable[[], bool] | None = None) -> None:
        self.line = line
        self.owns_line = owns_line
        self.is_closed = False
        #: optical port: while this says so (no HDLC link yet), a new sign-on ends the session
        self._sign_on_ends = sign_on_ends

    async def read(self, n: int = _READ_CHUNK) -> bytes:
        if self.is_closed:
            return b""
        data = await self.line.read(n)
        if not data and self.line.error not in (None, "closed"):
            raise ConnectionResetError(errno.EIO, self.line.error)
        if self._sign_on_ends is not None and SIGN_ON in data and self._sign_on_ends():
            at = data.index(SIGN_ON)
            self.line.unread(data[at:])  # the opening that follows reads it
            if at == 0:
                raise ConnectionResetError(errno.ECONNRESET, "a new IEC 62056-21 sign-on")
            data = data[:at]
        return data

    def write(self, data: bytes) -> None:
        if self.is_closed:
            raise ConnectionResetError(errno.EPIPE, "session closed")
        try:
            self.line.write(data)
        except ConnectionClosed as exc:
            raise ConnectionResetError(errno.EIO, str(exc)) from None

    async def drain(self) -> None:
        try:
            await self.line.drain()
        except ConnectionClosed as exc:
            raise ConnectionResetError(errno.EIO, str(exc)) from None

    def close(self) -> None:
        if not self.is_closed:
            self.is_closed = True
            if self.owns_line:
                self.line.close()

    async def wait_closed(self) -> None:
        return None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return self.line.name
        if name == "serial_baud":
            return self.line.baud
        return default


# -- opening lines ------------------------------------------------------------------------

async def open_serial_line(path: str, baud: int, *, exclusive: bool = True) -> SerialLine:
    """Open a serial device with pyserial (8N1, raw); one-line ConnectionFailed on trouble."""
    import serial

    def _open() -> Any:
        return serial.Serial(path, baud, timeout=0, exclusive=exclusive)

    try:
        port = await asyncio.to_thread(_open)
    except serial.SerialException as exc:
        cause = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], str) else None
        if exc.errno == errno.ENOENT or (not Path(path).exists()):
            raise ConnectionFailed(f"cannot open serial port {path}: no such device") from None
        if "lock" in str(exc).lower() or exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
            raise ConnectionFailed(f"cannot open serial port {path}: in use by another "
                                   "program (the line is exclusive)") from None
        raise ConnectionFailed(f"cannot open serial port {path}: "
                               f"{cause or exc.strerror or 'not a serial device'}") from None
    except (OSError, ValueError) as exc:
        raise ConnectionFailed(f"cannot open serial port {path}: "
                               f"{getattr(exc, 'strerror', None) or exc}") from None
    port.reset_input_buffer()
    return SerialLine(port.fileno(), path, port=port, baud=baud)


def open_pty_line(link: Path | None = None, baud: int = 9600) -> SerialLine:
    """A fresh pseudo-terminal: the meter keeps the master, a client opens the slave path.

    The meter also keeps the slave open, so the master never reads EIO between two
    clients. ``link`` becomes a symlink to the slave (replaced atomically), the stable
    name a client and a restarted (power-cycled) meter agree on.
    """
    master, slave = os.openpty()
    tty.setraw(slave)  # no echo, no line editing, no CR/LF translation: bytes as they are
    name = os.ttyname(slave)
    if link is not None:
        tmp = link.with_name(f".{link.name}.{os.getpid()}")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.symlink(name, tmp)
        os.replace(tmp, link)
    return SerialLine(master, name, baud=baud, keep_fds=(slave,), link=link)


# -- IEC 62056-21 mode E --------------------------------------------------------------------

_IDENT = re.compile(rb"^/([A-Za-z]{3})([0-9A-Z])(\\2)?([^\r\n]*)\r\n$")


@dataclass(frozen=True)
class Identification:
    manufacturer: str
    baud_char: str
    mode_e: bool
    ident: str

    @property
    def baud(self) -> int | None:
        return BAUD_CHARS.get(self.baud_char)


def parse_identification(message: bytes) -> Identification:
    """The meter's identification message; ConnectionFailed when it is not one."""
    match = _IDENT.match(message)
    if match is None:
        raise ConnectionFailed("the optical port answered the sign-on with something that is "
                               "not an IEC 62056-21 identification message")
    return Identification(match.group(1).decode(), match.group(2).decode(),
                          match.group(3) is not None,
                          match.group(4).decode("ascii", "replace"))


def _find_identification(reply: bytes) -> Identification | None:
    """The identification at the end of ``reply``, after any line noise."""
    for at in (i for i, byte in enumerate(reply) if byte == ord("/")):
        try:
            return parse_identification(reply[at:])
        except ConnectionFailed:
            continue
    return None


async def client_mode_e(line: SerialLine, baud: int, timeout: float) -> Identification:
    """Client side of the mode E opening; returns the meter's identification."""
    line.configure(SIGN_ON_BAUD, seven_even=True)
    line.discard_input()
    line.write(SIGN_ON)
    await line.wait_sent()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:  # what the line still carried from before the sign-on is skipped
        try:
            reply = await line.read_line(max(0.0, deadline - loop.time()))
        except TimeoutError:
            raise TransportTimeout(f"{line.name}: no identification within {timeout:g} s "
                                   "after the IEC 62056-21 sign-on (is the probe on the "
                                   "meter?)") from None
        found = _find_identification(reply)
        if found is not None:
            ident = found
            break
        if loop.time() >= deadline:
            parse_identification(reply)  # raises: say what came instead
        log.debug("%s: %d bytes before the identification skipped", line.name, len(reply))
    offered = ident.baud
    if offered is None:
        raise ConnectionFailed(f"{line.name}: the meter's identification names baud-rate "
                               f"character {ident.baud_char!r}, which mode E does not define")
    if not ident.mode_e:
        log.info("%s: identification has no \\2 (HDLC) escape; trying mode E anyway", line.name)
    take = min(baud, offered)
    line.write(bytes([ACK]) + f"{PROTOCOL_HDLC}{baud_char(take)}{MODE_BINARY}\r\n".encode())
    await line.wait_sent()
    line.configure(take)
    return ident


async def server_mode_e(line: SerialLine, ident: str, baud: int,
                        timeout: float | None = None) -> int | None:
    """Meter side: wait for a sign-on, identify, take the ACK, switch rate.

    Returns the rate HDLC continues at, or None when the opening did not complete
    (the line stays at 300 baud, waiting for the next sign-on).
    """
    line.configure(SIGN_ON_BAUD, seven_even=True)
    while True:
        message = await line.read_line(timeout if timeout is not None else 3600.0)
        message = message[max(0, message.rfind(b"/?")):]  # line noise before it is dropped
        if message.startswith(b"/?") and message.endswith(b"!\r\n"):
            break
        log.debug("%s: %d bytes before a sign-on ignored", line.name, len(message))
    line.write(f"/{ident[:3]}{baud_char(baud)}\\2{ident[3:]}\r\n".encode())
    await line.wait_sent()
    try:
        ack = await line.read_line(3.0)
    except TimeoutError:
        return None
    if (len(ack) == 6 and ack[0] == ACK and chr(ack[1]) == PROTOCOL_HDLC
            and chr(ack[3]) == MODE_BINARY and chr(ack[2]) in BAUD_CHARS):
        chosen = BAUD_CHARS[chr(ack[2])]
        if chosen <= baud:
            line.configure(chosen)
            return chosen
    log.info("%s: the sign-on did not ask for mode E HDLC; back to waiting", line.name)
    return None


# -- DLMS over the line ------------------------------------------------------------------------

async def open_serial_dlms(
    path: str, baud: int, *, optical: bool = False, client_address: int = 16,
    server_address: int = 1, physical_address: int | None = None, timeout: float = 5.0,
    max_frame: int = 0xFFFF, hdlc_parameters: Any = None,
) -> Any:
    """Open the line (after the mode E opening when ``optical``) and set up HDLC (SNRM/UA).

    Returns an :class:`~metercert.transport.stream.ApduStream`; closing it (after DISC)
    closes the serial port. ``path`` may name the lower HDLC address as ``/dev/ttyX#17``."""
    path, lower = line_address(path)
    if physical_address is None:
        physical_address = lower
    line = await open_serial_line(path, SIGN_ON_BAUD if optical else baud)
    try:
        if optical:
            await client_mode_e(line, baud, timeout)
        link = _HdlcLink(HdlcConnection(
            Role.CLIENT, client_address=HdlcAddress(client_address),
            server_address=HdlcAddress(server_address, physical_address),
            parameters=hdlc_parameters or DEFAULT_PARAMETERS, max_apdu=max_frame))
        channel = line.channel(owns_line=True)
        stream = ApduStream(channel, channel, link, framing="hdlc",  # type: ignore[arg-type]
                            timeout=timeout)
    except BaseException:
        line.close()
        raise
    await establish_hdlc(stream, link, f"serial port {path}")
    return stream


class SerialServer(DlmsServer):
    """The reference meter's end of a serial line: one HDLC session after another."""

    def __init__(self, line: SerialLine, name: str) -> None:  # no socket to wrap
        self.framing = "hdlc"
        self.active = set()
        self._tasks = set()
        self.served = 0
        self.drops = deque(maxlen=100)
        self.host, self.port = name, line.baud
        self.line = line
        self._runner: asyncio.Task[None] | None = None

    def close(self) -> None:
        for stream in list(self.active):
            stream.close()
        if self._runner is not None:
            self._runner.cancel()
        self.line.close()

    async def wait_closed(self) -> None:
        if self._runner is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._runner, 3.0)


async def serve_serial_dlms(
    handler: Any, line: SerialLine, *, name: str | None = None, optical: bool = False,
    ident: str = "MCTmetercert", idle_timeout: float = 120.0,
    server_address: int | None = None, hdlc_parameters: Any = None, max_frame: int = 0xFFFF,
    hdlc_flaws: frozenset[str] = frozenset(),
) -> Any:
    """Serve HDLC sessions on ``line`` one after another, each handed to ``handler``.

    With ``optical`` every session starts with the IEC 62056-21 mode E opening at
    300 baud, and the line falls back to 300 baud when the session ends (DISC or the
    inactivity time-out). Returns a :class:`~metercert.transport.stream.DlmsServer`
    whose ``host`` is the line's name and ``port`` its baud rate."""
    server = SerialServer(line, name or line.name)
    baud = line.baud
    if optical:
        baud_char(baud)

    async def run() -> None:
        while not line.closed and line.error is None:
            if optical:
                try:
                    if await server_mode_e(line, ident, baud) is None:
                        continue
                except (ConnectionClosed, TimeoutError):
                    continue
            else:
                line.configure(baud)
            first = await line.read()  # a session starts with its first byte, not before
            if not first:
                break
            line.unread(first)
            link = _HdlcLink(HdlcConnection(
                Role.SERVER, client_address=None, server_address=server_address,
                parameters=hdlc_parameters or SERVER_PARAMETERS, max_apdu=max_frame,
                flaws=hdlc_flaws))
            # on an optical port a sign-on before SNRM starts over (a probe that left
            # without HDLC need not wait out the inactivity time-out)
            channel = line.channel(owns_line=False, sign_on_ends=(
                (lambda link=link: not link.established) if optical else None))
            stream = ApduStream(channel, channel, link, framing="hdlc",  # type: ignore[arg-type]
                                timeout=idle_timeout, idle_timeout=idle_timeout)
            await run_handler(server, handler, stream)
        if line.error not in (None, "closed"):
            log.warning("serial line %s: %s; no longer serving", line.name, line.error)

    server._runner = asyncio.create_task(run())
    return server


async def serve_meter_line(handler: Any, where: str, baud: int, *, optical: bool = False,
                           idle_timeout: float = 120.0, max_frame: int = 0xFFFF,
                           hdlc_flaws: frozenset[str] = frozenset(),
                           server_address: int | None = None) -> SerialServer:
    """The reference meter on ``where``: a serial device path, or ``pty:LINK`` for a new
    pseudo-terminal whose slave the symlink LINK names (stable across restarts);
    ``server_address``: the only upper HDLC address it answers (None: any)."""
    if where.startswith("pty:"):
        link = Path(where[4:]).absolute()
        if not link.parent.is_dir():
            raise UsageError(f"--pty {link}: folder {link.parent} does not exist")
        if link.exists() and not link.is_symlink():
            raise UsageError(f"--pty {link}: exists and is not a symlink; name a new path")
        line = open_pty_line(link, baud)
        name = str(link)
    else:
        line = await open_serial_line(where, baud)
        name = where
    return await serve_serial_dlms(handler, line, name=name, optical=optical,
                                   idle_timeout=idle_timeout, max_frame=max_frame,
                                   hdlc_flaws=hdlc_flaws, server_address=server_address)


async def send_raw(path: str, baud: int, payload: bytes, *, optical: bool = False,
                   timeout: float = 5.0) -> None:
    """Write ``payload`` as it is onto a serial line (after the mode E opening when
    ``optical``), then DISC, and close it: what a robustness check throws at a meter's
    link layer. The DISC is the serial form of closing a TCP connection: without it a
    link the payload happened to set up would hold the line until the inactivity time-out."""
    from metercert.transport.hdlc_frame import FrameKind, HdlcFrame, encode_frame

    line = await open_serial_line(path, SIGN_ON_BAUD if optical else baud)
    try:
        if optical:
            await client_mode_e(line, baud, timeout)
        line.write(payload)
        line.write(encode_frame(HdlcFrame(HdlcAddress(1), HdlcAddress(16), FrameKind.DISC)))
        await line.wait_sent()
    finally:
        line.close()
