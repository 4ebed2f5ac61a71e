"""Typed xDLMS APDUs in their unciphered A-XDR form (get / set / action / event,
exception-response, confirmed-service-error, initiate request and response).

Each class is a frozen dataclass with ``to_bytes()`` and ``from_bytes(data)``;
``from_bytes`` insists on the class's own tag and on the data ending exactly
where the APDU ends. ``invoke_id_and_priority`` is kept as the raw byte (bit 7
high priority, bit 6 confirmed, bits 0-3 invoke id) so odd values round-trip;
build one with :func:`make_invoke_id_and_priority`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import ClassVar, Self, TypeVar

from metercert.cosem.axdr import DlmsData, encode_data, read_data
from metercert.cosem.conformance import Conformance
from metercert.cosem.errors import CosemEncodeError, InvalidValue, UnknownTag
from metercert.cosem.obis import ObisCode
from metercert.cosem.reader import ByteReader, encode_length
from metercert.cosem.results import (
    ActionResult,
    ConfirmedServiceErrorChoice,
    DataAccessResult,
    ServiceError,
    ServiceErrorKind,
    StateError,
)

E = TypeVar("E", bound=IntEnum)
DEFAULT_INVOKE_ID_AND_PRIORITY = 0xC1


def make_invoke_id_and_priority(
    invoke_id: int, *, confirmed: bool = True, high_priority: bool = True
) -> int:
    """The invoke-id-and-priority byte."""
    if not 0 <= invoke_id <= 15:
        raise CosemEncodeError(f"invoke id must be 0..15, got {invoke_id}")
    return (0x80 if high_priority else 0) | (0x40 if confirmed else 0) | invoke_id


def _u(value: int, size: int, what: str) -> bytes:
    if isinstance(value, bool) or not 0 <= value < 1 << (8 * size):
        raise CosemEncodeError(f"{what} must fit in {size * 8} unsigned bits, got {value!r}")
    return value.to_bytes(size, "big")


def _i8(value: int, what: str) -> bytes:
    if isinstance(value, bool) or not -128 <= value <= 127:
        raise CosemEncodeError(f"{what} must be -128..127, got {value!r}")
    return value.to_bytes(1, "big", signed=True)


def _read_enum(enum_cls: type[E], reader: ByteReader, what: str) -> E:
    start = reader.pos
    raw = reader.u8(what)
    try:
        return enum_cls(raw)
    except ValueError:
        raise InvalidValue(f"{what} {raw} is not a known {enum_cls.__name__}", start) from None


def _read_bool(reader: ByteReader, what: str) -> bool:
    return reader.u8(what) != 0


def _read_optional_flag(reader: ByteReader, what: str) -> bool:
    start = reader.pos
    flag = reader.u8(f"{what} presence flag")
    if flag > 1:
        raise InvalidValue(f"{what} presence flag must be 0 or 1, got {flag}", start)
    return flag == 1


def _read_octets(reader: ByteReader, what: str) -> bytes:
    return reader.take(reader.length(what), what)


def _octets(data: bytes) -> bytes:
    return encode_length(len(data)) + data


class XdlmsApdu:
    """Shared framing: a fixed tag prefix, a body, nothing after it."""

    __slots__ = ()
    TAG: ClassVar[bytes]
    NAME: ClassVar[str]

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
    def _read(cls, reader: ByteReader) -> Self:
        raise NotImplementedError

    def _body(self) -> bytes:
        raise NotImplementedError

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
            _u(self.class_id, 2, "class id")
            + self.instance.to_bytes()
            + _i8(self.attribute_id, "attribute id")
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
            _u(self.class_id, 2, "class id")
            + self.instance.to_bytes()
            + _i8(self.method_id, "method id")
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
        return _u(self.selector, 1, "access selector") + encode_data(self.parameters)

    @classmethod
    def read(cls, reader: ByteReader) -> SelectiveAccess:
        return cls(reader.u8("access selector"), read_data(reader))


def _opt_access(access: SelectiveAccess | None) -> bytes:
    return b"\x00" if access is None else b"\x01" + access.to_bytes()


def _read_opt_access(reader: ByteReader) -> SelectiveAccess | None:
    return SelectiveAccess.read(reader) if _read_optional_flag(reader, "access selection") else None


#: Get-Data-Result: either the value or why there is none
DataResult = DlmsData | DataAccessResult


def _data_result(result: DataResult) -> bytes:
    if isinstance(result, DataAccessResult):
        return b"\x01" + bytes([result])
    return b"\x00" + encode_data(result)


def _read_data_result(reader: ByteReader) -> DataResult:
    start = reader.pos
    choice = reader.u8("get-data-result choice")
    if choice == 0:
        return read_data(reader)
    if choice == 1:
        return _read_enum(DataAccessResult, reader, "data-access-result")
    raise UnknownTag(f"get-data-result choice must be 0 or 1, got {choice}", start)


# -- GET --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GetRequestNormal(XdlmsApdu):
    TAG: ClassVar[bytes] = b"\xc0\x01"
    NAME: ClassVar[str] = "get-request-normal"

    attribute: CosemAttributeDescriptor
    access_selection: SelectiveAccess | None = None
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY

    def _body(self) -> bytes:
        return (
            _u(self.invoke_id_and_priority, 1, "invoke-id-and-priority")
            + self.attribute.to_bytes()
            + _opt_access(self.access_selection)
        )

    @classmethod
    def _read(cls, reader: ByteReader) -> GetRequestNormal:
        iip = reader.u8("invoke-id-and-priority")
        attribute = CosemAttributeDescriptor.read(reader)
        return cls(attribute, _read_opt_access(reader), iip)


@dataclass(frozen=True, slots=True)
class GetRequestNext(XdlmsApdu):
    TAG: ClassVar[bytes] = b"\xc0\x02"
    NAME: ClassVar[str] = "get-request-next"

    block_number: int
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY

    def _body(self) -> bytes:
        return _u(self.invoke_id_and_priority, 1, "invoke-id-and-priority") + _u(
            self.block_number, 4, "block number"
        )

    @classmethod
    def _read(cls, reader: ByteReader) -> GetRequestNext:
        iip = reader.u8("invoke-id-and-priority")
        return cls(reader.uint(4, "block number"), iip)


@dataclass(frozen=True, slots=True)
class AttributeReference:
    """One entry of a with-list request: descriptor plus optional selective access."""

    attribute: CosemAttributeDescriptor
    access_selection: SelectiveAccess | None = None

    def to_bytes(self) -> bytes:
        return self.attribute.to_bytes() + _opt_access(self.access_selection)

    @classmethod
    def read(cls, reader: ByteReader) -> AttributeReference:
        attribute = CosemAttributeDescriptor.read(reader)
        return cls(attribute, _read_opt_access(reader))


@dataclass(frozen=True, slots=True)
class GetRequestWithList(XdlmsApdu):
    TAG: ClassVar[bytes] = b"\xc0\x03"
    NAME: ClassVar[str] = "get-request-with-list"

    references: tuple[AttributeReference, ...]
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY

    def _body(self) -> bytes:
        return (
            _u(self.invoke_id_and_priority, 1, "invoke-id-and-priority")
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
        return _u(self.invoke_id_and_priority, 1, "invoke-id-and-priority") + _data_result(
            self.result
        )

    @classmethod
    def _read(cls, reader: ByteReader) -> GetResponseNormal:
        iip = reader.u8("invoke-id-and-priority")
        return cls(_read_data_result(reader), iip)


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
            tail = b"\x00" + _octets(self.result)
        return (
            _u(self.invoke_id_and_priority, 1, "invoke-id-and-priority")
            + (b"\x01" if self.last_block else b"\x00")
            + _u(self.block_number, 4, "block number")
            + tail
        )

    @classmethod
    def _read(cls, reader: ByteReader) -> GetResponseWithDatablock:
        iip = reader.u8("invoke-id-and-priority")
        last = _read_bool(reader, "last-block")
        number = reader.uint(4, "block number")
        start = reader.pos
        choice = reader.u8("datablock result choice")
        result: bytes | DataAccessResult
        if choice == 0:
            result = _read_octets(reader, "raw-data")
        elif choice == 1:
            result = _read_enum(DataAccessResult, reader, "data-access-result")
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
            _u(self.invoke_id_and_priority, 1, "invoke-id-and-priority")
            + encode_length(len(self.results))
            + b"".join(_data_result(r) for r in self.results)
        )

    @classmethod
    def _read(cls, reader: ByteReader) -> GetResponseWithList:
        iip = reader.u8("invoke-id-and-priority")
        n = reader.count("result list", min_item_size=2)
        return cls(tuple(_read_data_result(reader) for _ in range(n)), iip)


# -- SET --------------------------------------------------------------------------


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
            _u(self.invoke_id_and_priority, 1, "invoke-id-and-priority")
            + self.attribute.to_bytes()
            + _opt_access(self.access_selection)
            + encode_data(self.value)
        )

    @classmethod
    def _read(cls, reader: ByteReader) -> SetRequestNormal:
        iip = reader.u8("invoke-id-and-priority")
        attribute = CosemAttributeDescriptor.read(reader)
        access = _read_opt_access(reader)
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
            _u(self.invoke_id_and_priority, 1, "invoke-id-and-priority")
            + self.attribute.to_bytes()
            + _opt_access(self.access_selection)
            + (b"\x01" if self.last_block else b"\x00")
            + _u(self.block_number, 4, "block number")
            + _octets(self.raw_data)
        )

    @classmethod
    def _read(cls, reader: ByteReader) -> SetRequestWithFirstDatablock:
        iip = reader.u8("invoke-id-and-priority")
        attribute = CosemAttributeDescriptor.read(reader)
        access = _read_opt_access(reader)
        last = _read_bool(reader, "last-block")
        number = reader.uint(4, "block number")
        return cls(attribute, last, number, _read_octets(reader, "raw-data"), access, iip)


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
            _u(self.invoke_id_and_priority, 1, "invoke-id-and-priority")
            + (b"\x01" if self.last_block else b"\x00")
            + _u(self.block_number, 4, "block number")
            + _octets(self.raw_data)
        )

    @classmethod
    def _read(cls, reader: ByteReader) -> SetRequestWithDatablock:
        iip = reader.u8("invoke-id-and-priority")
        last = _read_bool(reader, "last-block")
        number = reader.uint(4, "block number")
        return cls(last, number, _read_octets(reader, "raw-data"), iip)


@dataclass(frozen=True, slots=True)
class SetResponseNormal(XdlmsApdu):
    TAG: ClassVar[bytes] = b"\xc5\x01"
    NAME: ClassVar[str] = "set-response-normal"

    result: DataAccessResult
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY

    def _body(self) -> bytes:
        return _u(self.invoke_id_and_priority, 1, "invoke-id-and-priority") + bytes([self.result])

    @classmethod
    def _read(cls, reader: ByteReader) -> SetResponseNormal:
        iip = reader.u8("invoke-id-and-priority")
        return cls(_read_enum(DataAccessResult, reader, "data-access-result"), iip)


@dataclass(frozen=True, slots=True)
class SetResponseDatablock(XdlmsApdu):
    TAG: ClassVar[bytes] = b"\xc5\x02"
    NAME: ClassVar[str] = "set-response-datablock"

    block_number: int
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY

    def _body(self) -> bytes:
        return _u(self.invoke_id_and_priority, 1, "invoke-id-and-priority") + _u(
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
            _u(self.invoke_id_and_priority, 1, "invoke-id-and-priority")
            + bytes([self.result])
            + _u(self.block_number, 4, "block number")
        )

    @classmethod
    def _read(cls, reader: ByteReader) -> SetResponseLastDatablock:
        iip = reader.u8("invoke-id-and-priority")
        result = _read_enum(DataAccessResult, reader, "data-access-result")
        return cls(result, reader.uint(4, "block number"), iip)


# -- ACTION -----------------------------------------------------------------------


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
            _u(self.invoke_id_and_priority, 1, "invoke-id-and-priority")
            + self.method.to_bytes()
            + params
        )

    @classmethod
    def _read(cls, reader: ByteReader) -> ActionRequestNormal:
        iip = reader.u8("invoke-id-and-priority")
        method = CosemMethodDescriptor.read(reader)
        params = read_data(reader) if _read_optional_flag(reader, "method parameters") else None
        return cls(method, params, iip)


@dataclass(frozen=True, slots=True)
class ActionResponseNormal(XdlmsApdu):
    TAG: ClassVar[bytes] = b"\xc7\x01"
    NAME: ClassVar[str] = "action-response-normal"

    result: ActionResult
    return_data: DataResult | None = None
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY

    def _body(self) -> bytes:
        ret = b"\x00" if self.return_data is None else b"\x01" + _data_result(self.return_data)
        return (
            _u(self.invoke_id_and_priority, 1, "invoke-id-and-priority")
            + bytes([self.result])
            + ret
        )

    @classmethod
    def _read(cls, reader: ByteReader) -> ActionResponseNormal:
        iip = reader.u8("invoke-id-and-priority")
        result = _read_enum(ActionResult, reader, "action-result")
        ret = (
            _read_data_result(reader) if _read_optional_flag(reader, "return parameters") else None
        )
        return cls(result, ret, iip)


# -- unsolicited and errors ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventNotificationRequest(XdlmsApdu):
    """Unconfirmed push of one attribute value; ``time`` is the raw 12-byte date-time."""

    TAG: ClassVar[bytes] = b"\xc2"
    NAME: ClassVar[str] = "event-notification-request"

    attribute: CosemAttributeDescriptor
    value: DlmsData
    time: bytes | None = None

    def _body(self) -> bytes:
        t = b"\x00" if self.time is None else b"\x01" + _octets(self.time)
        return t + self.attribute.to_bytes() + encode_data(self.value)

    @classmethod
    def _read(cls, reader: ByteReader) -> EventNotificationRequest:
        t = _read_octets(reader, "time") if _read_optional_flag(reader, "time") else None
        attribute = CosemAttributeDescriptor.read(reader)
        return cls(attribute, read_data(reader), t)


@dataclass(frozen=True, slots=True)
class DataNotification(XdlmsApdu):
    """Unconfirmed push (IDIS / DLMS push setup). ``date_time`` is the raw octet
    string: empty when absent, else normally 12 bytes (gurux reads 4 and 5 as time
    and date). ``long_invoke_id_and_priority`` is the raw Unsigned32."""

    TAG: ClassVar[bytes] = b"\x0f"
    NAME: ClassVar[str] = "data-notification"

    body: DlmsData
    long_invoke_id_and_priority: int = 0
    date_time: bytes = b""

    def _body(self) -> bytes:
        return (
            _u(self.long_invoke_id_and_priority, 4, "long-invoke-id-and-priority")
            + _octets(self.date_time)
            + encode_data(self.body)
        )

    @classmethod
    def _read(cls, reader: ByteReader) -> DataNotification:
        iip = reader.uint(4, "long-invoke-id-and-priority")
        stamp = _read_octets(reader, "date-time")
        return cls(read_data(reader), iip, stamp)


@dataclass(frozen=True, slots=True)
class ExceptionResponse(XdlmsApdu):
    """The server could not even parse or accept the request (e.g. a deciphering or
    invocation-counter error, where ``invocation_counter`` is the server's expected one)."""

    TAG: ClassVar[bytes] = b"\xd8"
    NAME: ClassVar[str] = "exception-response"

    state_error: StateError
    service_error: ServiceError
    invocation_counter: int | None = None

    def __post_init__(self) -> None:
        has_ic = self.service_error is ServiceError.INVOCATION_COUNTER_ERROR
        if has_ic != (self.invocation_counter is not None):
            raise CosemEncodeError(
                "an invocation counter goes with service-error invocation-counter-error only"
            )

    def _body(self) -> bytes:
        ic = b"" if self.invocation_counter is None else _u(self.invocation_counter, 4, "IC")
        return bytes([self.state_error, self.service_error]) + ic

    @classmethod
    def _read(cls, reader: ByteReader) -> ExceptionResponse:
        state = _read_enum(StateError, reader, "state-error")
        service = _read_enum(ServiceError, reader, "service-error")
        ic = None
        if service is ServiceError.INVOCATION_COUNTER_ERROR:
            ic = reader.uint(4, "invocation counter")
        return cls(state, service, ic)


@dataclass(frozen=True, slots=True)
class ConfirmedServiceError(XdlmsApdu):
    """An error answering a confirmed service, e.g. a refused InitiateRequest."""

    TAG: ClassVar[bytes] = b"\x0e"
    NAME: ClassVar[str] = "confirmed-service-error"

    service: ConfirmedServiceErrorChoice
    error_kind: ServiceErrorKind
    value: int

    def _body(self) -> bytes:
        return bytes([self.service, self.error_kind]) + _u(self.value, 1, "service error value")

    @classmethod
    def _read(cls, reader: ByteReader) -> ConfirmedServiceError:
        service = _read_enum(ConfirmedServiceErrorChoice, reader, "confirmed-service-error choice")
        kind = _read_enum(ServiceErrorKind, reader, "service-error choice")
        return cls(service, kind, reader.u8("service error value"))


# -- initiate ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InitiateRequest(XdlmsApdu):
    """xDLMS InitiateRequest, carried (possibly ciphered) in the AARQ user-information.

    ``dedicated_key`` is a session key: it is kept out of ``repr``.
    """

    TAG: ClassVar[bytes] = b"\x01"
    NAME: ClassVar[str] = "initiate-request"

    proposed_conformance: Conformance
    client_max_receive_pdu_size: int = 0xFFFF
    proposed_dlms_version_number: int = 6
    dedicated_key: bytes | None = field(default=None, repr=False, metadata={"secret": True})
    response_allowed: bool = True
    proposed_quality_of_service: int | None = None

    def _body(self) -> bytes:
        out = bytearray()
        out += b"\x00" if self.dedicated_key is None else b"\x01" + _octets(self.dedicated_key)
        out += b"\x00" if self.response_allowed else b"\x01\x00"
        qos = self.proposed_quality_of_service
        out += b"\x00" if qos is None else b"\x01" + _i8(qos, "quality of service")
        out += _u(self.proposed_dlms_version_number, 1, "DLMS version")
        out += Conformance(self.proposed_conformance).to_ber()
        out += _u(self.client_max_receive_pdu_size, 2, "client max receive PDU size")
        return bytes(out)

    @classmethod
    def _read(cls, reader: ByteReader) -> InitiateRequest:
        key = (
            _read_octets(reader, "dedicated key")
            if _read_optional_flag(reader, "dedicated key")
            else None
        )
        allowed = (
            _read_bool(reader, "response-allowed")
            if _read_optional_flag(reader, "response-allowed")
            else True
        )
        qos = (
            reader.sint(1, "quality of service")
            if _read_optional_flag(reader, "quality of service")
            else None
        )
        version = reader.u8("DLMS version")
        conformance = Conformance.read(reader)
        pdu = reader.uint(2, "client max receive PDU size")
        return cls(conformance, pdu, version, key, allowed, qos)


@dataclass(frozen=True, slots=True)
class InitiateResponse(XdlmsApdu):
    TAG: ClassVar[bytes] = b"\x08"
    NAME: ClassVar[str] = "initiate-response"

    negotiated_conformance: Conformance
    server_max_receive_pdu_size: int
    negotiated_dlms_version_number: int = 6
    vaa_name: int = 0x0007
    negotiated_quality_of_service: int | None = None

    def _body(self) -> bytes:
        qos = self.negotiated_quality_of_service
        return (
            (b"\x00" if qos is None else b"\x01" + _i8(qos, "quality of service"))
            + _u(self.negotiated_dlms_version_number, 1, "DLMS version")
            + Conformance(self.negotiated_conformance).to_ber()
            + _u(self.server_max_receive_pdu_size, 2, "server max receive PDU size")
            + _u(self.vaa_name, 2, "vaa-name")
        )

    @classmethod
    def _read(cls, reader: ByteReader) -> InitiateResponse:
        qos = (
            reader.sint(1, "quality of service")
            if _read_optional_flag(reader, "quality of service")
            else None
        )
        version = reader.u8("DLMS version")
        conformance = Conformance.read(reader)
        pdu = reader.uint(2, "server max receive PDU size")
        vaa = reader.uint(2, "vaa-name")
        return cls(conformance, pdu, version, vaa, qos)


#: vaa-name values: logical-name referencing uses 0x0007, short-name 0xFA00
VAA_NAME_LN = 0x0007
VAA_NAME_SN = 0xFA00
