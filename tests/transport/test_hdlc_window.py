"""HDLC windows above 1 (IEC 62056-46 parameter negotiation in SNRM/UA) with segmentation.

Covers the data link layer test plan's HDLC_2 cases "SNRM with information field"
(max information length, window size receive = 2) as dlms.com lists them for the CTT,
against gurux-dlms's framing and against the reference meter over TCP and a pty.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from metercert.meter.profile import load_profile
from metercert.meter.server import MeterFleet
from metercert.transport.errors import ProtocolViolation
from metercert.transport.hdlc import (
    ApduReceived,
    FrameKind,
    HdlcConnection,
    HdlcFrameDecoder,
    HdlcParameters,
    Role,
)
from metercert.transport.stream import SERVER_PARAMETERS, open_dlms_connection

gurux = pytest.importorskip("gurux_dlms")

from gurux_dlms import GXByteBuffer, GXDLMSClient, GXReplyData
from gurux_dlms.enums import Authentication, InterfaceType

pytestmark = pytest.mark.timeout(60)


def _frames(data: bytes) -> list:  # type: ignore[type-arg]
    decoder = HdlcFrameDecoder()
    decoder.feed(data)
    return list(decoder)


def _apdus(conn: HdlcConnection) -> list[bytes]:
    out = []
    while (event := conn.next_event()) is not None:
        if isinstance(event, ApduReceived):
            out.append(event.apdu)
    return out


def _linked(client_params: HdlcParameters,
            server_params: HdlcParameters = SERVER_PARAMETERS
            ) -> tuple[HdlcConnection, HdlcConnection]:
    client = HdlcConnection(Role.CLIENT, parameters=client_params)
    server = HdlcConnection(Role.SERVER, parameters=server_params)
    client.connect()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    return client, server


@pytest.mark.parametrize(("info", "window"), [(32, 3), (128, 2), (512, 7), (2030, 1)])
def test_snrm_with_windows_matches_gurux(info: int, window: int) -> None:
    theirs = GXDLMSClient(True, 16, 1, Authentication.NONE, None, InterfaceType.HDLC)
    theirs.hdlcSettings.maxInfoTX = theirs.hdlcSettings.maxInfoRX = info
    theirs.hdlcSettings.windowSizeTX = theirs.hdlcSettings.windowSizeRX = window
    ours = HdlcConnection(Role.CLIENT, parameters=HdlcParameters(info, info, window, window))
    ours.connect()
    mine, gurux_snrm = ours.data_to_send(), bytes(theirs.snrmRequest())
    if info != 128 and window != 1:
        assert mine == gurux_snrm
    else:  # gurux leaves default values out of the field, we send all four: same meaning
        a, b = _frames(mine)[0], _frames(gurux_snrm)[0]
        assert (a.kind, a.dest, a.source) == (b.kind, b.dest, b.source) == (
            FrameKind.SNRM, b.dest, b.source)
        assert HdlcParameters.from_info(a.info) == HdlcParameters.from_info(b.info)


def test_gurux_takes_the_windows_our_meter_answers() -> None:
    client = GXDLMSClient(True, 16, 1, Authentication.NONE, None, InterfaceType.HDLC)
    client.hdlcSettings.windowSizeTX, client.hdlcSettings.windowSizeRX = 3, 2
    server = HdlcConnection(Role.SERVER, parameters=SERVER_PARAMETERS)
    server.receive_data(bytes(client.snrmRequest()))
    reply = GXReplyData()
    assert client.getData(GXByteBuffer(server.data_to_send()), reply)
    client.parseUAResponse(reply.data)
    # the meter offers 7 each way; each direction takes its receiver's smaller offer
    assert (server.negotiated.window_rx, server.negotiated.window_tx) == (3, 2)
    assert (client.hdlcSettings.windowSizeTX, client.hdlcSettings.windowSizeRX) == (3, 2)


def test_bursts_carry_the_poll_bit_only_on_their_last_frame() -> None:
    client, server = _linked(HdlcParameters(32, 32, 3, 3))
    assert (client.negotiated.window_tx, client.negotiated.window_rx) == (3, 3)
    request = bytes([0xC0]) + bytes(range(199))  # 3 + 200 bytes: 7 segments of <= 32
    client.send_apdu(request)
    polls: list[bool] = []
    acks = 0
    while True:
        out = client.data_to_send()
        if not out:
            break
        polls += [f.pf for f in _frames(out)]
        server.receive_data(out)
        answer = server.data_to_send()
        if answer:
            assert all(f.kind is FrameKind.RR for f in _frames(answer))
            acks += 1
            client.receive_data(answer)
    assert polls == [False, False, True, False, False, True, True]
    assert acks == 2  # one RR per burst that does not end the APDU
    assert _apdus(server) == [request]

    server.send_apdu(request[::-1])  # the meter answers in bursts of the client's window
    out = server.data_to_send()
    assert [f.pf for f in _frames(out)] == [False, False, True]
    rrs = 0
    while out:
        client.receive_data(out)
        ack = client.data_to_send()
        if not ack:
            break
        rrs += 1
        server.receive_data(ack)
        out = server.data_to_send()
    assert rrs == 2 and _apdus(client) == [request[::-1]]


def test_more_frames_than_the_window_or_a_short_ack_is_a_violation() -> None:
    client, server = _linked(HdlcParameters(32, 32, 3, 3),
                             HdlcParameters(32, 32, 7, 2))  # the meter takes 2 at a time
    assert client.negotiated.window_tx == 2
    client.negotiated = HdlcParameters(32, 32, 3, 3)  # a client that ignores the UA
    client.send_apdu(bytes(200))
    with pytest.raises(ProtocolViolation, match="window"):
        server.receive_data(client.data_to_send())

    client, server = _linked(HdlcParameters(32, 32, 3, 3))
    client.send_apdu(bytes(200))
    server.receive_data(client.data_to_send())
    rr = _frames(server.data_to_send())[0]
    assert rr.kind is FrameKind.RR and rr.nr == 3
    from metercert.transport.hdlc_frame import HdlcFrame, encode_frame

    short = HdlcFrame(rr.dest, rr.source, FrameKind.RR, True, 0, 2)  # acknowledges 2 of 3
    with pytest.raises(ProtocolViolation, match="N\\(R\\)=2"):
        client.receive_data(encode_frame(short))


# a public AARQ (LN referencing, no ciphering) and GET object_list of the current
# association, both from gurux-dlms's client so the bytes are a peer's
def _public_requests() -> tuple[bytes, bytes]:
    g = GXDLMSClient(True, 16, 1, Authentication.NONE, None, InterfaceType.WRAPPER)
    aarq = bytes(g.aarqRequest()[0])[8:]
    get = bytes.fromhex("C001C1000F0000280000FF0200")
    return aarq, get


@pytest.mark.parametrize("line", [False, True])
def test_reference_meter_with_window_4_and_segmentation(tmp_path: Path, line: bool) -> None:
    aarq, get = _public_requests()

    async def main() -> None:
        fleet = MeterFleet(load_profile("conformant"), tmp_path / "state", port=0,
                           framing="hdlc",
                           line=f"pty:{tmp_path / 'meter.tty'}" if line else None)
        await fleet.start()
        try:
            host, port = fleet.endpoints[0]
            stream = await open_dlms_connection(
                host, port, framing="hdlc", transport="serial" if line else "tcp", timeout=5,
                hdlc_parameters=HdlcParameters(48, 48, 4, 4))
            negotiated = stream._link.conn.negotiated  # type: ignore[union-attr]
            assert (negotiated.window_tx, negotiated.window_rx) == (4, 4)
            await stream.send(aarq)
            aare = await stream.recv()
            assert aare[0] == 0x61
            await stream.send(get)
            answer = await stream.recv()
            assert answer[:4] == bytes.fromhex("C401C100") and len(answer) > 4 * 48
            await stream.aclose()
        finally:
            await fleet.stop()

    asyncio.run(asyncio.wait_for(main(), 40))


def test_gurux_client_reads_the_reference_meter_over_a_pty(tmp_path: Path) -> None:
    """gurux-dlms's HDLC client (its frames, its segmentation at 32 bytes, window 1 as
    it sends) associates with the reference meter on a pseudo-terminal and reads the
    clock; our meter segments its AARE for gurux's 32-byte receive limit."""
    import time

    import serial
    from gurux_dlms.objects import GXDLMSClock

    from metercert.lab.power import MeterProcess

    link = tmp_path / "meter.tty"
    meter = MeterProcess(tmp_path / "state", port=0, extra_args=("--pty", str(link)))
    meter.start()
    client = GXDLMSClient(True, 16, 1, Authentication.NONE, None, InterfaceType.HDLC)
    client.hdlcSettings.maxInfoTX, client.hdlcSettings.maxInfoRX = 32, 32
    segmented = 0
    port = serial.Serial(str(link), 9600, timeout=0.2)

    def exchange(frame: bytes, reply: GXReplyData | None = None) -> GXReplyData:
        reply = reply or GXReplyData()  # the same reply object collects every segment
        port.write(frame)
        data = GXByteBuffer()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            chunk = port.read(4096)
            if chunk:
                data.set(chunk)
                if client.getData(data, reply):
                    return reply
        raise AssertionError("no complete answer from the meter")

    try:
        client.parseUAResponse(exchange(bytes(client.snrmRequest())).data)
        assert client.hdlcSettings.maxInfoTX == 32
        frames = [bytes(f) for f in client.aarqRequest()]
        assert len(frames) >= 2  # gurux segments its AARQ
        for frame in frames:
            reply = exchange(frame)
            while reply.isMoreData():  # a segmented answer: gurux asks for the rest
                segmented += 1
                reply = exchange(bytes(client.receiverReady(reply)), reply)
        client.parseAareResponse(reply.data)
        assert segmented >= 1
        clock = GXDLMSClock("0.0.1.0.0.255")
        reply = exchange(bytes(client.read(clock, 2)[0]))
        while reply.isMoreData():
            reply = exchange(bytes(client.receiverReady(reply)), reply)
        client.updateValue(clock, 2, reply.value)
        assert clock.time is not None and clock.time.value.year >= 2020
        exchange(bytes(client.disconnectRequest()))
    finally:
        port.close()
        meter.stop()
