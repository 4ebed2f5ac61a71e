"""Unsolicited pushes from the meter: event-notification and data-notification."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from metercert.cosem.axdr import DlmsData, encode_data, read_data
from metercert.cosem.reader import ByteReader
from metercert.cosem.xdlms.base import (
    CosemAttributeDescriptor,
    XdlmsApdu,
    encode_octets,
    encode_uint,
    read_octets,
    read_presence,
)


@dataclass(frozen=True, slots=True)
class EventNotificationRequest(XdlmsApdu):
    """Unconfirmed push of one attribute value; ``time`` is the raw 12-byte date-time."""

    TAG: ClassVar[bytes] = b"\xc2"
    NAME: ClassVar[str] = "event-notification-request"

    attribute: CosemAttributeDescriptor
    value: DlmsData
    time: bytes | None = None

    def _body(self) -> bytes:
        t = b"\x00" if self.time is None else b"\x01" + encode_octets(self.time)
        return t + self.attribute.to_bytes() + encode_data(self.value)

    @classmethod
    def _read(cls, reader: ByteReader) -> EventNotificationRequest:
        t = read_octets(reader, "time") if read_presence(reader, "time") else None
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
            encode_uint(self.long_invoke_id_and_priority, 4, "long-invoke-id-and-priority")
            + encode_octets(self.date_time)
            + encode_data(self.body)
        )

    @classmethod
    def _read(cls, reader: ByteReader) -> DataNotification:
        iip = reader.uint(4, "long-invoke-id-and-priority")
        stamp = read_octets(reader, "date-time")
        return cls(read_data(reader), iip, stamp)
