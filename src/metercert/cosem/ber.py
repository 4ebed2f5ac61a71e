"""The small slice of BER that ACSE needs: single-byte tags and definite lengths.

ACSE APDUs (AARQ, AARE, RLRQ, RLRE) are BER sequences of context-tagged
elements no more than two levels deep, so a flat TLV reader is enough; there is
no general recursive BER parser here to exhaust.
"""

from __future__ import annotations

from dataclasses import dataclass

from metercert.cosem.errors import InvalidValue, UnknownTag
from metercert.cosem.reader import ByteReader, encode_length


@dataclass(frozen=True, slots=True)
class Tlv:
    tag: int
    content: bytes
    offset: int  # where the tag byte was, for error messages
    content_offset: int

    @property
    def number(self) -> int:
        return self.tag & 0x1F


def read_tlv(reader: ByteReader, what: str) -> Tlv:
    start = reader.pos
    tag = reader.u8(f"{what} tag")
    if tag & 0x1F == 0x1F:
        raise UnknownTag(f"{what}: multi-byte BER tag 0x{tag:02X} is not used by ACSE", start)
    length = reader.length(what)
    content_start = reader.pos
    return Tlv(tag, reader.take(length, what), start, content_start)


def read_all(data: bytes, what: str, base_offset: int = 0) -> list[Tlv]:
    """Split the content of a constructed element into its TLVs."""
    reader = ByteReader(data)
    out: list[Tlv] = []
    while reader.remaining:
        item = read_tlv(reader, what)
        out.append(
            Tlv(
                item.tag, item.content, item.offset + base_offset, item.content_offset + base_offset
            )
        )
    return out


def read_single(data: bytes, tag: int, what: str, base_offset: int = 0) -> bytes:
    """Content of the one TLV that ``data`` must consist of, with the given tag."""
    items = read_all(data, what, base_offset)
    if len(items) != 1 or items[0].tag != tag:
        found = ", ".join(f"0x{t.tag:02X}" for t in items) or "nothing"
        raise InvalidValue(
            f"{what}: expected one element with tag 0x{tag:02X}, found {found}", base_offset
        )
    return items[0].content


def tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + encode_length(len(content)) + content


def decode_integer(content: bytes, what: str, offset: int) -> int:
    if not 1 <= len(content) <= 4:
        raise InvalidValue(f"{what}: INTEGER of {len(content)} bytes", offset)
    return int.from_bytes(content, "big", signed=True)


def encode_integer(value: int) -> bytes:
    size = max(1, (value.bit_length() + 8) // 8)
    return value.to_bytes(size, "big", signed=True)
