"""Object identifiers named in ACSE: application contexts and authentication mechanisms.

Both live under the DLMS UA arc 2.16.756.5.8: application context names are
``...1.N`` and mechanism names ``...2.N``. The BER content of those OIDs is
``60 85 74 05 08 01 0N`` / ``60 85 74 05 08 02 0N``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from metercert.cosem.errors import CosemEncodeError, InvalidValue

_DLMS_UA = (2, 16, 756, 5, 8)


@dataclass(frozen=True, slots=True)
class ObjectIdentifier:
    """An OID as its arcs; ``content`` is the BER value without tag and length."""

    arcs: tuple[int, ...]

    def __post_init__(self) -> None:
        a = self.arcs
        if len(a) < 2 or a[0] > 2 or (a[0] < 2 and a[1] > 39) or any(x < 0 for x in a):
            raise CosemEncodeError(f"{self} is not a valid object identifier")

    @classmethod
    def parse(cls, text: str) -> ObjectIdentifier:
        try:
            return cls(tuple(int(x) for x in text.split(".")))
        except ValueError:
            raise InvalidValue(f"{text!r} is not a dotted object identifier") from None

    @classmethod
    def from_content(cls, data: bytes, offset: int | None = None) -> ObjectIdentifier:
        """Decode BER OID content octets."""
        if not data:
            raise InvalidValue("object identifier is empty", offset)
        subids: list[int] = []
        value = 0
        fresh = True
        for b in data:
            if fresh and b == 0x80:
                raise InvalidValue("object identifier has a padded sub-identifier", offset)
            value = (value << 7) | (b & 0x7F)
            fresh = not b & 0x80
            if fresh:
                subids.append(value)
                value = 0
        if not fresh:
            raise InvalidValue("object identifier ends inside a sub-identifier", offset)
        first = subids[0]
        head = (first // 40, first % 40) if first < 80 else (2, first - 80)
        return cls(head + tuple(subids[1:]))

    def content(self) -> bytes:
        out = bytearray()
        for subid in (self.arcs[0] * 40 + self.arcs[1], *self.arcs[2:]):
            chunk = [subid & 0x7F]
            subid >>= 7
            while subid:
                chunk.append(0x80 | (subid & 0x7F))
                subid >>= 7
            out += bytes(reversed(chunk))
        return bytes(out)

    def __str__(self) -> str:
        return ".".join(str(x) for x in self.arcs)


class ApplicationContextName(IntEnum):
    """DLMS application contexts 2.16.756.5.8.1.N."""

    LOGICAL_NAME = 1
    SHORT_NAME = 2
    LOGICAL_NAME_WITH_CIPHERING = 3
    SHORT_NAME_WITH_CIPHERING = 4

    @property
    def oid(self) -> ObjectIdentifier:
        return ObjectIdentifier((*_DLMS_UA, 1, int(self)))

    @classmethod
    def from_oid(cls, oid: ObjectIdentifier) -> ApplicationContextName | None:
        """The named context, or None for an OID outside the DLMS set."""
        if oid.arcs[:-1] == (*_DLMS_UA, 1) and oid.arcs[-1] in cls._value2member_map_:
            return cls(oid.arcs[-1])
        return None

    @property
    def ciphered(self) -> bool:
        return self in (self.LOGICAL_NAME_WITH_CIPHERING, self.SHORT_NAME_WITH_CIPHERING)


class AuthenticationMechanism(IntEnum):
    """Authentication mechanism names 2.16.756.5.8.2.N (3 and 4 are legacy, unsafe)."""

    NONE = 0
    LLS = 1
    HLS = 2
    HLS_MD5 = 3
    HLS_SHA1 = 4
    HLS_GMAC = 5
    HLS_SHA256 = 6
    HLS_ECDSA = 7

    @property
    def oid(self) -> ObjectIdentifier:
        return ObjectIdentifier((*_DLMS_UA, 2, int(self)))

    @classmethod
    def from_oid(cls, oid: ObjectIdentifier) -> AuthenticationMechanism | None:
        if oid.arcs[:-1] == (*_DLMS_UA, 2) and oid.arcs[-1] in cls._value2member_map_:
            return cls(oid.arcs[-1])
        return None
