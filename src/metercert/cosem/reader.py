"""A bounds-checked cursor over an input buffer, and the shared length form.

A-XDR and the BER used by ACSE write lengths the same way: one byte below 0x80,
otherwise 0x81..0x84 followed by that many big-endian bytes. Every read checks
the bytes left first, so a short or lying buffer becomes a
:class:`TruncatedData` / :class:`BadLength` naming the field and the offset,
never an ``IndexError``.
"""

from __future__ import annotations

from metercert.cosem.errors import BadLength, CosemEncodeError, TruncatedData


class ByteReader:
    """Reads fields front to back from ``data`` starting at ``pos``."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = bytes(data)
        self.pos = pos

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or n > self.remaining:
            raise TruncatedData(f"{what}: needs {n} bytes, only {self.remaining} left", self.pos)
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def uint(self, size: int, what: str) -> int:
        return int.from_bytes(self.take(size, what), "big")

    def sint(self, size: int, what: str) -> int:
        return int.from_bytes(self.take(size, what), "big", signed=True)

    def u8(self, what: str) -> int:
        if self.pos >= len(self.data):
            raise TruncatedData(f"{what}: needs 1 byte, none left", self.pos)
        b = self.data[self.pos]
        self.pos += 1
        return b

    def peek(self, what: str) -> int:
        if self.pos >= len(self.data):
            raise TruncatedData(f"{what}: needs 1 byte, none left", self.pos)
        return self.data[self.pos]

    def length(self, what: str) -> int:
        """Read a short- or long-form length and check it fits in the data left."""
        start = self.pos
        first = self.u8(f"{what} length")
        if first < 0x80:
            value = first
        elif 0x81 <= first <= 0x84:
            value = self.uint(first - 0x80, f"{what} length")
        else:
            raise BadLength(f"{what}: length byte 0x{first:02X} is not a valid length form", start)
        if value > self.remaining:
            raise BadLength(
                f"{what}: length {value} exceeds the {self.remaining} bytes left", start
            )
        return value

    def count(self, what: str, min_item_size: int = 1) -> int:
        """Read an element count and refuse one the remaining bytes cannot hold."""
        start = self.pos
        first = self.u8(f"{what} count")
        if first < 0x80:
            value = first
        elif 0x81 <= first <= 0x84:
            value = self.uint(first - 0x80, f"{what} count")
        else:
            raise BadLength(f"{what}: count byte 0x{first:02X} is not a valid length form", start)
        if value * min_item_size > self.remaining:
            raise BadLength(
                f"{what}: {value} elements cannot fit in the {self.remaining} bytes left", start
            )
        return value

    def expect_end(self, what: str) -> None:
        if self.remaining:
            raise BadLength(f"{self.remaining} trailing bytes after {what}", self.pos)


def encode_length(n: int) -> bytes:
    """Encode a length or count in the A-XDR / BER definite form."""
    if n < 0:
        raise CosemEncodeError(f"length {n} is negative")
    if n < 0x80:
        return bytes([n])
    size = (n.bit_length() + 7) // 8
    if size > 4:
        raise CosemEncodeError(f"length {n} does not fit in four bytes")
    return bytes([0x80 + size]) + n.to_bytes(size, "big")
