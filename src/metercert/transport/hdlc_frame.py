"""IEC 62056-46 HDLC frames: addresses, control field, HCS/FCS, parameters.

A frame on the wire::

    7E | format (2) | destination (1,2,4) | source (1,2,4) | control (1)
       | HCS (2, only if there is an information field) | information | FCS (2) | 7E

The format field is ``1010 S LLLLLLLLLLL``: frame format type 3 (``0xA``), the
segmentation bit S (set on every segment of a long information field except
the last) and the 11-bit frame length, counting every byte between the flags.
Each address byte carries seven bits shifted left by one; the lowest bit is 1
only on the last byte. A client address is one byte; a server address is
the upper (logical device) address, optionally followed by the lower
(physical device) address, in 1, 2 or 4 bytes. HCS and FCS are CRC-16/X.25
(:mod:`metercert.transport.fcs`), low byte first.

Nothing here does I/O; :mod:`metercert.transport.hdlc` holds the link state
machine that uses these frames.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass, field

from metercert.errors import UsageError
from metercert.transport.errors import BadChecksum, BadFrame, FrameTooLarge
from metercert.transport.fcs import crc16_x25, fcs_bytes

FLAG = 0x7E
FORMAT_TYPE_3 = 0xA
SEGMENTATION_BIT = 0x0800
MAX_FRAME_LENGTH = 0x7FF
#: Information field limit used when a link negotiates none (IEC 62056-46 default).
DEFAULT_MAX_INFO = 128
#: The largest information field any address combination fits in the 11-bit length.
MAX_INFO_LIMIT = 2030
LLC_COMMAND = b"\xE6\xE6\x00"
LLC_RESPONSE = b"\xE6\xE7\x00"

_MIN_FRAME_LENGTH = 7  # format 2 + dest 1 + source 1 + control 1 + FCS 2


@dataclass(frozen=True)
class HdlcAddress:
    """An HDLC address: upper (logical device or client SAP) and optional lower part.

    ``size`` forces the encoded length (1, 2 or 4 bytes); by default the
    shortest form that holds the values is used. Two addresses are equal when
    their values are, whatever their encoded size.
    """

    upper: int
    lower: int | None = None
    size: int | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.size not in (None, 1, 2, 4):
            raise UsageError(f"HDLC address size must be 1, 2 or 4 bytes, not {self.size}")
        limit = 0x3FFF if self.encoded_size == 4 else 0x7F
        if not 0 <= self.upper <= limit or (self.lower is not None and not 0 <= self.lower <= limit):
            raise UsageError(f"HDLC address {self} does not fit in {self.encoded_size} byte(s)")
        if self.encoded_size == 1 and self.lower is not None:
            raise UsageError("a one-byte HDLC address has no lower part")

    @property
    def encoded_size(self) -> int:
        if self.size is not None:
            return self.size
        if self.lower is None:
            return 1 if self.upper <= 0x7F else 4
        return 2 if self.upper <= 0x7F and self.lower <= 0x7F else 4

    def to_bytes(self) -> bytes:
        size = self.encoded_size
        lower = self.lower or 0
        if size == 1:
            parts = [self.upper]
        elif size == 2:
            parts = [self.upper, lower]
        else:
            parts = [self.upper >> 7, self.upper & 0x7F, lower >> 7, lower & 0x7F]
        out = bytearray(part << 1 for part in parts)
        out[-1] |= 1
        return bytes(out)

    def __str__(self) -> str:
        return str(self.upper) if self.lower is None else f"{self.upper}/{self.lower}"


def _decode_address(body: bytes, start: int, what: str) -> tuple[HdlcAddress, int]:
    """Read one address beginning at ``start``; return it and the index after it."""
    end = start
    while end < len(body) and not body[end] & 1:
        end += 1
        if end - start >= 4:
            raise BadFrame(f"HDLC {what} address is longer than 4 bytes")
    if end >= len(body):
        raise BadFrame(f"HDLC frame ends inside the {what} address")
    raw = body[start:end + 1]
    parts = [b >> 1 for b in raw]
    if len(raw) == 1:
        return HdlcAddress(parts[0], None, 1), end + 1
    if len(raw) == 2:
        return HdlcAddress(parts[0], parts[1], 2), end + 1
    if len(raw) == 4:
        return HdlcAddress((parts[0] << 7) | parts[1], (parts[2] << 7) | parts[3], 4), end + 1
    raise BadFrame(f"HDLC {what} address is {len(raw)} bytes; only 1, 2 or 4 are allowed")


class FrameKind(enum.Enum):
    """Frame types of the control field that IEC 62056-46 uses."""

    I = "I"  # the standard's name
    RR = "RR"
    RNR = "RNR"
    SNRM = "SNRM"
    DISC = "DISC"
    UA = "UA"
    DM = "DM"
    FRMR = "FRMR"
    UI = "UI"


_UNNUMBERED = {
    FrameKind.SNRM: 0x83,
    FrameKind.DISC: 0x43,
    FrameKind.UA: 0x63,
    FrameKind.DM: 0x0F,
    FrameKind.FRMR: 0x87,
    FrameKind.UI: 0x03,
}
_UNNUMBERED_BY_CODE = {code: kind for kind, code in _UNNUMBERED.items()}
_SUPERVISORY = {FrameKind.RR: 0x01, FrameKind.RNR: 0x05}
_SUPERVISORY_BY_CODE = {code: kind for kind, code in _SUPERVISORY.items()}
_PF = 0x10


def encode_control(kind: FrameKind, *, pf: bool = True, ns: int = 0, nr: int = 0) -> int:
    """The control byte: I-frames carry N(S) and N(R), RR/RNR carry N(R)."""
    bit = _PF if pf else 0
    if kind is FrameKind.I:
        return ((nr & 7) << 5) | bit | ((ns & 7) << 1)
    if kind in _SUPERVISORY:
        return ((nr & 7) << 5) | bit | _SUPERVISORY[kind]
    return _UNNUMBERED[kind] | bit


def decode_control(control: int) -> tuple[FrameKind, bool, int, int]:
    """Split a control byte into (kind, poll/final, N(S), N(R))."""
    pf = bool(control & _PF)
    if not control & 1:
        return FrameKind.I, pf, (control >> 1) & 7, control >> 5
    if control & 3 == 1:
        kind = _SUPERVISORY_BY_CODE.get(control & 0x0F)
        if kind is None:
            raise BadFrame(f"HDLC supervisory frame 0x{control:02X} (REJ/SREJ) is not used by DLMS")
        return kind, pf, 0, control >> 5
    kind = _UNNUMBERED_BY_CODE.get(control & ~_PF & 0xFF)
    if kind is None:
        raise BadFrame(f"HDLC control field 0x{control:02X} is not a known frame type")
    return kind, pf, 0, 0


@dataclass(frozen=True)
class HdlcFrame:
    """One decoded or to-be-encoded frame. The information field is kept out of the repr."""

    dest: HdlcAddress
    source: HdlcAddress
    kind: FrameKind
    pf: bool = True
    ns: int = 0
    nr: int = 0
    segmented: bool = False
    info: bytes = field(default=b"", repr=False)

    def to_bytes(self) -> bytes:
        return encode_frame(self)


def encode_frame(frame: HdlcFrame) -> bytes:
    """Flags, format, addresses, control, HCS, information and FCS of ``frame``."""
    header_tail = (frame.dest.to_bytes() + frame.source.to_bytes()
                   + bytes([encode_control(frame.kind, pf=frame.pf, ns=frame.ns, nr=frame.nr)]))
    length = 2 + len(header_tail) + 2 + (len(frame.info) + 2 if frame.info else 0)
    if length > MAX_FRAME_LENGTH:
        raise FrameTooLarge(
            f"HDLC frame of {length} bytes exceeds the 11-bit length field; segment the information"
        )
    fmt = (FORMAT_TYPE_3 << 12) | (SEGMENTATION_BIT if frame.segmented else 0) | length
    header = fmt.to_bytes(2, "big") + header_tail
    body = header + (fcs_bytes(header) + frame.info if frame.info else b"")
    return bytes([FLAG]) + body + fcs_bytes(body) + bytes([FLAG])


def parse_frame_body(body: bytes, *, verify_checksums: bool = True) -> HdlcFrame:
    """Decode the bytes between the flags (format through FCS).

    ``verify_checksums=False`` exists only for the reference meter's flawed profile
    that takes frames whatever their HCS/FCS say."""
    if len(body) < _MIN_FRAME_LENGTH:
        raise BadFrame(f"HDLC frame of {len(body)} bytes is shorter than the minimum 7")
    fmt = int.from_bytes(body[:2], "big")
    if fmt >> 12 != FORMAT_TYPE_3:
        raise BadFrame(f"HDLC format type 0x{fmt >> 12:X} is not frame format type 3 (0xA)")
    if fmt & MAX_FRAME_LENGTH != len(body):
        raise BadFrame(f"HDLC frame length field says {fmt & MAX_FRAME_LENGTH}, frame has {len(body)}")
    if verify_checksums and crc16_x25(body[:-2]) != int.from_bytes(body[-2:], "little"):
        raise BadChecksum("HDLC frame check sequence (FCS) does not match")
    dest, pos = _decode_address(body, 2, "destination")
    source, pos = _decode_address(body, pos, "source")
    if pos >= len(body) - 2:
        raise BadFrame("HDLC frame has no control field")
    kind, pf, ns, nr = decode_control(body[pos])
    pos += 1
    rest = len(body) - 2 - pos
    info = b""
    if rest:
        if rest < 2:
            raise BadFrame("HDLC frame has a stray byte between control field and FCS")
        if verify_checksums and crc16_x25(body[:pos]) != int.from_bytes(body[pos:pos + 2],
                                                                         "little"):
            raise BadChecksum("HDLC header check sequence (HCS) does not match")
        info = bytes(body[pos + 2:-2])
    return HdlcFrame(dest, source, kind, pf, ns, nr, bool(fmt & SEGMENTATION_BIT), info)


class HdlcFrameDecoder:
    """Incremental decoder: ``feed`` bytes, then take frames with ``next_frame``.

    A bad frame raises (:class:`BadFrame`, :class:`BadChecksum` or
    :class:`FrameTooLarge`) after its bytes have been consumed, so a caller
    that follows the standard and discards bad frames just catches and calls
    again. Consecutive flags and a flag shared between two frames are accepted;
    bytes outside a frame raise :class:`BadFrame` once per run of them.
    """

    def __init__(self, *, max_info: int = MAX_INFO_LIMIT, verify_checksums: bool = True) -> None:
        self.max_info = max_info
        self.verify_checksums = verify_checksums
        self._buffer = bytearray()

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def next_frame(self) -> HdlcFrame | None:
        buf = self._buffer
        while True:
            if not buf:
                return None
            if buf[0] != FLAG:
                flag_at = buf.find(FLAG)
                dropped = len(buf) if flag_at < 0 else flag_at
                del buf[:dropped]
                raise BadFrame(f"{dropped} byte(s) outside an HDLC frame")
            if len(buf) < 3:
                return None
            if buf[1] == FLAG:
                del buf[0]
                continue
            fmt = int.from_bytes(buf[1:3], "big")
            if fmt >> 12 != FORMAT_TYPE_3:
                self._skip_to_next_flag()
                raise BadFrame(f"HDLC format type 0x{fmt >> 12:X} is not frame format type 3 (0xA)")
            length = fmt & MAX_FRAME_LENGTH
            if length < _MIN_FRAME_LENGTH:
                self._skip_to_next_flag()
                raise BadFrame(f"HDLC frame length {length} is below the minimum 7")
            if length > self.max_info + 15:  # largest header: 2+4+4+1+2, FCS 2
                self._skip_to_next_flag()
                raise FrameTooLarge(
                    f"HDLC frame of {length} bytes exceeds the {self.max_info}-byte information limit"
                )
            if len(buf) < length + 2:
                return None
            if buf[length + 1] != FLAG:
                self._skip_to_next_flag()
                raise BadFrame("HDLC frame is not closed by a flag where its length says")
            body = bytes(buf[1:length + 1])
            del buf[:length + 1]  # keep the closing flag: it may open the next frame
            frame = parse_frame_body(body, verify_checksums=self.verify_checksums)
            if len(frame.info) > self.max_info:
                raise FrameTooLarge(
                    f"HDLC information field of {len(frame.info)} bytes exceeds the "
                    f"{self.max_info}-byte limit"
                )
            return frame

    def _skip_to_next_flag(self) -> None:
        """Drop the opening flag and everything up to the next flag: one error per run."""
        flag_at = self._buffer.find(FLAG, 1)
        del self._buffer[:len(self._buffer) if flag_at < 0 else flag_at]

    def __iter__(self) -> Iterator[HdlcFrame]:
        while (frame := self.next_frame()) is not None:
            yield frame


def segment(info: bytes, max_info: int) -> list[bytes]:
    """Cut an information field into pieces of at most ``max_info`` bytes."""
    if max_info < 1:
        raise UsageError("HDLC max_info must be positive")
    if not info:
        return [b""]
    return [info[i:i + max_info] for i in range(0, len(info), max_info)]


# --- link parameters carried in SNRM and UA ------------------------------------------

_PARAM_FORMAT = 0x81
_PARAM_GROUP = 0x80
_MAX_INFO_TX, _MAX_INFO_RX, _WINDOW_TX, _WINDOW_RX = 0x05, 0x06, 0x07, 0x08


@dataclass(frozen=True)
class HdlcParameters:
    """Negotiable link parameters, from the point of view of the station sending them."""

    max_info_tx: int = DEFAULT_MAX_INFO
    max_info_rx: int = DEFAULT_MAX_INFO
    window_tx: int = 1
    window_rx: int = 1

    def __post_init__(self) -> None:
        for name in ("max_info_tx", "max_info_rx"):
            if not 1 <= getattr(self, name) <= MAX_INFO_LIMIT:
                raise UsageError(f"HDLC {name} must be 1..{MAX_INFO_LIMIT}, got {getattr(self, name)}")
        for name in ("window_tx", "window_rx"):
            if not 1 <= getattr(self, name) <= 7:
                raise UsageError(f"HDLC {name} must be 1..7, got {getattr(self, name)}")

    @property
    def is_default(self) -> bool:
        return self == HdlcParameters()

    def mirrored(self) -> HdlcParameters:
        """The same limits seen from the other station (its tx is our rx)."""
        return HdlcParameters(self.max_info_rx, self.max_info_tx, self.window_rx, self.window_tx)

    def to_info(self) -> bytes:
        """The parameter negotiation information field (format 0x81, group 0x80)."""
        params = bytearray()
        for pid, value, width in (
            (_MAX_INFO_TX, self.max_info_tx, 1 if self.max_info_tx <= 0xFF else 2),
            (_MAX_INFO_RX, self.max_info_rx, 1 if self.max_info_rx <= 0xFF else 2),
            (_WINDOW_TX, self.window_tx, 4),
            (_WINDOW_RX, self.window_rx, 4),
        ):
            params += bytes([pid, width]) + value.to_bytes(width, "big")
        return bytes([_PARAM_FORMAT, _PARAM_GROUP, len(params)]) + bytes(params)

    @classmethod
    def from_info(cls, info: bytes) -> HdlcParameters:
        """Parse a negotiation field; absent parameters keep their defaults."""
        if not info:
            return cls()
        if len(info) < 3 or info[0] != _PARAM_FORMAT or info[1] != _PARAM_GROUP:
            raise BadFrame("HDLC parameter field does not start with 81 80")
        if info[2] != len(info) - 3:
            raise BadFrame(f"HDLC parameter group says {info[2]} bytes, {len(info) - 3} follow")
        values = {_MAX_INFO_TX: DEFAULT_MAX_INFO, _MAX_INFO_RX: DEFAULT_MAX_INFO,
                  _WINDOW_TX: 1, _WINDOW_RX: 1}
        pos = 3
        while pos < len(info):
            if pos + 2 > len(info):
                raise BadFrame("HDLC parameter field ends inside a parameter header")
            pid, width = info[pos], info[pos + 1]
            if not 1 <= width <= 4 or pos + 2 + width > len(info):
                raise BadFrame(f"HDLC parameter 0x{pid:02X} has a bad length {width}")
            if pid in values:
                values[pid] = int.from_bytes(info[pos + 2:pos + 2 + width], "big")
            pos += 2 + width
        return cls(
            max_info_tx=min(values[_MAX_INFO_TX], MAX_INFO_LIMIT) or 1,
            max_info_rx=min(values[_MAX_INFO_RX], MAX_INFO_LIMIT) or 1,
            window_tx=min(max(values[_WINDOW_TX], 1), 7),
            window_rx=min(max(values[_WINDOW_RX], 1), 7),
        )


#: The parameters a link uses when SNRM and UA carry none.
DEFAULT_PARAMETERS = HdlcParameters()
