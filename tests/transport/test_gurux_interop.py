"""Byte-level interoperability with gurux-dlms's HDLC client (a real peer)."""

from __future__ import annotations

import pytest

gurux = pytest.importorskip("gurux_dlms")

from gurux_dlms import GXByteBuffer, GXDLMSClient, GXReplyData
from gurux_dlms.enums import Authentication, InterfaceType

from metercert.transport.hdlc import (
    ApduReceived,
    HdlcAddress,
    HdlcConnection,
    HdlcParameters,
    LinkEstablished,
    Role,
)

AARE = bytes.fromhex(
    "6129a109060760857405080101a203020100a305a103020100be10040e0800065f1f040000101d00800007")


def gurux_client(server_address: int = 1, max_info_tx: int | None = None) -> GXDLMSClient:
    client = GXDLMSClient(True, 16, server_address, Authentication.NONE, None, InterfaceType.HDLC)
    if max_info_tx is not None:
        client.hdlcSettings.maxInfoTX = max_info_tx
    return client


def events(conn: HdlcConnection) -> list[object]:
    out = []
    while (event := conn.next_event()) is not None:
        out.append(event)
    return out


@pytest.mark.parametrize(("logical", "physical", "size", "ours"), [
    (1, None, 0, HdlcAddress(1)),
    (1, 17, 0, HdlcAddress(1, 17)),
    (1, 17, 4, HdlcAddress(1, 17, size=4)),
    (1000, 16000, 4, HdlcAddress(1000, 16000)),
])
def test_our_snrm_matches_gurux(logical: int, physical: int | None, size: int,
                                ours: HdlcAddress) -> None:
    address = logical if physical is None else GXDLMSClient.getServerAddress(logical, physical, size)
    theirs = bytes(gurux_client(address).snrmRequest())
    conn = HdlcConnection(Role.CLIENT, client_address=16, server_address=ours)
    conn.connect()
    assert conn.data_to_send() == theirs


def test_gurux_client_against_our_server_with_segmentation_both_ways() -> None:
    client = gurux_client(max_info_tx=32)
    server = HdlcConnection(Role.SERVER, parameters=HdlcParameters(max_info_tx=100))
    server.receive_data(bytes(client.snrmRequest()))
    reply = GXReplyData()
    assert client.getData(GXByteBuffer(server.data_to_send()), reply)
    client.parseUAResponse(reply.data)
    # gurux took the limits from our UA: it receives at most 100, sends at most 32
    assert (client.hdlcSettings.maxInfoRX, client.hdlcSettings.maxInfoTX) == (100, 32)
    assert server.negotiated.max_info_rx == 32
    aarq_frames = [bytes(f) for f in client.aarqRequest()]
    assert len(aarq_frames) == 2  # gurux segmented its AARQ at 32 bytes
    for frame in aarq_frames:
        server.receive_data(frame)
        rr = server.data_to_send()
        if rr:
            assert client.getData(GXByteBuffer(rr), GXReplyData())
    received = [e for e in events(server) if isinstance(e, ApduReceived)]
    assert len(received) == 1 and received[0].apdu[0] == 0x60
    assert b"".join(f[8:-3] for f in aarq_frames) \
        == b"\xE6\xE6\x00" + received[0].apdu

    long_aare = AARE + bytes(120)  # longer than 100: our server must segment
    server.send_apdu(long_aare)
    reply = GXReplyData()
    assert client.getData(GXByteBuffer(server.data_to_send()), reply)
    assert reply.isMoreData()
    server.receive_data(bytes(client.receiverReady(reply)))
    assert client.getData(GXByteBuffer(server.data_to_send()), reply)
    assert not reply.isMoreData()
    assert bytes(reply.data.array()) == long_aare


def test_our_client_aarq_frame_equals_gurux_client_frame() -> None:
    theirs_client = gurux_client()
    ours = HdlcConnection(Role.CLIENT)
    server = HdlcConnection(Role.SERVER)
    ours.connect()
    server.receive_data(ours.data_to_send())
    ua = server.data_to_send()
    ours.receive_data(ua)
    assert isinstance(events(ours)[0], LinkEstablished)
    reply = GXReplyData()
    theirs_client.getData(GXByteBuffer(ua), reply)
    theirs_client.parseUAResponse(reply.data)
    gurux_frames = [bytes(f) for f in theirs_client.aarqRequest()]
    assert len(gurux_frames) == 1
    ours.send_apdu(gurux_frames[0][11:-3])  # the AARQ behind flag, header, HCS and LLC
    assert ours.data_to_send() == gurux_frames[0]


def test_segment_sizes_differ_from_gurux_only_where_gurux_is_conservative() -> None:
    """gurux leaves its first segment 3 bytes short of max_info_tx; we fill it.

    Both obey the limit (the LLC header counts towards the information field), so
    the concatenated information fields must be identical.
    """
    theirs = [bytes(f) for f in gurux_client(max_info_tx=32).aarqRequest()]
    ours = HdlcConnection(Role.CLIENT, parameters=HdlcParameters(max_info_tx=32))
    server = HdlcConnection(Role.SERVER)
    ours.connect()
    server.receive_data(ours.data_to_send())
    ours.receive_data(server.data_to_send())
    info = b"".join(f[8:-3] for f in theirs)
    ours.send_apdu(info[3:])
    mine = [ours.data_to_send()]
    while ours.sending:
        server.receive_data(mine[-1])
        ours.receive_data(server.data_to_send())
        mine.append(ours.data_to_send())
    assert b"".join(f[8:-3] for f in mine) == info
    assert [len(f) - 11 for f in theirs] == [29, 5] and [len(f) - 11 for f in mine] == [32, 2]
