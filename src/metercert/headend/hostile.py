"""The reference meter turned round: a meter session that lies to the client on purpose.

:class:`HostileSession` is the reference meter's own association machine
(:class:`metercert.meter.session.MeterSession`) with three hooks: every APDU in and out
is recorded in a :class:`ConnectionLog`; GETs of the campaign register are answered with
values the campaign can recognise (``GENUINE_BASE + n`` for the n-th GET); and the
:class:`Plan` of the running scenario replaces chosen responses with hostile ones
(a flipped tag or ciphertext bit, a replay, a stale or forged counter, no or less
protection, a lower suite, a wrong f(CtoS), malformed or oversized APDUs, pushes).
Everything else (association, HLS, counters, key transfer) is the conformant meter's.

The meter under a head-end campaign serves a stale client counter instead of refusing it
(its window still moves on every fresh one, so a client that synchronises by reading the
invocation counter object reads the true value) and never locks a client out
(``no-lockout``): the client is the device under test, and each of its runs must be served
so that what it sends can be judged (a restarted counter is the client's finding, judged
by HE-IC-SEND-01, not a reason to stop).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from metercert.cosem import (
    AARQ,
    ActionRequestNormal,
    ActionResponseNormal,
    ActionResult,
    CosemDecodeError,
    DataType,
    DlmsData,
    GetRequestNormal,
    GetResponseNormal,
    ObisCode,
    decode_apdu,
)
from metercert.cosem.xdlms.notification import DataNotification
from metercert.headend.observation import (
    CIPHERTEXT_MASK,
    AarqSeen,
    ConnectionLog,
    KeyTransferSeen,
    WireEvent,
    forged_value,
    genuine_value,
)
from metercert.meter.session import MeterSession, Phase, _Request
from metercert.security import (
    ApduFormatError,
    CipheringForm,
    KeyId,
    KeyUnwrapFailed,
    ReplayGuard,
    SecurityControl,
    is_ciphered,
    parse_ciphered,
    protect,
    tag_name,
    unwrap_key,
)

if TYPE_CHECKING:
    from metercert.meter.model import Meter

#: how far above the last genuine counter the forged-counter scenario jumps
FORGED_JUMP = 1000
#: size of the value in the oversized response (beyond any client's negotiated PDU)
OVERSIZED_VALUE = 60000
#: push values: genuine pushes carry PUSH_BASE + n, the badly tagged one PUSH_FORGED + n
PUSH_BASE = 7000
PUSH_FORGED = 907000


class Lie(enum.Enum):
    """What the meter does to the response of one GET."""

    FLIP_TAG = "forged value, one tag bit flipped"
    FLIP_CIPHERTEXT = "genuine response, one ciphertext bit flipped"
    REPLAY = "the response to the previous GET, byte for byte"
    EQUAL_COUNTER = "forged value, valid tag, the previous response's counter again"
    LOWER_COUNTER = "forged value, valid tag, a counter below the previous response's"
    HIGH_COUNTER_BAD_TAG = (f"forged value, counter {FORGED_JUMP} ahead, tag bit flipped; then "
                            "the genuine response with the right counter")
    PLAIN = "forged value, unprotected (plain get-response)"
    AUTH_ONLY = "forged value, authenticated only (SC without encryption)"
    LOWER_SUITE = "forged value, valid tag, security suite 0 in the SC byte"
    TRUNCATED = "malformed: ciphered APDU cut short"
    BAD_PLAINTEXT = "malformed: valid tag over a plaintext that does not decode"
    UNKNOWN_TAG = "malformed: an APDU with an unknown tag"
    OVERSIZED = f"oversized: a genuine response carrying {OVERSIZED_VALUE} bytes"
    SHORT_FRAME = "a wrapper header announcing 65535 bytes, then silence"


@dataclass(frozen=True)
class Plan:
    """The misbehaviour of one scenario (a fresh plan per client run)."""

    name: str
    lies: dict[int, Lie] = field(default_factory=dict)
    wrong_f_ctos: bool = False
    pushes: bool = False
    #: the client is asked to do something other than reads (``key-transfer``)
    action: str = "read"


SCENARIOS: dict[str, Plan] = {p.name: p for p in (
    Plan("genuine"),
    Plan("genuine-again"),
    Plan("restart"),
    Plan("flip-tag", {1: Lie.FLIP_TAG}),
    Plan("flip-ciphertext", {1: Lie.FLIP_CIPHERTEXT}),
    Plan("replay", {2: Lie.REPLAY}),
    Plan("equal-counter", {2: Lie.EQUAL_COUNTER}),
    Plan("lower-counter", {2: Lie.LOWER_COUNTER}),
    Plan("forged-high-counter", {1: Lie.HIGH_COUNTER_BAD_TAG}),
    Plan("unprotected", {1: Lie.PLAIN}),
    Plan("under-protected", {1: Lie.AUTH_ONLY}),
    Plan("lower-suite", {1: Lie.LOWER_SUITE}),
    Plan("wrong-f-ctos", wrong_f_ctos=True),
    Plan("malformed", {1: Lie.TRUNCATED, 2: Lie.BAD_PLAINTEXT, 3: Lie.UNKNOWN_TAG}),
    Plan("oversized", {1: Lie.OVERSIZED, 2: Lie.SHORT_FRAME}),
    Plan("push", pushes=True),
    Plan("key-transfer", action="key-transfer"),
)}


def _flip_last(data: bytes, mask: int = 0x01) -> bytes:
    return data[:-1] + bytes([data[-1] ^ mask])


def _summary(apdu: bytes) -> str:
    if not apdu:
        return "empty APDU"
    try:
        return tag_name(apdu[0])
    except Exception:  # noqa: BLE001 - an unknown tag is just named by its byte
        return f"tag 0x{apdu[0]:02X}"


class HostileSession(MeterSession):
    """One association of the hostile meter (see the module docstring)."""

    def __init__(self, meter: Meter, client_sap: int, *, log: ConnectionLog, plan: Plan | None,
                 register: ObisCode) -> None:
        self.log = log
        self.plan = plan          # None: an association the campaign leaves honest
        self.register = register
        self.reads = 0
        self._read: int | None = None
        self._answers: dict[int, tuple[bytes, int | None]] = {}  # read -> (wire, counter)
        self._last_tx_counter: int | None = None
        self._forged_counter: int | None = None
        #: set when HLS pass 4 completed: the server loop sends the plan's pushes then
        self.just_associated = False
        #: set when the response to send is not an APDU but a cut-short wrapper frame
        self.short_frame = False
        #: APDUs to send right after the answer (the genuine response after a forgery)
        self.extra: list[bytes] = []
        super().__init__(meter, client_sap)

    # -- recording ------------------------------------------------------------------------
    def handle(self, apdu: bytes) -> bytes | None:
        self._read = None
        self.short_frame = False
        self.extra = []
        event = WireEvent("rx", apdu[0] if apdu else -1, _summary(apdu), self.client_sap, raw=apdu)
        if is_ciphered(apdu):
            try:
                parsed = parse_ciphered(apdu)
                event.invocation_counter = parsed.invocation_counter
                event.security_control = parsed.security_control.byte
            except (ApduFormatError, KeyError, ValueError):
                event.summary += " (does not parse)"
        self.log.add(event)
        answer = super().handle(apdu)
        event.read = self._read
        if self._read is not None:
            event.summary += f" (GET {self._read})"
        if answer is not None:
            self._record_tx(answer)
        for wire in self.extra:
            self._record_tx(wire, "the genuine response, right counter, after the forged one")
        return answer

    def _record_tx(self, answer: bytes, hostile: str = "") -> None:
        ic = sc = None
        if is_ciphered(answer):
            try:
                parsed = parse_ciphered(answer)
                ic, sc = parsed.invocation_counter, parsed.security_control.byte
            except (ApduFormatError, KeyError, ValueError):
                pass
        lie = self.plan.lies.get(self._read) if self.plan and self._read is not None else None
        summary = _summary(answer)
        if self._read is not None:
            summary += f" (answer to GET {self._read})"
        self.log.add(WireEvent("tx", answer[0] if answer else -1, summary, self.client_sap,
                               ic, sc, self._read, hostile or (lie.value if lie else ""),
                               raw=answer))
        if ic is not None and not (lie and lie in (Lie.HIGH_COUNTER_BAD_TAG,)):
            self._last_tx_counter = ic

    def _aarq(self, aarq: AARQ) -> bytes:
        ic = None
        if aarq.user_information and is_ciphered(aarq.user_information):
            try:
                ic = parse_ciphered(aarq.user_information).invocation_counter
            except ApduFormatError:
                pass
        if self.log.events and ic is not None:
            self.log.events[-1].invocation_counter = ic
        self.log.aarqs.append(AarqSeen(
            self.client_sap, None if aarq.mechanism is None else int(aarq.mechanism),
            str(aarq.application_context_name), ic,
            (aarq.calling_ap_title or b"").hex().upper()))
        return super()._aarq(aarq)

    def _open_request(self, apdu: bytes) -> _Request | bytes:
        request = super()._open_request(apdu)
        if isinstance(request, _Request) and self.log.events:
            self.log.events[-1].plain = request.plaintext
        return request

    def _key_transfer(self, request: ActionRequestNormal) -> bytes:
        """Judge a key_transfer and answer it without installing the key: the campaign's
        key file must stay valid for the scenarios that follow."""
        n = len(self.log.key_transfers)
        self._inspect_key_transfer(request)
        judged = self.log.key_transfers[n:]
        ok = bool(judged) and all(t.unwraps for t in judged)
        self.log.notes.append("key_transfer judged and answered "
                              f"{'success' if ok else 'other-reason'}; the key is not installed")
        return ActionResponseNormal(ActionResult.SUCCESS if ok else ActionResult.OTHER_REASON,
                                    None, request.invoke_id_and_priority).to_bytes()

    def _inspect_key_transfer(self, request: ActionRequestNormal) -> None:
        if self.secrets is None:
            return
        params = request.parameters
        items = params.value if params is not None and params.type is DataType.ARRAY else []
        for item in items:
            fields: tuple[DlmsData, ...] = (tuple(item.value) if item.type is DataType.STRUCTURE
                                            else ())
            if len(fields) != 2 or fields[1].type is not DataType.OCTET_STRING:
                self.log.key_transfers.append(KeyTransferSeen(self.client_sap, -1, 0, False,
                                                              "entry is not (key_id, octets)"))
                continue
            key_id, wrapped = int(fields[0].value), bytes(fields[1].value)
            try:
                key = unwrap_key(self.secrets.kek, wrapped, KeyId(key_id).name.lower()
                                 if 0 <= key_id <= 3 else "key")
                expected = 32 if self.meter.profile.security_suite == 2 else 16
                ok = len(key) == expected
                detail = (f"RFC 3394 integrity check passes, {len(key)}-byte key"
                          + ("" if ok else f" (suite needs {expected})"))
            except KeyUnwrapFailed:
                ok, detail = False, "does not unwrap under the KEK (RFC 3394 integrity check fails)"
            self.log.key_transfers.append(KeyTransferSeen(self.client_sap, key_id, len(wrapped),
                                                          ok, detail))

    def _fresh(self, guard: ReplayGuard, counter: int) -> bool:
        if not guard.accept(counter):
            self.log.notes.append(f"client counter {counter} is not above the last accepted "
                                  f"{guard.last_accepted}: served anyway (HE-IC-SEND-01 judges it)")
        return True

    # -- the campaign register --------------------------------------------------------------
    def _serve(self, plain: bytes) -> bytes:
        if self.phase is Phase.ASSOCIATED:
            try:
                request = decode_apdu(plain)
            except CosemDecodeError:
                request = None
            if (isinstance(request, GetRequestNormal) and request.attribute.instance == self.register
                    and request.attribute.attribute_id == 2):
                self.reads += 1
                self._read = self.reads
                value = DlmsData.double_long_unsigned(genuine_value(self.reads))
                if self.plan and self.plan.lies.get(self.reads) is Lie.OVERSIZED:
                    value = DlmsData.octet_string(bytes(OVERSIZED_VALUE))
                return GetResponseNormal(value, request.invoke_id_and_priority).to_bytes()
            if (isinstance(request, ActionRequestNormal) and request.method.class_id == 64
                    and request.method.method_id == 2):
                return self._key_transfer(request)
        return super()._serve(plain)

    def _reply_to_hls(self, request: ActionRequestNormal) -> bytes:
        answer = super()._reply_to_hls(request)
        if self.phase is Phase.ASSOCIATED:
            self.just_associated = True
            if self.plan is not None and self.plan.wrong_f_ctos:
                response = ActionResponseNormal.from_bytes(answer)
                assert response.return_data is not None
                f_ctos = _flip_last(bytes(response.return_data.value))
                self.log.notes.append("HLS pass 4: f(CtoS) sent with its last byte altered")
                return ActionResponseNormal(response.result, DlmsData.octet_string(f_ctos),
                                            response.invoke_id_and_priority).to_bytes()
        return answer

    # -- lies --------------------------------------------------------------------------------
    def _close_response(self, response: bytes, request: _Request) -> bytes:
        lie = self.plan.lies.get(self._read) if self.plan and self._read is not None else None
        if lie is None or request.form is None:
            out = super()._close_response(response, request)
            if self._read is not None:
                self._answers[self._read] = (out, self._counter_of(out))
            return out
        return self._lie(lie, response, request)

    @staticmethod
    def _counter_of(apdu: bytes) -> int | None:
        try:
            return parse_ciphered(apdu).invocation_counter
        except (ApduFormatError, KeyError, ValueError):
            return None

    def _protect(self, plain: bytes, request: _Request, *, counter: int | None = None,
                 sc: SecurityControl | None = None, key_size: int | None = None) -> bytes:
        assert self.secrets is not None
        key = self.dedicated_key if request.form and request.form.dedicated else self.secrets.guek
        if counter is None:
            counter = self.meter.state.tx_counter(self.e).next()
        return protect(plain, security_control=sc or SecurityControl(request.suite, *self.meter.requires),
                       system_title=self.meter.state.system_title, invocation_counter=counter,
                       encryption_key=key, authentication_key=self.secrets.ak,
                       form=request.form or CipheringForm.GLOBAL, key_size=key_size)

    def _lie(self, lie: Lie, response: bytes, request: _Request) -> bytes:
        n = self._read or 0
        forged = GetResponseNormal(DlmsData.double_long_unsigned(forged_value(n)),
                                   response[2] if len(response) > 2 else 0xC1).to_bytes()
        last = self._last_tx_counter or 0
        if lie is Lie.FLIP_TAG:
            return _flip_last(self._protect(forged, request))
        if lie is Lie.FLIP_CIPHERTEXT:
            wire = self._protect(response, request)
            i = len(wire) - 13   # the last ciphertext byte, just before the 12-byte tag
            return wire[:i] + bytes([wire[i] ^ CIPHERTEXT_MASK]) + wire[i + 1:]
        if lie is Lie.REPLAY:
            earlier = self._answers.get(n - 1)
            if earlier is None:
                self.log.notes.append(f"no earlier response to replay at GET {n}: sent genuine")
                return self._protect(response, request)
            return earlier[0]
        if lie is Lie.EQUAL_COUNTER:
            return self._protect(forged, request, counter=last)
        if lie is Lie.LOWER_COUNTER:
            return self._protect(forged, request, counter=max(0, last - 1))
        if lie is Lie.HIGH_COUNTER_BAD_TAG:
            self._forged_counter = last + FORGED_JUMP
            self.extra = [self._protect(response, request)]
            return _flip_last(self._protect(forged, request, counter=self._forged_counter))
        if lie is Lie.PLAIN:
            return forged
        if lie is Lie.AUTH_ONLY:
            return self._protect(forged, request,
                                 sc=SecurityControl(request.suite, True, False))
        if lie is Lie.LOWER_SUITE:
            if request.suite == 0:
                self.log.notes.append("association in suite 0: no lower suite to send")
                return self._protect(response, request)
            assert self.secrets is not None
            return self._protect(forged, request, sc=SecurityControl(0, *self.meter.requires),
                                 key_size=len(self.secrets.guek))
        if lie is Lie.TRUNCATED:
            wire = self._protect(response, request)
            return wire[:9]
        if lie is Lie.BAD_PLAINTEXT:
            return self._protect(bytes([0xC4, 0x01, response[2] if len(response) > 2 else 0xC1,
                                        0x00, 0xFF, 0xFF, 0xFF]), request)
        if lie is Lie.UNKNOWN_TAG:
            return b"\xff\x00\x00"
        if lie is Lie.OVERSIZED:
            return self._protect(response, request)
        if lie is Lie.SHORT_FRAME:
            self.short_frame = True
            return self._protect(response, request)
        raise AssertionError(lie)

    # -- pushes ------------------------------------------------------------------------------
    def pushes(self) -> list[tuple[bytes, str]]:
        """The plan's pushes after association: genuine, replayed, badly tagged, genuine."""
        if self.plan is None or not self.plan.pushes or self.secrets is None:
            return []
        request = _Request(b"", CipheringForm.GENERAL_GLO, self.suite)

        def note(n: int, value: int) -> bytes:
            return DataNotification(DlmsData.double_long_unsigned(value), n).to_bytes()

        first = self._protect(note(1, PUSH_BASE + 1), request)
        bad = _flip_last(self._protect(note(3, PUSH_FORGED + 3), request))
        last = self._protect(note(4, PUSH_BASE + 4), request)
        return [(first, ""), (first, "push 1 replayed byte for byte"),
                (bad, "forged push value, tag bit flipped"), (last, "")]

    def record_push(self, wire: bytes, hostile: str) -> None:
        self._read = None
        self._record_tx(wire, hostile)
