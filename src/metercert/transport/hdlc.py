"""IEC 62056-46 HDLC link layer as a sans-IO state machine.

How the machine works
---------------------
DLMS uses HDLC in normal response mode (NRM): the client is the primary
station and the only one allowed to start a transmission; the meter (server)
is secondary and may send only when the client has handed it the poll bit.
:class:`HdlcConnection` holds one side of such a link. It never touches a
socket: you give it received bytes (``receive_data``), take the events it
produced (``next_event``) and write what it wants sent (``data_to_send``).

Set-up. The client sends SNRM (optionally carrying the link parameters it
offers: maximum information field length and window size in each direction)
and waits for UA, which carries the parameters the server accepts; each side
then uses the smaller of the two offers. A server that refuses answers DM.
Both sides reset their send and receive sequence numbers V(S) and V(R) to 0.
A SNRM on a live link resets it the same way.

Data. An APDU travels in the information field of I-frames, behind the LLC
header E6 E6 00 (client to server) or E6 E7 00 (server to client). If the LLC
header and APDU exceed the negotiated maximum information field, they are cut
into segments; every segment but the last has the segmentation bit set in the
format field. The window (negotiated in SNRM/UA, 1 unless both sides offer more)
is how many I-frames a station sends before it waits for an acknowledgement:
only the last frame of such a burst (or the last segment of the APDU) carries
the poll/final bit. The receiver acknowledges a non-final segment that carries
the poll bit with RR whose N(R) is the next frame it expects; the sender then
sends the next burst. A burst longer than the receiver's window, or an RR that
does not acknowledge the whole burst, is a protocol violation (a window of one,
the form every DLMS meter supports, answers every segment). Every I-frame says which frame it is (N(S), checked against our V(R))
and acknowledges the peer's frames (N(R), checked against our V(S)); numbers
count modulo 8. After the client's last segment the poll belongs to the
server, which answers with its own I-frame(s); after the server's last
segment the poll returns to the client. A client poll (RR) that finds the server
with nothing to say is answered with RR and the poll returns to the client; an
APDU the server produces while it does not hold the poll waits for the next
poll (so a slow answer, or a push, is collected with RR).

Teardown. The client sends DISC; the server answers UA (or DM if there was no
link). Any frame arriving at a disconnected server with the poll bit set is
answered with DM.

What is guaranteed. Frames not addressed to this link are dropped as the
standard says, and reported as :class:`FrameDropped`. A malformed frame (bad
HCS/FCS, bad format, bytes outside flags) raises :class:`BadFrame` /
:class:`BadChecksum`, or with ``drop_bad_frames=True`` is discarded and
reported as :class:`FrameDropped`. A frame or reassembled APDU above the limits
raises :class:`FrameTooLarge`. A well-formed frame the current state does not
allow (wrong sequence number, unsolicited I-frame, FRMR) raises
:class:`ProtocolViolation` on the client. The server answers a frame it cannot
take with FRMR instead of dropping the connection (a frame kind the state does not
allow, an N(R) that acknowledges frames it never sent, an information field above
the negotiated maximum) and then answers every poll with that FRMR until SNRM or
DISC; an out-of-sequence N(S), more frames than the window and an APDU above the
reassembly limit still raise. No input makes it raise anything else.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field, replace

from metercert.transport.errors import (
    BadChecksum,
    BadFrame,
    FrameTooLarge,
    ProtocolViolation,
)
from metercert.transport.fcs import crc16_x25
from metercert.transport.hdlc_frame import (
    DEFAULT_MAX_INFO,
    DEFAULT_PARAMETERS,
    LLC_COMMAND,
    LLC_RESPONSE,
    MAX_INFO_LIMIT,
    FrameKind,
    HdlcAddress,
    HdlcFrame,
    HdlcFrameDecoder,
    HdlcParameters,
    decode_control,
    encode_control,
    encode_frame,
    parse_frame_body,
    segment,
)

__all__ = [
    "DEFAULT_MAX_INFO", "DEFAULT_PARAMETERS", "LINK_FLAWS", "LLC_COMMAND", "LLC_RESPONSE", "MAX_INFO_LIMIT", "ApduReceived",
    "BadChecksum", "BadFrame", "Event", "FrameDropped", "FrameKind", "FrameTooLarge",
    "HdlcAddress", "HdlcConnection", "HdlcFrame", "HdlcFrameDecoder", "HdlcParameters",
    "LinkClosed", "LinkEstablished", "LinkState", "PollReturned", "ProtocolViolation", "Role",
    "crc16_x25",
    "decode_control", "encode_control", "encode_frame", "parse_frame_body", "segment",
]

DEFAULT_MAX_APDU = 0xFFFF

#: Link-layer defects the reference meter's flawed profiles switch on (a conformant
#: link never uses them): each one undoes one check of this state machine.
LINK_FLAWS: dict[str, str] = {
    "hdlc-bad-fcs-accepted":
        "HDLC frames are taken whatever their HCS/FCS say: a corrupted command is executed",
    "hdlc-sequence-unchecked":
        "an I-frame whose N(S) is not the expected one is taken: a repeated frame executes "
        "its request again",
    "hdlc-info-length-unchecked":
        "an information field longer than the negotiated maximum is taken",
    "hdlc-any-address":
        "the meter answers an SNRM whatever HDLC server address it names, not only its own",
}


#: FRMR reason bits (third octet of its information field)
_FRMR_W, _FRMR_Y, _FRMR_Z = 0x01, 0x04, 0x08


class Role(enum.Enum):
    CLIENT = "client"
    SERVER = "server"


class LinkState(enum.Enum):
    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"          # client: SNRM sent, waiting for UA
    IDLE = "idle"                      # client may send; server waits for a command
    SENDING = "sending"                # segments of our APDU still waiting for RR
    AWAITING_REPLY = "awaiting reply"  # client: request sent, poll is with the server
    RESPONDING = "responding"          # server: request complete, server holds the poll
    DISCONNECTING = "disconnecting"    # client: DISC sent, waiting for UA/DM
    FRAME_REJECT = "frame reject"      # server: FRMR sent; only SNRM or DISC clears it


@dataclass(frozen=True)
class LinkEstablished:
    """The link is up; ``parameters`` are the negotiated ones, from our side."""

    parameters: HdlcParameters


@dataclass(frozen=True)
class ApduReceived:
    """A whole APDU (LLC header removed). The bytes stay out of the repr."""

    apdu: bytes = field(repr=False)


@dataclass(frozen=True)
class LinkClosed:
    reason: str


@dataclass(frozen=True)
class PollReturned:
    """Client: the server answered a poll with RR: no answer yet; poll again later."""


@dataclass(frozen=True)
class FrameDropped:
    """A frame discarded without breaking the link, and why."""

    reason: str


Event = LinkEstablished | ApduReceived | LinkClosed | FrameDropped | PollReturned


class _Unset(enum.Enum):
    UNSET = "unset"


_UNSET = _Unset.UNSET


def _as_address(value: int | HdlcAddress | None) -> HdlcAddress | None:
    if value is None or isinstance(value, HdlcAddress):
        return value
    return HdlcAddress(value)


class HdlcConnection:
    """One side (client or server) of an HDLC link; see the module docstring."""

    def __init__(
        self,
        role: Role,
        *,
        client_address: int | HdlcAddress | None | _Unset = _UNSET,
        server_address: int | HdlcAddress | None | _Unset = _UNSET,
        parameters: HdlcParameters = DEFAULT_PARAMETERS,
        max_apdu: int = DEFAULT_MAX_APDU,
        drop_bad_frames: bool = False,
        flaws: frozenset[str] = frozenset(),
    ) -> None:
        self.role = role
        #: link-layer defects of the reference meter's flawed profiles (see LINK_FLAWS)
        self.flaws = frozenset(flaws)
        unknown = self.flaws - set(LINK_FLAWS)
        if unknown:
            raise ProtocolViolation(f"unknown HDLC flaws {sorted(unknown)}")
        # A client defaults to public client 16 -> management device 1; a server by
        # default accepts any client at any address and binds to the one in SNRM.
        if isinstance(client_address, _Unset):
            client_address = 16 if role is Role.CLIENT else None
        if isinstance(server_address, _Unset):
            server_address = 1 if role is Role.CLIENT else None
        self._configured_client = _as_address(client_address)
        self._configured_server = _as_address(server_address)
        self.client_address = self._configured_client
        self.server_address = self._configured_server
        if role is Role.CLIENT and (self.client_address is None or self.server_address is None):
            raise ProtocolViolation("an HDLC client needs both a client and a server address")
        self.offered = parameters
        self.negotiated = replace(parameters, window_tx=1, window_rx=1)
        self.max_apdu = max_apdu
        self.drop_bad_frames = drop_bad_frames
        self.state = LinkState.DISCONNECTED
        self.dropped_frames = 0
        self.rejected_frames = 0  # server: frames answered with FRMR
        self._frmr_info = b""
        self._decoder = HdlcFrameDecoder(
            max_info=MAX_INFO_LIMIT, verify_checksums="hdlc-bad-fcs-accepted" not in self.flaws)
        self._out = bytearray()
        self._events: deque[Event] = deque()
        self._vs = 0
        self._vr = 0
        self._tx_segments: deque[bytes] = deque()
        self._pending: deque[bytes] = deque()
        self._rx = bytearray()
        self._rx_burst = 0  # I-frames received since the last one carrying the poll bit

    # --- the caller's side --------------------------------------------------------

    def connect(self) -> None:
        """Client: queue SNRM (with our parameters when they are not the defaults)."""
        self._require_role(Role.CLIENT, "connect")
        if self.state is not LinkState.DISCONNECTED:
            raise ProtocolViolation(f"cannot connect: the HDLC link is {self.state.value}")
        info = b"" if self.offered.is_default else self.offered.to_info()
        self._emit(FrameKind.SNRM, info=info)
        self.state = LinkState.CONNECTING

    def disconnect(self) -> None:
        """Client: queue DISC."""
        self._require_role(Role.CLIENT, "disconnect")
        if self.state in (LinkState.DISCONNECTED, LinkState.DISCONNECTING):
            return
        self._emit(FrameKind.DISC)
        self.state = LinkState.DISCONNECTING

    def send_apdu(self, apdu: bytes) -> None:
        """Send an APDU: the first segment now, the others as the peer acknowledges.

        A server that does not hold the poll keeps the APDU until the client
        polls (RR); :attr:`pending` tells how many are waiting.
        """
        if self.role is Role.SERVER and self.state in (LinkState.IDLE, LinkState.SENDING):
            self._pending.append(bytes(apdu))
            return
        allowed = LinkState.IDLE if self.role is Role.CLIENT else LinkState.RESPONDING
        if self.state is not allowed:
            who = "client" if self.role is Role.CLIENT else "server"
            raise ProtocolViolation(f"HDLC {who} cannot send an APDU while the link is "
                                    f"{self.state.value}")
        self._start_transmission(apdu)

    def poll(self) -> None:
        """Client: hand the poll to the server (RR) to collect an answer it has not sent yet."""
        self._require_role(Role.CLIENT, "poll")
        if self.state is not LinkState.IDLE:
            raise ProtocolViolation(f"cannot poll: the HDLC link is {self.state.value}")
        self._emit(FrameKind.RR)
        self.state = LinkState.AWAITING_REPLY

    @property
    def pending(self) -> int:
        """Server: APDUs waiting for the client's poll."""
        return len(self._pending)

    def receive_data(self, data: bytes) -> None:
        """Process received bytes; events and replies queue up."""
        self._decoder.feed(data)
        while True:
            try:
                frame = self._decoder.next_frame()
            except BadFrame as exc:  # BadChecksum included; FrameTooLarge always raises
                if not self.drop_bad_frames:
                    raise
                self._drop(str(exc))
                continue
            if frame is None:
                return
            self._handle(frame)

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    @property
    def sending(self) -> bool:
        """True while segments of our APDU wait for the peer's acknowledgement."""
        return self.state is LinkState.SENDING

    # --- internals ----------------------------------------------------------------

    def _require_role(self, role: Role, action: str) -> None:
        if self.role is not role:
            raise ProtocolViolation(f"an HDLC {self.role.value} cannot {action}")

    def _own_and_peer(self) -> tuple[HdlcAddress | None, HdlcAddress | None]:
        if self.role is Role.CLIENT:
            return self.client_address, self.server_address
        return self.server_address, self.client_address

    def _emit(self, kind: FrameKind, *, info: bytes = b"", segmented: bool = False,
              pf: bool = True) -> None:
        own, peer = self._own_and_peer()
        assert own is not None and peer is not None
        self._out += encode_frame(HdlcFrame(peer, own, kind, pf, self._vs, self._vr,
                                            segmented, info))

    def _reply_dm(self, frame: HdlcFrame) -> None:
        """DM straight back to whoever sent ``frame`` (the link may not be bound yet)."""
        self._out += encode_frame(HdlcFrame(frame.source, frame.dest, FrameKind.DM))

    def _start_transmission(self, apdu: bytes) -> None:
        llc = LLC_COMMAND if self.role is Role.CLIENT else LLC_RESPONSE
        self._tx_segments = deque(segment(llc + bytes(apdu), self.negotiated.max_info_tx))
        self._send_next_segment()

    def _answer_poll(self) -> None:
        """Server holding a poll: send what is waiting, or say there is nothing (RR)."""
        if self._pending:
            self.state = LinkState.RESPONDING
            self._start_transmission(self._pending.popleft())
        else:
            self._emit(FrameKind.RR)
            self.state = LinkState.IDLE

    def _send_next_segment(self) -> None:
        """Send the next burst: up to a window of segments, the poll bit on the last."""
        more = True
        for sent in range(1, self.negotiated.window_tx + 1):
            piece = self._tx_segments.popleft()
            more = bool(self._tx_segments)
            self._emit(FrameKind.I, info=piece, segmented=more,
                       pf=not more or sent == self.negotiated.window_tx)
            self._vs = (self._vs + 1) % 8
            if not more:
                break
        if more:
            self.state = LinkState.SENDING
        elif self.role is Role.CLIENT:
            self.state = LinkState.AWAITING_REPLY
        else:
            self.state = LinkState.IDLE

    def _reject(self, frame: HdlcFrame, reason: str, flag: int) -> None:
        """Server: answer a well-formed frame it cannot take with FRMR (ISO/IEC 13239
        basic format, as IEC 62056-46 uses it: the rejected control byte, our V(S) and
        V(R), then the reason bits W=1 control, X=2 information not allowed, Y=4 too
        long, Z=8 bad N(R)), and stay in the frame-reject state until SNRM or DISC."""
        control = encode_control(frame.kind, pf=frame.pf, ns=frame.ns, nr=frame.nr)
        self._frmr_info = bytes([control, (self._vs << 1) | (self._vr << 5), flag])
        self._rx.clear()
        self._tx_segments.clear()
        self.state = LinkState.FRAME_REJECT
        self.rejected_frames += 1
        self._emit(FrameKind.FRMR, info=self._frmr_info)
        self._events.append(FrameDropped(f"rejected with FRMR: {reason}"))

    def _drop(self, reason: str) -> None:
        self.dropped_frames += 1
        self._events.append(FrameDropped(reason))

    def _reset_sequence(self) -> None:
        self._vs = self._vr = 0
        self._rx_burst = 0
        self._rx.clear()
        self._tx_segments.clear()
        self._pending.clear()

    def _close(self, reason: str) -> None:
        self._reset_sequence()
        self.state = LinkState.DISCONNECTED
        self._events.append(LinkClosed(reason))

    def _handle(self, frame: HdlcFrame) -> None:
        if frame.kind is FrameKind.UI:
            self._drop("UI frame ignored")
            return
        own, peer = self._own_and_peer()
        if self.role is Role.SERVER and (frame.kind is FrameKind.SNRM or own is None):
            # SNRM (re)binds the link, so only the configured addresses filter it: the
            # upper address (logical device), and the lower (physical) one if configured
            own, peer = self._configured_server, self._configured_client
            if "hdlc-any-address" in self.flaws:
                own = None  # the flaw: any server address opens the link
            elif own is not None and frame.dest.upper == own.upper and own.lower is None:
                own = frame.dest  # no physical address configured: any lower one is ours
        if own is not None and frame.dest != own:
            self._drop(f"frame for HDLC address {frame.dest}, not {own}")
            return
        if peer is not None and frame.source != peer:
            self._drop(f"frame from HDLC address {frame.source}, not {peer}")
            return
        if self.role is Role.CLIENT:
            self._client_handle(frame)
        else:
            self._server_handle(frame)

    def _negotiate(self, theirs: HdlcParameters) -> HdlcParameters:
        """Each direction takes the smaller of what its sender and its receiver offered
        (a SNRM or UA without a parameter field offers the defaults: 128 bytes, window 1)."""
        return HdlcParameters(
            max_info_tx=min(self.offered.max_info_tx, theirs.max_info_rx),
            max_info_rx=min(self.offered.max_info_rx, theirs.max_info_tx),
            window_tx=min(self.offered.window_tx, theirs.window_rx),
            window_rx=min(self.offered.window_rx, theirs.window_tx),
        )

    def _check_info_limit(self, frame: HdlcFrame) -> None:
        if "hdlc-info-length-unchecked" in self.flaws:
            return
        if len(frame.info) > self.negotiated.max_info_rx:
            raise FrameTooLarge(
                f"HDLC information field of {len(frame.info)} bytes exceeds the negotiated "
                f"{self.negotiated.max_info_rx}"
            )

    def _accept_i_frame(self, frame: HdlcFrame) -> bool:
        """Check numbering, collect the segment; True when the APDU is complete."""
        if frame.ns != self._vr:
            if "hdlc-sequence-unchecked" not in self.flaws:
                raise ProtocolViolation(f"HDLC I-frame N(S)={frame.ns}, expected {self._vr}")
            self._vr = frame.ns  # the flaw: whatever number it carries, the frame is taken
        if frame.nr != self._vs:
            raise ProtocolViolation(f"HDLC I-frame N(R)={frame.nr}, expected {self._vs}")
        self._check_info_limit(frame)
        self._rx_burst = 0 if frame.pf else self._rx_burst + 1
        if self._rx_burst >= self.negotiated.window_rx:
            raise ProtocolViolation(f"HDLC peer sent more than its window of "
                                    f"{self.negotiated.window_rx} I-frame(s) without the poll bit")
        if len(self._rx) + len(frame.info) > self.max_apdu + len(LLC_COMMAND):
            raise FrameTooLarge(f"reassembled HDLC APDU exceeds the {self.max_apdu}-byte limit")
        self._vr = (self._vr + 1) % 8
        self._rx += frame.info
        return not frame.segmented

    def _deliver(self, expected_llc: bytes) -> None:
        data = bytes(self._rx)
        self._rx.clear()
        if not data.startswith(expected_llc):
            raise BadFrame(f"HDLC information field does not start with the LLC header "
                           f"{expected_llc.hex(' ').upper()}")
        if len(data) == len(expected_llc):
            raise BadFrame("HDLC information field carries an LLC header but no APDU")
        self._events.append(ApduReceived(data[len(expected_llc):]))

    def _check_rr(self, frame: HdlcFrame) -> None:
        if frame.nr != self._vs:
            raise ProtocolViolation(f"HDLC RR N(R)={frame.nr}, expected {self._vs}")

    def _client_handle(self, frame: HdlcFrame) -> None:
        kind, state = frame.kind, self.state
        if kind is FrameKind.FRMR:
            raise ProtocolViolation("the server rejected a frame (FRMR)")
        if kind is FrameKind.DM:
            if state is LinkState.DISCONNECTED:
                return
            reason = ("the server refused the link (DM)" if state is LinkState.CONNECTING
                      else "disconnected" if state is LinkState.DISCONNECTING
                      else "the server dropped the link (DM)")
            self._close(reason)
            return
        if state is LinkState.CONNECTING and kind is FrameKind.UA:
            self.negotiated = self._negotiate(HdlcParameters.from_info(frame.info))
            self._reset_sequence()
            self.state = LinkState.IDLE
            self._events.append(LinkEstablished(self.negotiated))
            return
        if state is LinkState.DISCONNECTING and kind is FrameKind.UA:
            self._close("disconnected")
            return
        if state is LinkState.SENDING and kind in (FrameKind.RR, FrameKind.RNR):
            self._check_rr(frame)
            if kind is FrameKind.RR:
                self._send_next_segment()
            return
        if state is LinkState.AWAITING_REPLY:
            if kind is FrameKind.I:
                if self._accept_i_frame(frame):
                    self.state = LinkState.IDLE
                    self._deliver(LLC_RESPONSE)
                elif frame.pf:  # the end of the server's burst: acknowledge it
                    self._emit(FrameKind.RR)
                return
            if kind in (FrameKind.RR, FrameKind.RNR) and not self._rx:
                self._check_rr(frame)
                self.state = LinkState.IDLE
                self._events.append(PollReturned())
                return
        if state is LinkState.DISCONNECTED:
            self._drop(f"{kind.value} frame on a disconnected link")
            return
        raise ProtocolViolation(f"unexpected HDLC {kind.value} frame from the server while the "
                                f"link is {state.value}")

    def _server_handle(self, frame: HdlcFrame) -> None:
        kind, state = frame.kind, self.state
        if kind is FrameKind.SNRM:
            theirs = HdlcParameters.from_info(frame.info)
            self.server_address = HdlcAddress(frame.dest.upper, frame.dest.lower,
                                              frame.dest.size)
            self.client_address = frame.source
            self.negotiated = self._negotiate(theirs)
            self._reset_sequence()
            self.state = LinkState.IDLE
            self._emit(FrameKind.UA, info=self.negotiated.to_info())
            self._events.append(LinkEstablished(self.negotiated))
            return
        if kind is FrameKind.DISC:
            if state is LinkState.DISCONNECTED:
                self._reply_dm(frame)
            else:
                self._emit(FrameKind.UA)
                self._close("the client disconnected")
            return
        if state is LinkState.DISCONNECTED:
            if frame.pf:
                self._reply_dm(frame)
            self._drop(f"{kind.value} frame before SNRM")
            return
        if state is LinkState.FRAME_REJECT:
            if frame.pf:  # the condition stands: every poll gets the same FRMR again
                self._emit(FrameKind.FRMR, info=self._frmr_info)
            self._drop(f"{kind.value} frame in the frame-reject state")
            return
        if kind in (FrameKind.UA, FrameKind.DM, FrameKind.FRMR):
            self._reject(frame, f"the client sent a {kind.value} frame", _FRMR_W)
            return
        if kind in (FrameKind.I, FrameKind.RR, FrameKind.RNR) and frame.nr != self._vs:
            self._reject(frame, f"HDLC {kind.value} N(R)={frame.nr}, expected {self._vs}",
                         _FRMR_Z)
            return
        if (kind is FrameKind.I and len(frame.info) > self.negotiated.max_info_rx
                and "hdlc-info-length-unchecked" not in self.flaws):
            self._reject(frame, f"HDLC information field of {len(frame.info)} bytes exceeds "
                         f"the negotiated {self.negotiated.max_info_rx}", _FRMR_Y)
            return
        if state is LinkState.IDLE:
            if kind is FrameKind.I:
                if self._accept_i_frame(frame):
                    self.state = LinkState.RESPONDING
                    self._deliver(LLC_COMMAND)
                elif frame.pf:  # the end of the client's burst: acknowledge it
                    self._emit(FrameKind.RR)
                return
            self._check_rr(frame)
            if frame.pf:
                self._answer_poll()
            return
        if state is LinkState.SENDING and kind in (FrameKind.RR, FrameKind.RNR):
            self._check_rr(frame)
            if kind is FrameKind.RR:
                self._send_next_segment()
            return
        if state is LinkState.RESPONDING and kind in (FrameKind.RR, FrameKind.RNR):
            # Polled again before the answer is ready: say "nothing yet" and give the
            # poll back; the answer waits for the next poll.
            self._check_rr(frame)
            if frame.pf:
                self._answer_poll()
            return
        self._reject(frame, f"unexpected HDLC {kind.value} frame from the client while the "
                     f"link is {state.value}", _FRMR_W)
