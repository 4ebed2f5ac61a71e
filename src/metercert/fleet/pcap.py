"""Read DLMS APDUs out of pcap / pcapng captures.

Supported: DLMS over the IEC 62056-47 TCP and UDP wrapper and HDLC (IEC 62056-46)
carried over TCP or UDP, on Ethernet, Linux cooked, loopback or raw-IP captures,
IPv4 and IPv6. Without ``ports`` every TCP stream and UDP datagram is tried and kept
when it frames as DLMS (18 of the 21 public captures use ports other than 4059).

Which side is the meter is told by what it sends, not by the port: the side that
sends an AARQ is the client; the sender of an AARE, a data-notification or an
event-notification is the meter (meters that push open the TCP connection
themselves, and UDP pushes run 4059 <-> 4059). Only when the first APDU says
nothing is the port used (the side on a DLMS port is the meter).

TCP streams are reassembled per direction by sequence number: retransmitted and
overlapping bytes are dropped, out-of-order segments wait until the gap is filled.
A gap that is never filled (a segment the probe missed) is skipped after enough
later data or at the end of the stream, and the framer resynchronises on the next
frame boundary; so does a capture that begins mid-frame. One :class:`CaptureReader`
reads all the files of one ingest, so a connection continued in the next rotated
file keeps its state, and the same packets seen in two files (two probes on one
link, a file given twice) are read once. An APDU's timestamp is that of the packet
that completed it, never earlier than the previous APDU of its stream.
"""

from __future__ import annotations

import functools
import socket
import struct
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import dpkt

from metercert.errors import InputFileError
from metercert.transport.errors import TransportError
from metercert.transport.hdlc_frame import FrameKind, HdlcFrameDecoder

DEFAULT_PORT = 4059
DLMS_PORTS = frozenset({4059, 4060, 4061, 4062, 4063, 4064})
_PCAP_MAGICS = {b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1",
                b"\xa1\xb2\x3c\x4d"}
_PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
_LLC_HEADERS = (b"\xe6\xe6\x00", b"\xe6\xe7\x00")
_SEQ_MOD = 1 << 32
_DLT_LINUX_SLL2 = 276
_WRAPPER_HEADER = struct.Struct(">HHHH")
# First bytes of xDLMS / ACSE APDUs (IEC 62056-5-3 tags): used to accept a frame found
# by resynchronisation and to tell DLMS from other traffic on an unknown port.
APDU_TAGS = frozenset({0x01, 0x05, 0x06, 0x08, 0x0C, 0x0D, 0x0E, 0x0F, 0x21, 0x22, 0x28,
                       0x2E, 0x60, 0x61, 0x62, 0x63, *range(0xC0, 0xE0)})
_CLIENT_TAGS = frozenset({0x60, 0x62, 0xC0, 0xC1, 0xC3, 0xC8, 0xC9, 0xCB, 0xD0, 0xD1, 0xD3})
_METER_TAGS = frozenset({0x61, 0x63, 0x0F, 0xC2, 0xC4, 0xC5, 0xC7, 0xCA, 0xCC, 0xCD, 0xCF,
                         0xD2, 0xD4, 0xD5, 0xD7, 0xD8})
_new_tuple = tuple.__new__  # a WireApdu from its 11 fields without the keyword handling
_GAP_SEGMENTS = 64  # later segments held before a never-filled gap is skipped
_DEDUP_WINDOW = 1 << 20  # UDP datagram digests remembered for cross-file duplicates


class WireApdu(NamedTuple):
    """One APDU as it crossed the wire, with where and when.

    ``ts`` is microseconds since 1970 (UTC). ``endpoint`` is the meter side's network
    path (``ip:port`` plus the HDLC server address or wrapper wPort): the meter's
    identity when its system title is unknown. (A named tuple: one per APDU.)
    """

    ts: int
    direction: str  # c2s | s2c
    client_addr: str
    server_addr: str
    client_sap: int | None
    server_sap: int | None
    link: str  # wrapper | hdlc
    stream: str
    apdu: bytes
    endpoint: str = ""
    source: str = ""


@dataclass
class CaptureStats:
    packets: int = 0
    dlms_packets: int = 0
    apdus: int = 0
    bad_frames: int = 0
    streams: int = 0
    not_ip: int = 0
    duplicate_packets: int = 0
    gaps: int = 0
    resyncs: int = 0


@functools.lru_cache(maxsize=1 << 16)
def _addr(ip: bytes, port: int) -> str:
    if len(ip) == 16:
        return f"[{socket.inet_ntop(socket.AF_INET6, ip)}]:{port}"
    return f"{socket.inet_ntop(socket.AF_INET, ip)}:{port}"


class _Framer:
    """Cuts one direction's byte stream into APDUs (wrapper or HDLC, auto-detected).

    After a gap (``resync``) or on bytes that do not frame, the wrapper side looks for
    the next plausible header (version 1 and a known APDU tag after it); HDLC skips to
    the next flag. Yields ``(apdu, source address, dest address)``; the addresses are
    wPorts (int) or :class:`HdlcAddress` values.
    """

    def __init__(self, *, strict: bool) -> None:
        self.link: str | None = None
        self._buf = bytearray()
        self._hdlc: HdlcFrameDecoder | None = None
        self._segments: bytearray | None = None
        self._hunting = not strict  # a stream seen from its SYN must frame from byte 0
        self.frames = 0
        self.dead = False  # not DLMS: a stream from its SYN whose first bytes never framed

    def resync(self) -> None:
        self._buf.clear()
        self._segments = None
        self._hunting = True
        if self._hdlc is not None:
            self._hdlc = HdlcFrameDecoder()

    def _hunt_link(self, data: bytes) -> bytes:
        """Mid-stream start: begin at an HDLC opening flag (0x7E then a type-3 format
        byte) if one comes before anything that looks like a wrapper header."""
        pending = bytes(self._buf) + data
        self._buf.clear()
        flag = next((i for i in range(len(pending) - 1)
                     if pending[i] == 0x7E and pending[i + 1] & 0xF0 == 0xA0), -1)
        wrap = pending.find(b"\x00\x01")
        if flag >= 0 and (wrap < 0 or flag < wrap):
            return pending[flag:]
        if wrap < 0:
            self._buf += pending[-1:]
            return b""
        self.link = "wrapper"
        return pending

    def feed(self, data: bytes, stats: CaptureStats) -> Iterator[tuple[bytes, Any, Any]]:
        if self.dead or not data:
            return
        if self.link is None and self._hunting and data[0] != 0x7E:
            data = self._hunt_link(data)
            if not data:
                return
        if self.link is None:
            if data[0] == 0x7E:
                self.link = "hdlc"
                self._hdlc = HdlcFrameDecoder()
            elif data[:2] == b"\x00\x01" or self._hunting:
                self.link = "wrapper"
            else:
                self.dead = True
                return
        if self._hdlc is not None:
            yield from self._feed_hdlc(data, stats)
        else:
            yield from self._feed_wrapper(data, stats)

    def _feed_wrapper(self, data: bytes, stats: CaptureStats) -> Iterator[tuple[bytes, Any, Any]]:
        buf = self._buf
        buf += data
        pos = 0
        n = len(buf)
        while n - pos >= 8:
            version, src, dst, length = _WRAPPER_HEADER.unpack_from(buf, pos)
            if version == 1 and length == 0:
                stats.bad_frames += 1  # a frame that carries no APDU (a boundary, too)
                self.frames += 1
                self._hunting = False
                pos += 8
                continue
            # in step, the length field is trusted; hunting for a boundary, the bytes
            # after the header must also start a known APDU
            plausible = version == 1 and length > 0 and (not self._hunting or (
                length <= 8192 and (n - pos == 8 or buf[pos + 8] in APDU_TAGS)))
            if not plausible:
                if self.frames == 0 and not self._hunting:
                    self.dead = True
                    buf.clear()
                    return
                if not self._hunting:
                    stats.bad_frames += 1
                    self._hunting = True
                nxt = buf.find(b"\x00\x01", pos + 1)
                if nxt < 0:
                    pos = max(pos, n - 1)
                    break
                pos = nxt
                continue
            if n - pos < 8 + length:
                break
            if self._hunting:
                stats.resyncs += 1 if self.frames else 0
                self._hunting = False
            self.frames += 1
            yield bytes(buf[pos + 8:pos + 8 + length]), src, dst
            pos += 8 + length
        del buf[:pos]

    def _feed_hdlc(self, data: bytes, stats: CaptureStats) -> Iterator[tuple[bytes, Any, Any]]:
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
            self.frames += 1
            self._hunting = False
            if frame.kind is not FrameKind.I and frame.kind is not FrameKind.UI:
                continue
            info = frame.info
            if not info:
                continue
            if self._segments is None:
                for llc in _LLC_HEADERS:
                    if info.startswith(llc):
                        info = info[len(llc):]
                        break
                if frame.kind is FrameKind.UI and not frame.segmented:
                    if info:
                        yield bytes(info), frame.source, frame.dest
                    continue
                self._segments = bytearray()
            self._segments += info
            if frame.segmented:
                continue
            apdu, self._segments = bytes(self._segments), None
            if apdu:
                yield apdu, frame.source, frame.dest


class _HalfStream:
    """One direction of a TCP connection: sequence-ordered bytes into a framer."""

    def __init__(self, *, strict: bool) -> None:
        self.isn: int | None = None
        self.next_seq: int | None = None
        self.pending: dict[int, bytes] = {}
        self.framer = _Framer(strict=strict)
        self.last_ts: int | None = None
        self.opened = False  # this side sent the first SYN (it is the TCP client)

    def syn(self, seq: int) -> None:
        self.isn = seq
        self.next_seq = (seq + 1) % _SEQ_MOD

    def segment(self, seq: int, data: bytes, stats: CaptureStats) -> list[bytes | None]:
        """Accept one segment; return the bytes now in order (``None`` marks a skipped gap)."""
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
            old = self.pending.get(seq)
            if old is None or len(old) < len(data):
                self.pending[seq] = data
            if len(self.pending) >= _GAP_SEGMENTS:
                return self.skip_gap(stats)
            return []
        out: list[bytes | None] = [data]
        self.next_seq = (seq + len(data)) % _SEQ_MOD
        out += self._drain()
        return out

    def _drain(self) -> list[bytes | None]:
        out: list[bytes | None] = []
        while self.pending and self.next_seq is not None:
            nxt = self.pending.pop(self.next_seq, None)
            if nxt is None:
                for s in list(self.pending):  # a pending segment may overlap the new edge
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

    def skip_gap(self, stats: CaptureStats) -> list[bytes | None]:
        """Give up on the missing bytes: continue from the nearest held segment."""
        if not self.pending or self.next_seq is None:
            return []
        base = self.next_seq
        first = min(self.pending, key=lambda s: (s - base) % _SEQ_MOD)
        stats.gaps += 1
        self.next_seq = first
        return [None, *self._drain()]


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


_SYN, _ACK, _FIN, _RST = 0x02, 0x10, 0x01, 0x04
_SYN_FIN_RST = _SYN | _FIN | _RST
_REC = struct.Struct("<IIII")
_REC_BE = struct.Struct(">IIII")
_TCP_HEAD = struct.Struct(">HHI")
_IP4 = struct.Struct(">BxHHHxB2x4s4s")  # version/IHL, length, id, fragment, protocol, addresses
_TCP = struct.Struct(">HHI4xBB")  # ports, sequence number, data offset, flags
_ETHER_SKIP = {0x8100: 4, 0x88A8: 4}  # VLAN tags before the real EtherType
Packet = tuple[int, bytes, bytes, int, int, int, int, int, bytes]


def _classic_records(fh: BinaryIO, st: CaptureStats) -> Iterator[tuple[int, bytes]]:
    """(microseconds, frame) of a classic pcap, read in large blocks (no per-packet
    objects: the fast path of the ingest)."""
    fh.seek(0)
    head = fh.read(24)
    magic = head[:4]
    rec = _REC if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else _REC_BE
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    buf = b""
    pos = 0
    while True:
        if len(buf) - pos < 16:
            more = fh.read(1 << 22)
            buf = buf[pos:] + more
            pos = 0
            if len(buf) < 16:
                if buf:
                    st.bad_frames += 1  # a truncated tail: keep what we have
                return
        sec, frac, incl, _orig = rec.unpack_from(buf, pos)
        end = pos + 16 + incl
        if end > len(buf):
            more = fh.read(max(1 << 22, incl + 16))
            if not more:
                st.bad_frames += 1
                return
            buf = buf[pos:] + more
            pos = 0
            continue
        yield sec * 1_000_000 + (frac // 1000 if nano else frac), buf[pos + 16:end]
        pos = end


def _pcapng_records(reader: Any, st: CaptureStats) -> Iterator[tuple[int, bytes]]:
    records = iter(reader)
    while True:
        try:
            ts, buf = next(records)
        except StopIteration:
            return
        except (dpkt.dpkt.Error, ValueError, EOFError, OSError, struct.error):
            st.bad_frames += 1  # a truncated tail: keep what we have
            return
        yield round(float(ts) * 1_000_000), buf


def _parse(linktype: int, buf: bytes) -> Packet | None:
    """(protocol, src ip, dst ip, sport, dport, seq, flags, ip id, payload) of a TCP or
    UDP packet over IPv4/IPv6; protocol 0 for other IP traffic; None if not IP."""
    if linktype == 1 and buf[12:14] == b"\x08\x00":
        # the common case, TCP in unfragmented IPv4 on Ethernet, in two unpacks; anything
        # short or else takes the general path below
        try:
            vihl, total, ipid, frag, proto, src, dst = _IP4.unpack_from(buf, 14)
            if proto == 6 and not frag & 0x3FFF:
                l4 = 14 + (vihl & 0x0F) * 4
                sport, dport, seq, doff, flags = _TCP.unpack_from(buf, l4)
                return (6, src, dst, sport, dport, seq, flags, ipid,
                        buf[l4 + (doff >> 4) * 4:14 + total if total else len(buf)])
        except struct.error:
            pass
    try:
        if linktype == 1:  # Ethernet
            etype, off = int.from_bytes(buf[12:14], "big"), 14
            while etype in _ETHER_SKIP:
                etype, off = int.from_bytes(buf[off + 2:off + 4], "big"), off + 4
        elif linktype in (101, 12, 14):  # raw IP
            etype, off = (0x86DD if buf[0] >> 4 == 6 else 0x0800), 0
        elif linktype == 113:  # Linux cooked
            etype, off = int.from_bytes(buf[14:16], "big"), 16
        elif linktype == _DLT_LINUX_SLL2:
            etype, off = int.from_bytes(buf[0:2], "big"), 20
        elif linktype in (0, 108):  # BSD loopback: address family in host order
            fam = int.from_bytes(buf[0:4], "little")
            fam = fam if fam < 0x10000 else int.from_bytes(buf[0:4], "big")
            etype, off = (0x0800 if fam == 2 else 0x86DD if fam in (10, 24, 28, 30) else 0), 4
        else:
            return None
        if etype == 0x0800:
            ihl = (buf[off] & 0x0F) * 4
            total = int.from_bytes(buf[off + 2:off + 4], "big")
            proto = buf[off + 9]
            src, dst = buf[off + 12:off + 16], buf[off + 16:off + 20]
            ipid = int.from_bytes(buf[off + 4:off + 6], "big")
            if int.from_bytes(buf[off + 6:off + 8], "big") & 0x3FFF:
                return (0, src, dst, 0, 0, 0, 0, 0, b"")  # a fragment: not reassembled
            l4 = off + ihl
            stop = off + total if total else len(buf)
        elif etype == 0x86DD:
            proto = buf[off + 6]
            src, dst = buf[off + 8:off + 24], buf[off + 24:off + 40]
            ipid = 0
            l4 = off + 40
            stop = l4 + int.from_bytes(buf[off + 4:off + 6], "big")
        else:
            return None
        if proto == 6:
            sport, dport, seq = _TCP_HEAD.unpack_from(buf, l4)
            doff = (buf[l4 + 12] >> 4) * 4
            return (6, src, dst, sport, dport, seq, buf[l4 + 13], ipid, buf[l4 + doff:stop])
        if proto == 17:
            sport, dport = int.from_bytes(buf[l4:l4 + 2], "big"), int.from_bytes(
                buf[l4 + 2:l4 + 4], "big")
            ulen = int.from_bytes(buf[l4 + 4:l4 + 6], "big")
            return (17, src, dst, sport, dport, 0, 0, ipid, buf[l4 + 8:min(stop, l4 + ulen)
                                                                 if ulen >= 8 else stop])
        return (0, src, dst, 0, 0, 0, 0, 0, b"")
    except (IndexError, struct.error):
        return None


def _endpoint(server: str, link: str, server_address: Any) -> str:
    if server_address is None:
        return server
    return f"{server}/{'hdlc ' if link == 'hdlc' else ''}{server_address}"


def _sap(address: Any) -> int | None:
    if address is None:
        return None
    return address if isinstance(address, int) else int(address.upper)


@dataclass
class _Conn:
    """Both directions of one TCP connection (or one UDP peer pair)."""

    name: str
    meter: tuple[bytes, int] | None = None  # (ip, port) of the meter side once known
    halves: dict[tuple[bytes, int], _HalfStream] = field(default_factory=dict)


class _Fast:
    """One direction of a TCP connection whose roles are known: what an in-order segment
    holding exactly one whole wrapper frame needs to become a :class:`WireApdu` without
    the general reassembly and framing path (which gives the same APDU, see ``read``)."""

    __slots__ = (
        "client_addr",
        "direction",
        "framer",
        "half",
        "name",
        "s2c",
        "saps",
        "server_addr",
    )

    def __init__(self, conn: _Conn, half: _HalfStream, s2c: bool, server_addr: str,
                 client_addr: str) -> None:
        self.half, self.framer, self.name = half, half.framer, conn.name
        self.s2c, self.direction = s2c, "s2c" if s2c else "c2s"
        self.server_addr, self.client_addr = server_addr, client_addr
        self.saps: tuple[int, int, int, int, str] | None = None  # src, dst -> saps, endpoint


class CaptureReader:
    """Reads the files of one ingest with shared stream state (see the module doc).

    ``fast_path`` (on by default) lets an in-order TCP segment that holds exactly one
    whole wrapper frame skip reassembly and framing; off, every packet takes the general
    path (the tests compare the two)."""

    fast_path = True

    def __init__(self, ports: Iterable[int] | None = None,
                 stats: CaptureStats | None = None) -> None:
        self.ports = frozenset(ports) if ports else None
        self.stats = stats if stats is not None else CaptureStats()
        self._conns: dict[tuple[bytes, int, bytes, int], _Conn] = {}
        self._generation: dict[tuple[bytes, int, bytes, int], int] = {}
        self._udp_seen: OrderedDict[int, int] = OrderedDict()
        self._file_no = 0
        self._last_source = ""
        self._last_when = 0
        # directed (src ip, sport, dst ip, dport) -> _Fast, for TCP halves in step
        self._fast: dict[tuple[bytes, int, bytes, int], _Fast] = {}

    def _conn_key(self, a: tuple[bytes, int], b: tuple[bytes, int]) -> tuple[bytes, int, bytes, int]:
        lo, hi = (a, b) if a <= b else (b, a)
        return (lo[0], lo[1], hi[0], hi[1])

    def _role(self, conn: _Conn, sender: tuple[bytes, int], peer: tuple[bytes, int],
              apdu: bytes) -> None:
        if conn.meter is not None:
            return
        tag = apdu[0]
        if tag in _CLIENT_TAGS:
            conn.meter = peer
        elif tag in _METER_TAGS:
            conn.meter = sender
        elif tag in (0xDB, 0xDC, 0xDD, 0xDF) and (conn.name.startswith("udp")
                                                  or self._is_tcp_client(conn, sender)):
            # general ciphering before any association, from the side that opened the
            # TCP connection or in a datagram: a meter pushing (data-notification)
            conn.meter = sender
        else:
            conn.meter = self._by_port(sender, peer)

    def _is_tcp_client(self, conn: _Conn, sender: tuple[bytes, int]) -> bool:
        half = conn.halves.get(sender)
        return bool(half is not None and half.opened)

    def _by_port(self, sender: tuple[bytes, int], peer: tuple[bytes, int]) -> tuple[bytes, int]:
        ports = self.ports or DLMS_PORTS
        if sender[1] in ports and peer[1] not in ports:
            return sender
        if peer[1] in ports and sender[1] not in ports:
            return peer
        return peer  # nothing to go on: the first sender asks, so it is the client

    def _emit(self, conn: _Conn, when: int, sender: tuple[bytes, int],
              peer: tuple[bytes, int], link: str, apdu: bytes, src: Any, dst: Any,
              source: str, half: _HalfStream | None) -> WireApdu:
        self._role(conn, sender, peer, apdu)
        s2c = conn.meter == sender
        meter, client = (sender, peer) if s2c else (peer, sender)
        server_addr, client_addr = _addr(*meter), _addr(*client)
        server_a, client_a = (src, dst) if s2c else (dst, src)
        if half is not None:
            if half.last_ts is not None and when < half.last_ts:
                when = half.last_ts  # stream order wins over a timestamp that steps back
            half.last_ts = when
        self.stats.apdus += 1
        return WireApdu(when, "s2c" if s2c else "c2s", client_addr, server_addr,
                        _sap(client_a), _sap(server_a), link, conn.name, apdu,
                        _endpoint(server_addr, link, server_a), source)

    def read(self, path: str | Path, source: str | None = None) -> Iterator[WireApdu]:
        """Every DLMS APDU of one more file, in stream order within each stream."""
        st = self.stats
        self._file_no += 1
        file_no = self._file_no
        src_name = source if source is not None else str(path)
        self._last_source = src_name
        reader, fh = open_capture(path)
        ports = self.ports
        fast_halves = self._fast
        try:
            if isinstance(reader, dpkt.pcap.Reader):
                records: Iterator[tuple[int, bytes]] = _classic_records(fh, st)
            else:
                records = _pcapng_records(reader, st)
            linktype = reader.datalink()
            for when, buf in records:
                st.packets += 1
                pkt = _parse(linktype, buf)
                if pkt is None:
                    st.not_ip += 1
                    continue
                proto, src, dst, sport, dport, seq, flags, ipid, data = pkt
                if proto == 6 and data and not flags & _SYN_FIN_RST:
                    fast = fast_halves.get((src, sport, dst, dport))
                    if fast is not None:
                        half = fast.half
                        framer = fast.framer
                        n = len(data)
                        # in order, nothing pending or buffered, framer in step, and the
                        # segment is one whole wrapper frame (version 1, length = the rest)
                        if (half.next_seq == seq and n > 8 and not half.pending
                                and not framer._buf and not framer._hunting
                                and not framer.dead and framer.link == "wrapper"
                                and data[0] == 0 and data[1] == 1
                                and data[6] << 8 | data[7] == n - 8):
                            self._last_when = when
                            half.next_seq = (seq + n) % _SEQ_MOD
                            framer.frames += 1
                            st.dlms_packets += 1
                            st.apdus += 1
                            last = half.last_ts
                            if last is not None and when < last:
                                when = last
                            half.last_ts = when
                            saps = fast.saps
                            wsrc, wdst = data[2] << 8 | data[3], data[4] << 8 | data[5]
                            if saps is None or saps[0] != wsrc or saps[1] != wdst:
                                csap, ssap = (wdst, wsrc) if fast.s2c else (wsrc, wdst)
                                saps = fast.saps = (wsrc, wdst, csap, ssap, _endpoint(
                                    fast.server_addr, "wrapper", ssap))
                            yield _new_tuple(WireApdu, (
                                when, fast.direction, fast.client_addr, fast.server_addr,
                                saps[2], saps[3], "wrapper", fast.name, data[8:], saps[4],
                                src_name))
                            continue
                if proto == 0 or (ports is not None and sport not in ports
                                  and dport not in ports):
                    continue
                self._last_when = when
                if proto == 17:
                    yield from self._udp(src, dst, sport, dport, ipid, data, when, src_name,
                                         file_no)
                else:
                    yield from self._tcp((src, sport), (dst, dport), flags, seq, data, when,
                                         src_name)
        finally:
            fh.close()

    def _udp(self, src: bytes, dst: bytes, sport: int, dport: int, ipid: int, data: bytes,
             when: int, source: str, file_no: int) -> Iterator[WireApdu]:
        if not data:
            return
        sender, peer = (src, sport), (dst, dport)
        digest = hash((src, dst, sport, dport, ipid, data))
        seen = self._udp_seen.get(digest)
        if seen is not None and seen != file_no:
            self.stats.duplicate_packets += 1  # the same datagram in another file
            return
        self._udp_seen[digest] = file_no
        if len(self._udp_seen) > _DEDUP_WINDOW:
            self._udp_seen.popitem(last=False)
        key = self._conn_key(sender, peer)
        conn = self._conns.get(key)
        if conn is None:
            conn = _Conn(f"udp {_addr(*key[:2])}-{_addr(*key[2:])}")
        framer = _Framer(strict=True)
        out = list(framer.feed(data, self.stats))
        if not out:
            if framer.frames == 0 and (self.ports is not None or framer.link == "hdlc"
                                       or key in self._conns):
                self.stats.bad_frames += 1  # meant as DLMS (port, flag or peers), not framed
            return
        self._conns[key] = conn
        self.stats.dlms_packets += 1
        for apdu, src_a, dst_a in out:
            yield self._emit(conn, when, sender, peer, framer.link or "wrapper", apdu, src_a,
                             dst_a, source, None)

    def _tcp(self, sender: tuple[bytes, int], peer: tuple[bytes, int], flags: int, seq: int,
             data: bytes, when: int, source: str) -> Iterator[WireApdu]:
        key = self._conn_key(sender, peer)
        conn = self._conns.get(key)
        if flags & _SYN:
            # a new connection or half: the fast path's entries for this pair are stale
            self._fast.pop((sender[0], sender[1], peer[0], peer[1]), None)
            self._fast.pop((peer[0], peer[1], sender[0], sender[1]), None)
            half = conn.halves.get(sender) if conn is not None else None
            if half is not None and half.isn == seq:
                return  # the same SYN again (another probe's copy, or a retransmission)
            if not flags & _ACK or conn is None:
                gen = self._generation.get(key, 0) + 1
                self._generation[key] = gen
                self.stats.streams += 1
                if conn is not None:
                    yield from self._finish(conn, when, source)
                conn = _Conn(f"tcp {_addr(*sender)}-{_addr(*peer)}#{gen}")
                self._conns[key] = conn
            half = _HalfStream(strict=True)
            half.syn(seq)
            half.opened = not flags & _ACK
            conn.halves[sender] = half
            return
        if conn is None:  # capture began mid-connection
            gen = self._generation.get(key, 0)
            conn = _Conn(f"tcp {_addr(*sender)}-{_addr(*peer)}#{gen}")
            self._conns[key] = conn
        half = conn.halves.get(sender)
        if half is None:
            half = _HalfStream(strict=False)
            conn.halves[sender] = half
        if data:
            for chunk in half.segment(seq, data, self.stats):
                yield from self._frames(conn, half, chunk, when, sender, peer, source)
            if half.framer.frames:
                self.stats.dlms_packets += 1
                if (conn.meter is not None and half.framer.link == "wrapper"
                        and self.fast_path):
                    fkey = (sender[0], sender[1], peer[0], peer[1])
                    fast = self._fast.get(fkey)
                    if fast is None or fast.half is not half:
                        s2c = conn.meter == sender
                        meter, client = (sender, peer) if s2c else (peer, sender)
                        self._fast[fkey] = _Fast(conn, half, s2c, _addr(*meter),
                                                 _addr(*client))
        if flags & (_FIN | _RST):
            for chunk in half.skip_gap(self.stats) if half.pending else []:
                yield from self._frames(conn, half, chunk, when, sender, peer, source)

    def _frames(self, conn: _Conn, half: _HalfStream, chunk: bytes | None, when: int,
                sender: tuple[bytes, int], peer: tuple[bytes, int],
                source: str) -> Iterator[WireApdu]:
        if chunk is None:
            half.framer.resync()
            return
        for apdu, src, dst in half.framer.feed(chunk, self.stats):
            yield self._emit(conn, when, sender, peer, half.framer.link or "wrapper", apdu,
                             src, dst, source, half)

    def _finish(self, conn: _Conn, when: int, source: str) -> Iterator[WireApdu]:
        for sender, half in list(conn.halves.items()):
            while half.pending:
                chunks = half.skip_gap(self.stats)
                if not chunks:
                    break
                peer = next((p for p in conn.halves if p != sender), sender)
                for chunk in chunks:
                    yield from self._frames(conn, half, chunk, half.last_ts or when, sender,
                                            peer, source)

    def finish(self) -> Iterator[WireApdu]:
        """APDUs still held behind gaps when the last file ends."""
        for conn in list(self._conns.values()):
            yield from self._finish(conn, self._last_when, self._last_source)


def read_apdus(path: str | Path, *, port: int | Iterable[int] | None = None,
               stats: CaptureStats | None = None) -> Iterator[WireApdu]:
    """Every DLMS APDU in one capture (``port``: one or several DLMS ports, or any)."""
    ports = [port] if isinstance(port, int) else port
    reader = CaptureReader(ports, stats)
    yield from reader.read(path)
    yield from reader.finish()
