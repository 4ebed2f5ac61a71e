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
from typing import Any, ClassVar, NamedTuple, Self, TypeVar

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


class Element(NamedTuple):
    """One typed ACSE element: its tag, the attribute it fills, and its codec (content only).

    ``required`` is the name an error gives when a decoded APDU lacks the element."""

    tag: int
    attr: str
    read: Callable[[Tlv], Any]
    write: Callable[[Any], bytes]
    required: str | None = None


def _octet_string(tag: int, attr: str) -> Element:
    return Element(tag, attr, _explicit_octets, lambda v: tlv(_OCTET_STRING, v))


_PROTOCOL_VERSION = Element(0x80, "protocol_version", lambda el: el.content, bytes)
_CONTEXT = Element(0xA1, "application_context_name", _explicit_oid,
                   lambda v: tlv(_OID, v.content()), "application-context-name")
_USER_INFORMATION = _octet_string(0xBE, "user_information")


def _requirements(tag: int, attr: str) -> Element:
    return Element(tag, attr, _acse_requirements, _req_bits)


def _mechanism(tag: int) -> Element:
    return Element(tag, "mechanism_name", _implicit_oid, ObjectIdentifier.content)


def _authentication_value(tag: int, attr: str) -> Element:
    return Element(tag, attr, _auth_value, lambda v: tlv(_CHARSTRING, v))


class AcseApdu:
    """Common face of the four ACSE APDUs: one reader and one writer walk ``ELEMENTS``.

    Elements are written in tag-number order with any unknown ones kept in ``other_fields``;
    an element that is absent decodes to ``None``.
    """

    __slots__ = ()
    TAG: ClassVar[int]
    NAME: ClassVar[str]
    ELEMENTS: ClassVar[tuple[Element, ...]] = ()

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        elements, start = _outer(data, cls.TAG, cls.NAME)
        found, other = _collect(elements, {e.tag: e.attr for e in cls.ELEMENTS}, cls.NAME)
        for element in cls.ELEMENTS:  # every mandatory element is there before any is read
            if element.required and element.attr not in found:
                raise InvalidValue(f"{cls.NAME} has no {element.required}", start)
        values: dict[str, Any] = {}
        for element in cls.ELEMENTS:
            el = found.get(element.attr)
            values[element.attr] = None if el is None else element.read(el)
        return cls(**values, other_fields=other)  # type: ignore[call-arg]

    def to_bytes(self) -> bytes:
        fields = []
        for element in self.ELEMENTS:
            value = getattr(self, element.attr)
            fields.append(None if value is None else (element.tag, element.write(value)))
        return _encode(fields, self.other_fields, self.TAG)  # type: ignore[attr-defined]


class _Associate(AcseApdu):
    """What AARQ and AARE share beyond the framing: the context and mechanism they name."""

    __slots__ = ()
    application_context_name: ObjectIdentifier
    mechanism_name: ObjectIdentifier | None

    @property
    def context(self) -> ApplicationContextName | None:
        return ApplicationContextName.from_oid(self.application_context_name)

    @property
    def mechanism(self) -> AuthenticationMechanism | None:
        """The named mechanism; NONE when no mechanism-name is present."""
        if self.mechanism_name is None:
            return AuthenticationMechanism.NONE
        return AuthenticationMechanism.from_oid(self.mechanism_name)


@dataclass(frozen=True, slots=True)
class AARQ(_Associate):
    """A-ASSOCIATE request (client to meter)."""

    TAG: ClassVar[int] = 0x60
    NAME: ClassVar[str] = "AARQ"
    ELEMENTS: ClassVar[tuple[Element, ...]] = (
        _PROTOCOL_VERSION, _CONTEXT, _octet_string(0xA6, "calling_ap_title"),
        _requirements(0x8A, "sender_acse_requirements"), _mechanism(0x8B),
        _authentication_value(0xAC, "calling_authentication_value"), _USER_INFORMATION,
    )  # fmt: skip

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
class AARE(_Associate):
    """A-ASSOCIATE response (meter to client)."""

    TAG: ClassVar[int] = 0x61
    NAME: ClassVar[str] = "AARE"
    ELEMENTS: ClassVar[tuple[Element, ...]] = (
        _PROTOCOL_VERSION, _CONTEXT,
        Element(0xA2, "result", lambda el: _enum_of(AssociationResult, _explicit_int(el),
                                                    "association result", el.offset),
                lambda v: tlv(_INTEGER, encode_integer(int(v))), "result"),
        Element(0xA3, "result_source_diagnostic", lambda el: _diagnostic(el),
                lambda v: _encode_diagnostic(v), "result-source-diagnostic"),
        _octet_string(0xA4, "responding_ap_title"),
        _requirements(0x88, "responder_acse_requirements"), _mechanism(0x89),
        _authentication_value(0xAA, "responding_authentication_value"), _USER_INFORMATION,
    )  # fmt: skip

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

    ELEMENTS: ClassVar[tuple[Element, ...]] = (
        Element(0x80, "reason", _implicit_reason(ReleaseRequestReason, "release request reason"),
                lambda r: encode_integer(int(r))),
        _USER_INFORMATION,
    )


@dataclass(frozen=True, slots=True)
class RLRE(AcseApdu):
    """A-RELEASE response."""

    TAG: ClassVar[int] = 0x63
    NAME: ClassVar[str] = "RLRE"

    reason: ReleaseResponseReason | None = ReleaseResponseReason.NORMAL
    user_information: bytes | None = None
    other_fields: OtherFields = ()

    ELEMENTS: ClassVar[tuple[Element, ...]] = (
        Element(0x80, "reason", _implicit_reason(ReleaseResponseReason, "release response reason"),
                lambda r: encode_integer(int(r))),
        _USER_INFORMATION,
    )
