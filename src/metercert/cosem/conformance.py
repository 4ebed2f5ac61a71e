"""The xDLMS conformance block: which services an association may use.

On the wire it is a BER BIT STRING with its own tag, ``5F 1F 04 00`` followed
by 24 bits; bit 0 is the most significant bit of the first byte. The IntFlag
value is those three bytes read as a big-endian integer, so
``Conformance(0x007E1F)`` is exactly the bytes ``00 7E 1F``.
"""

from __future__ import annotations

from enum import IntFlag

from metercert.cosem.errors import InvalidValue, UnknownTag
from metercert.cosem.reader import ByteReader

_TAG = b"\x5f\x1f"


def _bit(n: int) -> int:
    return 1 << (23 - n)


class Conformance(IntFlag):
    RESERVED_ZERO = _bit(0)
    GENERAL_PROTECTION = _bit(1)
    GENERAL_BLOCK_TRANSFER = _bit(2)
    READ = _bit(3)
    WRITE = _bit(4)
    UNCONFIRMED_WRITE = _bit(5)
    DELTA_VALUE_ENCODING = _bit(6)
    RESERVED_SEVEN = _bit(7)
    ATTRIBUTE0_SUPPORTED_WITH_SET = _bit(8)
    PRIORITY_MGMT_SUPPORTED = _bit(9)
    ATTRIBUTE0_SUPPORTED_WITH_GET = _bit(10)
    BLOCK_TRANSFER_WITH_GET_OR_READ = _bit(11)
    BLOCK_TRANSFER_WITH_SET_OR_WRITE = _bit(12)
    BLOCK_TRANSFER_WITH_ACTION = _bit(13)
    MULTIPLE_REFERENCES = _bit(14)
    INFORMATION_REPORT = _bit(15)
    DATA_NOTIFICATION = _bit(16)
    ACCESS = _bit(17)
    PARAMETERIZED_ACCESS = _bit(18)
    GET = _bit(19)
    SET = _bit(20)
    SELECTIVE_ACCESS = _bit(21)
    EVENT_NOTIFICATION = _bit(22)
    ACTION = _bit(23)

    def to_ber(self) -> bytes:
        """The full BER encoding, tag included (``int.to_bytes`` is left alone)."""
        return _TAG + b"\x04\x00" + int(self).to_bytes(3, "big")

    @classmethod
    def read(cls, reader: ByteReader) -> Conformance:
        start = reader.pos
        tag = reader.take(2, "conformance tag")
        if tag != _TAG:
            raise UnknownTag(f"expected conformance tag 5F1F, got {tag.hex().upper()}", start)
        length = reader.u8("conformance length")
        if length != 4:
            raise InvalidValue(f"conformance bit string length must be 4, got {length}", start + 2)
        unused = reader.u8("conformance unused-bits")
        if unused != 0:
            raise InvalidValue(f"conformance unused-bits must be 0, got {unused}", start + 3)
        return cls(reader.uint(3, "conformance bits"))

    @classmethod
    def from_ber(cls, data: bytes) -> Conformance:
        reader = ByteReader(data)
        value = cls.read(reader)
        reader.expect_end("conformance")
        return value


#: what a typical LN client proposes (the value in the Green Book examples)
DEFAULT_LN_CONFORMANCE = Conformance(0x007E1F)
