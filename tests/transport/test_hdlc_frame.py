"""IEC 62056-46 HDLC frame codec: FCS, addresses, control field, parameters."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metercert.errors import UsageError
from metercert.transport.errors import BadChecksum, BadFrame, FrameTooLarge
from metercert.transport.fcs import crc16_x25, fcs_bytes
from metercert.transport.hdlc_frame import (
    FrameKind,
    HdlcAddress,
    HdlcFrame,
    HdlcFrameDecoder,
    HdlcParameters,
    decode_control,
    encode_control,
    encode_frame,
    parse_frame_body,
    segment,
)

CLIENT = HdlcAddress(16)
SERVER = HdlcAddress(1)


def test_fcs_matches_the_crc16_x25_check_value() -> None:
    assert crc16_x25(b"123456789") == 0x906E
    assert crc16_x25(b"") == 0x0000
    assert fcs_bytes(b"123456789") == b"\x6E\x90"


def test_snrm_for_client_16_and_server_1_has_the_known_bytes() -> None:
    frame = HdlcFrame(SERVER, CLIENT, FrameKind.SNRM)
    assert encode_frame(frame) == bytes.fromhex("7EA0070321930F017E")


def test_known_aarq_i_frame_decodes_with_hcs_and_llc() -> None:
    raw = bytes.fromhex(
        "7ea02b032110fbafe6e600601da109060760857405080101be10040e01000000065f1f0400401e5dffff91237e")
    decoder = HdlcFrameDecoder()
    decoder.feed(raw)
    frame = decoder.next_frame()
    assert frame is not None
    assert (frame.dest, frame.source, frame.kind, frame.ns, frame.nr, frame.pf) == (
        SERVER, CLIENT, FrameKind.I, 0, 0, True)
    assert frame.info.startswith(b"\xE6\xE6\x00\x60")
    assert encode_frame(frame) == raw


@pytest.mark.parametrize(("address", "wire"), [
    (HdlcAddress(1), "03"),
    (HdlcAddress(16), "21"),
    (HdlcAddress(1, 17), "0223"),
    (HdlcAddress(1, 17, size=4), "00020023"),
    (HdlcAddress(1000, 16000), "0ED0FA01"),
])
def test_address_encoding(address: HdlcAddress, wire: str) -> None:
    assert address.to_bytes() == bytes.fromhex(wire)
    frame = HdlcFrame(address, CLIENT, FrameKind.DISC)
    decoded = parse_frame_body(encode_frame(frame)[1:-1])
    assert decoded.dest == address and decoded.dest.encoded_size == len(bytes.fromhex(wire))


def test_address_out_of_range_is_refused() -> None:
    with pytest.raises(UsageError):
        HdlcAddress(0x80, size=1)
    with pytest.raises(UsageError):
        HdlcAddress(1, 2, size=1)
    with pytest.raises(UsageError, match="does not fit in 4"):
        HdlcAddress(0x4000, 1)


@pytest.mark.parametrize(("kind", "ns", "nr", "pf", "byte"), [
    (FrameKind.SNRM, 0, 0, True, 0x93),
    (FrameKind.UA, 0, 0, True, 0x73),
    (FrameKind.DISC, 0, 0, True, 0x53),
    (FrameKind.DM, 0, 0, True, 0x1F),
    (FrameKind.FRMR, 0, 0, True, 0x97),
    (FrameKind.UI, 0, 0, False, 0x03),
    (FrameKind.I, 0, 0, True, 0x10),
    (FrameKind.I, 0, 1, True, 0x30),
    (FrameKind.I, 1, 1, True, 0x32),
    (FrameKind.I, 7, 7, False, 0xEE),
    (FrameKind.RR, 0, 1, True, 0x31),
    (FrameKind.RNR, 0, 2, True, 0x55),
])
def test_control_field(kind: FrameKind, ns: int, nr: int, pf: bool, byte: int) -> None:
    assert encode_control(kind, pf=pf, ns=ns, nr=nr) == byte
    assert decode_control(byte) == (kind, pf, ns, nr)


def test_rej_and_unknown_control_bytes_are_bad_frames() -> None:
    for byte in (0x09, 0x0D, 0xFF, 0x2F):
        with pytest.raises(BadFrame):
            decode_control(byte)


addresses = st.one_of(
    st.builds(HdlcAddress, st.integers(0, 0x7F)),
    st.builds(HdlcAddress, st.integers(0, 0x7F), st.integers(0, 0x7F)),
    st.builds(HdlcAddress, st.integers(0, 0x3FFF), st.integers(0, 0x3FFF), st.just(4)),
)
frames = st.builds(
    HdlcFrame, addresses, st.builds(HdlcAddress, st.integers(0, 0x7F)),
    st.sampled_from([FrameKind.I, FrameKind.RR, FrameKind.RNR, FrameKind.SNRM, FrameKind.UA,
                     FrameKind.DISC, FrameKind.DM, FrameKind.UI]),
    st.booleans(), st.integers(0, 7), st.integers(0, 7), st.booleans(), st.binary(max_size=300),
)


def _normal(frame: HdlcFrame) -> HdlcFrame:
    """What survives a round trip: N(S) only in I-frames, N(R) in I/RR/RNR."""
    ns = frame.ns if frame.kind is FrameKind.I else 0
    nr = frame.nr if frame.kind in (FrameKind.I, FrameKind.RR, FrameKind.RNR) else 0
    return HdlcFrame(frame.dest, frame.source, frame.kind, frame.pf, ns, nr, frame.segmented,
                     frame.info)


@given(st.lists(frames, max_size=6), st.integers(min_value=1, max_value=40), st.booleans())
@settings(max_examples=80, deadline=None)
def test_round_trip_in_chunks_with_shared_or_separate_flags(
        items: list[HdlcFrame], chunk: int, share_flags: bool) -> None:
    encoded = [encode_frame(f) for f in items]
    wire = b"".join(e[:-1] if share_flags else e for e in encoded) + (b"\x7E" if share_flags else b"")
    decoder = HdlcFrameDecoder()
    out: list[HdlcFrame] = []
    for i in range(0, len(wire), chunk):
        decoder.feed(wire[i:i + chunk])
        out.extend(decoder)
    assert out == [_normal(f) for f in items]


def test_bad_fcs_bad_hcs_and_garbage_raise_and_decoding_continues() -> None:
    good = encode_frame(HdlcFrame(SERVER, CLIENT, FrameKind.I, info=b"\xE6\xE6\x00\xC0\x01"))
    bad_fcs = bytearray(good)
    bad_fcs[-2] ^= 0x01
    bad_hcs = bytearray(good)
    bad_hcs[6] ^= 0x01  # the HCS, so FCS must be made right again to reach the HCS check
    body = bytes(bad_hcs[1:-3])
    bad_hcs = bytearray(b"\x7E" + body + fcs_bytes(body) + b"\x7E")
    decoder = HdlcFrameDecoder()
    decoder.feed(b"garbage" + bytes(bad_fcs) + bytes(bad_hcs) + good)
    with pytest.raises(BadFrame, match="7 byte"):
        decoder.next_frame()
    with pytest.raises(BadChecksum, match="FCS"):
        decoder.next_frame()
    with pytest.raises(BadChecksum, match="HCS"):
        decoder.next_frame()
    frame = decoder.next_frame()
    assert frame is not None and frame.info.endswith(b"\xC0\x01")


def test_length_that_does_not_end_on_a_flag_is_a_bad_frame() -> None:
    good = encode_frame(HdlcFrame(SERVER, CLIENT, FrameKind.SNRM))
    broken = bytes([0x7E, 0xA0, 0x08]) + good[3:]  # claims one byte more than it has
    decoder = HdlcFrameDecoder()
    decoder.feed(broken + b"\x00\x7E")
    with pytest.raises(BadFrame):
        list(decoder)


def test_wrong_format_type_is_a_bad_frame() -> None:
    decoder = HdlcFrameDecoder()
    decoder.feed(bytes.fromhex("7EB0070321930F017E"))
    with pytest.raises(BadFrame, match="format type 0xB"):
        decoder.next_frame()


def test_oversized_information_field_raises() -> None:
    decoder = HdlcFrameDecoder(max_info=64)
    decoder.feed(encode_frame(HdlcFrame(SERVER, CLIENT, FrameKind.I, info=bytes(65))))
    with pytest.raises(FrameTooLarge):
        list(decoder)


def test_frame_too_long_for_the_length_field_is_refused_when_encoding() -> None:
    with pytest.raises(FrameTooLarge, match="segment"):
        encode_frame(HdlcFrame(SERVER, CLIENT, FrameKind.I, info=bytes(2040)))


def test_segmentation_bit_and_3_kib_segmentation() -> None:
    info = bytes(range(256)) * 12
    pieces = segment(info, 128)
    assert len(pieces) == 24 and b"".join(pieces) == info
    frame = HdlcFrame(SERVER, CLIENT, FrameKind.I, segmented=True, info=pieces[0])
    assert encode_frame(frame)[1] == 0xA8


def test_information_field_is_not_in_the_repr() -> None:
    assert "secret" not in repr(HdlcFrame(SERVER, CLIENT, FrameKind.I, info=b"secret"))


def test_parameters_round_trip_and_known_gurux_field() -> None:
    params = HdlcParameters(max_info_tx=512, max_info_rx=256)
    assert HdlcParameters.from_info(params.to_info()) == params
    # What gurux-dlms puts in SNRM for max info TX 512 / RX 256 (default windows omitted).
    assert HdlcParameters.from_info(bytes.fromhex("818008050202000602 0100".replace(" ", ""))) == params
    assert HdlcParameters().to_info() == bytes.fromhex("818012050180060180070400000001080400000001")
    with pytest.raises(BadFrame):
        HdlcParameters.from_info(b"\x81\x80\x05\x05\x09")
    with pytest.raises(BadFrame):
        HdlcParameters.from_info(b"\x82\x80\x00")


@given(st.binary(max_size=400))
@settings(max_examples=300, deadline=None)
def test_random_bytes_raise_only_frame_errors(data: bytes) -> None:
    decoder = HdlcFrameDecoder(max_info=256)
    decoder.feed(data)
    for _ in range(len(data) + 2):  # every error consumes at least one byte
        try:
            if decoder.next_frame() is None:
                break
        except (BadFrame, FrameTooLarge):
            continue


@given(st.binary(max_size=60))
@settings(max_examples=300, deadline=None)
def test_random_bytes_inside_a_frame_body_raise_only_frame_errors(noise: bytes) -> None:
    body = bytes([0xA0, (len(noise) + 2) & 0xFF]) + noise
    body = body + fcs_bytes(body)  # valid FCS, arbitrary content: reaches the inner parsers
    try:
        parse_frame_body(body)
    except BadFrame:
        pass
    try:
        HdlcParameters.from_info(noise)
    except BadFrame:
        pass
