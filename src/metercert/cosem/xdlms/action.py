"""ACTION service APDUs (method invocation)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from metercert.cosem.axdr import DlmsData, encode_data, read_data
from metercert.cosem.reader import ByteReader, encode_length
from metercert.cosem.results import ActionResult
from metercert.cosem.xdlms.base import (
    DEFAULT_INVOKE_ID_AND_PRIORITY,
    CosemMethodDescriptor,
    DataResult,
    XdlmsApdu,
    encode_data_result,
    encode_octets,
    encode_uint,
    read_bool,
    read_data_result,
    read_enum,
    read_octets,
    read_presence,
)

# A method descriptor is 9 bytes, an optional-data item at least 2: used to refuse
# impossible list counts before reading them.
_DESCRIPTOR_SIZE = 9


def _pblock(last_block: bool, block_number: int, raw_data: bytes) -> bytes:
    return (
        (b"\x01" if last_block else b"\x00")
        + encode_uint(block_number, 4, "block number")
        + encode_octets(raw_data)
    )


def _read_pblock(reader: ByteReader) -> tuple[bool, int, bytes]:
    last = read_bool(reader, "last-block")
    number = reader.uint(4, "block number")
    return last, number, read_octets(reader, "raw-data")


def _iip(value: int) -> bytes:
    return encode_uint(value, 1, "invoke-id-and-priority")


@dataclass(frozen=True, slots=True)
class ActionRequestNormal(XdlmsApdu):
    TAG: ClassVar[bytes] = b"\xc3\x01"
    NAME: ClassVar[str] = "action-request-normal"

    method: CosemMethodDescriptor
    parameters: DlmsData | None = None
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY

    def _body(self) -> bytes:
        params = b"\x00" if self.parameters is None else b"\x01" + encode_data(self.parameters)
        return (
            encode_uint(self.invoke_id_and_priority, 1, "invoke-id-and-priority")
            + self.method.to_bytes()
            + params
        )

    @classmethod
    def _read(cls, reader: ByteReader) -> ActionRequestNormal:
        iip = reader.u8("invoke-id-and-priority")
        method = CosemMethodDescriptor.read(reader)
        params = read_data(reader) if read_presence(reader, "method parameters") else None
        return cls(method, params, iip)


@dataclass(frozen=True, slots=True)
class ActionResponseNormal(XdlmsApdu):
    TAG: ClassVar[bytes] = b"\xc7\x01"
    NAME: ClassVar[str] = "action-response-normal"

    result: ActionResult
    return_data: DataResult | None = None
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY

    def _body(self) -> bytes:
        ret = (
            b"\x00" if self.return_data is None else b"\x01" + encode_data_result(self.return_data)
        )
        return (
            encode_uint(self.invoke_id_and_priority, 1, "invoke-id-and-priority")
            + bytes([self.result])
            + ret
        )

    @classmethod
    def _read(cls, reader: ByteReader) -> ActionResponseNormal:
        iip = reader.u8("invoke-id-and-priority")
        result = read_enum(ActionResult, reader, "action-result")
        ret = read_data_result(reader) if read_presence(reader, "return parameters") else None
        return cls(result, ret, iip)


@dataclass(frozen=True, slots=True)
class ActionRequestNextPblock(XdlmsApdu):
    """Client asks for the next block of a long action response."""

    TAG: ClassVar[bytes] = b"\xc3\x02"
    NAME: ClassVar[str] = "action-request-next-pblock"

    block_number: int
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY

    def _body(self) -> bytes:
        return _iip(self.invoke_id_and_priority) + encode_uint(self.block_number, 4, "block number")

    @classmethod
    def _read(cls, reader: ByteReader) -> ActionRequestNextPblock:
        iip = reader.u8("invoke-id-and-priority")
        return cls(reader.uint(4, "block number"), iip)


@dataclass(frozen=True, slots=True)
class ActionRequestWithList(XdlmsApdu):
    """Several methods in one request; ``parameters`` pairs with ``methods`` by index."""

    TAG: ClassVar[bytes] = b"\xc3\x03"
    NAME: ClassVar[str] = "action-request-with-list"

    methods: tuple[CosemMethodDescriptor, ...]
    parameters: tuple[DlmsData, ...]
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY

    def _body(self) -> bytes:
        return (
            _iip(self.invoke_id_and_priority)
            + encode_length(len(self.methods))
            + b"".join(m.to_bytes() for m in self.methods)
            + encode_length(len(self.parameters))
            + b"".join(encode_data(p) for p in self.parameters)
        )

    @classmethod
    def _read(cls, reader: ByteReader) -> ActionRequestWithList:
        iip = reader.u8("invoke-id-and-priority")
        n = reader.count("method list", _DESCRIPTOR_SIZE)
        methods = tuple(CosemMethodDescriptor.read(reader) for _ in range(n))
        m = reader.count("parameter list")
        return cls(methods, tuple(read_data(reader) for _ in range(m)), iip)


@dataclass(frozen=True, slots=True)
class ActionRequestWithFirstPblock(XdlmsApdu):
    """First block of method parameters too long for one APDU (e.g. image blocks)."""

    TAG: ClassVar[bytes] = b"\xc3\x04"
    NAME: ClassVar[str] = "action-request-with-first-pblock"

    method: CosemMethodDescriptor
    last_block: bool
    block_number: int
    raw_data: bytes
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY

    def _body(self) -> bytes:
        return (
            _iip(self.invoke_id_and_priority)
            + self.method.to_bytes()
            + _pblock(self.last_block, self.block_number, self.raw_data)
        )

    @classmethod
    def _read(cls, reader: ByteReader) -> ActionRequestWithFirstPblock:
        iip = reader.u8("invoke-id-and-priority")
        method = CosemMethodDescriptor.read(reader)
        return cls(method, *_read_pblock(reader), iip)


@dataclass(frozen=True, slots=True)
class ActionRequestWithPblock(XdlmsApdu):
    TAG: ClassVar[bytes] = b"\xc3\x06"
    NAME: ClassVar[str] = "action-request-with-pblock"

    last_block: bool
    block_number: int
    raw_data: bytes
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY

    def _body(self) -> bytes:
        return _iip(self.invoke_id_and_priority) + _pblock(
            self.last_block, self.block_number, self.raw_data
        )

    @classmethod
    def _read(cls, reader: ByteReader) -> ActionRequestWithPblock:
        iip = reader.u8("invoke-id-and-priority")
        return cls(*_read_pblock(reader), iip)


@dataclass(frozen=True, slots=True)
class ActionResponseWithPblock(XdlmsApdu):
    TAG: ClassVar[bytes] = b"\xc7\x02"
    NAME: ClassVar[str] = "action-response-with-pblock"

    last_block: bool
    block_number: int
    raw_data: bytes
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY

    def _body(self) -> bytes:
        return _iip(self.invoke_id_and_priority) + _pblock(
            self.last_block, self.block_number, self.raw_data
        )

    @classmethod
    def _read(cls, reader: ByteReader) -> ActionResponseWithPblock:
        iip = reader.u8("invoke-id-and-priority")
        return cls(*_read_pblock(reader), iip)


@dataclass(frozen=True, slots=True)
class ActionResultWithData:
    """One entry of an action-response-with-list."""

    result: ActionResult
    return_data: DataResult | None = None

    def to_bytes(self) -> bytes:
        ret = (
            b"\x00" if self.return_data is None else b"\x01" + encode_data_result(self.return_data)
        )
        return bytes([self.result]) + ret

    @classmethod
    def read(cls, reader: ByteReader) -> ActionResultWithData:
        result = read_enum(ActionResult, reader, "action-result")
        has_data = read_presence(reader, "return parameters")
        return cls(result, read_data_result(reader) if has_data else None)


@dataclass(frozen=True, slots=True)
class ActionResponseWithList(XdlmsApdu):
    TAG: ClassVar[bytes] = b"\xc7\x03"
    NAME: ClassVar[str] = "action-response-with-list"

    results: tuple[ActionResultWithData, ...]
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY

    def _body(self) -> bytes:
        return (
            _iip(self.invoke_id_and_priority)
            + encode_length(len(self.results))
            + b"".join(r.to_bytes() for r in self.results)
        )

    @classmethod
    def _read(cls, reader: ByteReader) -> ActionResponseWithList:
        iip = reader.u8("invoke-id-and-priority")
        n = reader.count("result list", 2)
        return cls(tuple(ActionResultWithData.read(reader) for _ in range(n)), iip)


@dataclass(frozen=True, slots=True)
class ActionResponseNextPblock(XdlmsApdu):
    """Server acknowledges a parameter block and asks for the next one."""

    TAG: ClassVar[bytes] = b"\xc7\x04"
    NAME: ClassVar[str] = "action-response-next-pblock"

    block_number: int
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY

    def _body(self) -> bytes:
        return _iip(self.invoke_id_and_priority) + encode_uint(self.block_number, 4, "block number")

    @classmethod
    def _read(cls, reader: ByteReader) -> ActionResponseNextPblock:
        iip = reader.u8("invoke-id-and-priority")
        return cls(reader.uint(4, "block number"), iip)
