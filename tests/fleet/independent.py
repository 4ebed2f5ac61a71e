"""An independent count of DLMS APDUs in a capture, for checking the ingest.

Written from the framing rules alone and sharing no code with metercert: dpkt for
the packet layers, TCP payload put in sequence order per direction (duplicates
dropped), then the IEC 62056-47 wrapper length field or the IEC 62056-46 HDLC
format field (11-bit frame length), FCS checked with a bitwise CRC-16/X.25 written
here. An APDU is a wrapper frame with a payload, or the last I/UI frame (segmentation
bit clear) of a run of HDLC frames with information.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import dpkt


def _crc16_x25(data: bytes) -> int:
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return crc ^ 0xFFFF


def _packets(path: Path):  # type: ignore[no-untyped-def]
    with open(path, "rb") as fh:
        head = fh.read(4)
        fh.seek(0)
        reader = dpkt.pcapng.Reader(fh) if head == b"\x0a\x0d\x0d\x0a" else dpkt.pcap.Reader(fh)
        link = reader.datalink()
        for _ts, buf in reader:
            try:
                if link == dpkt.pcap.DLT_EN10MB:
                    ip = dpkt.ethernet.Ethernet(buf).data
                elif link == dpkt.pcap.DLT_LINUX_SLL:
                    ip = dpkt.sll.SLL(buf).data
                elif link in (dpkt.pcap.DLT_NULL, dpkt.pcap.DLT_LOOP):
                    ip = dpkt.loopback.Loopback(buf).data
                else:
                    ip = dpkt.ip.IP(buf)
            except (dpkt.dpkt.Error, ValueError, IndexError):
                continue
            if isinstance(ip, (dpkt.ip.IP, dpkt.ip6.IP6)):
                yield ip


def _hdlc_apdus(data: bytes) -> int:
    count, pos = 0, 0
    while True:
        pos = data.find(b"\x7e", pos)
        if pos < 0 or pos + 3 > len(data):
            return count
        fmt = data[pos + 1]
        if fmt & 0xF0 != 0xA0:
            pos += 1
            continue
        length = ((fmt & 0x07) << 8) | data[pos + 2]
        body = data[pos + 1:pos + 1 + length]
        if len(body) < length or length < 7:
            return count
        if _crc16_x25(body[:-2]) != int.from_bytes(body[-2:], "little"):
            pos += 1  # a bad frame: look for the next flag
            continue
        i = 2
        for _ in range(2):  # destination, then source address: the last byte has bit 0 set
            while i < len(body) and not body[i] & 1:
                i += 1
            i += 1
        control = body[i]
        info = body[i + 3:-2] if length > i + 3 else b""
        is_i = not control & 1
        is_ui = control & 0xEF == 0x03
        if info and (is_i or is_ui) and not fmt & 0x08:
            count += 1  # the last (or only) frame of an APDU
        pos += 1 + length


def _wrapper_apdus(data: bytes) -> int:
    count, pos = 0, 0
    while pos + 8 <= len(data) and data[pos:pos + 2] == b"\x00\x01":
        length = int.from_bytes(data[pos + 6:pos + 8], "big")
        if pos + 8 + length > len(data):
            break
        count += 1 if length else 0
        pos += 8 + length
    return count


def _count(data: bytes) -> int:
    if data[:1] == b"\x7e":
        return _hdlc_apdus(data)
    if data[:2] == b"\x00\x01":
        return _wrapper_apdus(data)
    return 0


def count_apdus(path: Path) -> int:
    """DLMS APDUs in ``path``: TCP streams and UDP datagrams that frame as DLMS."""
    segments: dict[tuple[bytes, int, bytes, int], dict[int, bytes]] = defaultdict(dict)
    first: dict[tuple[bytes, int, bytes, int], int] = {}
    total = 0
    for ip in _packets(path):
        l4 = ip.data
        if isinstance(l4, dpkt.udp.UDP):
            total += _count(bytes(l4.data))
        elif isinstance(l4, dpkt.tcp.TCP) and l4.data:
            flow = (ip.src, l4.sport, ip.dst, l4.dport)
            seg = segments[flow]
            rel = (l4.seq - first.setdefault(flow, l4.seq)) % (1 << 32)  # from the first byte seen
            data = bytes(l4.data)
            if len(data) > len(seg.get(rel, b"")):
                seg[rel] = data
    for seg in segments.values():
        stream, edge = bytearray(), 0
        for seq in sorted(seg):
            data = seg[seq]
            if seq + len(data) <= edge:
                continue  # a retransmission
            stream += data[max(0, edge - seq):]
            edge = seq + len(data)
        total += _count(bytes(stream))
    return total
