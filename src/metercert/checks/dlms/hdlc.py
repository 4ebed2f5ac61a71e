"""DLMS checks of the HDLC link layer (IEC 62056-46), for meters reached over HDLC.

The security-relevant cases of the DLMS UA data link layer test plan, as its CTT test
list names them on dlms.com (group HDLC_1, "Incorrect frame field values"):

- DLMS-HDLC-FCS-01: a frame whose check sequence is wrong is discarded (the FCS/HCS
  field checks; ATS_DL's HDLC_FRAME_N7 is the HCS case). A meter that takes it executes
  whatever line noise or a tamperer made of a command.
- DLMS-HDLC-SEQ-01: HDLC_1 Subtest_11, wrong N(S): an I-frame that repeats an earlier
  N(S) is not taken again. A meter that takes it executes a repeated request twice
  (a link-level replay that no invocation counter sees on an unciphered association).
- DLMS-HDLC-INFO-01: HDLC_1 Subtest_12, too long information field: a frame above the
  negotiated maximum is refused, the classic way into a buffer overflow.
- DLMS-HDLC-ADDR-01: HDLC_1 Subtest_4, unknown destination address: an SNRM to a server
  address that is not the meter's is not answered. A meter that answers every address
  on a shared RS-485 bus talks over its neighbours and opens links no head-end meant.

Each check sends its probe on a raw link (no state machine of ours in between) and
then the intact form of the same request as a positive control: the meter must answer
that one, or nothing shows the probe was refused rather than ignored for another reason.
The checks are not applicable to a meter reached through the wrapper (TCP/UDP without
HDLC): its link layer is not on the wire.
"""

from __future__ import annotations

from metercert.checks.base import (
    CheckOutcome,
    Evidence,
    Severity,
    TargetKind,
    check,
    fail,
    inconclusive,
    not_applicable,
    passed,
)
from metercert.client.target import DlmsTarget
from metercert.cosem.acse import AARQ, ApplicationContextName, AuthenticationMechanism
from metercert.errors import ConnectionFailed
from metercert.transport.hdlc_frame import (
    LLC_COMMAND,
    FrameKind,
    HdlcAddress,
    HdlcFrame,
    encode_frame,
)
from metercert.transport.rawlink import RawHdlcLink, corrupt_fcs, i_frame
from metercert.transport.serial import line_address

_PUBLIC = 16
_QUIET = 1.5  # seconds a probe may go unanswered before it counts as discarded

_REQUIREMENTS = ["DLMS:ROBUSTNESS", "EN303645:5.13-1", "CRA:I.2h"]


def _server(target: DlmsTarget) -> HdlcAddress:
    """The meter's HDLC address: its logical device, and on a serial line the physical
    address the target names (``serial://...&address=N``)."""
    lower = line_address(target.host)[1] if target.transport in ("serial", "optical") else None
    return HdlcAddress(target.settings().server_sap, lower)


def _applies(target: DlmsTarget) -> str | None:
    if target.framing != "hdlc":
        return (f"the meter is reached over the {target.transport} wrapper: no HDLC link "
                "layer on the wire")
    return None


def _frames_text(link: RawHdlcLink, sent: list[tuple[str, bytes]]) -> Evidence:
    lines = [f"-> {what}: {data.hex(' ').upper()}" for what, data in sent]
    lines += [f"<- {f.kind.value} N(S)={f.ns} N(R)={f.nr} P/F={int(f.pf)} info={len(f.info)} B"
              for f in link.seen]
    return Evidence("HDLC frames on the link", "\n".join(lines), "apdu-trace", link.where)


async def _open(target: DlmsTarget, sent: list[tuple[str, bytes]]) -> RawHdlcLink | None:
    """A raw link with the public client's SNRM answered by UA (None: no UA)."""
    link = await RawHdlcLink.open(target.transport, target.host, target.port,
                                  timeout=target.timeout)
    server = _server(target)
    snrm = encode_frame(HdlcFrame(server, HdlcAddress(_PUBLIC), FrameKind.SNRM))
    sent.append(("SNRM", snrm))
    await link.send(snrm)
    got = await link.collect(target.timeout, until=FrameKind.UA)
    if not any(f.kind is FrameKind.UA for f in got):
        await link.close()
        return None
    return link


async def _close(target: DlmsTarget, link: RawHdlcLink) -> None:
    server = _server(target)
    if not link.closed:
        await link.send(encode_frame(HdlcFrame(server, HdlcAddress(_PUBLIC),
                                               FrameKind.DISC)))
        await link.collect(0.5, until=FrameKind.UA)
    await link.close()


def _answered(frames: list[HdlcFrame]) -> bool:
    return any(f.kind is FrameKind.I for f in frames)


def _public_aarq(target: DlmsTarget) -> bytes:
    aarq, _ = target.public().build_aarq()
    return aarq


async def _positive_control(target: DlmsTarget, frames: list[bytes],
                            sent: list[tuple[str, bytes]]) -> bool:
    """On a fresh link, the intact request (``frames`` in order) gets an I-frame back."""
    link = await _open(target, sent)
    if link is None:
        return False
    try:
        got: list[HdlcFrame] = []
        for data in frames:
            sent.append(("I (intact)", data))
            await link.send(data)
            got = await link.collect(target.timeout,
                                     until=FrameKind.I if data is frames[-1] else FrameKind.RR)
        return _answered(got)
    finally:
        await _close(target, link)


@check("DLMS-HDLC-FCS-01", "HDLC frames with a wrong frame check sequence are discarded",
       severity=Severity.MEDIUM, requirements=_REQUIREMENTS, tags=["hdlc", "robustness"],
       target=TargetKind.DLMS)
async def bad_fcs_discarded(target: DlmsTarget) -> CheckOutcome:
    """A public AARQ in an I-frame whose FCS is inverted must not be answered; the same
    frame intact must be."""
    if (reason := _applies(target)) is not None:
        return not_applicable(reason)
    server = _server(target)
    frame = i_frame(_PUBLIC, server, 0, 0, _public_aarq(target))
    sent: list[tuple[str, bytes]] = []
    try:
        link = await _open(target, sent)
        if link is None:
            return inconclusive("the meter did not answer SNRM with UA", _frames_text_empty(sent))
        try:
            sent.append(("I with a wrong FCS", corrupt_fcs(frame)))
            await link.send(corrupt_fcs(frame))
            got = await link.collect(_QUIET, until=FrameKind.I)
            evidence = _frames_text(link, sent)
            if _answered(got):
                return fail("the meter answered an I-frame whose FCS is wrong: it takes "
                            "corrupted frames", evidence)
        finally:
            await _close(target, link)
        if not await _positive_control(target, [frame], sent):
            return inconclusive("the intact frame was not answered either, so the silence "
                                "after the corrupted one proves nothing", _frames_text_empty(sent))
    except ConnectionFailed as exc:
        return inconclusive(f"the HDLC link could not be used: {exc}")
    return passed("an I-frame with a wrong FCS got no answer; the same frame intact was "
                  "answered", evidence)


@check("DLMS-HDLC-SEQ-01", "An HDLC I-frame that repeats an earlier N(S) is not executed again",
       severity=Severity.MEDIUM, requirements=_REQUIREMENTS, tags=["hdlc", "robustness", "replay"],
       target=TargetKind.DLMS)
async def repeated_ns_refused(target: DlmsTarget) -> CheckOutcome:
    """After an AARQ in I-frame N(S)=0 is answered, the same request again with N(S)=0
    (the meter expects 1) must not be answered as a new request."""
    if (reason := _applies(target)) is not None:
        return not_applicable(reason)
    server = _server(target)
    aarq = _public_aarq(target)
    first = i_frame(_PUBLIC, server, 0, 0, aarq)
    again = i_frame(_PUBLIC, server, 0, 1, aarq)  # N(R) acknowledges the answer; N(S) stale
    sent: list[tuple[str, bytes]] = []
    try:
        link = await _open(target, sent)
        if link is None:
            return inconclusive("the meter did not answer SNRM with UA", _frames_text_empty(sent))
        try:
            sent.append(("I N(S)=0", first))
            await link.send(first)
            answers = [f for f in await link.collect(target.timeout, until=FrameKind.I)
                       if f.kind is FrameKind.I]
            if not answers:
                return inconclusive("the first AARQ was not answered: the repeat would prove "
                                    "nothing", _frames_text(link, sent))
            sent.append(("I N(S)=0 again", again))
            await link.send(again)
            got = await link.collect(_QUIET, until=FrameKind.I)
            evidence = _frames_text(link, sent)
        finally:
            await _close(target, link)
    except ConnectionFailed as exc:
        return inconclusive(f"the HDLC link could not be used: {exc}")
    # a copy of the meter's previous answer (same N(S)) is a retransmission, not a new
    # execution; a new I-frame is the repeated request answered again
    if any(f.kind is FrameKind.I and f.ns != answers[0].ns for f in got):
        return fail("the meter answered an I-frame whose N(S) repeats the previous one: a "
                    "repeated frame executes its request twice", evidence)
    return passed("the repeated I-frame (N(S)=0 where 1 was due) was not answered; the first "
                  "one was", evidence)


@check("DLMS-HDLC-INFO-01",
       "An HDLC information field above the negotiated maximum is refused",
       severity=Severity.MEDIUM, requirements=_REQUIREMENTS, tags=["hdlc", "robustness"],
       target=TargetKind.DLMS)
async def oversized_info_refused(target: DlmsTarget) -> CheckOutcome:
    """SNRM without parameters fixes the meter's receive limit at 128 bytes; a 200-byte
    information field must not be answered, the same request in two segments must be."""
    if (reason := _applies(target)) is not None:
        return not_applicable(reason)
    server = _server(target)
    initiate = target.public().initiate_request()
    # an AARQ that needs about 200 bytes: LLS with a long (wrong) password to the public
    # client, which any meter answers with an AARE (accepted or not)
    aarq = AARQ(application_context_name=ApplicationContextName.LOGICAL_NAME.oid,
                sender_acse_requirements=True, mechanism_name=AuthenticationMechanism.LLS.oid,
                calling_authentication_value=b"metercert-oversized-field-probe" * 5,
                user_information=initiate).to_bytes()
    info = LLC_COMMAND + aarq
    big = encode_frame(HdlcFrame(server, HdlcAddress(_PUBLIC), FrameKind.I, True,
                                 0, 0, False, info))
    cut = 128
    segments = [encode_frame(HdlcFrame(server, HdlcAddress(_PUBLIC), FrameKind.I,
                                       True, 0, 0, True, info[:cut])),
                encode_frame(HdlcFrame(server, HdlcAddress(_PUBLIC), FrameKind.I,
                                       True, 1, 0, False, info[cut:]))]
    sent: list[tuple[str, bytes]] = []
    try:
        link = await _open(target, sent)
        if link is None:
            return inconclusive("the meter did not answer SNRM with UA", _frames_text_empty(sent))
        try:
            sent.append((f"I with a {len(info)}-byte information field", big))
            await link.send(big)
            got = await link.collect(_QUIET, until=FrameKind.I)
            evidence = _frames_text(link, sent)
            if _answered(got):
                return fail(f"the meter answered a {len(info)}-byte information field after "
                            "negotiating 128: it takes frames above its receive limit", evidence)
        finally:
            await _close(target, link)
        if not await _positive_control(target, segments, sent):
            return inconclusive("the same request in two segments was not answered either: "
                                "the silence proves nothing", _frames_text_empty(sent))
    except ConnectionFailed as exc:
        return inconclusive(f"the HDLC link could not be used: {exc}")
    return passed(f"a {len(info)}-byte information field (limit 128) got no answer; the same "
                  "request in two segments was answered", evidence)


#: upper addresses no meter of ours uses: 0x0F is reserved by IEC 62056-46, 0x66 is an
#: ordinary logical device address a single-device meter does not have
_FOREIGN_UPPER = (0x0F, 0x66)


@check("DLMS-HDLC-ADDR-01", "HDLC frames to another server address are not answered",
       severity=Severity.MEDIUM, requirements=_REQUIREMENTS, tags=["hdlc", "robustness"],
       target=TargetKind.DLMS)
async def foreign_address_ignored(target: DlmsTarget) -> CheckOutcome:
    """SNRM to logical devices 0x0F and 0x66 (same physical address) must get no frame
    back; SNRM to the meter's own address must get UA."""
    if (reason := _applies(target)) is not None:
        return not_applicable(reason)
    own = _server(target)
    sent: list[tuple[str, bytes]] = []
    answered: list[str] = []
    try:
        link = await RawHdlcLink.open(target.transport, target.host, target.port,
                                      timeout=target.timeout)
        try:
            for upper in _FOREIGN_UPPER:
                if upper == own.upper:
                    continue
                other = HdlcAddress(upper, own.lower)
                snrm = encode_frame(HdlcFrame(other, HdlcAddress(_PUBLIC), FrameKind.SNRM))
                sent.append((f"SNRM to {other}", snrm))
                await link.send(snrm)
                got = await link.collect(_QUIET, until=FrameKind.UA)
                if got:
                    answered.append(f"{other}: {', '.join(f.kind.value for f in got)}")
                    disc = encode_frame(HdlcFrame(other, HdlcAddress(_PUBLIC), FrameKind.DISC))
                    sent.append((f"DISC to {other}", disc))
                    await link.send(disc)
                    await link.collect(0.5, until=FrameKind.UA)
            evidence = _frames_text(link, sent)
        finally:
            await link.close()
        if answered:
            return fail("the meter answered frames addressed to another HDLC station: "
                        + "; ".join(answered), evidence)
        control = await _open(target, sent)
        if control is None:
            return inconclusive("the meter did not answer SNRM to its own address either, so "
                                "the silence proves nothing", _frames_text_empty(sent))
        await _close(target, control)
    except ConnectionFailed as exc:
        return inconclusive(f"the HDLC link could not be used: {exc}")
    return passed(f"SNRM to {', '.join(hex(u) for u in _FOREIGN_UPPER if u != own.upper)} got no "
                  f"answer; SNRM to the meter's own address {own} got UA", evidence)


def _frames_text_empty(sent: list[tuple[str, bytes]]) -> Evidence:
    return Evidence("HDLC frames sent", "\n".join(f"-> {w}: {d.hex(' ').upper()}"
                                                  for w, d in sent), "apdu-trace")
