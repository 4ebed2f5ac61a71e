"""Read DLMS APDUs out of pcap / pcapng captures.

Supported: DLMS over the IEC 62056-47 TCP and UDP wrapper and HDLC (IEC 62056-46)
carried over TCP, on Ethernet, Linux cooked, loopback or raw-IP captures, IPv4 and
IPv6. The side that uses the DLMS port (4059 unless told otherwise) is the meter.

TCP streams are reassembled per direction by sequence number: retransmitted and
overlapping bytes are dropped, out-of-order segments wait until the gap is filled,
and a new SYN on the same address pair starts a new stream. An APDU's timestamp is
that of the packet that completed it. Each stream's framing (wrapper or HDLC) is
told from its first byte (0x7E opens an HDLC frame).

Frames that do not decode are counted in :class:`CaptureStats`, never fatal: a
capture of real traffic always has some.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import dpkt

from metercert.errors import InputFileError
from metercert.transport.errors import TransportError
from metercert.transport.hdlc_frame import FrameKind, HdlcFrameDecoder
from metercert.transport.wrapper import WrapperDecoder, decode_datagram

DEFAULT_PORT = 4059
_PCAP_MAGICS = {b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1",
                b"\xa1\xb2\x3c\x4d"}
_PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
_LLC_HEADERS = (b"\xe6\xe6\x00", b"\xe6\xe7\x00")
_SEQ_MOD = 1 << 32
_DLT_LINUX_SLL2 = 276


@dataclass(frozen=True)
class WireApdu:
    """One APDU as it crossed the wire, with where and when."""

    ts: datetime
    direction: str  # c2s | s2c
    client_addr: str
    server_addr: str
    client_sap: int | None
    server_sap: int | None
    link: str  # wrapper | hdlc
    stream: str
    apdu: bytes = field(repr=False)


@dataclass
class CaptureStats:
    packets: int = 0
    dlms_packets: int = 0
    apdus: int = 0
    bad_frames: int = 0
    streams: int = 0
    not_ip: int = 0


def _addr(ip: bytes, port: int) -> str:
    if len(ip) == 16:
        return f"[{socket.inet_ntop(socket.AF_INET6, ip)}]:{port}"
    return f"{socket.inet_ntop(socket.AF_INET, ip)}:{port}"


class _Framer:
    """Cuts one direction's byte stream into APDUs (wrapper or HDLC, auto-detected)."""

    def __init__(self) -> None:
        self.link: str | None = None
        self._wrapper: WrapperDecoder | None = None
        self._hdlc: HdlcFrameDecoder | None = None
        self._segments: bytearray | None = None
        self.failed = False

    def feed(self, data: bytes, stats: CaptureStats) -> Iterator[tuple[bytes, int, int]]:
        """Yield ``(apdu, source_sap, dest_sap)`` for every APDU completed by ``data``."""
        if self.failed or not data:
            return
        if self.link is None:
            self.link = "hdlc" if data[0] == 0x7E else "wrapper"
            if self.link == "hdlc":
                self._hdlc = HdlcFrameDecoder()
            else:
                self._wrapper = WrapperDecoder()
        if self._wrapper is not None:
            try:
                self._wrapper.feed(data)
                for wframe in self._wrapper:
                    yield wframe.payload, wframe.source_wport, wframe.dest_wport
            except TransportError:
                stats.bad_frames += 1
                self.failed = True  # framing lost for the rest of this stream
            return
        assert self._hdlc is not None
        self._hdlc.feed(data)
        while True:
            try:
                frame = self._hdlc.next_frame()
            except TransportError:
                stats.bad_frames += 1
                continue
            if frame is None:
                return
            if frame.kind is not FrameKind.I:
                continue
            info = frame.info
            if self._segments is None:
                for llc in _LLC_HEADERS:
                    if info.startswith(llc):
                        info = info[len(llc):]
                        break
                self._segments = bytearray()
            self._segments += info
            if frame.segmented:
                continue
            apdu, self._segments = bytes(self._segments), None
            if apdu:
                yield apdu, frame.source.upper, frame.dest.upper


class _HalfStream:
    """One direction of a TCP connection: sequence-ordered bytes into a framer."""

    def __init__(self) -> None:
        self.next_seq: int | None = None
        self.pending: dict[int, bytes] = {}
        self.framer = _Framer()

    def syn(self, seq: int) -> None:
        self.next_seq = (seq + 1) % _SEQ_MOD

    def segment(self, seq: int, data: bytes) -> list[bytes]:
        """Accept one segment; return the bytes that are now in order."""
        if not data:
            return []
        if self.next_seq is None:
            self.next_seq = seq
        ahead = (seq - self.next_seq) % _SEQ_MOD
        if ahead >= _SEQ_MOD // 2:  # starts before what we have: trim the old part
            behind = _SEQ_MOD - ahead
            if behind >= len(data):
                return []
            data, seq = data[behind:], self.next_seq
            ahead = 0
        if ahead:
            if len(self.pending) < 4096:
                old = self.pending.get(seq)
                if old is None or len(old) < len(data):
                    self.pending[seq] = data
            return []
        out = [data]
        self.next_seq = (seq + len(data)) % _SEQ_MOD
        while self.pending:
            nxt = self.pending.pop(self.next_seq, None)
            if nxt is None:
                # a pending segment may overlap the new edge
                for s in list(self.pending):
                    back = (self.next_seq - s) % _SEQ_MOD
                    if back < _SEQ_MOD // 2:
                        seg = self.pending.pop(s)
                        if back < len(seg):
                            nxt = seg[back:]
                            break
                if nxt is None:
                    break
            out.append(nxt)
            self.next_seq = (self.next_seq + len(nxt)) % _SEQ_MOD
        return out


def open_capture(path: str | Path) -> tuple[Any, BinaryIO]:
    """A dpkt reader for a pcap or pcapng file; anything else is an input error."""
    p = Path(path)
    try:
        fh: BinaryIO = open(p, "rb")  # noqa: SIM115 - closed by the caller
    except FileNotFoundError:
        raise InputFileError(f"capture {p}: no such file") from None
    except IsADirectoryError:
        raise InputFileError(f"capture {p}: is a directory") from None
    except OSError as exc:
        raise InputFileError(f"capture {p}: {exc.strerror}") from None
    magic = fh.read(4)
    fh.seek(0)
    try:
        if magic in _PCAP_MAGICS:
            return dpkt.pcap.Reader(fh), fh
        if magic == _PCAPNG_MAGIC:
            return dpkt.pcapng.Reader(fh), fh
    except (ValueError, dpkt.dpkt.Error) as exc:
        fh.close()
        raise InputFileError(f"capture {p}: damaged header ({exc})") from None
    fh.close()
    raise InputFileError(f"capture {p}: not a pcap or pcapng file")


def _ip_layer(linktype: int, buf: bytes) -> Any:
    if linktype == dpkt.pcap.DLT_EN10MB:
        frame = dpkt.ethernet.Ethernet(buf)
        return frame.data
    if linktype in (dpkt.pcap.DLT_RAW, 101, 12, 14):
        version = buf[0] >> 4 if buf else 0
        return dpkt.ip6.IP6(buf) if version == 6 else dpkt.ip.IP(buf)
    if linktype == dpkt.pcap.DLT_LINUX_SLL:
        return dpkt.sll.SLL(buf).data
    if linktype == _DLT_LINUX_SLL2:  # tcpdump -i any on recent Linux
        return dpkt.sll2.SLL2(buf).data
    if linktype in (dpkt.pcap.DLT_NULL, dpkt.pcap.DLT_LOOP):
        return dpkt.loopback.Loopback(buf).data
    return None


def read_apdus(path: str | Path, *, port: int = DEFAULT_PORT,
               stats: CaptureStats | None = None) -> Iterator[WireApdu]:
    """Every DLMS APDU in a capture, in capture order."""
    st = stats if stats is not None else CaptureStats()
    reader, fh = open_capture(path)
    streams: dict[tuple[bytes, int, bytes, int], tuple[str, _HalfStream]] = {}
    generation: dict[tuple[bytes, int, bytes, int], int] = {}
    try:
        linktype = reader.datalink()
        records = iter(reader)
        while True:
            try:
                ts, buf = next(records)
            except StopIteration:
                break
            except (dpkt.dpkt.Error, ValueError, EOFError, OSError):
                st.bad_frames += 1  # a truncated tail: keep what we have
                break
            st.packets += 1
            try:
                ip = _ip_layer(linktype, buf)
            except (dpkt.dpkt.Error, ValueError, IndexError):
                st.not_ip += 1
                continue
            if not isinstance(ip, (dpkt.ip.IP, dpkt.ip6.IP6)):
                st.not_ip += 1
                continue
            l4 = ip.data
            if not isinstance(l4, (dpkt.tcp.TCP, dpkt.udp.UDP)):
                continue
            if port not in (l4.sport, l4.dport):
                continue
            st.dlms_packets += 1
            when = datetime.fromtimestamp(float(ts), UTC)
            c2s = l4.dport == port
            if c2s:
                client, server = _addr(ip.src, l4.sport), _addr(ip.dst, l4.dport)
            else:
                client, server = _addr(ip.dst, l4.dport), _addr(ip.src, l4.sport)
            direction = "c2s" if c2s else "s2c"
            if isinstance(l4, dpkt.udp.UDP):
                try:
                    frame = decode_datagram(bytes(l4.data))
                except TransportError:
                    st.bad_frames += 1
                    continue
                if not frame.payload:  # an empty frame carries no APDU
                    st.bad_frames += 1
                    continue
                st.apdus += 1
                yield WireApdu(when, direction, client, server,
                               frame.source_wport if c2s else frame.dest_wport,
                               frame.dest_wport if c2s else frame.source_wport,
                               "wrapper", f"udp {client}-{server}", frame.payload)
                continue
            key = (ip.src, l4.sport, ip.dst, l4.dport)
            ckey = key if c2s else (ip.dst, l4.dport, ip.src, l4.sport)
            flags = l4.flags
            if flags & dpkt.tcp.TH_SYN:
                if c2s and not flags & dpkt.tcp.TH_ACK:
                    generation[ckey] = generation.get(ckey, 0) + 1
                    st.streams += 1
                half = _HalfStream()
                half.syn(l4.seq)
                streams[key] = (f"tcp {client}-{server}#{generation.get(ckey, 0)}", half)
            entry = streams.get(key)
            if entry is None:  # capture began mid-connection
                entry = (f"tcp {client}-{server}#{generation.get(ckey, 0)}", _HalfStream())
                streams[key] = entry
            name, half = entry
            for chunk in half.segment(l4.seq, bytes(l4.data)):
                for apdu, src_sap, dst_sap in half.framer.feed(chunk, st):
                    if not apdu:  # an empty frame carries no APDU
                        st.bad_frames += 1
                        continue
                    st.apdus += 1
                    yield WireApdu(when, direction, client, server,
                                   src_sap if c2s else dst_sap, dst_sap if c2s else src_sap,
                                   half.framer.link or "wrapper", name, apdu)
    finally:
        fh.close()

