"""The sans-IO HDLC link state machine, client against server, with no sockets."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metercert.transport.errors import BadChecksum, BadFrame, FrameTooLarge, ProtocolViolation
from metercert.transport.hdlc import (
    DEFAULT_PARAMETERS,
    ApduReceived,
    Event,
    FrameDropped,
    FrameKind,
    HdlcAddress,
    HdlcConnection,
    HdlcFrame,
    HdlcFrameDecoder,
    HdlcParameters,
    LinkClosed,
    LinkEstablished,
    LinkState,
    PollReturned,
    Role,
    encode_frame,
)


def pump(a: HdlcConnection, b: HdlcConnection, trace: list[bytes] | None = None) -> None:
    """Move bytes both ways until both sides are quiet."""
    for _ in range(1000):
        moved = False
        for src, dst in ((a, b), (b, a)):
            data = src.data_to_send()
            if data:
                if trace is not None:
                    trace.append(data)
                dst.receive_data(data)
                moved = True
        if not moved:
            return
    raise AssertionError("link never went quiet")


def events(conn: HdlcConnection) -> list[Event]:
    out = []
    while (event := conn.next_event()) is not None:
        out.append(event)
    return out


def linked(client_params: HdlcParameters = DEFAULT_PARAMETERS,
           server_params: HdlcParameters = DEFAULT_PARAMETERS,
           **server_kwargs: object) -> tuple[HdlcConnection, HdlcConnection]:
    client = HdlcConnection(Role.CLIENT, parameters=client_params)
    server = HdlcConnection(Role.SERVER, parameters=server_params, **server_kwargs)  # type: ignore[arg-type]
    client.connect()
    pump(client, server)
    assert isinstance(events(client)[0], LinkEstablished)
    assert isinstance(events(server)[0], LinkEstablished)
    return client, server


def test_snrm_ua_sets_up_and_negotiates_the_smaller_limits() -> None:
    client, server = linked(HdlcParameters(max_info_tx=512, max_info_rx=256),
                            HdlcParameters(max_info_tx=200, max_info_rx=1024))
    assert client.state is LinkState.IDLE and server.state is LinkState.IDLE
    assert client.negotiated.max_info_tx == 512 and client.negotiated.max_info_rx == 200
    assert server.negotiated.max_info_rx == 512 and server.negotiated.max_info_tx == 200


def test_request_response_with_sequence_numbers() -> None:
    client, server = linked()
    trace: list[bytes] = []
    for n in range(10):  # wraps the modulo-8 counters
        client.send_apdu(bytes([0xC0, n]))
        pump(client, server, trace)
        assert [e.apdu for e in events(server) if isinstance(e, ApduReceived)] == [bytes([0xC0, n])]
        server.send_apdu(bytes([0xC4, n]))
        pump(client, server, trace)
        assert [e.apdu for e in events(client) if isinstance(e, ApduReceived)] == [bytes([0xC4, n])]
    decoder = HdlcFrameDecoder()
    decoder.feed(b"".join(trace))
    frames = list(decoder)
    assert [(f.ns, f.nr) for f in frames[:4]] == [(0, 0), (0, 1), (1, 1), (1, 2)]
    assert frames[0].info[:3] == b"\xE6\xE6\x00" and frames[1].info[:3] == b"\xE6\xE7\x00"


@pytest.mark.parametrize("max_info", [128, 32, 2030])
def test_3_kib_apdu_is_segmented_and_reassembled_both_ways(max_info: int) -> None:
    params = HdlcParameters(max_info_tx=max_info, max_info_rx=max_info)
    client, server = linked(params, params)
    apdu = bytes(range(256)) * 12
    trace: list[bytes] = []
    client.send_apdu(apdu)
    pump(client, server, trace)
    assert [e for e in events(server) if isinstance(e, ApduReceived)] == [ApduReceived(apdu)]
    server.send_apdu(apdu[::-1])
    pump(client, server, trace)
    assert [e for e in events(client) if isinstance(e, ApduReceived)] == [ApduReceived(apdu[::-1])]
    decoder = HdlcFrameDecoder()
    decoder.feed(b"".join(trace))
    frames = list(decoder)
    i_frames = [f for f in frames if f.kind is FrameKind.I]
    expected = -(-(len(apdu) + 3) // max_info)
    assert len(i_frames) == 2 * expected
    assert all(len(f.info) <= max_info for f in i_frames)
    assert sum(f.segmented for f in i_frames) == 2 * (expected - 1)
    assert sum(f.kind is FrameKind.RR for f in frames) == 2 * (expected - 1)


def test_reassembly_limit_raises_frame_too_large() -> None:
    client, server = linked(max_apdu=1000)
    client.send_apdu(bytes(1001))
    with pytest.raises(FrameTooLarge, match="1000-byte limit"):
        pump(client, server)


def test_disc_is_answered_with_ua_and_closes_both_sides() -> None:
    client, server = linked()
    client.disconnect()
    pump(client, server)
    assert events(client) == [LinkClosed("disconnected")]
    assert events(server) == [LinkClosed("the client disconnected")]
    assert client.state is server.state is LinkState.DISCONNECTED


def test_disconnected_server_answers_dm_and_client_sees_refusal() -> None:
    server = HdlcConnection(Role.SERVER)
    server.receive_data(encode_frame(HdlcFrame(HdlcAddress(1), HdlcAddress(16), FrameKind.DISC)))
    decoder = HdlcFrameDecoder()
    decoder.feed(server.data_to_send())
    assert [f.kind for f in decoder] == [FrameKind.DM]
    client = HdlcConnection(Role.CLIENT)
    client.connect()
    client.data_to_send()
    client.receive_data(encode_frame(HdlcFrame(HdlcAddress(16), HdlcAddress(1), FrameKind.DM)))
    assert events(client) == [LinkClosed("the server refused the link (DM)")]


def test_server_restricted_to_an_address_drops_frames_for_others() -> None:
    server = HdlcConnection(Role.SERVER, server_address=1)
    server.receive_data(encode_frame(HdlcFrame(HdlcAddress(5), HdlcAddress(16), FrameKind.SNRM)))
    assert server.data_to_send() == b""
    assert isinstance(events(server)[0], FrameDropped)
    assert server.state is LinkState.DISCONNECTED


def test_server_binds_to_physical_address_from_snrm() -> None:
    client = HdlcConnection(Role.CLIENT, client_address=1, server_address=HdlcAddress(1, 17))
    server = HdlcConnection(Role.SERVER)
    client.connect()
    pump(client, server)
    assert server.server_address == HdlcAddress(1, 17) and server.client_address == HdlcAddress(1)
    client.send_apdu(b"\x60\x00")
    pump(client, server)
    server.send_apdu(b"\x61\x00")
    pump(client, server)
    assert ApduReceived(b"\x61\x00") in events(client)


def test_wrong_sequence_number_is_a_protocol_violation() -> None:
    _client, server = linked()
    bogus = HdlcFrame(HdlcAddress(1), HdlcAddress(16), FrameKind.I, ns=3, info=b"\xE6\xE6\x00\xC0")
    with pytest.raises(ProtocolViolation, match="N\\(S\\)=3, expected 0"):
        server.receive_data(encode_frame(bogus))


def test_unsolicited_i_frame_to_idle_client_is_a_protocol_violation() -> None:
    client, _server = linked()
    frame = HdlcFrame(HdlcAddress(16), HdlcAddress(1), FrameKind.I, info=b"\xE6\xE7\x00\xC4")
    with pytest.raises(ProtocolViolation, match="unexpected HDLC I frame"):
        client.receive_data(encode_frame(frame))


def test_missing_llc_header_is_a_bad_frame() -> None:
    _, server = linked()
    frame = HdlcFrame(HdlcAddress(1), HdlcAddress(16), FrameKind.I, info=b"\xC0\x01\x00")
    with pytest.raises(BadFrame, match="LLC"):
        server.receive_data(encode_frame(frame))


def test_server_without_the_poll_keeps_its_apdu_until_polled() -> None:
    client, server = linked()
    server.send_apdu(b"\xC2\x01")  # a push: the client has not polled
    assert server.data_to_send() == b"" and server.pending == 1
    client.poll()
    pump(client, server)
    assert events(client) == [ApduReceived(b"\xC2\x01")]
    assert server.pending == 0 and client.state is LinkState.IDLE


def test_re_poll_before_the_answer_is_ready_gets_rr_and_the_answer_later() -> None:
    client, server = linked()
    client.send_apdu(b"\xC0\x01")
    pump(client, server)
    assert events(server) == [ApduReceived(b"\xC0\x01")] and server.state is LinkState.RESPONDING
    # The client polls again before the server has answered (as a timed-out client would).
    server.receive_data(encode_frame(HdlcFrame(HdlcAddress(1), HdlcAddress(16), FrameKind.RR)))
    client.receive_data(server.data_to_send())
    assert events(client) == [PollReturned()] and client.state is LinkState.IDLE
    server.send_apdu(b"\xC4\x01")
    assert server.data_to_send() == b""
    client.poll()
    pump(client, server)
    assert events(client) == [ApduReceived(b"\xC4\x01")]


def test_client_cannot_send_while_awaiting_a_reply() -> None:
    client, _server = linked()
    client.send_apdu(b"\xC0")
    with pytest.raises(ProtocolViolation, match="awaiting reply"):
        client.send_apdu(b"\xC0")


def test_bad_fcs_raises_by_default_and_is_dropped_when_asked() -> None:
    frame = bytearray(encode_frame(HdlcFrame(HdlcAddress(1), HdlcAddress(16), FrameKind.SNRM)))
    frame[-2] ^= 0xFF
    strict = HdlcConnection(Role.SERVER)
    with pytest.raises(BadChecksum):
        strict.receive_data(bytes(frame))
    lenient = HdlcConnection(Role.SERVER, drop_bad_frames=True)
    lenient.receive_data(bytes(frame) + b"junk" + encode_frame(
        HdlcFrame(HdlcAddress(1), HdlcAddress(16), FrameKind.SNRM)))
    kinds = [type(e) for e in events(lenient)]
    assert kinds == [FrameDropped, FrameDropped, LinkEstablished]
    assert lenient.dropped_frames == 2


def test_rr_poll_on_idle_link_is_answered_with_rr() -> None:
    _, server = linked()
    server.receive_data(encode_frame(HdlcFrame(HdlcAddress(1), HdlcAddress(16), FrameKind.RR)))
    decoder = HdlcFrameDecoder()
    decoder.feed(server.data_to_send())
    assert [(f.kind, f.nr) for f in decoder] == [(FrameKind.RR, 0)]


@given(st.lists(st.binary(min_size=1, max_size=40), min_size=1, max_size=12))
@settings(max_examples=150, deadline=None)
def test_random_input_to_a_live_server_raises_only_transport_errors(chunks: list[bytes]) -> None:
    _, server = linked(max_apdu=512)
    for chunk in chunks:
        try:
            server.receive_data(b"\x7E\xA0" + chunk)
        except (BadFrame, FrameTooLarge, ProtocolViolation):
            server = linked(max_apdu=512)[1]


def test_rr_acknowledging_the_wrong_frame_is_a_protocol_violation() -> None:
    client, _server = linked()
    client.send_apdu(bytes(300))  # three segments: the client waits for RR N(R)=1
    client.data_to_send()
    wrong = HdlcFrame(HdlcAddress(16), HdlcAddress(1), FrameKind.RR, nr=0)
    with pytest.raises(ProtocolViolation, match="RR N\\(R\\)=0, expected 1"):
        client.receive_data(encode_frame(wrong))


_kinds = st.sampled_from(list(FrameKind))
_any_frame = st.builds(
    HdlcFrame,
    st.sampled_from([HdlcAddress(1), HdlcAddress(16), HdlcAddress(1, 17), HdlcAddress(5)]),
    st.sampled_from([HdlcAddress(16), HdlcAddress(1), HdlcAddress(3)]),
    _kinds, st.booleans(), st.integers(0, 7), st.integers(0, 7), st.booleans(),
    st.one_of(st.just(b""), st.binary(max_size=140),
              st.builds(lambda b: b"\xE6\xE6\x00" + b, st.binary(max_size=40)),
              st.builds(lambda b: b"\xE6\xE7\x00" + b, st.binary(max_size=40)),
              st.just(DEFAULT_PARAMETERS.to_info())),
)


@given(st.lists(_any_frame, min_size=1, max_size=10), st.sampled_from(["idle", "awaiting", "fresh"]))
@settings(max_examples=200, deadline=None)
def test_well_formed_frames_in_any_order_raise_only_transport_errors(
        frames: list[HdlcFrame], start: str) -> None:
    """The state machine, not the decoder, under attack: valid frames, hostile order."""
    if start == "fresh":
        client, server = HdlcConnection(Role.CLIENT), HdlcConnection(Role.SERVER)
        client.connect()
        client.data_to_send()
    else:
        client, server = linked(max_apdu=256)
        if start == "awaiting":
            client.send_apdu(bytes(200))
            client.data_to_send()
    for target in (client, server):
        for frame in frames:
            try:
                target.receive_data(encode_frame(frame))
                target.data_to_send()
                while target.next_event() is not None:
                    pass
            except (BadFrame, FrameTooLarge, ProtocolViolation):
                pass
