"""CRC-16/X.25, the HCS and FCS of IEC 62056-46 HDLC frames.

Parameters (the ones ISO/IEC 13239 uses): polynomial x^16 + x^12 + x^5 + 1
(0x1021), processed least-significant bit first (so the reflected constant
0x8408 is used), initial value 0xFFFF, result inverted. The check value for the
ASCII string "123456789" is 0x906E. On the wire the 16-bit result travels
low byte first.
"""

from __future__ import annotations

_REFLECTED_POLY = 0x8408


def _derive_table() -> tuple[int, ...]:
    """Remainder of each byte value shifted through the reflected polynomial."""
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ _REFLECTED_POLY if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_TABLE = _derive_table()


def crc16_x25(data: bytes | bytearray | memoryview) -> int:
    """Return the CRC-16/X.25 of ``data`` as an integer (0x906E for b"123456789")."""
    crc = 0xFFFF
    table = _TABLE
    for byte in bytes(data):
        crc = (crc >> 8) ^ table[(crc ^ byte) & 0xFF]
    return crc ^ 0xFFFF


def fcs_bytes(data: bytes | bytearray | memoryview) -> bytes:
    """The two check bytes that follow ``data`` in a frame (low byte first)."""
    return crc16_x25(data).to_bytes(2, "little")
