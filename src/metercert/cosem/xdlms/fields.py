"""xDLMS APDU fields declared once, as data: one reader and one writer walk them.

Each service APDU class lists its wire fields in ``FIELDS`` (after the tag, in wire order);
:class:`~metercert.cosem.xdlms.base.XdlmsApdu` reads them front to back into keyword
arguments and writes them back the same way. A field is a name (the dataclass attribute), a
reader and a writer; the readers are the bounds-checked ones of ``base``, so a malformed
field still raises a :class:`~metercert.cosem.errors.CosemDecodeError` that names it.

(h11 keeps its readers and writers in tables for the same reason: two APDUs of the same
shape, such as get-request-next and set-response-datablock, are then one line each.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from metercert.cosem.axdr import encode_data, read_data
from metercert.cosem.reader import ByteReader, encode_length
from metercert.cosem.results import ActionResult, DataAccessResult
from metercert.cosem.xdlms import base


class Field(NamedTuple):
    name: str
    read: Callable[[ByteReader], Any]
    write: Callable[[Any], bytes]


Fields = tuple[Field, ...]


def _uint(name: str, size: int, what: str) -> Field:
    def read(r: ByteReader) -> int:
        return r.uint(size, what)

    def write(value: int) -> bytes:
        return base.encode_uint(value, size, what)

    return Field(name, read, write)


def _flag(name: str, what: str) -> Field:
    def read(r: ByteReader) -> bool:
        return base.read_bool(r, what)

    return Field(name, read, lambda v: b"\x01" if v else b"\x00")


def _enum(name: str, enum_cls: type, what: str) -> Field:
    def read(r: ByteReader) -> Any:
        return base.read_enum(enum_cls, r, what)

    return Field(name, read, lambda v: bytes((v,)))


def optional(field: Field, what: str) -> Field:
    """OPTIONAL: a presence byte, then the field when it is 1."""
    inner_read, inner_write, presence = field.read, field.write, base.read_presence

    def read(r: ByteReader) -> Any:
        return inner_read(r) if presence(r, what) else None

    return Field(field.name, read, lambda v: b"\x00" if v is None else b"\x01" + inner_write(v))


def sequence_of(name: str, item_read: Callable[[ByteReader], Any],
                item_write: Callable[[Any], bytes], what: str, min_item_size: int = 1) -> Field:
    """SEQUENCE OF: a count (refused when more items than bytes could hold), then the items."""
    def read(r: ByteReader) -> tuple[Any, ...]:
        n = r.count(what, min_item_size)
        return tuple(item_read(r) for _ in range(n))

    def write(items: tuple[Any, ...]) -> bytes:
        return encode_length(len(items)) + b"".join([item_write(i) for i in items])

    return Field(name, read, write)


def _read_raw_data(r: ByteReader) -> bytes:
    return base.read_octets(r, "raw-data")


INVOKE_ID_AND_PRIORITY = _uint("invoke_id_and_priority", 1, "invoke-id-and-priority")
BLOCK_NUMBER = _uint("block_number", 4, "block number")
LAST_BLOCK = _flag("last_block", "last-block")
RAW_DATA = Field("raw_data", _read_raw_data, base.encode_octets)
ATTRIBUTE = Field("attribute", base.CosemAttributeDescriptor.read,
                  base.CosemAttributeDescriptor.to_bytes)
METHOD = Field("method", base.CosemMethodDescriptor.read, base.CosemMethodDescriptor.to_bytes)
ACCESS_SELECTION = Field("access_selection", base.read_access, base.encode_access)
VALUE = Field("value", read_data, encode_data)
DATA_ACCESS_RESULT = _enum("result", DataAccessResult, "data-access-result")
ACTION_RESULT = _enum("result", ActionResult, "action-result")
GET_DATA_RESULT = Field("result", base.read_data_result, base.encode_data_result)
#: last-block, block-number, raw-data: the datablock / pblock tail many APDUs share
BLOCK = (LAST_BLOCK, BLOCK_NUMBER, RAW_DATA)
