"""IEC 62056-47 wrapper codec."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metercert.errors import ConnectionFailed, UsageError
from metercert.transport.errors import BadFrame, FrameTooLarge
from metercert.transport.wrapper import (
    DEFAULT_PORT,
    WrapperDecoder,
    WrapperFrame,
    decode_datagram,
    encode_wrapper,
)

wports = st.integers(min_value=0, max_value=0xFFFF)


def test_known_bytes_of_a_get_request_frame() -> None:
    apdu = bytes.fromhex("C001C1000800000100 00FF0200".replace(" ", ""))
    assert encode_wrapper(16, 1, apdu) == bytes.fromhex("0001 0010 0001 000D".replace(" ", "")) + apdu
    assert DEFAULT_PORT == 4059


@given(st.lists(st.tuples(wports, wports, st.binary(max_size=600)), max_size=8),
       st.integers(min_value=1, max_value=50))
@settings(max_examples=60, deadline=None)
def test_round_trip_in_arbitrary_chunks(frames: list[tuple[int, int, bytes]], chunk: int) -> None:
    stream = b"".join(encode_wrapper(s, d, p) for s, d, p in frames)
    decoder = WrapperDecoder()
    out: list[WrapperFrame] = []
    for i in range(0, len(stream), chunk):
        decoder.feed(stream[i:i + chunk])
        out.extend(decoder)
    assert [(f.source_wport, f.dest_wport, f.payload) for f in out] == frames
    assert decoder.buffered == 0


def test_bad_version_is_refused_and_decoder_stays_failed() -> None:
    decoder = WrapperDecoder()
    decoder.feed(bytes.fromhex("0002001000010001") + b"\x00")
    with pytest.raises(BadFrame, match="version 0x0002"):
        decoder.next_frame()
    with pytest.raises(BadFrame):
        decoder.feed(encode_wrapper(16, 1, b"\xc0"))


def test_oversized_frame_is_refused_from_its_header_alone() -> None:
    decoder = WrapperDecoder(max_payload=100)
    decoder.feed(encode_wrapper(16, 1, bytes(101))[:8])
    with pytest.raises(FrameTooLarge, match="101-byte payload, the limit is 100"):
        decoder.next_frame()
    assert issubclass(FrameTooLarge, ConnectionFailed)


def test_partial_frame_waits_for_more() -> None:
    decoder = WrapperDecoder()
    data = encode_wrapper(1, 16, b"abc")
    decoder.feed(data[:9])
    assert decoder.next_frame() is None
    decoder.feed(data[9:])
    frame = decoder.next_frame()
    assert frame == WrapperFrame(1, 16, b"abc")


def test_payload_never_shows_in_repr() -> None:
    secret = b"LLS-password-123"
    assert "LLS" not in repr(WrapperFrame(16, 1, secret))


def test_datagram_must_hold_exactly_one_frame() -> None:
    frame = encode_wrapper(16, 1, b"\xc0\x01")
    assert decode_datagram(frame).payload == b"\xc0\x01"
    with pytest.raises(BadFrame, match="announces 2"):
        decode_datagram(frame + b"\x00")
    with pytest.raises(BadFrame, match="shorter than the header"):
        decode_datagram(frame[:5])


def test_encoding_limits() -> None:
    with pytest.raises(FrameTooLarge):
        encode_wrapper(16, 1, bytes(0x10000))
    with pytest.raises(UsageError):
        encode_wrapper(0x10000, 1, b"")


@given(st.binary(max_size=300))
@settings(max_examples=200, deadline=None)
def test_random_bytes_raise_only_transport_errors(data: bytes) -> None:
    decoder = WrapperDecoder(max_payload=64)
    try:
        decoder.feed(data)
        list(decoder)
    except (BadFrame, FrameTooLarge):
        pass
