"""Error answers: exception-response and confirmed-service-error."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from metercert.cosem.errors import CosemEncodeError
from metercert.cosem.reader import ByteReader
from metercert.cosem.results import (
    ConfirmedServiceErrorChoice,
    ServiceError,
    ServiceErrorKind,
    StateError,
)
from metercert.cosem.xdlms.base import XdlmsApdu, encode_uint, read_enum


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
        ic = (
            b""
            if self.invocation_counter is None
            else encode_uint(self.invocation_counter, 4, "IC")
        )
        return bytes([self.state_error, self.service_error]) + ic

    @classmethod
    def _read(cls, reader: ByteReader) -> ExceptionResponse:
        state = read_enum(StateError, reader, "state-error")
        service = read_enum(ServiceError, reader, "service-error")
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
        return bytes([self.service, self.error_kind]) + encode_uint(
            self.value, 1, "service error value"
        )

    @classmethod
    def _read(cls, reader: ByteReader) -> ConfirmedServiceError:
        service = read_enum(ConfirmedServiceErrorChoice, reader, "confirmed-service-error choice")
        kind = read_enum(ServiceErrorKind, reader, "service-error choice")
        return cls(service, kind, reader.u8("service error value"))
