"""SET service APDUs, including the datablock forms for long writes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from metercert.cosem.axdr import DlmsData, encode_data, read_data
from metercert.cosem.reader import ByteReader
from metercert.cosem.results import DataAccessResult
from metercert.cosem.xdlms.base import (
    DEFAULT_INVOKE_ID_AND_PRIORITY,
    AttributeReference,
    CosemAttributeDescriptor,
    SelectiveAccess,
    XdlmsApdu,
    read_enum,
)
from metercert.cosem.xdlms.fields import (
    ACCESS_SELECTION,
    ATTRIBUTE,
    BLOCK,
    BLOCK_NUMBER,
    DATA_ACCESS_RESULT,
    INVOKE_ID_AND_PRIORITY,
    VALUE,
    Fields,
    sequence_of,
)


def _to_bytes(item: AttributeReference) -> bytes:
    return item.to_bytes()


def _read_dar(reader: ByteReader) -> DataAccessResult:
    return read_enum(DataAccessResult, reader, "data-access-result")


def _write_dar(result: DataAccessResult) -> bytes:
    return bytes((result,))


@dataclass(frozen=True, slots=True)
class SetRequestNormal(XdlmsApdu):
    TAG: ClassVar[bytes] = b"\xc1\x01"
    NAME: ClassVar[str] = "set-request-normal"

    attribute: CosemAttributeDescriptor
    value: DlmsData
    access_selection: SelectiveAccess | None = None
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY

    FIELDS: ClassVar[Fields] = (INVOKE_ID_AND_PRIORITY, ATTRIBUTE, ACCESS_SELECTION, VALUE)


@dataclass(frozen=True, slots=True)
class SetRequestWithFirstDatablock(XdlmsApdu):
    TAG: ClassVar[bytes] = b"\xc1\x02"
    NAME: ClassVar[str] = "set-request-with-first-datablock"

    attribute: CosemAttributeDescriptor
    last_block: bool
    block_number: int
    raw_data: bytes
    access_selection: SelectiveAccess | None = None
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY

    FIELDS: ClassVar[Fields] = (INVOKE_ID_AND_PRIORITY, ATTRIBUTE, ACCESS_SELECTION, *BLOCK)


@dataclass(frozen=True, slots=True)
class SetRequestWithDatablock(XdlmsApdu):
    TAG: ClassVar[bytes] = b"\xc1\x03"
    NAME: ClassVar[str] = "set-request-with-datablock"

    last_block: bool
    block_number: int
    raw_data: bytes
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY

    FIELDS: ClassVar[Fields] = (INVOKE_ID_AND_PRIORITY, *BLOCK)


@dataclass(frozen=True, slots=True)
class SetResponseNormal(XdlmsApdu):
    TAG: ClassVar[bytes] = b"\xc5\x01"
    NAME: ClassVar[str] = "set-response-normal"

    result: DataAccessResult
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY

    FIELDS: ClassVar[Fields] = (INVOKE_ID_AND_PRIORITY, DATA_ACCESS_RESULT)


@dataclass(frozen=True, slots=True)
class SetResponseDatablock(XdlmsApdu):
    TAG: ClassVar[bytes] = b"\xc5\x02"
    NAME: ClassVar[str] = "set-response-datablock"

    block_number: int
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY

    FIELDS: ClassVar[Fields] = (INVOKE_ID_AND_PRIORITY, BLOCK_NUMBER)


@dataclass(frozen=True, slots=True)
class SetResponseLastDatablock(XdlmsApdu):
    TAG: ClassVar[bytes] = b"\xc5\x03"
    NAME: ClassVar[str] = "set-response-last-datablock"

    result: DataAccessResult
    block_number: int
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY

    FIELDS: ClassVar[Fields] = (INVOKE_ID_AND_PRIORITY, DATA_ACCESS_RESULT, BLOCK_NUMBER)


@dataclass(frozen=True, slots=True)
class SetRequestWithList(XdlmsApdu):
    """Several attributes written at once; ``values`` pairs with ``references`` by index."""

    TAG: ClassVar[bytes] = b"\xc1\x04"
    NAME: ClassVar[str] = "set-request-with-list"

    references: tuple[AttributeReference, ...]
    values: tuple[DlmsData, ...]
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY

    FIELDS: ClassVar[Fields] = (
        INVOKE_ID_AND_PRIORITY,
        sequence_of("references", AttributeReference.read, _to_bytes, "attribute list", 10),
        sequence_of("values", read_data, encode_data, "value list"),
    )


@dataclass(frozen=True, slots=True)
class SetResponseWithList(XdlmsApdu):
    TAG: ClassVar[bytes] = b"\xc5\x05"
    NAME: ClassVar[str] = "set-response-with-list"

    results: tuple[DataAccessResult, ...]
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY

    FIELDS: ClassVar[Fields] = (
        INVOKE_ID_AND_PRIORITY,
        sequence_of("results", _read_dar, _write_dar, "result list"),
    )
