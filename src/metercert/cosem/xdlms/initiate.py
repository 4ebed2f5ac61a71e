"""xDLMS InitiateRequest / InitiateResponse, carried in AARQ / AARE user-information."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from metercert.cosem.conformance import Conformance
from metercert.cosem.reader import ByteReader
from metercert.cosem.xdlms.base import (
    XdlmsApdu,
    encode_i8,
    encode_octets,
    encode_uint,
    read_bool,
    read_octets,
    read_presence,
)


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
        out += (
            b"\x00" if self.dedicated_key is None else b"\x01" + encode_octets(self.dedicated_key)
        )
        out += b"\x00" if self.response_allowed else b"\x01\x00"
        qos = self.proposed_quality_of_service
        out += b"\x00" if qos is None else b"\x01" + encode_i8(qos, "quality of service")
        out += encode_uint(self.proposed_dlms_version_number, 1, "DLMS version")
        out += Conformance(self.proposed_conformance).to_ber()
        out += encode_uint(self.client_max_receive_pdu_size, 2, "client max receive PDU size")
        return bytes(out)

    @classmethod
    def _read(cls, reader: ByteReader) -> InitiateRequest:
        key = (
            read_octets(reader, "dedicated key") if read_presence(reader, "dedicated key") else None
        )
        allowed = (
            read_bool(reader, "response-allowed")
            if read_presence(reader, "response-allowed")
            else True
        )
        qos = (
            reader.sint(1, "quality of service")
            if read_presence(reader, "quality of service")
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
            (b"\x00" if qos is None else b"\x01" + encode_i8(qos, "quality of service"))
            + encode_uint(self.negotiated_dlms_version_number, 1, "DLMS version")
            + Conformance(self.negotiated_conformance).to_ber()
            + encode_uint(self.server_max_receive_pdu_size, 2, "server max receive PDU size")
            + encode_uint(self.vaa_name, 2, "vaa-name")
        )

    @classmethod
    def _read(cls, reader: ByteReader) -> InitiateResponse:
        qos = (
            reader.sint(1, "quality of service")
            if read_presence(reader, "quality of service")
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
