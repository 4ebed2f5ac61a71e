"""IEC 62056-47 TCP/UDP wrapper: the framing DLMS uses over IP.

Each APDU travels behind an 8-byte header of four big-endian u16 fields:
version (always 0x0001), source wPort, destination wPort and the length of the
payload that follows. A wPort is the DLMS SAP: 16 is the public client, 1 the
management logical device. Over TCP frames follow each other in the stream, so
:class:`WrapperDecoder` buffers bytes and yields whole frames; over UDP one
datagram holds exactly one frame (:func:`decode_datagram`).

This module does no I/O.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

from metercert.errors import UsageError
from metercert.transport.errors import BadFrame, FrameTooLarge

WRAPPER_VERSION = 0x0001
DEFAULT_PORT = 4059
HEADER_LENGTH = 8
#: The largest payload the 16-bit length field can describe.
MAX_PAYLOAD_FIELD = 0xFFFF
#: Default receive limit. The length field caps a frame at 64 KiB - 1, so the
#: default accepts every frame the wire can carry; servers facing untrusted
#: peers usually lower it to the negotiated max-PDU size.
DEFAULT_MAX_PAYLOAD = MAX_PAYLOAD_FIELD

_HEADER = struct.Struct(">HHHH")


@dataclass(frozen=True)
class WrapperFrame:
    """One wrapper frame. The payload is left out of the repr (it may hold secrets)."""

    source_wport: int
    dest_wport: int
    payload: bytes = field(repr=False)

    def __post_init__(self) -> None:
        for name in ("source_wport", "dest_wport"):
            value = getattr(self, name)
            if not 0 <= value <= 0xFFFF:
                raise UsageError(f"wrapper {name.replace('_', ' ')} {value} is outside 0..65535")
        if len(self.payload) > MAX_PAYLOAD_FIELD:
            raise FrameTooLarge(
                f"wrapper payload of {len(self.payload)} bytes exceeds the 65535-byte length field"
            )

    def to_bytes(self) -> bytes:
        """The frame as it goes on the wire."""
        return encode_wrapper(self.source_wport, self.dest_wport, self.payload)


def encode_wrapper(source_wport: int, dest_wport: int, payload: bytes) -> bytes:
    """Header plus payload for one wrapper frame."""
    if not (0 <= source_wport <= 0xFFFF and 0 <= dest_wport <= 0xFFFF):
        raise UsageError(f"wrapper wPorts must be 0..65535, got {source_wport} and {dest_wport}")
    if len(payload) > MAX_PAYLOAD_FIELD:
        raise FrameTooLarge(
            f"wrapper payload of {len(payload)} bytes exceeds the 65535-byte length field"
        )
    return _HEADER.pack(WRAPPER_VERSION, source_wport, dest_wport, len(payload)) + bytes(payload)


def _parse_header(header: bytes, max_payload: int) -> tuple[int, int, int]:
    version, source, dest, length = _HEADER.unpack(header)
    if version != WRAPPER_VERSION:
        raise BadFrame(f"wrapper version 0x{version:04X} is not 0x0001")
    if length > max_payload:
        raise FrameTooLarge(
            f"wrapper frame announces a {length}-byte payload, the limit is {max_payload}"
        )
    return source, dest, length


def decode_datagram(datagram: bytes, *, max_payload: int = DEFAULT_MAX_PAYLOAD) -> WrapperFrame:
    """Decode a UDP datagram that must hold exactly one wrapper frame."""
    if len(datagram) < HEADER_LENGTH:
        raise BadFrame(f"wrapper datagram of {len(datagram)} bytes is shorter than the header")
    source, dest, length = _parse_header(datagram[:HEADER_LENGTH], max_payload)
    if len(datagram) != HEADER_LENGTH + length:
        raise BadFrame(
            f"wrapper datagram holds {len(datagram) - HEADER_LENGTH} payload bytes, "
            f"its header announces {length}"
        )
    return WrapperFrame(source, dest, bytes(datagram[HEADER_LENGTH:]))


class WrapperDecoder:
    """Incremental decoder for a TCP byte stream of wrapper frames.

    ``feed`` bytes as they arrive and iterate the decoder for whole frames.
    The header is checked as soon as its 8 bytes are in, so an oversized or
    wrong-version frame is refused before its payload is buffered. After an
    error the stream has lost framing: the decoder stays failed and re-raises.
    """

    def __init__(self, *, max_payload: int = DEFAULT_MAX_PAYLOAD) -> None:
        if not 0 <= max_payload <= MAX_PAYLOAD_FIELD:
            raise UsageError(f"wrapper max_payload must be 0..65535, got {max_payload}")
        self.max_payload = max_payload
        self._buffer = bytearray()
        self._error: BadFrame | FrameTooLarge | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a returned frame."""
        return len(self._buffer)

    def feed(self, data: bytes) -> None:
        """Append received bytes."""
        if self._error is not None:
            raise self._error
        self._buffer += data

    def next_frame(self) -> WrapperFrame | None:
        """The next complete frame, or None if more bytes are needed."""
        if self._error is not None:
            raise self._error
        if len(self._buffer) < HEADER_LENGTH:
            return None
        try:
            source, dest, length = _parse_header(bytes(self._buffer[:HEADER_LENGTH]),
                                                 self.max_payload)
        except (BadFrame, FrameTooLarge) as exc:
            self._error = exc
            self._buffer.clear()
            raise
        end = HEADER_LENGTH + length
        if len(self._buffer) < end:
            return None
        payload = bytes(self._buffer[HEADER_LENGTH:end])
        del self._buffer[:end]
        return WrapperFrame(source, dest, payload)

    def __iter__(self) -> Iterator[WrapperFrame]:
        while (frame := self.next_frame()) is not None:
            yield frame
