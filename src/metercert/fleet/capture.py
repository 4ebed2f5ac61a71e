"""Write a small but real pcap of ciphered DLMS traffic (for demos and tests).

Each meter gets one TCP connection on port 4059: handshake, AARQ/AARE carrying
the client's and the meter's system titles, ``requests`` glo-get-request /
glo-get-response pairs protected with suite 0 (authenticated and encrypted), and
RLRQ/RLRE. Frames are cut across two TCP segments, one meter's segments arrive
out of order and another's are retransmitted, so the capture exercises the
ingest's stream reassembly. Meter 0 reuses a counter (an ``ic-reuse`` finding).
The random keys go to a 0600 key file next to the capture so that
``fleet ingest --keys`` can verify the tags.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

import dpkt

from metercert.cosem.acse import AARE, AARQ
from metercert.security import Key, KeySet, SecurityControl, protect, write_key_file
from metercert.transport.wrapper import encode_wrapper

CLIENT_IP = bytes([10, 255, 0, 1])
CLIENT_TITLE = bytes.fromhex("48454E4400000001")
PORT = 4059
GET_REQUEST = bytes.fromhex("C001C100030100010800FF0200")  # get register 1.0.1.8.0.255 value
INITIATE_REQUEST = bytes.fromhex("01000000065F1F0400001E1DFFFF")
INITIATE_RESPONSE = bytes.fromhex("0800065F1F040000101D04000007")


@dataclass(frozen=True)
class SampleCapture:
    pcap: Path
    keys: Path
    apdus: int
    meters: int


def _meter_ip(m: int) -> bytes:
    return bytes([10, (m >> 16) & 255, (m >> 8) & 255, m & 255])


def _mac(ip: bytes) -> bytes:
    return b"\x02\x00" + ip


class _Conn:
    """One TCP connection's two sequence spaces and the packets written for it."""

    def __init__(self, writer: dpkt.pcap.Writer, server_ip: bytes, client_port: int,
                 rng: random.Random) -> None:
        self.w, self.server_ip, self.cport = writer, server_ip, client_port
        self.seq = {True: rng.randrange(1 << 32), False: rng.randrange(1 << 32)}

    def packet(self, ts: float, c2s: bool, flags: int, data: bytes = b"",
               seq: int | None = None) -> None:
        src, dst = (CLIENT_IP, self.server_ip) if c2s else (self.server_ip, CLIENT_IP)
        sport, dport = (self.cport, PORT) if c2s else (PORT, self.cport)
        tcp = dpkt.tcp.TCP(sport=sport, dport=dport, flags=flags,
                           seq=(self.seq[c2s] if seq is None else seq) % (1 << 32),
                           ack=self.seq[not c2s] % (1 << 32), data=data, win=65535)
        ip = dpkt.ip.IP(src=src, dst=dst, p=dpkt.ip.IP_PROTO_TCP, data=tcp, ttl=64)
        ip.len = len(bytes(ip))
        eth = dpkt.ethernet.Ethernet(src=_mac(src), dst=_mac(dst),
                                     type=dpkt.ethernet.ETH_TYPE_IP, data=ip)
        self.w.writepkt(bytes(eth), ts=ts)

    def handshake(self, ts: float) -> None:
        self.packet(ts, True, dpkt.tcp.TH_SYN)
        self.seq[True] += 1
        self.packet(ts + 0.001, False, dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK)
        self.seq[False] += 1
        self.packet(ts + 0.002, True, dpkt.tcp.TH_ACK)

    def send(self, ts: float, c2s: bool, frame: bytes, style: str = "split") -> None:
        cut = max(1, len(frame) // 2)
        a, b = frame[:cut], frame[cut:]
        base = self.seq[c2s]
        push = dpkt.tcp.TH_ACK | dpkt.tcp.TH_PUSH
        if style == "reorder":
            self.packet(ts, c2s, push, b, seq=base + cut)
            self.packet(ts + 0.0005, c2s, push, a, seq=base)
        elif style == "retransmit":
            self.packet(ts, c2s, push, a, seq=base)
            self.packet(ts + 0.0003, c2s, push, a, seq=base)
            self.packet(ts + 0.0005, c2s, push, frame, seq=base)
        else:
            self.packet(ts, c2s, push, a, seq=base)
            self.packet(ts + 0.0005, c2s, push, b, seq=base + cut)
        self.seq[c2s] = base + len(frame)


def write_sample_capture(path: str | Path, *, meters: int = 3, requests: int = 3,
                         seed: int = 1, start: float = 1767571200.0) -> SampleCapture:
    """Write the capture and its key file (``<path>.keys.yaml``)."""
    rng = random.Random(seed)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    keysets: list[KeySet] = []
    apdus = 0
    with open(p, "wb") as fh:
        writer = dpkt.pcap.Writer(fh, linktype=dpkt.pcap.DLT_EN10MB)
        for m in range(meters):
            title = bytes.fromhex("4D4D4D") + m.to_bytes(5, "big")
            guek, ak = Key(os.urandom(16), "GUEK"), Key(os.urandom(16), "AK")
            keysets.append(KeySet(client_system_title=CLIENT_TITLE, server_system_title=title,
                                  guek=guek, ak=ak))
            style = "reorder" if m == 1 else "retransmit" if m == 2 else "split"
            conn = _Conn(writer, _meter_ip(m), 40000 + m, rng)
            ts = start + m * 60.0
            conn.handshake(ts)
            ts += 0.01
            aarq = AARQ(calling_ap_title=CLIENT_TITLE, user_information=INITIATE_REQUEST)
            aare = AARE(responding_ap_title=title, user_information=INITIATE_RESPONSE)
            conn.send(ts, True, encode_wrapper(1, 1, aarq.to_bytes()))
            conn.send(ts + 0.05, False, encode_wrapper(1, 1, aare.to_bytes()))
            apdus += 2
            ic_c, ic_s = rng.randrange(1, 1000), rng.randrange(1, 1000)
            sc = SecurityControl(suite=0, authenticated=True, encrypted=True)
            for r in range(requests):
                ts += 1.0
                counter = ic_c - 1 if (m == 0 and r == 1) else ic_c  # meter 0: reuse once
                req = protect(GET_REQUEST[:-1] + bytes([r]), security_control=sc,
                              system_title=CLIENT_TITLE, invocation_counter=counter,
                              encryption_key=guek, authentication_key=ak)
                resp = protect(bytes.fromhex("C401C100060000") + r.to_bytes(2, "big"),
                               security_control=sc, system_title=title,
                               invocation_counter=ic_s, encryption_key=guek,
                               authentication_key=ak)
                if not (m == 0 and r == 1):
                    ic_c += 1
                ic_s += 1
                conn.send(ts, True, encode_wrapper(1, 1, req), style)
                conn.send(ts + 0.1, False, encode_wrapper(1, 1, resp), style)
                apdus += 2
            conn.send(ts + 1.0, True, encode_wrapper(1, 1, bytes.fromhex("6203800100")))
            conn.send(ts + 1.05, False, encode_wrapper(1, 1, bytes.fromhex("6303800100")))
            apdus += 2
    keys = write_key_file(p.with_name(p.name + ".keys.yaml"), keysets)
    return SampleCapture(p, keys, apdus, meters)
