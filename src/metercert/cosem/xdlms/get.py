"""GET service APDUs: normal, next block, with-list requests and their responses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from metercert.cosem.errors import UnknownTag
from metercert.cosem.reader import ByteReader
from metercert.cosem.results import DataAccessResult
from metercert.cosem.xdlms.base import (
    DEFAULT_INVOKE_ID_AND_PRIORITY,
    AttributeReference,
    CosemAttributeDescriptor,
    DataResult,
    SelectiveAccess,
    XdlmsApdu,
    encode_data_result,
    encode_octets,
    read_data_result,
    read_enum,
    read_octets,
)
from metercert.cosem.xdlms.fields import (
    ACCESS_SELECTION,
    ATTRIBUTE,
    BLOCK_NUMBER,
    GET_DATA_RESULT,
    INVOKE_ID_AND_PRIORITY,
    LAST_BLOCK,
    Field,
    Fields,
    sequence_of,
)


def _to_bytes(item: Any) -> bytes:
    return item.to_bytes()


def _read_datablock_result(reader: ByteReader) -> bytes | DataAccessResult:
    start = reader.pos
    choice = reader.u8("datablock result choice")
    if choice == 0:
        return read_octets(reader, "raw-data")
    if choice == 1:
        return read_enum(DataAccessResult, reader, "data-access-result")
    raise UnknownTag(f"datablock result choice must be 0 or 1, got {choice}", start)


def _write_datablock_result(result: bytes | DataAccessResult) -> bytes:
    if isinstance(result, DataAccessResult):
        return b"\x01" + bytes([result])
    return b"\x00" + encode_octets(result)


#: raw-data of the block, or why there is none
_DATABLOCK_RESULT = Field("result", _read_datablock_result, _write_datablock_result)


@dataclass(frozen=True, slots=True)
class GetRequestNormal(XdlmsApdu):
    TAG: ClassVar[bytes] = b"\xc0\x01"
    NAME: ClassVar[str] = "get-request-normal"

    attribute: CosemAttributeDescriptor
    access_selection: SelectiveAccess | None = None
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY

    FIELDS: ClassVar[Fields] = (INVOKE_ID_AND_PRIORITY, ATTRIBUTE, ACCESS_SELECTION)


@dataclass(frozen=True, slots=True)
class GetRequestNext(XdlmsApdu):
    TAG: ClassVar[bytes] = b"\xc0\x02"
    NAME: ClassVar[str] = "get-request-next"

    block_number: int
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY

    FIELDS: ClassVar[Fields] = (INVOKE_ID_AND_PRIORITY, BLOCK_NUMBER)


@dataclass(frozen=True, slots=True)
class GetRequestWithList(XdlmsApdu):
    TAG: ClassVar[bytes] = b"\xc0\x03"
    NAME: ClassVar[str] = "get-request-with-list"

    references: tuple[AttributeReference, ...]
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY

    FIELDS: ClassVar[Fields] = (
        INVOKE_ID_AND_PRIORITY,
        sequence_of("references", AttributeReference.read, _to_bytes, "attribute list", 10),
    )


@dataclass(frozen=True, slots=True)
class GetResponseNormal(XdlmsApdu):
    TAG: ClassVar[bytes] = b"\xc4\x01"
    NAME: ClassVar[str] = "get-response-normal"

    result: DataResult
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY

    FIELDS: ClassVar[Fields] = (INVOKE_ID_AND_PRIORITY, GET_DATA_RESULT)


@dataclass(frozen=True, slots=True)
class GetResponseWithDatablock(XdlmsApdu):
    """One block of a long GET; ``raw_data`` is a slice of the encoded value."""

    TAG: ClassVar[bytes] = b"\xc4\x02"
    NAME: ClassVar[str] = "get-response-with-datablock"

    last_block: bool
    block_number: int
    result: bytes | DataAccessResult
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY

    FIELDS: ClassVar[Fields] = (INVOKE_ID_AND_PRIORITY, LAST_BLOCK, BLOCK_NUMBER, _DATABLOCK_RESULT)


@dataclass(frozen=True, slots=True)
class GetResponseWithList(XdlmsApdu):
    TAG: ClassVar[bytes] = b"\xc4\x03"
    NAME: ClassVar[str] = "get-response-with-list"

    results: tuple[DataResult, ...]
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY

    FIELDS: ClassVar[Fields] = (
        INVOKE_ID_AND_PRIORITY,
        sequence_of("results", read_data_result, encode_data_result, "result list", 2),
    )
