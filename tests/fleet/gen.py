"""A small pcap generator for fleet-audit edge cases, independent of ``fleet simulate``
and of metercert's own framing and crypto: dpkt for the packet layers, the wrapper and
HDLC framing written here from IEC 62056-47/-46, ciphered APDUs built with
``cryptography``'s AES-GCM per the Green Book rules (nonce = system title || counter;
authenticated data SC || AK, plus the plaintext when not encrypted; 12-byte tag).
"""

from __future__ import annotations

from pathlib import Path

import dpkt
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .independent import _crc16_x25

HE = bytes.fromhex("48454E4400000001")  # the head-end's system title
EK = bytes.fromhex("000102030405060708090A0B0C0D0E0F")
AK = bytes.fromhex("D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF")
EK2 = bytes.fromhex("101112131415161718191A1B1C1D1E1F")  # after a key transfer
GET = bytes.fromhex("C001C100030100010800FF0200")
T0 = 1767571200.0  # 2026-01-05T00:00:00Z


def ip(text: str) -> bytes:
    return bytes(int(x) for x in text.split("."))


def _len(n: int) -> bytes:
    return bytes([n]) if n < 0x80 else bytes([0x82]) + n.to_bytes(2, "big")


def cipher(tag: int, sc: int, title: bytes, ic: int, plain: bytes, ek: bytes = EK,
           ak: bytes = AK, general: bool = False) -> bytes:
    """A glo-/ded- (``tag``) or, with ``general``, a general-glo-ciphering APDU."""
    iv = title + ic.to_bytes(4, "big")
    if sc & 0x30 == 0x30:
        ct = AESGCM(ek).encrypt(iv, plain, bytes([sc]) + ak)
        body = ct[:-16] + ct[-16:][:12]
    elif sc & 0x30 == 0x10:
        body = plain + AESGCM(ek).encrypt(iv, b"", bytes([sc]) + ak + plain)[:12]
    elif sc & 0x30 == 0x20:
        body = AESGCM(ek).encrypt(iv, plain, b"")[:-16]
    else:
        body = plain
    content = bytes([sc]) + ic.to_bytes(4, "big") + body
    if general:
        return b"\xdb\x08" + title + _len(len(content)) + content
    return bytes([tag]) + _len(len(content)) + content


def aarq(title: bytes, info: bytes = bytes.fromhex("01000000065F1F0400001E1DFFFF")) -> bytes:
    body = (bytes.fromhex("A109060760857405080103") + b"\xa6\x0a\x04\x08" + title
            + b"\xbe" + _len(len(info) + 2) + b"\x04" + _len(len(info)) + info)
    return b"\x60" + _len(len(body)) + body


def aare(title: bytes, info: bytes = bytes.fromhex("0800065F1F040000101D04000007")) -> bytes:
    body = (bytes.fromhex("A109060760857405080103") + bytes.fromhex("A203020100")
            + bytes.fromhex("A305A103020100") + b"\xa4\x0a\x04\x08" + title
            + b"\xbe" + _len(len(info) + 2) + b"\x04" + _len(len(info)) + info)
    return b"\x61" + _len(len(body)) + body


RLRQ, RLRE = bytes.fromhex("6203800100"), bytes.fromhex("6303800100")


def wrapper(src: int, dst: int, apdu: bytes) -> bytes:
    return b"\x00\x01" + src.to_bytes(2, "big") + dst.to_bytes(2, "big") \
        + len(apdu).to_bytes(2, "big") + apdu


def hdlc(dest: bytes, src: bytes, control: int, info: bytes = b"") -> bytes:
    """One HDLC frame; ``dest``/``src`` are encoded addresses, ``info`` with its LLC."""
    length = 2 + len(dest) + len(src) + 1 + 2 + (len(info) + 2 if info else 0)
    head = bytes([0xA0 | (length >> 8), length & 0xFF]) + dest + src + bytes([control])
    body = head + _crc16_x25(head).to_bytes(2, "little")
    if info:
        body += info + _crc16_x25(body + info).to_bytes(2, "little")
    return b"\x7e" + body + b"\x7e"


def server_addr(upper: int, lower: int) -> bytes:
    return bytes([upper << 1, (lower << 1) | 1])


def client_addr(sap: int) -> bytes:
    return bytes([(sap << 1) | 1])


class Pcap:
    """An Ethernet pcap being written."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = open(path, "wb")  # noqa: SIM115 - closed by close()
        self.w = dpkt.pcap.Writer(self.fh)
        self.path = path

    def raw(self, ts: float, src: bytes, dst: bytes, l4: dpkt.Packet, proto: int) -> None:
        pkt = dpkt.ip.IP(src=src, dst=dst, p=proto, data=l4, ttl=64, id=int(ts * 1000) & 0xFFFF)
        pkt.len = len(bytes(pkt))
        self.w.writepkt(bytes(dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6,
                                                     type=dpkt.ethernet.ETH_TYPE_IP,
                                                     data=pkt)), ts=ts)

    def udp(self, ts: float, src: tuple[str, int], dst: tuple[str, int], data: bytes) -> None:
        u = dpkt.udp.UDP(sport=src[1], dport=dst[1], data=data)
        u.ulen = len(bytes(u))
        self.raw(ts, ip(src[0]), ip(dst[0]), u, dpkt.ip.IP_PROTO_UDP)

    def close(self) -> None:
        self.fh.close()


class Tcp:
    """One TCP connection; the ``opener`` is the side that sent the SYN."""

    def __init__(self, cap: Pcap, opener: tuple[str, int], other: tuple[str, int],
                 isn: tuple[int, int] = (1000, 90000)) -> None:
        self.cap, self.a, self.b = cap, opener, other
        self.seq = {True: isn[0], False: isn[1]}

    def packet(self, ts: float, from_opener: bool, flags: int, data: bytes = b"",
               seq: int | None = None) -> None:
        src, dst = (self.a, self.b) if from_opener else (self.b, self.a)
        t = dpkt.tcp.TCP(sport=src[1], dport=dst[1], flags=flags, win=8192, data=data,
                         seq=(self.seq[from_opener] if seq is None else seq) % (1 << 32),
                         ack=self.seq[not from_opener] % (1 << 32))
        self.cap.raw(ts, ip(src[0]), ip(dst[0]), t, dpkt.ip.IP_PROTO_TCP)

    def open(self, ts: float) -> None:
        self.packet(ts, True, dpkt.tcp.TH_SYN)
        self.seq[True] += 1
        self.packet(ts, False, dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK)
        self.seq[False] += 1

    def send(self, ts: float, from_opener: bool, data: bytes, *, drop: bool = False) -> None:
        if not drop:
            self.packet(ts, from_opener, dpkt.tcp.TH_ACK | dpkt.tcp.TH_PUSH, data)
        self.seq[from_opener] += len(data)

    def close(self, ts: float) -> None:
        self.packet(ts, True, dpkt.tcp.TH_FIN | dpkt.tcp.TH_ACK)
        self.packet(ts, False, dpkt.tcp.TH_FIN | dpkt.tcp.TH_ACK)


class Session:
    """A client (head-end) talking to a meter over one wrapper TCP connection."""

    def __init__(self, cap: Pcap, client: tuple[str, int], meter: tuple[str, int], *,
                 client_sap: int = 1, server_sap: int = 1, isn: tuple[int, int] = (1000, 90000),
                 client_title: bytes = HE, meter_title: bytes | None = None) -> None:
        self.tcp = Tcp(cap, client, meter, isn)
        self.csap, self.ssap = client_sap, server_sap
        self.ct, self.mt = client_title, meter_title

    def open(self, ts: float, *, aarq_info: bytes | None = None) -> None:
        self.tcp.open(ts)
        self.req(ts + 0.01, aarq(self.ct) if aarq_info is None else aarq(self.ct, aarq_info))
        if self.mt is not None:
            self.resp(ts + 0.02, aare(self.mt))

    def req(self, ts: float, apdu: bytes, **kw: bool) -> None:
        self.tcp.send(ts, True, wrapper(self.csap, self.ssap, apdu), **kw)

    def resp(self, ts: float, apdu: bytes, **kw: bool) -> None:
        self.tcp.send(ts, False, wrapper(self.ssap, self.csap, apdu), **kw)

    def reads(self, ts: float, ics: tuple[int, int], n: int, *, sc: int = 0x30,
              ek: bytes = EK, step: float = 1.0, tag: tuple[int, int] = (0xC8, 0xCC)) -> float:
        """``n`` ciphered get request/response pairs from counters ``ics`` (c2s, s2c)."""
        assert self.mt is not None
        for i in range(n):
            t = ts + i * step
            self.req(t, cipher(tag[0], sc, self.ct, ics[0] + i, GET[:-1] + bytes([i & 0xFF]),
                               ek))
            self.resp(t + 0.1, cipher(tag[1], sc, self.mt, ics[1] + i,
                                      bytes.fromhex("C401C1000600") + bytes([i & 0xFF]) * 4,
                                      ek))
        return ts + n * step

    def close(self, ts: float) -> None:
        self.req(ts, RLRQ)
        self.resp(ts + 0.01, RLRE)
        self.tcp.close(ts + 0.02)


def key_file(path: Path, entries: list[dict[str, str]]) -> Path:
    lines = ["meters:"]
    for e in entries:
        lines.append("  - " + "\n    ".join(f"{k}: {v}" for k, v in e.items()))
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path
