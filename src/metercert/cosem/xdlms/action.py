"""ACTION service APDUs (method invocation)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from metercert.cosem.axdr import DlmsData, encode_data, read_data
from metercert.cosem.reader import ByteReader
from metercert.cosem.results import ActionResult
from metercert.cosem.xdlms.base import (
    DEFAULT_INVOKE_ID_AND_PRIORITY,
    CosemMethodDescriptor,
    DataResult,
    XdlmsApdu,
    encode_data_result,
    read_data_result,
    read_enum,
    read_presence,
)
from metercert.cosem.xdlms.fields import (
    ACTION_RESULT,
    BLOCK,
    BLOCK_NUMBER,
    INVOKE_ID_AND_PRIORITY,
    METHOD,
    Field,
    Fields,
    optional,
    sequence_of,
)

# A method descriptor is 9 bytes, an optional-data item at least 2: used to refuse
# impossible list counts before reading them.
_DESCRIPTOR_SIZE = 9


def _to_bytes(item: Any) -> bytes:
    return item.to_bytes()


_RETURN_DATA = optional(Field("return_data", read_data_result, encode_data_result),
                        "return parameters")


@dataclass(frozen=True, slots=True)
class ActionRequestNormal(XdlmsApdu):
    TAG: ClassVar[bytes] = b"\xc3\x01"
    NAME: ClassVar[str] = "action-request-normal"

    method: CosemMethodDescriptor
    parameters: DlmsData | None = None
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY

    FIELDS: ClassVar[Fields] = (
        INVOKE_ID_AND_PRIORITY,
        METHOD,
        optional(Field("parameters", read_data, encode_data), "method parameters"),
    )


@dataclass(frozen=True, slots=True)
class ActionResponseNormal(XdlmsApdu):
    TAG: ClassVar[bytes] = b"\xc7\x01"
    NAME: ClassVar[str] = "action-response-normal"

    result: ActionResult
    return_data: DataResult | None = None
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY

    FIELDS: ClassVar[Fields] = (INVOKE_ID_AND_PRIORITY, ACTION_RESULT, _RETURN_DATA)


@dataclass(frozen=True, slots=True)
class ActionRequestNextPblock(XdlmsApdu):
    """Client asks for the next block of a long action response."""

    TAG: ClassVar[bytes] = b"\xc3\x02"
    NAME: ClassVar[str] = "action-request-next-pblock"

    block_number: int
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY

    FIELDS: ClassVar[Fields] = (INVOKE_ID_AND_PRIORITY, BLOCK_NUMBER)


@dataclass(frozen=True, slots=True)
class ActionRequestWithList(XdlmsApdu):
    """Several methods in one request; ``parameters`` pairs with ``methods`` by index."""

    TAG: ClassVar[bytes] = b"\xc3\x03"
    NAME: ClassVar[str] = "action-request-with-list"

    methods: tuple[CosemMethodDescriptor, ...]
    parameters: tuple[DlmsData, ...]
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY

    FIELDS: ClassVar[Fields] = (
        INVOKE_ID_AND_PRIORITY,
        sequence_of("methods", CosemMethodDescriptor.read, _to_bytes, "method list",
                    _DESCRIPTOR_SIZE),
        sequence_of("parameters", read_data, encode_data, "parameter list"),
    )


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

    FIELDS: ClassVar[Fields] = (INVOKE_ID_AND_PRIORITY, METHOD, *BLOCK)


@dataclass(frozen=True, slots=True)
class ActionRequestWithPblock(XdlmsApdu):
    TAG: ClassVar[bytes] = b"\xc3\x06"
    NAME: ClassVar[str] = "action-request-with-pblock"

    last_block: bool
    block_number: int
    raw_data: bytes
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY

    FIELDS: ClassVar[Fields] = (INVOKE_ID_AND_PRIORITY, *BLOCK)


@dataclass(frozen=True, slots=True)
class ActionResponseWithPblock(XdlmsApdu):
    TAG: ClassVar[bytes] = b"\xc7\x02"
    NAME: ClassVar[str] = "action-response-with-pblock"

    last_block: bool
    block_number: int
    raw_data: bytes
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY

    FIELDS: ClassVar[Fields] = (INVOKE_ID_AND_PRIORITY, *BLOCK)


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

    FIELDS: ClassVar[Fields] = (
        INVOKE_ID_AND_PRIORITY,
        sequence_of("results", ActionResultWithData.read, _to_bytes, "result list", 2),
    )


@dataclass(frozen=True, slots=True)
class ActionResponseNextPblock(XdlmsApdu):
    """Server acknowledges a parameter block and asks for the next one."""

    TAG: ClassVar[bytes] = b"\xc7\x04"
    NAME: ClassVar[str] = "action-response-next-pblock"

    block_number: int
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY

    FIELDS: ClassVar[Fields] = (INVOKE_ID_AND_PRIORITY, BLOCK_NUMBER)
