"""ACSE APDUs (BER): AARQ, AARE, RLRQ, RLRE, as DLMS/COSEM uses them.

Only the elements DLMS uses are typed; any other element (called-AP-title,
calling-AE-qualifier carrying a certificate, implementation-information, ...)
is kept raw in ``other_fields`` as ``(tag, content)`` so nothing is lost.
Elements are written in tag-number order, which is the order the ASN.1
SEQUENCE defines.

``user_information`` is the content of the Association-information OCTET
STRING: the raw xDLMS InitiateRequest/Response, plaintext (0x01 / 0x08) or
ciphered (0x21 / 0x28). Decode it with :func:`metercert.cosem.decode_apdu`.
Authentication values (LLS password, HLS challenges) are kept out of ``repr``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, Self, TypeVar

from metercert.cosem.ber import (
    Tlv,
    decode_integer,
    encode_integer,
    read_all,
    read_single,
    read_tlv,
    tlv,
)
from metercert.cosem.errors import InvalidValue, UnknownTag
from metercert.cosem.names import ApplicationContextName, AuthenticationMechanism, ObjectIdentifier
from metercert.cosem.reader import ByteReader
from metercert.cosem.results import (
    AcseServiceProviderDiagnostic,
    AcseServiceUserDiagnostic,
    AssociationResult,
    ReleaseRequestReason,
    ReleaseResponseReason,
)

T = TypeVar("T")
OtherFields = tuple[tuple[int, bytes], ...]
#: BIT STRING {version1(0)}: 7 unused bits, first bit set
PROTOCOL_VERSION_1 = b"\x07\x80"
#: tag byte of a BER OCTET STRING / OBJECT IDENTIFIER / INTEGER / GraphicString choice
_OCTET_STRING, _OID, _INTEGER, _CHARSTRING = 0x04, 0x06, 0x02, 0x80


def _outer(data: bytes, tag: int, name: str) -> tuple[list[Tlv], int]:
    """Check the APDU tag, that nothing follows it, and split its elements."""
    reader = ByteReader(data)
    top = read_tlv(reader, name)
    if top.tag != tag:
        raise UnknownTag(f"expected {name} tag 0x{tag:02X}, got 0x{top.tag:02X}", 0)
    reader.expect_end(name)
    return read_all(top.content, name, top.content_offset), top.content_offset


def _collect(
    elements: list[Tlv], known: dict[int, str], name: str
) -> tuple[dict[str, Tlv], OtherFields]:
    found: dict[str, Tlv] = {}
    other: list[tuple[int, bytes]] = []
    seen: set[int] = set()
    for el in elements:
        if el.tag in seen:
            raise InvalidValue(f"{name}: element 0x{el.tag:02X} appears twice", el.offset)
        seen.add(el.tag)
        if el.tag in known:
            found[known[el.tag]] = el
        else:
            other.append((el.tag, el.content))
    # kept in the order the encoder writes them, so decode(encode(x)) == x
    other.sort(key=lambda item: item[0] & 0x1F)
    return found, tuple(other)


def _get(found: dict[str, Tlv], key: str, conv: Callable[[Tlv], T]) -> T | None:
    el = found.get(key)
    return None if el is None else conv(el)


def _explicit_octets(el: Tlv) -> bytes:
    return read_single(el.content, _OCTET_STRING, "octet string", el.content_offset)


def _explicit_oid(el: Tlv) -> ObjectIdentifier:
    return ObjectIdentifier.from_content(
        read_single(el.content, _OID, "application-context-name", el.content_offset), el.offset
    )


def _implicit_oid(el: Tlv) -> ObjectIdentifier:
    return ObjectIdentifier.from_content(el.content, el.offset)


def _acse_requirements(el: Tlv) -> bool:
    if len(el.content) < 2:
        raise InvalidValue("acse-requirements bit string is shorter than 2 bytes", el.offset)
    return bool(el.content[1] & 0x80)


def _auth_value(el: Tlv) -> bytes:
    return read_single(
        el.content, _CHARSTRING, "authentication-value charstring", el.content_offset
    )


def _explicit_int(el: Tlv) -> int:
    content = read_single(el.content, _INTEGER, "integer", el.content_offset)
    return decode_integer(content, "integer", el.content_offset)


def _enum_of(enum_cls: type[T], value: int, what: str, offset: int) -> T:
    try:
        return enum_cls(value)  # type: ignore[call-arg]
    except ValueError:
        raise InvalidValue(f"{what} {value} is not a known {enum_cls.__name__}", offset) from None  # type: ignore[attr-defined]


def _encode(fields: list[tuple[int, bytes] | None], other: OtherFields, apdu_tag: int) -> bytes:
    parts = [f for f in fields if f is not None] + list(other)
    parts.sort(key=lambda item: item[0] & 0x1F)
    return tlv(apdu_tag, b"".join(tlv(tag, content) for tag, content in parts))


def _opt(tag: int, value: T | None, enc: Callable[[T], bytes]) -> tuple[int, bytes] | None:
    return None if value is None else (tag, enc(value))


def _req_bits(flag: bool) -> bytes:
    return b"\x07\x80" if flag else b"\x07\x00"


class AcseApdu:
    """Common face of the four ACSE APDUs."""

    __slots__ = ()
    TAG: ClassVar[int]
    NAME: ClassVar[str]

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class AARQ(AcseApdu):
    """A-ASSOCIATE request (client to meter)."""

    TAG: ClassVar[int] = 0x60
    NAME: ClassVar[str] = "AARQ"
    _KNOWN: ClassVar[dict[int, str]] = {
        0x80: "protocol_version", 0xA1: "context", 0xA6: "calling_ap_title",
        0x8A: "acse_req", 0x8B: "mechanism", 0xAC: "auth", 0xBE: "user_info",
    }  # fmt: skip

    application_context_name: ObjectIdentifier = ApplicationContextName.LOGICAL_NAME.oid
    calling_ap_title: bytes | None = None
    sender_acse_requirements: bool | None = None
    mechanism_name: ObjectIdentifier | None = None
    calling_authentication_value: bytes | None = field(
        default=None, repr=False, metadata={"secret": True}
    )
    # may hold a plaintext InitiateRequest carrying a dedicated key: not in repr
    user_information: bytes | None = field(default=None, repr=False, metadata={"secret": True})
    protocol_version: bytes | None = None
    other_fields: OtherFields = ()

    @property
    def context(self) -> ApplicationContextName | None:
        return ApplicationContextName.from_oid(self.application_context_name)

    @property
    def mechanism(self) -> AuthenticationMechanism | None:
        """The named mechanism; NONE when no mechanism-name is present."""
        if self.mechanism_name is None:
            return AuthenticationMechanism.NONE
        return AuthenticationMechanism.from_oid(self.mechanism_name)

    def to_bytes(self) -> bytes:
        return _encode(
            [
                _opt(0x80, self.protocol_version, bytes),
                (0xA1, tlv(_OID, self.application_context_name.content())),
                _opt(0xA6, self.calling_ap_title, lambda v: tlv(_OCTET_STRING, v)),
                _opt(0x8A, self.sender_acse_requirements, _req_bits),
                _opt(0x8B, self.mechanism_name, ObjectIdentifier.content),
                _opt(0xAC, self.calling_authentication_value, lambda v: tlv(_CHARSTRING, v)),
                _opt(0xBE, self.user_information, lambda v: tlv(_OCTET_STRING, v)),
            ],
            self.other_fields,
            self.TAG,
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> AARQ:
        elements, start = _outer(data, cls.TAG, cls.NAME)
        found, other = _collect(elements, cls._KNOWN, cls.NAME)
        if "context" not in found:
            raise InvalidValue("AARQ has no application-context-name", start)
        return cls(
            application_context_name=_explicit_oid(found["context"]),
            calling_ap_title=_get(found, "calling_ap_title", _explicit_octets),
            sender_acse_requirements=_get(found, "acse_req", _acse_requirements),
            mechanism_name=_get(found, "mechanism", _implicit_oid),
            calling_authentication_value=_get(found, "auth", _auth_value),
            user_information=_get(found, "user_info", _explicit_octets),
            protocol_version=_get(found, "protocol_version", lambda el: el.content),
            other_fields=other,
        )


Diagnostic = AcseServiceUserDiagnostic | AcseServiceProviderDiagnostic


def _diagnostic(el: Tlv) -> Diagnostic:
    items = read_all(el.content, "result-source-diagnostic", el.content_offset)
    if len(items) != 1 or items[0].tag not in (0xA1, 0xA2):
        raise InvalidValue(
            "result-source-diagnostic must hold one acse-service-user [1] or "
            "acse-service-provider [2] element",
            el.offset,
        )
    item = items[0]
    value = _explicit_int(item)
    if item.tag == 0xA1:
        return _enum_of(
            AcseServiceUserDiagnostic, value, "acse-service-user diagnostic", item.offset
        )
    return _enum_of(
        AcseServiceProviderDiagnostic, value, "acse-service-provider diagnostic", item.offset
    )


def _encode_diagnostic(d: Diagnostic) -> bytes:
    inner = 0xA1 if isinstance(d, AcseServiceUserDiagnostic) else 0xA2
    return tlv(inner, tlv(_INTEGER, encode_integer(int(d))))


@dataclass(frozen=True, slots=True)
class AARE(AcseApdu):
    """A-ASSOCIATE response (meter to client)."""

    TAG: ClassVar[int] = 0x61
    NAME: ClassVar[str] = "AARE"
    _KNOWN: ClassVar[dict[int, str]] = {
        0x80: "protocol_version", 0xA1: "context", 0xA2: "result", 0xA3: "diagnostic",
        0xA4: "responding_ap_title", 0x88: "acse_req", 0x89: "mechanism", 0xAA: "auth",
        0xBE: "user_info",
    }  # fmt: skip

    result: AssociationResult = AssociationResult.ACCEPTED
    result_source_diagnostic: Diagnostic = AcseServiceUserDiagnostic.NULL
    application_context_name: ObjectIdentifier = ApplicationContextName.LOGICAL_NAME.oid
    responding_ap_title: bytes | None = None
    responder_acse_requirements: bool | None = None
    mechanism_name: ObjectIdentifier | None = None
    responding_authentication_value: bytes | None = field(
        default=None, repr=False, metadata={"secret": True}
    )
    user_information: bytes | None = None
    protocol_version: bytes | None = None
    other_fields: OtherFields = ()

    @property
    def context(self) -> ApplicationContextName | None:
        return ApplicationContextName.from_oid(self.application_context_name)

    @property
    def mechanism(self) -> AuthenticationMechanism | None:
        if self.mechanism_name is None:
            return AuthenticationMechanism.NONE
        return AuthenticationMechanism.from_oid(self.mechanism_name)

    def to_bytes(self) -> bytes:
        return _encode(
            [
                _opt(0x80, self.protocol_version, bytes),
                (0xA1, tlv(_OID, self.application_context_name.content())),
                (0xA2, tlv(_INTEGER, encode_integer(int(self.result)))),
                (0xA3, _encode_diagnostic(self.result_source_diagnostic)),
                _opt(0xA4, self.responding_ap_title, lambda v: tlv(_OCTET_STRING, v)),
                _opt(0x88, self.responder_acse_requirements, _req_bits),
                _opt(0x89, self.mechanism_name, ObjectIdentifier.content),
                _opt(0xAA, self.responding_authentication_value, lambda v: tlv(_CHARSTRING, v)),
                _opt(0xBE, self.user_information, lambda v: tlv(_OCTET_STRING, v)),
            ],
            self.other_fields,
            self.TAG,
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> AARE:
        elements, start = _outer(data, cls.TAG, cls.NAME)
        found, other = _collect(elements, cls._KNOWN, cls.NAME)
        for key, label in (("context", "application-context-name"), ("result", "result"),
                           ("diagnostic", "result-source-diagnostic")):  # fmt: skip
            if key not in found:
                raise InvalidValue(f"AARE has no {label}", start)
        result_el = found["result"]
        result = _enum_of(
            AssociationResult, _explicit_int(result_el), "association result", result_el.offset
        )
        return cls(
            result=result,
            result_source_diagnostic=_diagnostic(found["diagnostic"]),
            application_context_name=_explicit_oid(found["context"]),
            responding_ap_title=_get(found, "responding_ap_title", _explicit_octets),
            responder_acse_requirements=_get(found, "acse_req", _acse_requirements),
            mechanism_name=_get(found, "mechanism", _implicit_oid),
            responding_authentication_value=_get(found, "auth", _auth_value),
            user_information=_get(found, "user_info", _explicit_octets),
            protocol_version=_get(found, "protocol_version", lambda el: el.content),
            other_fields=other,
        )


def _implicit_reason(enum_cls: type[T], what: str) -> Callable[[Tlv], T]:
    def conv(el: Tlv) -> T:
        return _enum_of(enum_cls, decode_integer(el.content, what, el.offset), what, el.offset)

    return conv


@dataclass(frozen=True, slots=True)
class RLRQ(AcseApdu):
    """A-RELEASE request; ``user_information`` may carry a (ciphered) InitiateRequest."""

    TAG: ClassVar[int] = 0x62
    NAME: ClassVar[str] = "RLRQ"

    reason: ReleaseRequestReason | None = ReleaseRequestReason.NORMAL
    user_information: bytes | None = field(default=None, repr=False, metadata={"secret": True})
    other_fields: OtherFields = ()

    def to_bytes(self) -> bytes:
        return _encode(
            [
                _opt(0x80, self.reason, lambda r: encode_integer(int(r))),
                _opt(0xBE, self.user_information, lambda v: tlv(_OCTET_STRING, v)),
            ],
            self.other_fields,
            self.TAG,
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> RLRQ:
        elements, _ = _outer(data, cls.TAG, cls.NAME)
        found, other = _collect(elements, {0x80: "reason", 0xBE: "user_info"}, cls.NAME)
        return cls(
            _get(found, "reason", _implicit_reason(ReleaseRequestReason, "release request reason")),
            _get(found, "user_info", _explicit_octets),
            other,
        )


@dataclass(frozen=True, slots=True)
class RLRE(AcseApdu):
    """A-RELEASE response."""

    TAG: ClassVar[int] = 0x63
    NAME: ClassVar[str] = "RLRE"

    reason: ReleaseResponseReason | None = ReleaseResponseReason.NORMAL
    user_information: bytes | None = None
    other_fields: OtherFields = ()

    def to_bytes(self) -> bytes:
        return _encode(
            [
                _opt(0x80, self.reason, lambda r: encode_integer(int(r))),
                _opt(0xBE, self.user_information, lambda v: tlv(_OCTET_STRING, v)),
            ],
            self.other_fields,
            self.TAG,
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> RLRE:
        elements, _ = _outer(data, cls.TAG, cls.NAME)
        found, other = _collect(elements, {0x80: "reason", 0xBE: "user_info"}, cls.NAME)
        return cls(
            _get(
                found, "reason", _implicit_reason(ReleaseResponseReason, "release response reason")
            ),
            _get(found, "user_info", _explicit_octets),
            other,
        )
