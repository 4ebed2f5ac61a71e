"""HDLC over a serial line (pseudo-terminal pairs): sessions, segmentation, mode E opening."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import serial

from metercert.errors import ConnectionFailed, UsageError
from metercert.transport.hdlc_frame import HdlcParameters
from metercert.transport.serial import (
    SerialSpec,
    line_address,
    open_pty_line,
    parse_identification,
    parse_serial_url,
    serve_serial_dlms,
)
from metercert.transport.stream import ApduStream, open_dlms_connection

pytestmark = pytest.mark.timeout(60)


async def _echo(stream: ApduStream) -> None:
    while True:
        apdu = await stream.recv()
        await stream.send(apdu[::-1] * 3)


def _run(coro: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(coro(), 40))


def test_serial_urls() -> None:
    assert parse_serial_url("serial:///dev/ttyUSB0") == SerialSpec("/dev/ttyUSB0", 9600, False)
    spec = parse_serial_url("serial:///dev/ttyUSB0?baud=19200&optical=1")
    assert spec == SerialSpec("/dev/ttyUSB0", 19200, True) and spec.transport == "optical"
    assert parse_serial_url(spec.url()) == spec
    bus = parse_serial_url("serial:///dev/ttyUSB1?baud=2400&address=17")
    assert (bus.address, bus.host, line_address(bus.host)) == (17, "/dev/ttyUSB1#17",
                                                               ("/dev/ttyUSB1", 17))
    assert parse_serial_url(bus.url()) == bus
    for bad in ("serial://host/dev/x", "serial:///dev/x?baud=fast", "serial:///dev/x?parity=E",
                "serial:///dev/x?baud=115200&optical=1", "serial:///dev/x?optical=maybe",
                "serial:", "serial:///dev/x?address=x", "serial:///dev/x?address=99999"):
        with pytest.raises(UsageError) as err:
            parse_serial_url(bad)
        assert "\n" not in str(err.value)


@pytest.mark.parametrize("optical", [False, True])
def test_sessions_one_after_another_with_segmented_apdus(tmp_path: Path, optical: bool) -> None:
    link = tmp_path / "meter.tty"

    async def main() -> None:
        line = open_pty_line(link, 9600)
        server = await serve_serial_dlms(_echo, line, optical=optical)
        try:
            assert os.path.realpath(link).startswith("/dev/pts/")
            transport = "optical" if optical else "serial"
            for i in range(3):  # DISC, then the next client on the same line
                stream = await open_dlms_connection(
                    str(link), 9600, framing="hdlc", transport=transport, timeout=5,
                    hdlc_parameters=HdlcParameters(max_info_tx=64, max_info_rx=64))
                request = bytes([0xC0, i]) + bytes(range(250))  # 4 segments of 64 each way
                await stream.send(request)
                assert await stream.recv() == request[::-1] * 3
                assert stream.peer == str(link)
                await stream.aclose()
            assert server.served == 3 and not server.drops
        finally:
            server.close()
            await server.wait_closed()
        assert not link.exists()  # the meter removes its symlink when it stops

    _run(main)


def test_optical_opening_on_the_wire(tmp_path: Path) -> None:
    """The client's sign-on and ACK, byte for byte (IEC 62056-21 mode E as Gurux's
    optical-head opening sends it: ``/?!`` CR LF, then ACK '2' Z '2' CR LF)."""
    link = tmp_path / "probe.tty"

    async def main() -> None:
        line = open_pty_line(link, 9600)
        try:
            client = asyncio.create_task(open_dlms_connection(
                str(link), 4800, framing="hdlc", transport="optical", timeout=3))
            assert await line.read_line(3) == b"/?!\r\n"
            line.write(b"/XYZ5\\2bench meter\r\n")  # offers 9600; the client asked for 4800
            assert await line.read_line(3) == b"\x06" + b"242" + b"\r\n"
            snrm = await line.read(timeout=3)
            assert snrm[:1] == b"\x7E" and snrm[3:5] == b"\x03\x21"  # HDLC SNRM follows at once
            client.cancel()
        finally:
            line.close()

    _run(main)


def test_meter_identifies_itself_after_a_sign_on(tmp_path: Path) -> None:
    link = tmp_path / "meter.tty"

    async def main() -> None:
        line = open_pty_line(link, 9600)
        server = await serve_serial_dlms(_echo, line, optical=True, ident="MCTbench")
        try:
            port = serial.Serial(str(link), 300, timeout=3)
            try:
                await asyncio.to_thread(port.write, b"\x7E\xA0garbage\r\n/?!\r\n")
                ident = await asyncio.to_thread(port.readline)
            finally:
                port.close()
            assert ident == b"/MCT5\\2bench\r\n"
            parsed = parse_identification(ident)
            assert (parsed.manufacturer, parsed.baud, parsed.mode_e) == ("MCT", 9600, True)
        finally:
            server.close()
            await server.wait_closed()

    _run(main)


def test_identification_that_is_not_one_is_refused() -> None:
    assert parse_identification(b"/ABC4meter\r\n").mode_e is False
    for bad in (b"hello\r\n", b"/AB5\r\n", b"/ABC5meter"):
        with pytest.raises(ConnectionFailed):
            parse_identification(bad)


def test_missing_device_and_a_meter_that_loses_power(tmp_path: Path) -> None:
    link = tmp_path / "meter.tty"

    async def main() -> None:
        with pytest.raises(ConnectionFailed, match="no such device"):
            await open_dlms_connection(str(tmp_path / "none"), 9600, framing="hdlc",
                                       transport="serial")
        with pytest.raises(UsageError, match="HDLC"):
            await open_dlms_connection(str(link), 9600, transport="serial")  # wrapper framing
        line = open_pty_line(link, 9600)
        server = await serve_serial_dlms(_echo, line)
        stream = await open_dlms_connection(str(link), 9600, framing="hdlc",
                                            transport="serial", timeout=3)
        with pytest.raises(ConnectionFailed, match="in use"):  # one program per line
            await open_dlms_connection(str(link), 9600, framing="hdlc", transport="serial")
        server.close()  # the meter's supply is cut: its end of the line disappears
        await server.wait_closed()
        with pytest.raises(ConnectionFailed) as err:
            await stream.send(b"\xC0\x01")
            await stream.recv()
        assert "\n" not in str(err.value)
        stream.close()

    _run(main)


def test_idle_session_ends_and_the_line_serves_again(tmp_path: Path) -> None:
    """The HDLC inactivity time-out on a line: the meter drops the link, and a
    client that comes later is served."""
    link = tmp_path / "meter.tty"

    async def main() -> None:
        line = open_pty_line(link, 9600)
        server = await serve_serial_dlms(_echo, line, idle_timeout=0.5)
        try:
            stale = await open_dlms_connection(str(link), 9600, framing="hdlc",
                                               transport="serial", timeout=3)
            await asyncio.sleep(1.0)
            with pytest.raises(ConnectionFailed):  # the meter answers DM: link gone
                await stale.send(b"\xC0\x01")
                await stale.recv(timeout=2)
            stale.close()
            stream = await open_dlms_connection(str(link), 9600, framing="hdlc",
                                                transport="serial", timeout=3)
            await stream.send(b"\xC0\x02")
            assert await stream.recv() == b"\x02\xC0" * 3
            await stream.aclose()
            assert any("idle" in d for d in server.drops)
        finally:
            server.close()
            await server.wait_closed()

    _run(main)


def test_client_skips_line_noise_before_the_identification(tmp_path: Path) -> None:
    link = tmp_path / "probe.tty"

    async def main() -> None:
        line = open_pty_line(link, 9600)
        try:
            client = asyncio.create_task(open_dlms_connection(
                str(link), 9600, framing="hdlc", transport="optical", timeout=3))
            assert await line.read_line(3) == b"/?!\r\n"
            # a late DM from an earlier session (it holds a LF), then the identification
            line.write(b"\x7e\xa0\x07\x21\x03\x1f\x0a\x7e/ABC6\\2path/with/slashes\r\n")
            assert await line.read_line(3) == b"\x06" + b"252" + b"\r\n"
            client.cancel()
        finally:
            line.close()

    _run(main)


def test_physical_address_of_a_meter_on_a_bus(tmp_path: Path) -> None:
    """An RS-485 meter is addressed by its lower HDLC address; the host names it as
    ``PATH#N`` (what serial://...&address=N becomes)."""
    link = tmp_path / "bus.tty"

    async def main() -> None:
        line = open_pty_line(link, 9600)
        server = await serve_serial_dlms(_echo, line)
        try:
            stream = await open_dlms_connection(f"{link}#17", 9600, framing="hdlc",
                                                transport="serial", timeout=3)
            assert (stream.server_address, stream.physical_address) == (1, 17)
            await stream.send(b"\xC0\x07")
            assert await stream.recv() == b"\x07\xC0" * 3
            await stream.aclose()
        finally:
            server.close()
            await server.wait_closed()

    _run(main)
