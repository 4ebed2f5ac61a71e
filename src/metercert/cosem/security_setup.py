"""Security Setup version 1 (class 64) data: attribute 6 and the method parameters of suites
1 and 2, as ``DlmsData`` both ways (the cryptography is in :mod:`metercert.security`).

Shapes, as gurux-dlms (``GXDLMSSecuritySetup``) writes them:

* key_agreement (method 3): array of structure {key-id enum, key-data octet string}; for
  the Ephemeral Unified Model the key data is the ephemeral public key ``x || y`` followed by
  the signature over ``key-id || x || y`` (the meter answers in the same shape).
* generate_key_pair (4), generate_certificate_request (5): the key-pair enum (0 digital
  signature, 1 key agreement, 2 TLS); method 5 returns the PKCS #10 request, an octet string.
* import_certificate (6): the DER certificate, an octet string.
* export_certificate (7), remove_certificate (8): certificate-identification, structure
  {enum 0 by entity: structure {entity enum, type enum, system-title octet string} |
  enum 1 by serial: structure {serial-number octet string, issuer octet string}}.
* certificates (attribute 6): array of certificate-info structure {entity enum, type enum,
  serial-number, issuer, subject, subject-alt-name octet strings}.

gurux is not consistent about serial and issuer: export-by-serial sends the serial as a DER
INTEGER and the issuer as a DER Name, remove-by-serial sends both as text, attribute 6 as
text. metercert carries them as bytes and lets the caller choose; the security layer's
``certificate_info`` uses the DER forms (the only unambiguous ones).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from metercert.cosem.axdr import DataType, DlmsData
from metercert.cosem.errors import InvalidValue


class KeyPairId(enum.IntEnum):
    """Key pair of generate_key_pair / generate_certificate_request (= certificate type)."""

    DIGITAL_SIGNATURE = 0
    KEY_AGREEMENT = 1
    TLS = 2


def _expect(value: DlmsData, kind: DataType, what: str, count: int | None = None) -> tuple:
    if not isinstance(value, DlmsData) or value.type is not kind:
        got = value.type.name.lower() if isinstance(value, DlmsData) else type(value).__name__
        raise InvalidValue(f"{what}: expected {kind.name.lower()}, got {got}")
    if count is not None and len(value.value) != count:
        raise InvalidValue(f"{what}: expected {count} elements, got {len(value.value)}")
    return value.value


def _enum(value: DlmsData, what: str) -> int:
    if not isinstance(value, DlmsData) or value.type is not DataType.ENUM:
        raise InvalidValue(f"{what}: expected enum")
    return int(value.value)


def _octets(value: DlmsData, what: str) -> bytes:
    if not isinstance(value, DlmsData) or value.type is not DataType.OCTET_STRING:
        raise InvalidValue(f"{what}: expected octet-string")
    return bytes(value.value)


@dataclass(frozen=True)
class KeyAgreementItem:
    key_id: int
    key_data: bytes

    def to_data(self) -> DlmsData:
        return DlmsData.structure([DlmsData.enum(self.key_id), DlmsData.octet_string(self.key_data)])

    @classmethod
    def from_data(cls, value: DlmsData) -> KeyAgreementItem:
        key_id, data = _expect(value, DataType.STRUCTURE, "key-agreement-data", 2)
        return cls(_enum(key_id, "key-id"), _octets(data, "key-data"))


def key_agreement_data(items: list[KeyAgreementItem]) -> DlmsData:
    if not items:
        raise InvalidValue("key_agreement needs at least one key")
    return DlmsData.array([i.to_data() for i in items])


def read_key_agreement_data(value: DlmsData) -> list[KeyAgreementItem]:
    return [KeyAgreementItem.from_data(v)
            for v in _expect(value, DataType.ARRAY, "key_agreement parameter")]


@dataclass(frozen=True)
class CertificateIdentification:
    """Which certificate export/remove_certificate mean: by entity, or by serial and issuer."""

    entity: int | None = None
    certificate_type: int | None = None
    system_title: bytes | None = None
    serial_number: bytes | None = None
    issuer: bytes | None = None

    @property
    def by_entity(self) -> bool:
        return self.system_title is not None

    def to_data(self) -> DlmsData:
        if self.by_entity:
            if self.entity is None or self.certificate_type is None:
                raise InvalidValue("identification by entity needs entity and type")
            options = DlmsData.structure([DlmsData.enum(self.entity),
                                          DlmsData.enum(self.certificate_type),
                                          DlmsData.octet_string(self.system_title or b"")])
            return DlmsData.structure([DlmsData.enum(0), options])
        if self.serial_number is None or self.issuer is None:
            raise InvalidValue("identification by serial needs serial number and issuer")
        options = DlmsData.structure([DlmsData.octet_string(self.serial_number),
                                      DlmsData.octet_string(self.issuer)])
        return DlmsData.structure([DlmsData.enum(1), options])

    @classmethod
    def from_data(cls, value: DlmsData) -> CertificateIdentification:
        kind, options = _expect(value, DataType.STRUCTURE, "certificate-identification", 2)
        choice = _enum(kind, "certificate-identification-type")
        if choice == 0:
            entity, ctype, title = _expect(options, DataType.STRUCTURE,
                                           "certificate-identification-entity", 3)
            return cls(entity=_enum(entity, "certificate-entity"),
                       certificate_type=_enum(ctype, "certificate-type"),
                       system_title=_octets(title, "system-title"))
        if choice == 1:
            serial, issuer = _expect(options, DataType.STRUCTURE,
                                     "certificate-identification-serial", 2)
            return cls(serial_number=_octets(serial, "serial-number"),
                       issuer=_octets(issuer, "issuer"))
        raise InvalidValue(f"certificate-identification-type {choice} is not 0 or 1")


@dataclass(frozen=True)
class CertificateInfo:
    """One element of attribute 6 (certificates)."""

    entity: int
    certificate_type: int
    serial_number: bytes
    issuer: bytes
    subject: bytes
    subject_alt_name: bytes = b""

    def to_data(self) -> DlmsData:
        return DlmsData.structure([
            DlmsData.enum(self.entity), DlmsData.enum(self.certificate_type),
            *(DlmsData.octet_string(v) for v in (self.serial_number, self.issuer, self.subject,
                                                  self.subject_alt_name))])

    @classmethod
    def from_data(cls, value: DlmsData) -> CertificateInfo:
        entity, ctype, serial, issuer, subject, alt = _expect(
            value, DataType.STRUCTURE, "certificate-info", 6)
        return cls(_enum(entity, "certificate-entity"), _enum(ctype, "certificate-type"),
                   _octets(serial, "serial-number"), _octets(issuer, "issuer"),
                   _octets(subject, "subject"), _octets(alt, "subject-alt-name"))


def certificates_attribute(infos: list[CertificateInfo]) -> DlmsData:
    return DlmsData.array([i.to_data() for i in infos])


def read_certificates_attribute(value: DlmsData) -> list[CertificateInfo]:
    return [CertificateInfo.from_data(v) for v in _expect(value, DataType.ARRAY, "certificates")]
