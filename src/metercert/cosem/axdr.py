"""A-XDR encoding of the DLMS ``Data`` CHOICE (IEC 62056-6-2 / Green Book).

A value is a :class:`DlmsData`: its :class:`DataType` tag plus a Python value
whose type is fixed per tag (see ``DlmsData`` docstring). Values are checked
when they are built, so an out-of-range value can never reach the wire.

The decoder is written for hostile input: nesting depth is capped at
:data:`MAX_DEPTH`, an array/structure count must fit in the bytes left (every
element takes at least one byte), and every read is bounds-checked. Anything
malformed raises a :class:`~metercert.cosem.errors.CosemDecodeError` subclass
naming the offset.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date as _date
from datetime import datetime as _datetime
from datetime import time as _time
from enum import IntEnum
from typing import Any

from metercert.cosem.cosem_time import CosemDate, CosemDateTime, CosemTime
from metercert.cosem.errors import (
    CosemDecodeError,
    CosemEncodeError,
    InvalidValue,
    UnknownTag,
    UnsupportedEncoding,
)
from metercert.cosem.reader import ByteReader, encode_length

#: deepest array/structure nesting the decoder follows (real objects use < 6)
MAX_DEPTH = 32


class DataType(IntEnum):
    NULL_DATA = 0
    ARRAY = 1
    STRUCTURE = 2
    BOOLEAN = 3
    BIT_STRING = 4
    DOUBLE_LONG = 5
    DOUBLE_LONG_UNSIGNED = 6
    OCTET_STRING = 9
    VISIBLE_STRING = 10
    UTF8_STRING = 12
    BCD = 13
    INTEGER = 15
    LONG = 16
    UNSIGNED = 17
    LONG_UNSIGNED = 18
    COMPACT_ARRAY = 19
    LONG64 = 20
    LONG64_UNSIGNED = 21
    ENUM = 22
    FLOAT32 = 23
    FLOAT64 = 24
    DATE_TIME = 25
    DATE = 26
    TIME = 27


#: integer types: (byte size, signed)
_INTS: dict[DataType, tuple[int, bool]] = {
    DataType.DOUBLE_LONG: (4, True),
    DataType.DOUBLE_LONG_UNSIGNED: (4, False),
    DataType.BCD: (1, False),
    DataType.INTEGER: (1, True),
    DataType.LONG: (2, True),
    DataType.UNSIGNED: (1, False),
    DataType.LONG_UNSIGNED: (2, False),
    DataType.LONG64: (8, True),
    DataType.LONG64_UNSIGNED: (8, False),
    DataType.ENUM: (1, False),
}
_FLOATS: dict[DataType, struct.Struct] = {
    DataType.FLOAT32: struct.Struct(">f"),
    DataType.FLOAT64: struct.Struct(">d"),
}
_CALENDAR: dict[DataType, type[CosemDateTime | CosemDate | CosemTime]] = {
    DataType.DATE_TIME: CosemDateTime,
    DataType.DATE: CosemDate,
    DataType.TIME: CosemTime,
}


def _int_range(size: int, signed: bool) -> tuple[int, int]:
    bits = size * 8
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


@dataclass(frozen=True, slots=True)
class DlmsData:
    """One DLMS ``Data`` value.

    Python value per type: null-data ``None``; array / structure
    ``tuple[DlmsData, ...]``; boolean ``bool``; bit-string ``str`` of ``0``/``1``;
    integer types and enum/bcd ``int``; octet-string ``bytes``; visible-string
    ``str`` (Latin-1 range, decoded byte for byte); utf8-string ``str``;
    float32/float64 ``float``; date-time / date / time the ``Cosem*`` classes.
    """

    type: DataType
    value: Any = None

    def __post_init__(self) -> None:
        t, v = self.type, self.value
        if not isinstance(t, DataType):
            raise CosemEncodeError(f"{t!r} is not a DataType")
        if t in _INTS:
            lo, hi = _int_range(*_INTS[t])
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise CosemEncodeError(f"{t.name.lower()} needs an int in {lo}..{hi}, got {v!r}")
        elif t is DataType.NULL_DATA:
            if v is not None:
                raise CosemEncodeError(f"null-data carries no value, got {v!r}")
        elif t in (DataType.ARRAY, DataType.STRUCTURE):
            if not isinstance(v, tuple) or not all(isinstance(x, DlmsData) for x in v):
                raise CosemEncodeError(f"{t.name.lower()} needs a tuple of DlmsData")
            if t is DataType.ARRAY and v and any(x.type is not v[0].type for x in v):
                raise CosemEncodeError("array elements must all have the same type")
        elif t is DataType.BOOLEAN:
            if not isinstance(v, bool):
                raise CosemEncodeError(f"boolean needs a bool, got {v!r}")
        elif t is DataType.BIT_STRING:
            if not isinstance(v, str) or v.strip("01"):
                raise CosemEncodeError("bit-string needs a str of '0' and '1'")
        elif t is DataType.OCTET_STRING:
            if not isinstance(v, bytes):
                raise CosemEncodeError(f"octet-string needs bytes, got {type(v).__name__}")
        elif t is DataType.VISIBLE_STRING:
            if not isinstance(v, str) or any(ord(c) > 0xFF for c in v):
                raise CosemEncodeError("visible-string needs a str of single-byte characters")
        elif t is DataType.UTF8_STRING:
            if not isinstance(v, str):
                raise CosemEncodeError(f"utf8-string needs a str, got {type(v).__name__}")
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                raise CosemEncodeError("utf8-string contains unencodable characters") from None
        elif t in _FLOATS:
            if isinstance(v, bool) or not isinstance(v, float | int):
                raise CosemEncodeError(f"{t.name.lower()} needs a float, got {v!r}")
            try:
                _FLOATS[t].pack(v)
            except (OverflowError, struct.error):
                raise CosemEncodeError(f"{v!r} does not fit in {t.name.lower()}") from None
        elif t in _CALENDAR:
            if not isinstance(v, _CALENDAR[t]):
                raise CosemEncodeError(f"{t.name.lower()} needs a {_CALENDAR[t].__name__}")
        else:
            raise CosemEncodeError(f"{t.name.lower()} values cannot be built by this codec")

    # -- convenience constructors -------------------------------------------------

    @classmethod
    def null(cls) -> DlmsData:
        return cls(DataType.NULL_DATA)

    @classmethod
    def array(cls, items: Iterable[DlmsData]) -> DlmsData:
        return cls(DataType.ARRAY, tuple(items))

    @classmethod
    def structure(cls, items: Iterable[DlmsData]) -> DlmsData:
        return cls(DataType.STRUCTURE, tuple(items))

    @classmethod
    def boolean(cls, v: bool) -> DlmsData:
        return cls(DataType.BOOLEAN, v)

    @classmethod
    def bit_string(cls, bits: str) -> DlmsData:
        return cls(DataType.BIT_STRING, bits)

    @classmethod
    def double_long(cls, v: int) -> DlmsData:
        return cls(DataType.DOUBLE_LONG, v)

    @classmethod
    def double_long_unsigned(cls, v: int) -> DlmsData:
        return cls(DataType.DOUBLE_LONG_UNSIGNED, v)

    @classmethod
    def octet_string(cls, v: bytes) -> DlmsData:
        return cls(DataType.OCTET_STRING, bytes(v))

    @classmethod
    def visible_string(cls, v: str) -> DlmsData:
        return cls(DataType.VISIBLE_STRING, v)

    @classmethod
    def utf8_string(cls, v: str) -> DlmsData:
        return cls(DataType.UTF8_STRING, v)

    @classmethod
    def bcd(cls, v: int) -> DlmsData:
        return cls(DataType.BCD, v)

    @classmethod
    def integer(cls, v: int) -> DlmsData:
        return cls(DataType.INTEGER, v)

    @classmethod
    def long(cls, v: int) -> DlmsData:
        return cls(DataType.LONG, v)

    @classmethod
    def unsigned(cls, v: int) -> DlmsData:
        return cls(DataType.UNSIGNED, v)

    @classmethod
    def long_unsigned(cls, v: int) -> DlmsData:
        return cls(DataType.LONG_UNSIGNED, v)

    @classmethod
    def long64(cls, v: int) -> DlmsData:
        return cls(DataType.LONG64, v)

    @classmethod
    def long64_unsigned(cls, v: int) -> DlmsData:
        return cls(DataType.LONG64_UNSIGNED, v)

    @classmethod
    def enum(cls, v: int) -> DlmsData:
        return cls(DataType.ENUM, int(v))

    @classmethod
    def float32(cls, v: float) -> DlmsData:
        return cls(DataType.FLOAT32, float(v))

    @classmethod
    def float64(cls, v: float) -> DlmsData:
        return cls(DataType.FLOAT64, float(v))

    @classmethod
    def date_time(cls, v: CosemDateTime | _datetime) -> DlmsData:
        if isinstance(v, _datetime):
            v = CosemDateTime.from_datetime(v)
        return cls(DataType.DATE_TIME, v)

    @classmethod
    def date(cls, v: CosemDate | _date) -> DlmsData:
        if isinstance(v, _date):
            v = CosemDate.from_date(v)
        return cls(DataType.DATE, v)

    @classmethod
    def time(cls, v: CosemTime | _time) -> DlmsData:
        if isinstance(v, _time):
            v = CosemTime.from_time(v)
        return cls(DataType.TIME, v)

    # -- conversions ----------------------------------------------------------------

    def to_python(self) -> Any:
        """Plain Python: lists for array/structure; date-time as ``datetime`` when fully
        specified, else the :class:`CosemDateTime` (wildcards have no datetime form)."""
        if self.type in (DataType.ARRAY, DataType.STRUCTURE):
            return [item.to_python() for item in self.value]
        if self.type is DataType.DATE_TIME:
            v: CosemDateTime = self.value
            if v.date.fully_specified and v.time.fully_specified:
                try:
                    return v.to_datetime()
                except CosemDecodeError:
                    return v
            return v
        return self.value

    def to_bytes(self) -> bytes:
        return encode_data(self)

    @classmethod
    def from_bytes(cls, data: bytes) -> DlmsData:
        """Decode exactly one value that fills ``data``."""
        reader = ByteReader(data)
        value = read_data(reader)
        reader.expect_end("data value")
        return value


def _encode_into(d: DlmsData, out: bytearray) -> None:
    t, v = d.type, d.value
    out.append(t)
    if t in _INTS:
        size, signed = _INTS[t]
        out += v.to_bytes(size, "big", signed=signed)
    elif t is DataType.OCTET_STRING:
        out += encode_length(len(v))
        out += v
    elif t in (DataType.ARRAY, DataType.STRUCTURE):
        out += encode_length(len(v))
        for item in v:
            _encode_into(item, out)
    elif t is DataType.BOOLEAN:
        out.append(1 if v else 0)
    elif t is DataType.VISIBLE_STRING:
        raw = v.encode("latin-1")
        out += encode_length(len(raw))
        out += raw
    elif t is DataType.UTF8_STRING:
        raw = v.encode("utf-8")
        out += encode_length(len(raw))
        out += raw
    elif t is DataType.BIT_STRING:
        out += encode_length(len(v))
        padded = v + "0" * (-len(v) % 8)
        out += int(padded, 2).to_bytes(len(padded) // 8, "big") if padded else b""
    elif t in _FLOATS:
        out += _FLOATS[t].pack(v)
    elif t in _CALENDAR:
        out += v.to_bytes()
    # NULL_DATA: the tag alone


def encode_data(d: DlmsData) -> bytes:
    """A-XDR bytes of one value, type tag first."""
    out = bytearray()
    _encode_into(d, out)
    return bytes(out)


_BY_TAG: dict[int, DataType] = {int(t): t for t in DataType}
_NAMES: dict[DataType, str] = {t: t.name.lower().replace("_", "-") for t in DataType}
_new = object.__new__
_set = object.__setattr__


def _trusted(t: DataType, value: Any) -> DlmsData:
    """Build a value the decoder has already range-checked, skipping __post_init__
    (it dominates the cost of decoding large profile buffers)."""
    d = _new(DlmsData)
    _set(d, "type", t)
    _set(d, "value", value)
    return d


def read_data(reader: ByteReader, depth: int = 0) -> DlmsData:
    """Read one value at the reader's position (the reader advances past it)."""
    start = reader.pos
    tag = reader.u8("data type tag")
    t = _BY_TAG.get(tag)
    if t is None:
        raise UnknownTag(f"unknown DLMS data type tag {tag}", start)
    name = _NAMES[t]
    ints = _INTS.get(t)
    if ints is not None:
        return _trusted(t, int.from_bytes(reader.take(ints[0], name), "big", signed=ints[1]))
    if t is DataType.OCTET_STRING:
        return _trusted(t, reader.take(reader.length(name), name))
    if t is DataType.STRUCTURE or t is DataType.ARRAY:
        if depth >= MAX_DEPTH:
            raise InvalidValue(f"{name} nested deeper than {MAX_DEPTH} levels", start)
        n = reader.count(name)
        items = tuple([read_data(reader, depth + 1) for _ in range(n)])
        if t is DataType.ARRAY and items:
            first = items[0].type
            if any(x.type is not first for x in items):
                raise InvalidValue("array elements do not all have the same type", start)
        return _trusted(t, items)
    if t is DataType.BOOLEAN:
        return _trusted(t, reader.u8(name) != 0)
    if t is DataType.NULL_DATA:
        return _trusted(t, None)
    if t is DataType.VISIBLE_STRING:
        return _trusted(t, reader.take(reader.length(name), name).decode("latin-1"))
    if t is DataType.UTF8_STRING:
        raw = reader.take(reader.length(name), name)
        try:
            return _trusted(t, raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise InvalidValue(f"utf8-string is not valid UTF-8 ({exc.reason})", start) from None
    if t is DataType.BIT_STRING:
        nbits = reader.count(name, 0)
        raw = reader.take((nbits + 7) // 8, name)
        bits = "".join(f"{b:08b}" for b in raw)[:nbits]
        return _trusted(t, bits)
    if t in _FLOATS:
        (value,) = _FLOATS[t].unpack(reader.take(_FLOATS[t].size, name))
        return _trusted(t, value)
    if t in _CALENDAR:
        return _trusted(t, _CALENDAR[t].read(reader))
    raise UnsupportedEncoding(f"DLMS data type {name} ({tag}) is not supported", start)


def decode_data(buf: bytes, offset: int = 0) -> tuple[DlmsData, int]:
    """Decode one value starting at ``offset``; returns it and the offset after it."""
    reader = ByteReader(buf, offset)
    value = read_data(reader)
    return value, reader.pos
