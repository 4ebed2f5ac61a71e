"""GET service APDUs: normal, next block, with-list requests and their responses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from metercert.cosem.errors import UnknownTag
from metercert.cosem.reader import ByteReader, encode_length
from metercert.cosem.results import DataAccessResult
from metercert.cosem.xdlms.base import (
    DEFAULT_INVOKE_ID_AND_PRIORITY,
    AttributeReference,
    CosemAttributeDescriptor,
    DataResult,
    SelectiveAccess,
    XdlmsApdu,
    encode_access,
    encode_data_result,
    encode_octets,
    encode_uint,
    read_access,
    read_bool,
    read_data_result,
    read_enum,
    read_octets,
)


@dataclass(frozen=True, slots=True)
class GetRequestNormal(XdlmsApdu):
    TAG: ClassVar[bytes] = b"\xc0\x01"
    NAME: ClassVar[str] = "get-request-normal"

    attribute: CosemAttributeDescriptor
    access_selection: SelectiveAccess | None = None
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY

    def _body(self) -> bytes:
        return (
            encode_uint(self.invoke_id_and_priority, 1, "invoke-id-and-priority")
            + self.attribute.to_bytes()
            + encode_access(self.access_selection)
        )

    @classmethod
    def _read(cls, reader: ByteReader) -> GetRequestNormal:
        iip = reader.u8("invoke-id-and-priority")
        attribute = CosemAttributeDescriptor.read(reader)
        return cls(attribute, read_access(reader), iip)


@dataclass(frozen=True, slots=True)
class GetRequestNext(XdlmsApdu):
    TAG: ClassVar[bytes] = b"\xc0\x02"
    NAME: ClassVar[str] = "get-request-next"

    block_number: int
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY

    def _body(self) -> bytes:
        return encode_uint(self.invoke_id_and_priority, 1, "invoke-id-and-priority") + encode_uint(
            self.block_number, 4, "block number"
        )

    @classmethod
    def _read(cls, reader: ByteReader) -> GetRequestNext:
        iip = reader.u8("invoke-id-and-priority")
        return cls(reader.uint(4, "block number"), iip)


@dataclass(frozen=True, slots=True)
class GetRequestWithList(XdlmsApdu):
    TAG: ClassVar[bytes] = b"\xc0\x03"
    NAME: ClassVar[str] = "get-request-with-list"

    references: tuple[AttributeReference, ...]
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY

    def _body(self) -> bytes:
        return (
            encode_uint(self.invoke_id_and_priority, 1, "invoke-id-and-priority")
            + encode_length(len(self.references))
            + b"".join(r.to_bytes() for r in self.references)
        )

    @classmethod
    def _read(cls, reader: ByteReader) -> GetRequestWithList:
        iip = reader.u8("invoke-id-and-priority")
        n = reader.count("attribute list", min_item_size=10)
        return cls(tuple(AttributeReference.read(reader) for _ in range(n)), iip)


@dataclass(frozen=True, slots=True)
class GetResponseNormal(XdlmsApdu):
    TAG: ClassVar[bytes] = b"\xc4\x01"
    NAME: ClassVar[str] = "get-response-normal"

    result: DataResult
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY

    def _body(self) -> bytes:
        return encode_uint(
            self.invoke_id_and_priority, 1, "invoke-id-and-priority"
        ) + encode_data_result(self.result)

    @classmethod
    def _read(cls, reader: ByteReader) -> GetResponseNormal:
        iip = reader.u8("invoke-id-and-priority")
        return cls(read_data_result(reader), iip)


@dataclass(frozen=True, slots=True)
class GetResponseWithDatablock(XdlmsApdu):
    """One block of a long GET; ``raw_data`` is a slice of the encoded value."""

    TAG: ClassVar[bytes] = b"\xc4\x02"
    NAME: ClassVar[str] = "get-response-with-datablock"

    last_block: bool
    block_number: int
    result: bytes | DataAccessResult
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY

    def _body(self) -> bytes:
        if isinstance(self.result, DataAccessResult):
            tail = b"\x01" + bytes([self.result])
        else:
            tail = b"\x00" + encode_octets(self.result)
        return (
            encode_uint(self.invoke_id_and_priority, 1, "invoke-id-and-priority")
            + (b"\x01" if self.last_block else b"\x00")
            + encode_uint(self.block_number, 4, "block number")
            + tail
        )

    @classmethod
    def _read(cls, reader: ByteReader) -> GetResponseWithDatablock:
        iip = reader.u8("invoke-id-and-priority")
        last = read_bool(reader, "last-block")
        number = reader.uint(4, "block number")
        start = reader.pos
        choice = reader.u8("datablock result choice")
        result: bytes | DataAccessResult
        if choice == 0:
            result = read_octets(reader, "raw-data")
        elif choice == 1:
            result = read_enum(DataAccessResult, reader, "data-access-result")
        else:
            raise UnknownTag(f"datablock result choice must be 0 or 1, got {choice}", start)
        return cls(last, number, result, iip)


@dataclass(frozen=True, slots=True)
class GetResponseWithList(XdlmsApdu):
    TAG: ClassVar[bytes] = b"\xc4\x03"
    NAME: ClassVar[str] = "get-response-with-list"

    results: tuple[DataResult, ...]
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY

    def _body(self) -> bytes:
        return (
            encode_uint(self.invoke_id_and_priority, 1, "invoke-id-and-priority")
            + encode_length(len(self.results))
            + b"".join(encode_data_result(r) for r in self.results)
        )

    @classmethod
    def _read(cls, reader: ByteReader) -> GetResponseWithList:
        iip = reader.u8("invoke-id-and-priority")
        n = reader.count("result list", min_item_size=2)
        return cls(tuple(read_data_result(reader) for _ in range(n)), iip)
