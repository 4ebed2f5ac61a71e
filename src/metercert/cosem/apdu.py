"""Dispatch raw bytes to the typed APDU class their tag names.

Ciphered APDUs (glo-/ded- service-specific, general-glo/ded-ciphering,
general-ciphering, general-signing) are the security layer's business: here
they come back as an :class:`OpaqueCipheredApdu` carrying only the tag and the raw
bytes. Parse its header with ``metercert.security.parse_ciphered(raw)`` and open it
with ``metercert.security.unprotect``; the plaintext then goes back through
:func:`decode_apdu`.
"""

from __future__ import annotations

from dataclasses import dataclass

from metercert.cosem.acse import AARE, AARQ, RLRE, RLRQ, AcseApdu
from metercert.cosem.errors import UnknownTag
from metercert.cosem.reader import ByteReader
from metercert.cosem.xdlms import (
    ActionRequestNextPblock,
    ActionRequestNormal,
    ActionRequestWithFirstPblock,
    ActionRequestWithList,
    ActionRequestWithPblock,
    ActionResponseNextPblock,
    ActionResponseNormal,
    ActionResponseWithList,
    ActionResponseWithPblock,
    ConfirmedServiceError,
    DataNotification,
    EventNotificationRequest,
    ExceptionResponse,
    GetRequestNext,
    GetRequestNormal,
    GetRequestWithList,
    GetResponseNormal,
    GetResponseWithDatablock,
    GetResponseWithList,
    InitiateRequest,
    InitiateResponse,
    SetRequestNormal,
    SetRequestWithDatablock,
    SetRequestWithFirstDatablock,
    SetRequestWithList,
    SetResponseDatablock,
    SetResponseLastDatablock,
    SetResponseNormal,
    SetResponseWithList,
    XdlmsApdu,
)

CIPHERED_TAG_NAMES: dict[int, str] = {
    0x21: "glo-initiate-request",
    0x28: "glo-initiate-response",
    0x2E: "glo-confirmed-service-error",
    0xC8: "glo-get-request",
    0xC9: "glo-set-request",
    0xCA: "glo-event-notification-request",
    0xCB: "glo-action-request",
    0xCC: "glo-get-response",
    0xCD: "glo-set-response",
    0xCF: "glo-action-response",
    0xD0: "ded-get-request",
    0xD1: "ded-set-request",
    0xD2: "ded-event-notification-request",
    0xD3: "ded-action-request",
    0xD4: "ded-get-response",
    0xD5: "ded-set-response",
    0xD7: "ded-action-response",
    0xDB: "general-glo-ciphering",
    0xDC: "general-ded-ciphering",
    0xDD: "general-ciphering",
    0xDF: "general-signing",
}


@dataclass(frozen=True, slots=True)
class OpaqueCipheredApdu:
    """A protected APDU, not opened here; hand ``raw`` to the security layer."""

    tag: int
    raw: bytes

    @property
    def kind(self) -> str:
        return CIPHERED_TAG_NAMES[self.tag]

    def to_bytes(self) -> bytes:
        return self.raw


_SINGLE: dict[int, type[XdlmsApdu | AcseApdu]] = {
    0x01: InitiateRequest,
    0x08: InitiateResponse,
    0x0E: ConfirmedServiceError,
    0x0F: DataNotification,
    0x60: AARQ,
    0x61: AARE,
    0x62: RLRQ,
    0x63: RLRE,
    0xC2: EventNotificationRequest,
    0xD8: ExceptionResponse,
}
_WITH_CHOICE: dict[int, dict[int, type[XdlmsApdu]]] = {
    0xC0: {1: GetRequestNormal, 2: GetRequestNext, 3: GetRequestWithList},
    0xC1: {
        1: SetRequestNormal,
        2: SetRequestWithFirstDatablock,
        3: SetRequestWithDatablock,
        4: SetRequestWithList,
    },
    0xC3: {
        1: ActionRequestNormal,
        2: ActionRequestNextPblock,
        3: ActionRequestWithList,
        4: ActionRequestWithFirstPblock,
        6: ActionRequestWithPblock,
    },
    0xC4: {1: GetResponseNormal, 2: GetResponseWithDatablock, 3: GetResponseWithList},
    0xC5: {
        1: SetResponseNormal,
        2: SetResponseDatablock,
        3: SetResponseLastDatablock,
        5: SetResponseWithList,
    },
    0xC7: {
        1: ActionResponseNormal,
        2: ActionResponseWithPblock,
        3: ActionResponseWithList,
        4: ActionResponseNextPblock,
    },
}
_SERVICE_NAMES = {
    0xC0: "get-request",
    0xC1: "set-request",
    0xC3: "action-request",
    0xC4: "get-response",
    0xC5: "set-response",
    0xC7: "action-response",
}

Apdu = (
    InitiateRequest | InitiateResponse | ConfirmedServiceError | DataNotification | AARQ
    | AARE | RLRQ | RLRE | EventNotificationRequest | ExceptionResponse | GetRequestNormal | GetRequestNext
    | GetRequestWithList | SetRequestNormal | SetRequestWithFirstDatablock
    | SetRequestWithDatablock | ActionRequestNormal | GetResponseNormal
    | GetResponseWithDatablock | GetResponseWithList | SetResponseNormal
    | SetResponseDatablock | SetResponseLastDatablock | ActionResponseNormal | SetRequestWithList
    | SetResponseWithList | ActionRequestNextPblock | ActionRequestWithList
    | ActionRequestWithFirstPblock | ActionRequestWithPblock | ActionResponseWithPblock
    | ActionResponseWithList | ActionResponseNextPblock | OpaqueCipheredApdu
)  # fmt: skip


def decode_apdu(data: bytes) -> Apdu:
    """Decode one whole APDU; raises a CosemDecodeError subclass on anything malformed."""
    reader = ByteReader(data)
    tag = reader.u8("APDU tag")
    if tag in CIPHERED_TAG_NAMES:
        return OpaqueCipheredApdu(tag, bytes(data))
    if tag in _SINGLE:
        return _SINGLE[tag].from_bytes(data)  # type: ignore[return-value]
    if tag in _WITH_CHOICE:
        choice = reader.u8(f"{_SERVICE_NAMES[tag]} choice")
        cls = _WITH_CHOICE[tag].get(choice)
        if cls is None:
            raise UnknownTag(
                f"{_SERVICE_NAMES[tag]} choice {choice} is unknown or not supported", 1
            )
        return cls.from_bytes(data)  # type: ignore[return-value]
    raise UnknownTag(f"unknown or unsupported APDU tag 0x{tag:02X}", 0)
