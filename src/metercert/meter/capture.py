"""Evidence capture: the reference meter writes its own traffic to pcap.

``metercert meter serve --capture DIR`` records every wrapper frame each meter
receives and sends, as TCP segments between the real loopback addresses and ports
(with the handshake and sequence numbers a capture tool would show), one file per
process start. The fleet audit ingests these files like any other capture, which
is how a power-cycled meter's counter reuse is shown end to end.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path
from typing import BinaryIO

import dpkt

from metercert.transport.wrapper import encode_wrapper

_SYN, _ACK, _PSH = dpkt.tcp.TH_SYN, dpkt.tcp.TH_ACK, dpkt.tcp.TH_PUSH


class PcapRecorder:
    """A pcap file shared by all connections of one meter process (thread-safe)."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"meter-{os.getpid()}-{time.time_ns()}.pcap"
        self._fh: BinaryIO = open(self.path, "wb")  # noqa: SIM115 - closed in close()
        self._writer = dpkt.pcap.Writer(self._fh, linktype=dpkt.pcap.DLT_RAW)
        self._lock = threading.Lock()

    def connection(self, client: tuple[str, int], server: tuple[str, int]) -> ConnectionRecorder:
        return ConnectionRecorder(self, client, server)

    def write(self, src: tuple[str, int], dst: tuple[str, int], seq: int, ack: int, flags: int,
              payload: bytes) -> None:
        tcp = dpkt.tcp.TCP(sport=src[1], dport=dst[1], seq=seq & 0xFFFFFFFF,
                           ack=ack & 0xFFFFFFFF, flags=flags, win=65535, data=payload)
        ip = dpkt.ip.IP(src=socket.inet_aton(src[0]), dst=socket.inet_aton(dst[0]),
                        p=dpkt.ip.IP_PROTO_TCP, data=tcp, ttl=64)
        ip.len = len(bytes(ip))
        with self._lock:
            self._writer.writepkt(bytes(ip), ts=time.time())
            self._fh.flush()

    def close(self) -> None:
        with self._lock:
            self._fh.close()


class ConnectionRecorder:
    """One TCP connection: SYN/SYN-ACK/ACK, then each frame as one segment."""

    def __init__(self, pcap: PcapRecorder, client: tuple[str, int], server: tuple[str, int]) -> None:
        self.pcap, self.client, self.server = pcap, client, server
        self.c_seq, self.s_seq = int.from_bytes(os.urandom(4), "big"), int.from_bytes(os.urandom(4), "big")
        pcap.write(client, server, self.c_seq, 0, _SYN, b"")
        pcap.write(server, client, self.s_seq, self.c_seq + 1, _SYN | _ACK, b"")
        self.c_seq += 1
        self.s_seq += 1
        pcap.write(client, server, self.c_seq, self.s_seq, _ACK, b"")

    def from_client(self, client_wport: int, server_wport: int, apdu: bytes) -> None:
        data = encode_wrapper(client_wport, server_wport, apdu)
        self.pcap.write(self.client, self.server, self.c_seq, self.s_seq, _ACK | _PSH, data)
        self.c_seq += len(data)

    def from_meter(self, server_wport: int, client_wport: int, apdu: bytes) -> None:
        data = encode_wrapper(server_wport, client_wport, apdu)
        self.pcap.write(self.server, self.client, self.s_seq, self.c_seq, _ACK | _PSH, data)
        self.s_seq += len(data)
