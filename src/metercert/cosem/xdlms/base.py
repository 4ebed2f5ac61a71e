"""What every xDLMS APDU shares: the tag-checked framing, invoke-id-and-priority,
attribute / method descriptors, selective access and the Get-Data-Result choice."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from operator import attrgetter
from typing import Any, ClassVar, Self, TypeVar

from metercert.cosem.axdr import DlmsData, encode_data, read_data
from metercert.cosem.errors import CosemEncodeError, InvalidValue, UnknownTag
from metercert.cosem.obis import ObisCode
from metercert.cosem.reader import ByteReader, encode_length
from metercert.cosem.results import DataAccessResult

E = TypeVar("E", bound=IntEnum)
DEFAULT_INVOKE_ID_AND_PRIORITY = 0xC1


def make_invoke_id_and_priority(
    invoke_id: int, *, confirmed: bool = True, high_priority: bool = True
) -> int:
    """The invoke-id-and-priority byte."""
    if not 0 <= invoke_id <= 15:
        raise CosemEncodeError(f"invoke id must be 0..15, got {invoke_id}")
    return (0x80 if high_priority else 0) | (0x40 if confirmed else 0) | invoke_id


def encode_uint(value: int, size: int, what: str) -> bytes:
    if isinstance(value, bool) or not 0 <= value < 1 << (8 * size):
        raise CosemEncodeError(f"{what} must fit in {size * 8} unsigned bits, got {value!r}")
    return value.to_bytes(size, "big")


def encode_i8(value: int, what: str) -> bytes:
    if isinstance(value, bool) or not -128 <= value <= 127:
        raise CosemEncodeError(f"{what} must be -128..127, got {value!r}")
    return value.to_bytes(1, "big", signed=True)


def read_enum(enum_cls: type[E], reader: ByteReader, what: str) -> E:
    start = reader.pos
    raw = reader.u8(what)
    try:
        return enum_cls(raw)
    except ValueError:
        raise InvalidValue(f"{what} {raw} is not a known {enum_cls.__name__}", start) from None


def read_bool(reader: ByteReader, what: str) -> bool:
    return reader.u8(what) != 0


def read_presence(reader: ByteReader, what: str) -> bool:
    start = reader.pos
    flag = reader.u8(f"{what} presence flag")
    if flag > 1:
        raise InvalidValue(f"{what} presence flag must be 0 or 1, got {flag}", start)
    return flag == 1


def read_octets(reader: ByteReader, what: str) -> bytes:
    return reader.take(reader.length(what), what)


def encode_octets(data: bytes) -> bytes:
    return encode_length(len(data)) + data


class XdlmsApdu:
    """Shared framing: a fixed tag prefix, a body, nothing after it.

    A class that declares ``FIELDS`` (see :mod:`metercert.cosem.xdlms.fields`) gets its body
    read and written by walking that table; the others override ``_read`` / ``_body``.
    """

    __slots__ = ()
    TAG: ClassVar[bytes]
    NAME: ClassVar[str]
    FIELDS: ClassVar[tuple[Any, ...]] = ()

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        reader = ByteReader(data)
        head = reader.take(len(cls.TAG), f"{cls.NAME} tag")
        if head != cls.TAG:
            raise UnknownTag(
                f"expected {cls.NAME} tag {cls.TAG.hex().upper()}, got {head.hex().upper()}", 0
            )
        apdu = cls._read(reader)
        reader.expect_end(cls.NAME)
        return apdu

    @classmethod
    def _plan(cls) -> tuple[tuple[str, ...], tuple[Any, ...], tuple[Any, ...], Any]:
        """FIELDS as plain tuples and one attribute getter, built once per class (hot path)."""
        plan = cls.__dict__.get("_PLAN")
        if plan is None:
            if not cls.FIELDS:
                raise NotImplementedError(f"{cls.__name__} declares no FIELDS")
            names = tuple(f.name for f in cls.FIELDS)
            getter = attrgetter(*names) if len(names) > 1 else (lambda o: (getattr(o, names[0]),))
            plan = (names, tuple(f.read for f in cls.FIELDS), tuple(f.write for f in cls.FIELDS),
                    getter)
            type.__setattr__(cls, "_PLAN", plan)
        return plan

    @classmethod
    def _read(cls, reader: ByteReader) -> Self:
        names, readers, _, _ = cls._plan()
        return cls(**dict(zip(names, [read(reader) for read in readers], strict=True)))

    def _body(self) -> bytes:
        _, _, writers, getter = self._plan()
        return b"".join([write(v) for write, v in zip(writers, getter(self), strict=True)])

    def to_bytes(self) -> bytes:
        return self.TAG + self._body()

    @property
    def invoke_id(self) -> int:
        return getattr(self, "invoke_id_and_priority", 0) & 0x0F


# -- descriptors --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CosemAttributeDescriptor:
    """class id, logical name and attribute index (attribute 0 means "all")."""

    class_id: int
    instance: ObisCode
    attribute_id: int

    def to_bytes(self) -> bytes:
        return (
            encode_uint(self.class_id, 2, "class id")
            + self.instance.to_bytes()
            + encode_i8(self.attribute_id, "attribute id")
        )

    @classmethod
    def read(cls, reader: ByteReader) -> CosemAttributeDescriptor:
        class_id = reader.uint(2, "class id")
        instance = ObisCode.read(reader)
        return cls(class_id, instance, reader.sint(1, "attribute id"))


@dataclass(frozen=True, slots=True)
class CosemMethodDescriptor:
    class_id: int
    instance: ObisCode
    method_id: int

    def to_bytes(self) -> bytes:
        return (
            encode_uint(self.class_id, 2, "class id")
            + self.instance.to_bytes()
            + encode_i8(self.method_id, "method id")
        )

    @classmethod
    def read(cls, reader: ByteReader) -> CosemMethodDescriptor:
        class_id = reader.uint(2, "class id")
        instance = ObisCode.read(reader)
        return cls(class_id, instance, reader.sint(1, "method id"))


@dataclass(frozen=True, slots=True)
class SelectiveAccess:
    """access-selector and its parameters (e.g. 1 = range, 2 = entry for profiles)."""

    selector: int
    parameters: DlmsData

    def to_bytes(self) -> bytes:
        return encode_uint(self.selector, 1, "access selector") + encode_data(self.parameters)

    @classmethod
    def read(cls, reader: ByteReader) -> SelectiveAccess:
        return cls(reader.u8("access selector"), read_data(reader))


@dataclass(frozen=True, slots=True)
class AttributeReference:
    """One entry of a with-list request: descriptor plus optional selective access."""

    attribute: CosemAttributeDescriptor
    access_selection: SelectiveAccess | None = None

    def to_bytes(self) -> bytes:
        return self.attribute.to_bytes() + encode_access(self.access_selection)

    @classmethod
    def read(cls, reader: ByteReader) -> AttributeReference:
        attribute = CosemAttributeDescriptor.read(reader)
        return cls(attribute, read_access(reader))


def encode_access(access: SelectiveAccess | None) -> bytes:
    return b"\x00" if access is None else b"\x01" + access.to_bytes()


def read_access(reader: ByteReader) -> SelectiveAccess | None:
    return SelectiveAccess.read(reader) if read_presence(reader, "access selection") else None


#: Get-Data-Result: either the value or why there is none
DataResult = DlmsData | DataAccessResult


def encode_data_result(result: DataResult) -> bytes:
    if isinstance(result, DataAccessResult):
        return b"\x01" + bytes([result])
    return b"\x00" + encode_data(result)


def read_data_result(reader: ByteReader) -> DataResult:
    start = reader.pos
    choice = reader.u8("get-data-result choice")
    if choice == 0:
        return read_data(reader)
    if choice == 1:
        return read_enum(DataAccessResult, reader, "data-access-result")
    raise UnknownTag(f"get-data-result choice must be 0 or 1, got {choice}", start)
