"""SET service APDUs, including the datablock forms for long writes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from metercert.cosem.axdr import DlmsData, encode_data, read_data
from metercert.cosem.reader import ByteReader, encode_length
from metercert.cosem.results import DataAccessResult
from metercert.cosem.xdlms.base import (
    DEFAULT_INVOKE_ID_AND_PRIORITY,
    AttributeReference,
    CosemAttributeDescriptor,
    SelectiveAccess,
    XdlmsApdu,
    encode_access,
    encode_octets,
    encode_uint,
    read_access,
    read_bool,
    read_enum,
    read_octets,
)


@dataclass(frozen=True, slots=True)
class SetRequestNormal(XdlmsApdu):
    TAG: ClassVar[bytes] = b"\xc1\x01"
    NAME: ClassVar[str] = "set-request-normal"

    attribute: CosemAttributeDescriptor
    value: DlmsData
    access_selection: SelectiveAccess | None = None
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY

    def _body(self) -> bytes:
        return (
            encode_uint(self.invoke_id_and_priority, 1, "invoke-id-and-priority")
            + self.attribute.to_bytes()
            + encode_access(self.access_selection)
            + encode_data(self.value)
        )

    @classmethod
    def _read(cls, reader: ByteReader) -> SetRequestNormal:
        iip = reader.u8("invoke-id-and-priority")
        attribute = CosemAttributeDescriptor.read(reader)
        access = read_access(reader)
        return cls(attribute, read_data(reader), access, iip)


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

    def _body(self) -> bytes:
        return (
            encode_uint(self.invoke_id_and_priority, 1, "invoke-id-and-priority")
            + self.attribute.to_bytes()
            + encode_access(self.access_selection)
            + (b"\x01" if self.last_block else b"\x00")
            + encode_uint(self.block_number, 4, "block number")
            + encode_octets(self.raw_data)
        )

    @classmethod
    def _read(cls, reader: ByteReader) -> SetRequestWithFirstDatablock:
        iip = reader.u8("invoke-id-and-priority")
        attribute = CosemAttributeDescriptor.read(reader)
        access = read_access(reader)
        last = read_bool(reader, "last-block")
        number = reader.uint(4, "block number")
        return cls(attribute, last, number, read_octets(reader, "raw-data"), access, iip)


@dataclass(frozen=True, slots=True)
class SetRequestWithDatablock(XdlmsApdu):
    TAG: ClassVar[bytes] = b"\xc1\x03"
    NAME: ClassVar[str] = "set-request-with-datablock"

    last_block: bool
    block_number: int
    raw_data: bytes
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY

    def _body(self) -> bytes:
        return (
            encode_uint(self.invoke_id_and_priority, 1, "invoke-id-and-priority")
            + (b"\x01" if self.last_block else b"\x00")
            + encode_uint(self.block_number, 4, "block number")
            + encode_octets(self.raw_data)
        )

    @classmethod
    def _read(cls, reader: ByteReader) -> SetRequestWithDatablock:
        iip = reader.u8("invoke-id-and-priority")
        last = read_bool(reader, "last-block")
        number = reader.uint(4, "block number")
        return cls(last, number, read_octets(reader, "raw-data"), iip)


@dataclass(frozen=True, slots=True)
class SetResponseNormal(XdlmsApdu):
    TAG: ClassVar[bytes] = b"\xc5\x01"
    NAME: ClassVar[str] = "set-response-normal"

    result: DataAccessResult
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY

    def _body(self) -> bytes:
        return encode_uint(self.invoke_id_and_priority, 1, "invoke-id-and-priority") + bytes(
            [self.result]
        )

    @classmethod
    def _read(cls, reader: ByteReader) -> SetResponseNormal:
        iip = reader.u8("invoke-id-and-priority")
        return cls(read_enum(DataAccessResult, reader, "data-access-result"), iip)


@dataclass(frozen=True, slots=True)
class SetResponseDatablock(XdlmsApdu):
    TAG: ClassVar[bytes] = b"\xc5\x02"
    NAME: ClassVar[str] = "set-response-datablock"

    block_number: int
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY

    def _body(self) -> bytes:
        return encode_uint(self.invoke_id_and_priority, 1, "invoke-id-and-priority") + encode_uint(
            self.block_number, 4, "block number"
        )

    @classmethod
    def _read(cls, reader: ByteReader) -> SetResponseDatablock:
        iip = reader.u8("invoke-id-and-priority")
        return cls(reader.uint(4, "block number"), iip)


@dataclass(frozen=True, slots=True)
class SetResponseLastDatablock(XdlmsApdu):
    TAG: ClassVar[bytes] = b"\xc5\x03"
    NAME: ClassVar[str] = "set-response-last-datablock"

    result: DataAccessResult
    block_number: int
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY

    def _body(self) -> bytes:
        return (
            encode_uint(self.invoke_id_and_priority, 1, "invoke-id-and-priority")
            + bytes([self.result])
            + encode_uint(self.block_number, 4, "block number")
        )

    @classmethod
    def _read(cls, reader: ByteReader) -> SetResponseLastDatablock:
        iip = reader.u8("invoke-id-and-priority")
        result = read_enum(DataAccessResult, reader, "data-access-result")
        return cls(result, reader.uint(4, "block number"), iip)


@dataclass(frozen=True, slots=True)
class SetRequestWithList(XdlmsApdu):
    """Several attributes written at once; ``values`` pairs with ``references`` by index."""

    TAG: ClassVar[bytes] = b"\xc1\x04"
    NAME: ClassVar[str] = "set-request-with-list"

    references: tuple[AttributeReference, ...]
    values: tuple[DlmsData, ...]
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY

    def _body(self) -> bytes:
        return (
            encode_uint(self.invoke_id_and_priority, 1, "invoke-id-and-priority")
            + encode_length(len(self.references))
            + b"".join(r.to_bytes() for r in self.references)
            + encode_length(len(self.values))
            + b"".join(encode_data(v) for v in self.values)
        )

    @classmethod
    def _read(cls, reader: ByteReader) -> SetRequestWithList:
        iip = reader.u8("invoke-id-and-priority")
        n = reader.count("attribute list", 10)
        refs = tuple(AttributeReference.read(reader) for _ in range(n))
        m = reader.count("value list")
        return cls(refs, tuple(read_data(reader) for _ in range(m)), iip)


@dataclass(frozen=True, slots=True)
class SetResponseWithList(XdlmsApdu):
    TAG: ClassVar[bytes] = b"\xc5\x05"
    NAME: ClassVar[str] = "set-response-with-list"

    results: tuple[DataAccessResult, ...]
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY

    def _body(self) -> bytes:
        return (
            encode_uint(self.invoke_id_and_priority, 1, "invoke-id-and-priority")
            + encode_length(len(self.results))
            + bytes(self.results)
        )

    @classmethod
    def _read(cls, reader: ByteReader) -> SetResponseWithList:
        iip = reader.u8("invoke-id-and-priority")
        n = reader.count("result list")
        return cls(
            tuple(read_enum(DataAccessResult, reader, "data-access-result") for _ in range(n)), iip
        )
