"""OBIS codes: the six-byte logical names of COSEM objects (IEC 62056-6-1).

Accepted text forms: ``0.0.1.0.0.255`` (six dotted groups) and the reduced
IEC form ``A-B:C.D.E.F`` (``*`` is accepted before F, as on meter displays).
No group is ever implied: a five-group string is refused, because guessing F
would silently address a different object.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from metercert.cosem.errors import BadLength, InvalidValue
from metercert.cosem.reader import ByteReader

_DOTTED = re.compile(r"^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$")
_IEC = re.compile(r"^(\d{1,3})-(\d{1,3}):(\d{1,3})\.(\d{1,3})\.(\d{1,3})[.*](\d{1,3})$")


@dataclass(frozen=True, slots=True, order=True)
class ObisCode:
    """Value groups A..F, each 0..255."""

    a: int
    b: int
    c: int
    d: int
    e: int
    f: int

    def __post_init__(self) -> None:
        for name in "abcdef":
            value = getattr(self, name)
            if not isinstance(value, int) or not 0 <= value <= 255:
                raise InvalidValue(f"OBIS group {name.upper()} must be 0..255, got {value!r}")

    @classmethod
    def parse(cls, text: str) -> ObisCode:
        """Parse ``A.B.C.D.E.F`` or ``A-B:C.D.E.F``."""
        cleaned = text.strip()
        match = _DOTTED.match(cleaned) or _IEC.match(cleaned)
        if match is None:
            raise InvalidValue(
                f"OBIS code {text!r} is not of the form A.B.C.D.E.F or A-B:C.D.E.F "
                "(six groups, each 0..255)"
            )
        return cls(*(int(g) for g in match.groups()))

    @classmethod
    def from_bytes(cls, data: bytes) -> ObisCode:
        if len(data) != 6:
            raise BadLength(f"OBIS code needs exactly 6 bytes, got {len(data)}")
        return cls(*data)

    @classmethod
    def read(cls, reader: ByteReader) -> ObisCode:
        return cls(*reader.take(6, "OBIS code"))

    def to_bytes(self) -> bytes:
        return bytes((self.a, self.b, self.c, self.d, self.e, self.f))

    def __str__(self) -> str:
        return f"{self.a}.{self.b}.{self.c}.{self.d}.{self.e}.{self.f}"

    def iec(self) -> str:
        """The reduced IEC 62056-6-1 form, ``A-B:C.D.E.F``."""
        return f"{self.a}-{self.b}:{self.c}.{self.d}.{self.e}.{self.f}"
