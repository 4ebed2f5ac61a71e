"""The server answers a frame it cannot take with FRMR (ISO/IEC 13239 basic format, as
IEC 62056-46 uses it) instead of dropping the link: information field too long (Y), an
N(R) for frames it never sent (Z), a frame kind the state does not allow (W); every later
poll gets the same FRMR until SNRM or DISC. Checked on the state machine and on the
reference meter over a real socket (the connection stays open)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from metercert.transport.hdlc import (
    LLC_COMMAND,
    FrameKind,
    HdlcAddress,
    HdlcConnection,
    HdlcFrameDecoder,
    LinkState,
    Role,
)
from metercert.transport.hdlc_frame import HdlcFrame, encode_control, encode_frame
from metercert.transport.rawlink import RawHdlcLink

SERVER, CLIENT = HdlcAddress(1), HdlcAddress(16)


def _frames(data: bytes) -> list[HdlcFrame]:
    decoder = HdlcFrameDecoder()
    decoder.feed(data)
    out = []
    while (frame := decoder.next_frame()) is not None:
        out.append(frame)
    return out


def _linked() -> HdlcConnection:
    server = HdlcConnection(Role.SERVER, server_address=1)
    server.receive_data(encode_frame(HdlcFrame(SERVER, CLIENT, FrameKind.SNRM)))
    assert [f.kind for f in _frames(server.data_to_send())] == [FrameKind.UA]
    return server


def _send(server: HdlcConnection, frame: HdlcFrame) -> list[HdlcFrame]:
    server.receive_data(encode_frame(frame))
    return _frames(server.data_to_send())


def test_too_long_information_field_gets_frmr_y_then_snrm_clears_it() -> None:
    server = _linked()
    big = HdlcFrame(SERVER, CLIENT, FrameKind.I, True, 0, 0, False, LLC_COMMAND + bytes(200))
    [frmr] = _send(server, big)
    assert frmr.kind is FrameKind.FRMR and frmr.dest == CLIENT
    control = encode_control(FrameKind.I, pf=True, ns=0, nr=0)
    assert frmr.info == bytes([control, 0x00, 0x04])  # V(S)=V(R)=0, Y: too long
    assert server.state is LinkState.FRAME_REJECT and server.rejected_frames == 1
    # a poll while the condition stands: the same FRMR; an I-frame is not taken
    poll = HdlcFrame(SERVER, CLIENT, FrameKind.RR, True, 0, 0)
    assert [(f.kind, f.info) for f in _send(server, poll)] == [(FrameKind.FRMR, frmr.info)]
    small = HdlcFrame(SERVER, CLIENT, FrameKind.I, True, 0, 0, False, LLC_COMMAND + b"\xC0")
    assert [f.kind for f in _send(server, small)] == [FrameKind.FRMR]
    assert server.next_event() is not None
    assert [f.kind for f in _send(server, HdlcFrame(SERVER, CLIENT, FrameKind.SNRM))] == [
        FrameKind.UA]
    assert server.state is LinkState.IDLE


def test_bad_nr_gets_frmr_z_and_a_client_ua_gets_frmr_w() -> None:
    server = _linked()
    [frmr] = _send(server, HdlcFrame(SERVER, CLIENT, FrameKind.RR, True, 0, 5))
    assert frmr.kind is FrameKind.FRMR and frmr.info[2] == 0x08
    server = _linked()
    [frmr] = _send(server, HdlcFrame(SERVER, CLIENT, FrameKind.UA))
    assert frmr.kind is FrameKind.FRMR and frmr.info[2] == 0x01
    assert [f.kind for f in _send(server, HdlcFrame(SERVER, CLIENT, FrameKind.DISC))] == [
        FrameKind.UA]
    assert server.state is LinkState.DISCONNECTED


@pytest.mark.timeout(60)
def test_the_reference_meter_answers_frmr_and_keeps_the_connection(tmp_path: Path) -> None:
    from metercert.lab.power import MeterProcess

    meter = MeterProcess(tmp_path / "state", port=0, extra_args=("--framing", "hdlc"))
    host, port = meter.start()

    async def main() -> list[FrameKind]:
        link = await RawHdlcLink.open("tcp", host, port)
        try:
            await link.send(encode_frame(HdlcFrame(SERVER, CLIENT, FrameKind.SNRM)))
            await link.collect(3, until=FrameKind.UA)
            await link.send(encode_frame(HdlcFrame(SERVER, CLIENT, FrameKind.I, True, 0, 0,
                                                   False, LLC_COMMAND + bytes(200))))
            await link.collect(3, until=FrameKind.FRMR)
            await link.send(encode_frame(HdlcFrame(SERVER, CLIENT, FrameKind.DISC)))
            await link.collect(3, until=FrameKind.UA)
            assert not link.closed
            return [f.kind for f in link.seen]
        finally:
            await link.close()

    try:
        kinds = asyncio.run(main())
    finally:
        meter.stop()
    assert kinds == [FrameKind.UA, FrameKind.FRMR, FrameKind.UA]
