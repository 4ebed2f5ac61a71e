"""One association between a client and the reference meter (sans-IO).

The machine
-----------
A session starts IDLE and accepts only an AARQ (or an RLRQ, answered at once).

* Public association (a role without authentication, the VIEWER at client SAP 16):
  the AARQ must name the plain LN context and no mechanism; the meter answers an
  AARE with a plain InitiateResponse and the session is ASSOCIATED. Requests and
  responses are plain.
* Protected association (every other role): the AARQ must name LN-with-ciphering,
  the configured HLS mechanism (legacy MD5/SHA-1 are refused, LLS and "none" are
  refused), carry the client's system title and a challenge CtoS, and carry a
  ciphered InitiateRequest whose security suite is the configured one (a lower
  suite is a downgrade and is refused), whose protection meets the policy, whose
  tag verifies under the association's GUEK/AK and whose invocation counter is
  fresh. The meter answers AARE accepted / authentication-required with its
  challenge StoC and a ciphered InitiateResponse; the session is PENDING.
  In PENDING only ``reply_to_HLS_authentication`` is served: if f(StoC) verifies
  the session becomes ASSOCIATED and the meter returns f(CtoS); otherwise the
  failure counts toward the lockout of that client SAP.
* ASSOCIATED protected sessions serve GET/SET/ACTION only when the request is
  ciphered (any form: global, dedicated, general-glo, general-ded), in the
  configured suite, authenticated and encrypted as the policy requires, verifies,
  and carries an invocation counter above the last accepted one (persisted before
  the request is executed). The response uses the same form and a counter from
  the meter's crash-safe store; if the store cannot persist, the session fails
  closed: a plain exception-response and the connection closes.
* An RLRQ returns the session to IDLE.

Anything malformed gets an exception-response (the session never raises); each
refusal is written to the security event log.
"""

from __future__ import annotations

import enum
import hmac
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from metercert.cosem import (
    AARE,
    AARQ,
    RLRE,
    RLRQ,
    AcseServiceUserDiagnostic,
    ActionRequestNormal,
    ActionResponseNormal,
    ActionResult,
    ApplicationContextName,
    AssociationResult,
    AuthenticationMechanism,
    Conformance,
    CosemAttributeDescriptor,
    CosemDecodeError,
    DataAccessResult,
    DataType,
    DlmsData,
    ExceptionResponse,
    GetRequestNext,
    GetRequestNormal,
    GetResponseNormal,
    GetResponseWithDatablock,
    InitiateRequest,
    InitiateResponse,
    ObisCode,
    ObjectIdentifier,
    ReleaseResponseReason,
    ServiceError,
    SetRequestNormal,
    SetResponseNormal,
    StateError,
    decode_apdu,
    encode_data,
)
from metercert.meter import general as _general
from metercert.meter.objects import CosemObject, Event, PendingKey
from metercert.meter.rbac import Role
from metercert.meter.state import AssociationSecrets
from metercert.security import (
    ApduFormatError,
    AuthenticationFailed,
    CipheringForm,
    CounterStoreError,
    HlsCredentials,
    InvalidKey,
    Key,
    KeyUnwrapFailed,
    Mechanism,
    ReplayGuard,
    SecurityControl,
    hls,
    is_ciphered,
    parse_ciphered,
    protect,
    unprotect_parsed,
)
from metercert.security.protection import GLOBAL_TAGS, ApduCipher, HeldCiphers, cipher_for

if TYPE_CHECKING:  # typing only: importing the model here would be circular
    from metercert.meter.model import Meter

CURRENT_ASSOCIATION = ObisCode(0, 0, 40, 0, 0, 255)
METER_CONFORMANCE = (Conformance.GET | Conformance.SET | Conformance.ACTION
                     | Conformance.SELECTIVE_ACCESS | Conformance.BLOCK_TRANSFER_WITH_GET_OR_READ
                     | Conformance.GENERAL_PROTECTION)
_MECHANISMS = {"hls-gmac": Mechanism.HLS_GMAC, "hls-sha256": Mechanism.HLS_SHA256,
               "hls-ecdsa": Mechanism.HLS_ECDSA}


class Phase(enum.Enum):
    IDLE = "idle"
    PENDING = "pending"      # HLS pass 3 awaited
    ASSOCIATED = "associated"


class CloseConnection(Exception):
    """Raised by the session to ask the server to send a last APDU and close."""

    def __init__(self, last: bytes | None) -> None:
        super().__init__("closing")
        self.last = last


@dataclass
class _Request:
    plaintext: bytes
    form: CipheringForm | None
    suite: int
    general: _general.GeneralRequest | None = None  # 0xDD / 0xDF layers to mirror


def decode_request(plain: bytes) -> object:
    """:func:`decode_apdu`, with the commonest request read directly: a get-request-normal
    without selective access (13 bytes: tag C0 01, invoke-id-and-priority, class id,
    logical name, attribute id, no access selection). Anything else goes to decode_apdu,
    and both give the same request (tests/meter/test_session_fast_paths.py)."""
    if len(plain) == 13 and plain[0] == 0xC0 and plain[1] == 0x01 and plain[12] == 0:
        attribute = plain[11]
        return GetRequestNormal(
            CosemAttributeDescriptor((plain[3] << 8) | plain[4], ObisCode(*plain[5:11]),
                                     attribute - 256 if attribute > 127 else attribute),
            None, plain[2])
    return decode_apdu(plain)


def _exception(service: ServiceError, ic: int | None = None,
               state: StateError = StateError.SERVICE_NOT_ALLOWED) -> bytes:
    return ExceptionResponse(state, service, ic).to_bytes()


class MeterSession:
    def __init__(self, meter: Meter, client_sap: int) -> None:
        self.meter = meter
        self.client_sap = client_sap
        self.phase = Phase.IDLE
        #: the object lookups of the session's role (Meter.lookup, which depends on the
        #: role only; emptied when another role associates, see _lookup)
        self._lookups: dict[tuple[int, ObisCode, str, int],
                            tuple[CosemObject | None, DataAccessResult]] = {}
        self._lookups_role: Role | None = None
        self._reset()

    def _reset(self) -> None:
        self._association_tx = 0
        self.phase = Phase.IDLE
        self.role: Role | None = None
        self.e = 0
        self.secrets: AssociationSecrets | None = None
        self.protected = False
        self.client_title: bytes | None = None
        self.ctos = b""
        self.stoc = b""
        self.mechanism = Mechanism.NONE
        self.mechanism_oid = AuthenticationMechanism.NONE.oid
        self.context_name: ObjectIdentifier = ApplicationContextName.LOGICAL_NAME.oid
        self.conformance = Conformance(0)
        self.client_max_pdu = 0xFFFF
        self.dedicated_key: Key | None = None
        self.dedicated_guard = ReplayGuard(None, b"\0" * 8, "dedicated")
        self.pending_keys: list[PendingKey] = []
        self.blocks: list[bytes] = []
        self.block_invoke = 0
        self.lls_password: bytes | None = None
        self.suite = self.meter.profile.security_suite
        self._held = HeldCiphers(self._make_held_ciphers)  # the association's bound ciphers

    @property
    def associated(self) -> bool:
        return self.phase is Phase.ASSOCIATED

    def secret_for_attribute_7(self) -> bytes:
        if self.lls_password is not None:
            return self.lls_password
        return self.secrets.hls_secret if self.secrets else b""

    # -- entry point ------------------------------------------------------------------------
    def handle(self, apdu: bytes) -> bytes | None:
        """Answer one APDU (None: no answer). Raises only :class:`CloseConnection`."""
        try:
            return self._dispatch(apdu)
        except CloseConnection:
            raise
        except CounterStoreError:
            self.meter.log.add(Event.MALFORMED_APDU, "counter store failed: closing")
            raise CloseConnection(_exception(ServiceError.OPERATION_NOT_POSSIBLE)) from None
        except (CosemDecodeError, ApduFormatError, InvalidKey, ValueError, IndexError,
                KeyError, TypeError, OverflowError) as exc:
            self.meter.log.add(Event.MALFORMED_APDU, type(exc).__name__)
            return _exception(ServiceError.OTHER_REASON, state=StateError.SERVICE_UNKNOWN)

    def _dispatch(self, apdu: bytes) -> bytes | None:
        if not apdu:
            return _exception(ServiceError.OTHER_REASON, state=StateError.SERVICE_UNKNOWN)
        tag = apdu[0]
        if tag == 0x60:
            return self._aarq(AARQ.from_bytes(apdu))
        if tag == 0x62:
            return self._release(RLRQ.from_bytes(apdu))
        if self.phase is Phase.IDLE:
            return _exception(ServiceError.OPERATION_NOT_POSSIBLE)
        request = self._open_request(apdu)
        if isinstance(request, bytes):
            return request
        refusal = self._unsupported(request.plaintext)
        response = refusal if refusal is not None else self._serve(request.plaintext)
        if response.startswith(b"\xd8") and request.general is None and request.form not in (
                CipheringForm.GENERAL_GLO, CipheringForm.GENERAL_DED):
            return response  # there is no glo-/ded- tag for exception-response: it goes plain
        out = self._close_response(response, request)
        self._apply_pending_keys()
        return out

    def _own_counter(self) -> int:
        """The meter's next sending counter for this association's key: from the persistent
        store (the ic-per-association flaw counts from 0 in every association instead)."""
        if self.meter.profile.has("ic-per-association"):
            value = self._association_tx
            self._association_tx += 1
            return value
        return self.meter.state.tx_counter(self.e).next()

    # -- release ------------------------------------------------------------------------------
    def _release(self, rlrq: RLRQ) -> bytes:
        """A-RELEASE. On a ciphered association the protected form carries a ciphered
        InitiateRequest in the RLRQ's user-information and is answered with a ciphered
        InitiateResponse in the RLRE's (the layout of Gurux's C stack: client.c
        cl_releaseRequest2 with useProtectedRelease, server.c svr_handleReleaseRequest;
        Gurux.DLMS.Net's UseProtectedRelease: "release is including a ciphered xDLMS
        Initiate request"). With ``protected_release: required`` a bare RLRQ is refused."""
        meter = self.meter
        user_info = rlrq.user_information
        if meter.profile.has("release-ignored") and self.phase is not Phase.IDLE:
            return RLRE(ReleaseResponseReason.NORMAL).to_bytes()  # and the association stays
        if self.phase is Phase.IDLE or not self.protected:
            self._end_association()
            return RLRE(ReleaseResponseReason.NORMAL).to_bytes()
        if user_info is None or not is_ciphered(user_info):
            if meter.profile.protected_release == "required":
                meter.log.add(Event.UNPROTECTED_REQUEST,
                              f"sap {self.client_sap}: unprotected release refused")
                return RLRE(ReleaseResponseReason.NOT_FINISHED).to_bytes()
            self._end_association()
            return RLRE(ReleaseResponseReason.NORMAL).to_bytes()
        opened = self._open_release(user_info)
        if opened is None:
            return RLRE(ReleaseResponseReason.NOT_FINISHED).to_bytes()
        plaintext, form, suite = opened
        InitiateRequest.from_bytes(plaintext)
        assert self.secrets is not None
        key = self.dedicated_key if form.dedicated else self.secrets.guek
        sc = SecurityControl(suite, *meter.requires)
        answer = protect(self._initiate_response().to_bytes(), security_control=sc,
                         system_title=meter.state.system_title,
                         invocation_counter=self._own_counter(),
                         encryption_key=key, authentication_key=self.secrets.ak, form=form,
                         key_size=self._key_size(key))
        self._end_association()
        return RLRE(ReleaseResponseReason.NORMAL, user_information=answer).to_bytes()

    def _open_release(self, user_info: bytes) -> tuple[bytes, CipheringForm, int] | None:
        """The verified InitiateRequest of a protected RLRQ, or None (logged) if it fails."""
        meter = self.meter
        assert self.secrets is not None
        try:
            parsed = parse_ciphered(user_info)
        except ApduFormatError:
            meter.log.add(Event.MALFORMED_APDU, f"sap {self.client_sap}: release user-information")
            return None
        sc = parsed.security_control
        if (parsed.plain_tag not in (None, 0x01) or self._suite_problem(sc)
                or (parsed.system_title is not None and parsed.system_title != self.client_title)
                or (parsed.form.dedicated and self.dedicated_key is None)):
            meter.log.add(Event.DECIPHERING_ERROR, f"sap {self.client_sap}: release refused")
            return None
        need_auth, need_enc = meter.requires
        if (need_auth and not sc.authenticated) or (need_enc and not sc.encrypted):
            meter.log.add(Event.UNPROTECTED_REQUEST,
                          f"sap {self.client_sap}: under-protected release SC 0x{sc.byte:02X}")
            return None
        if parsed.form.dedicated:
            key, guard = self.dedicated_key, self.dedicated_guard
        else:
            key, guard = self.secrets.guek, meter.state.rx_guard(self.e)
        try:
            opened = unprotect_parsed(parsed, encryption_key=key,
                                      authentication_key=self.secrets.ak,
                                      system_title=self.client_title, key_size=self._key_size(key))
        except AuthenticationFailed:
            meter.log.add(Event.DECIPHERING_ERROR, f"sap {self.client_sap}: release tag")
            return None
        if not self._fresh(guard, parsed.invocation_counter):
            return None
        return opened.plaintext, parsed.form, sc.suite

    def _end_association(self) -> None:
        self._reset()
        self.meter.state.save_volatile_counters()  # a clean end (the replay-window flaw)

    # -- unsupported services ---------------------------------------------------------------
    def _unsupported(self, plain: bytes) -> bytes | None:
        """``unsupported_service: exception-response``: the ExceptionResponse a meter of that
        kind answers to a service it does not offer (list services, selective access on an
        object without it, a service outside the association's conformance); None: serve."""
        if self.meter.profile.unsupported_service != "exception-response" or not plain:
            return None
        refuse = _exception(ServiceError.SERVICE_NOT_SUPPORTED)
        try:
            request = decode_apdu(plain)
        except CosemDecodeError:
            return refuse if plain[0] in (0xC0, 0xC1, 0xC3, 0xD9) else None
        if self.phase is not Phase.ASSOCIATED:
            return None
        if not isinstance(request, (GetRequestNormal, GetRequestNext, SetRequestNormal,
                                    ActionRequestNormal)):
            return refuse  # list services, data-block SET/ACTION, ACCESS: not offered
        needed = {GetRequestNormal: Conformance.GET, GetRequestNext: Conformance.GET,
                  SetRequestNormal: Conformance.SET, ActionRequestNormal: Conformance.ACTION}
        for kind, bit in needed.items():
            if isinstance(request, kind) and not self.conformance & bit:
                return refuse
        if (isinstance(request, GetRequestNormal) and request.access_selection is not None
                and request.attribute.class_id != 7):
            return refuse  # selective access only on profile generic objects
        return None

    # -- association ------------------------------------------------------------------------
    def _reject(self, diagnostic: AcseServiceUserDiagnostic,
                result: AssociationResult = AssociationResult.REJECTED_PERMANENT,
                aarq: AARQ | None = None) -> bytes:
        self._reset()
        return AARE(result=result, result_source_diagnostic=diagnostic,
                    application_context_name=(aarq.application_context_name if aarq else
                                              ApplicationContextName.LOGICAL_NAME.oid),
                    responding_ap_title=self.meter.state.system_title).to_bytes()

    def _aarq(self, aarq: AARQ) -> bytes:
        meter, profile = self.meter, self.meter.profile
        self._reset()
        role = meter.rbac.role_for_sap(self.client_sap)
        if role is None:
            return self._reject(AcseServiceUserDiagnostic.NO_REASON_GIVEN, aarq=aarq)
        if meter.locked(self.client_sap):
            meter.log.add(Event.LOCKOUT, f"sap {self.client_sap}: association during lockout")
            return self._reject(AcseServiceUserDiagnostic.NO_REASON_GIVEN,
                                AssociationResult.REJECTED_TRANSIENT, aarq)
        context = aarq.context
        mechanism = aarq.mechanism
        if mechanism is None:
            return self._reject(
                AcseServiceUserDiagnostic.AUTHENTICATION_MECHANISM_NAME_NOT_RECOGNISED, aarq=aarq)
        mech = Mechanism(int(mechanism))
        lls = meter.lls.get(self.client_sap)
        if lls is not None:
            return self._lls_aarq(role, aarq, mech, profile.lls_passwords(lls))
        if not role.authenticated:
            if context is not ApplicationContextName.LOGICAL_NAME:
                return self._reject(
                    AcseServiceUserDiagnostic.APPLICATION_CONTEXT_NAME_NOT_SUPPORTED, aarq=aarq)
            if mech is not Mechanism.NONE:
                return self._reject(
                    AcseServiceUserDiagnostic.AUTHENTICATION_MECHANISM_NAME_NOT_RECOGNISED, aarq=aarq)
            return self._accept_plain(role, aarq)
        if mech is Mechanism.LLS and profile.has("default-lls-password") and role.name == "SECADM":
            # the flaw: a factory LLS password opens the management association
            if hmac.compare_digest(aarq.calling_authentication_value or b"", b"00000000"):
                self.lls_password = b"00000000"
                return self._accept_plain(role, aarq)
            meter.auth_failure(self.client_sap, "wrong LLS password")
            return self._reject(AcseServiceUserDiagnostic.AUTHENTICATION_FAILURE, aarq=aarq)
        if mech is Mechanism.NONE:
            meter.auth_failure(self.client_sap, "no authentication on a management association")
            return self._reject(AcseServiceUserDiagnostic.AUTHENTICATION_MECHANISM_NAME_REQUIRED,
                                aarq=aarq)
        legacy_pending = (profile.legacy_hls == "pending"
                          and mech in (Mechanism.HLS_MD5, Mechanism.HLS_SHA1))
        if mech is not _MECHANISMS[profile.mechanism] and not legacy_pending:
            meter.auth_failure(self.client_sap, f"mechanism {int(mech)} refused")
            return self._reject(
                AcseServiceUserDiagnostic.AUTHENTICATION_MECHANISM_NAME_NOT_RECOGNISED, aarq=aarq)
        if context is not ApplicationContextName.LOGICAL_NAME_WITH_CIPHERING:
            return self._reject(AcseServiceUserDiagnostic.APPLICATION_CONTEXT_NAME_NOT_SUPPORTED,
                                aarq=aarq)
        title = aarq.calling_ap_title
        if title is None or len(title) != 8:
            return self._reject(AcseServiceUserDiagnostic.CALLING_AP_TITLE_NOT_RECOGNIZED, aarq=aarq)
        ctos = aarq.calling_authentication_value or b""
        if len(ctos) not in profile.challenge_lengths:
            meter.auth_failure(self.client_sap, f"CtoS of {len(ctos)} bytes refused")
            return self._reject(AcseServiceUserDiagnostic.AUTHENTICATION_FAILURE, aarq=aarq)
        secrets = meter.state.secrets[role.association]
        user_info = aarq.user_information or b""
        if not is_ciphered(user_info):
            meter.log.add(Event.UNPROTECTED_REQUEST, f"sap {self.client_sap}: plain initiate")
            return self._reject(AcseServiceUserDiagnostic.NO_REASON_GIVEN, aarq=aarq)
        try:
            parsed = parse_ciphered(user_info)
        except ApduFormatError:
            return self._reject(AcseServiceUserDiagnostic.NO_REASON_GIVEN, aarq=aarq)
        if parsed.form.dedicated or parsed.plain_tag not in (None, 0x01):
            return self._reject(AcseServiceUserDiagnostic.NO_REASON_GIVEN, aarq=aarq)
        suite_problem = self._suite_problem(parsed.security_control)
        if suite_problem:
            return self._reject(AcseServiceUserDiagnostic.NO_REASON_GIVEN, aarq=aarq)
        if parsed.system_title is not None and parsed.system_title != title:
            return self._reject(AcseServiceUserDiagnostic.CALLING_AP_TITLE_NOT_RECOGNIZED, aarq=aarq)
        try:
            opened = unprotect_parsed(parsed, encryption_key=secrets.guek,
                                      authentication_key=secrets.ak, system_title=title,
                                      key_size=self._key_size(secrets.guek))
        except AuthenticationFailed:
            meter.auth_failure(self.client_sap, "initiate-request does not verify")
            return self._reject(AcseServiceUserDiagnostic.AUTHENTICATION_FAILURE, aarq=aarq)
        if not self._fresh(meter.state.rx_guard(role.association), parsed.invocation_counter):
            return self._reject(AcseServiceUserDiagnostic.NO_REASON_GIVEN, aarq=aarq)
        initiate = InitiateRequest.from_bytes(opened.plaintext)
        key_size = 32 if profile.security_suite == 2 else 16
        if initiate.dedicated_key is not None and len(initiate.dedicated_key) != key_size:
            return self._reject(AcseServiceUserDiagnostic.NO_REASON_GIVEN, aarq=aarq)
        # accepted: pass 2 of HLS
        self.role, self.e, self.secrets, self.protected = role, role.association, secrets, True
        self.client_title, self.ctos = title, ctos
        self.stoc = os.urandom(profile.server_challenge_length)
        self.mechanism = mech
        self.suite = parsed.security_control.suite
        self.mechanism_oid = aarq.mechanism_name or mechanism.oid
        self.context_name = aarq.application_context_name
        self._negotiate(initiate)
        if initiate.dedicated_key is not None:
            self.dedicated_key = Key(initiate.dedicated_key, "dedicated")
        self.phase = Phase.PENDING
        response = self._initiate_response().to_bytes()
        sc = SecurityControl(parsed.security_control.suite, *meter.requires)
        protected = protect(response, security_control=sc, system_title=meter.state.system_title,
                            invocation_counter=self._own_counter(),
                            encryption_key=secrets.guek, authentication_key=secrets.ak,
                            form=parsed.form, key_size=self._key_size(secrets.guek))
        return AARE(result=AssociationResult.ACCEPTED,
                    result_source_diagnostic=AcseServiceUserDiagnostic.AUTHENTICATION_REQUIRED,
                    application_context_name=self.context_name,
                    responding_ap_title=meter.state.system_title,
                    responder_acse_requirements=True,
                    mechanism_name=self.mechanism_oid,
                    responding_authentication_value=self.stoc,
                    user_information=protected).to_bytes()

    def _lls_aarq(self, role: Role, aarq: AARQ, mech: Mechanism,
                  passwords: tuple[bytes, ...]) -> bytes:
        """An LLS association: the plain LN context and a password in the AARQ."""
        meter = self.meter
        if mech is not Mechanism.LLS:
            meter.auth_failure(self.client_sap, f"mechanism {int(mech)} on an LLS association")
            return self._reject(
                AcseServiceUserDiagnostic.AUTHENTICATION_MECHANISM_NAME_NOT_RECOGNISED, aarq=aarq)
        if aarq.context is not ApplicationContextName.LOGICAL_NAME:
            return self._reject(AcseServiceUserDiagnostic.APPLICATION_CONTEXT_NAME_NOT_SUPPORTED,
                                aarq=aarq)
        given = aarq.calling_authentication_value or b""
        matched = [p for p in passwords if hmac.compare_digest(given, p)]
        if not matched:
            meter.auth_failure(self.client_sap, "wrong LLS password")
            return self._reject(AcseServiceUserDiagnostic.AUTHENTICATION_FAILURE, aarq=aarq)
        answer = self._accept_plain(role, aarq)
        if self.associated:
            self.lls_password = matched[0]
        return answer

    def _negotiate(self, initiate: InitiateRequest) -> None:
        self.conformance = Conformance(int(initiate.proposed_conformance) & int(METER_CONFORMANCE))
        role = self.role
        if (self.meter.profile.unsupported_service == "exception-response" and role is not None
                and not self.meter.rbac.grants_any(role, "write")):
            # like meters whose per-association conformance leaves out what the role may
            # not do: a role without write rights is offered no SET service
            self.conformance &= ~Conformance.SET
        self.client_max_pdu = initiate.client_max_receive_pdu_size or 0xFFFF

    def _initiate_response(self) -> InitiateResponse:
        return InitiateResponse(self.conformance, self.meter.profile.max_pdu)

    def _accept_plain(self, role: Role, aarq: AARQ) -> bytes:
        user_info = aarq.user_information or b""
        if not user_info or user_info[0] != 0x01:
            return self._reject(AcseServiceUserDiagnostic.NO_REASON_GIVEN, aarq=aarq)
        initiate = InitiateRequest.from_bytes(user_info)
        self.role, self.e, self.protected = role, role.association, False
        self.mechanism = Mechanism(int(aarq.mechanism or 0))
        self.mechanism_oid = aarq.mechanism_name or AuthenticationMechanism.NONE.oid
        self.context_name = aarq.application_context_name
        self._negotiate(initiate)
        self.phase = Phase.ASSOCIATED
        return AARE(result=AssociationResult.ACCEPTED,
                    result_source_diagnostic=AcseServiceUserDiagnostic.NULL,
                    application_context_name=self.context_name,
                    responding_ap_title=self.meter.state.system_title,
                    user_information=self._initiate_response().to_bytes()).to_bytes()

    def _key_size(self, key: Key | None) -> int | None:
        """The accepts-downgrade flaw takes a lower suite's security control byte and goes on
        with the keys it has (a suite-2 meter keeps its 256-bit keys); else the suite decides."""
        if key is None or not self.meter.profile.has("accepts-downgrade"):
            return None
        return len(key)

    def _suite_problem(self, sc: SecurityControl) -> bool:
        configured = self.meter.profile.security_suite
        if sc.suite == configured:
            return False
        if sc.suite < configured and self.meter.profile.has("accepts-downgrade"):
            return False
        self.meter.log.add(Event.SUITE_DOWNGRADE,
                           f"sap {self.client_sap}: suite {sc.suite} proposed, {configured} required")
        return True

    def _fresh(self, guard: ReplayGuard, counter: int) -> bool:
        if self.meter.profile.has("no-replay-check"):
            return True
        if guard.accept(counter):
            return True
        self.meter.log.add(Event.REPLAY_REJECTED, f"sap {self.client_sap}: counter {counter}")
        return False

    # -- requests ---------------------------------------------------------------------------
    def _make_held_ciphers(self) -> tuple[ApduCipher | None, ApduCipher | None]:
        """The association's fast-path ciphers, global form, GUEK: (receive) requests in the
        configured suite, authenticated and encrypted, the one security control that passes
        every check of :meth:`_open_request` before the tag; (send) answers in the
        configured suite. None where the keys cannot serve it (the full path says why)."""
        secrets, meter = self.secrets, self.meter
        if secrets is None:
            return None, None
        suite, size = meter.profile.security_suite, self._key_size(secrets.guek)
        own, peer = meter.state.system_title, self.client_title
        try:
            receive = cipher_for(secrets.guek, secrets.ak, own, peer, SecurityControl(suite), size)
            send = cipher_for(secrets.guek, secrets.ak, own, peer,
                              SecurityControl(suite, *meter.requires), size)
        except (InvalidKey, ApduFormatError):
            return None, None
        return receive, send

    def _held_ciphers(self) -> tuple[ApduCipher | None, ApduCipher | None]:
        """The held (receive, send) pair, re-made when a key, a title or the profile changed
        (a key transfer installs new Key objects)."""
        secrets, meter = self.secrets, self.meter
        assert secrets is not None
        return self._held.get((secrets.guek, secrets.ak, self.client_title,
                               meter.state.system_title, meter.profile, meter.requires))

    def _open_request(self, apdu: bytes) -> _Request | bytes:
        if not self.protected:
            if is_ciphered(apdu):
                return _exception(ServiceError.DECIPHERING_ERROR)
            return _Request(apdu, None, 0)
        if not is_ciphered(apdu):
            self.meter.log.add(Event.UNPROTECTED_REQUEST, f"sap {self.client_sap}: plain 0x{apdu[0]:02X}")
            return _exception(ServiceError.OPERATION_NOT_POSSIBLE)
        if apdu[0] in _general.GENERAL_TAGS:
            return self._open_general(apdu)
        if apdu[0] in GLOBAL_TAGS:
            # fast path: the held cipher opens a request in the one security control that
            # needs no other check (None: another SC or framing, the full path below)
            receive = self._held_ciphers()[0]
            if receive is not None:
                try:
                    opened = receive.unprotect_counted(apdu)
                except AuthenticationFailed:
                    self.meter.log.add(Event.DECIPHERING_ERROR, f"sap {self.client_sap}")
                    return _exception(ServiceError.DECIPHERING_ERROR)
                if opened is not None:
                    return self._accepted(self.meter.state.rx_guard(self.e), opened[1],
                                          _Request(opened[0], CipheringForm.GLOBAL,
                                                   receive.security_control.suite))
        parsed = parse_ciphered(apdu)
        sc = parsed.security_control
        if self._suite_problem(sc):
            return _exception(ServiceError.DECIPHERING_ERROR)
        need_auth, need_enc = self.meter.requires
        if (need_auth and not sc.authenticated) or (need_enc and not sc.encrypted) or sc.broadcast:
            self.meter.log.add(Event.UNPROTECTED_REQUEST,
                               f"sap {self.client_sap}: under-protected SC 0x{sc.byte:02X}")
            return _exception(ServiceError.OPERATION_NOT_POSSIBLE)
        if parsed.system_title is not None and parsed.system_title != self.client_title:
            return _exception(ServiceError.DECIPHERING_ERROR)
        assert self.secrets is not None
        if parsed.form.dedicated:
            if self.dedicated_key is None:
                return _exception(ServiceError.DECIPHERING_ERROR)
            key, guard = self.dedicated_key, self.dedicated_guard
        else:
            key, guard = self.secrets.guek, self.meter.state.rx_guard(self.e)
        try:
            # the bound cipher of these keys and titles (made once, see cipher_for)
            plaintext = cipher_for(key, self.secrets.ak, self.meter.state.system_title,
                                   self.client_title, sc, self._key_size(key)).open_parsed(parsed)
        except (AuthenticationFailed, InvalidKey):  # a key the named suite cannot use: unverifiable
            self.meter.log.add(Event.DECIPHERING_ERROR, f"sap {self.client_sap}")
            return _exception(ServiceError.DECIPHERING_ERROR)
        return self._accepted(guard, parsed.invocation_counter,
                              _Request(plaintext, parsed.form, sc.suite))

    def _accepted(self, guard: ReplayGuard, counter: int, request: _Request) -> _Request | bytes:
        """The verified request if its counter is fresh, else the counter error."""
        if not self._fresh(guard, counter):
            last = guard.last_accepted
            return _exception(ServiceError.INVOCATION_COUNTER_ERROR,
                              ic=0 if last is None else min(last + 1, 0xFFFFFFFF))
        return request

    def _open_general(self, apdu: bytes) -> _Request | bytes:
        """general-ciphering / general-signing: see :mod:`metercert.meter.general`."""
        try:
            plain, general = _general.open_request(self, apdu)
        except _general.GeneralRefused as exc:
            self.meter.log.add(exc.event, f"sap {self.client_sap}: {exc.reason}")
            if exc.counter_error:
                last = self.meter.state.rx_guard(self.e).last_accepted
                return _exception(ServiceError.INVOCATION_COUNTER_ERROR,
                                  ic=0 if last is None else min(last + 1, 0xFFFFFFFF))
            return _exception(ServiceError.DECIPHERING_ERROR)
        except KeyUnwrapFailed:
            self.meter.log.add(Event.DECIPHERING_ERROR, f"sap {self.client_sap}: wrapped key")
            return _exception(ServiceError.DECIPHERING_ERROR)
        return _Request(plain, None, general.suite, general)

    def _close_response(self, response: bytes, request: _Request) -> bytes:
        if request.general is not None:
            try:
                return _general.protect_response(self, response, request.general)
            except _general.GeneralRefused as exc:
                self.meter.log.add(exc.event, f"sap {self.client_sap}: {exc.reason}")
                return _exception(ServiceError.OPERATION_NOT_POSSIBLE)
        if request.form is None:
            return response
        assert self.secrets is not None
        counter = self._own_counter()
        if (request.form is CipheringForm.GLOBAL
                and request.suite == self.meter.profile.security_suite):
            send = self._held_ciphers()[1]  # fast path: the association's held cipher
            if send is not None:
                return send.protect(response, counter)
        key = self.dedicated_key if request.form.dedicated else self.secrets.guek
        sc = SecurityControl(request.suite, *self.meter.requires)
        return cipher_for(key, self.secrets.ak, self.meter.state.system_title, self.client_title,
                          sc, self._key_size(key)).protect(response, counter, request.form)

    def _apply_pending_keys(self) -> None:
        for pending in self.pending_keys:
            self.meter.state.set_key(pending.association, pending.key_id, pending.key)
            self.meter.log.add(Event.KEY_CHANGED,
                               f"{pending.key_id.name} of association {pending.association}")
        self.pending_keys.clear()

    def _serve(self, plain: bytes) -> bytes:
        request = decode_request(plain)
        if self.phase is Phase.PENDING:
            if (isinstance(request, ActionRequestNormal)
                    and request.method.class_id == 15   # Association LN, not any class
                    and request.method.instance == CURRENT_ASSOCIATION
                    and request.method.method_id == 1):
                return self._reply_to_hls(request)
            return _exception(ServiceError.OPERATION_NOT_POSSIBLE)
        if isinstance(request, GetRequestNormal):
            return self._get(request)
        if isinstance(request, GetRequestNext):
            return self._get_next(request)
        if isinstance(request, SetRequestNormal):
            return self._set(request)
        if isinstance(request, ActionRequestNormal):
            return self._action(request)
        return _exception(ServiceError.SERVICE_NOT_SUPPORTED, state=StateError.SERVICE_UNKNOWN)

    def _reply_to_hls(self, request: ActionRequestNormal) -> bytes:
        meter, secrets = self.meter, self.secrets
        assert secrets is not None and self.client_title is not None
        params = request.parameters
        client_key = secrets.client_key
        creds = HlsCredentials(encryption_key=secrets.guek, authentication_key=secrets.ak,
                               secret=secrets.hls_secret, private_key=meter.state.signing_key,
                               peer_public_key=client_key.public_key() if client_key else None,
                               suite=self.suite)
        if self.mechanism in (Mechanism.HLS_MD5, Mechanism.HLS_SHA1):
            # legacy_hls: pending: the AARE said "authentication required", but nothing
            # completes a legacy mechanism and nothing is served before pass 3
            meter.log.add(Event.AUTH_FAILURE, f"sap {self.client_sap}: legacy HLS pass 3 refused")
            return ActionResponseNormal(ActionResult.OTHER_REASON, None,
                                        request.invoke_id_and_priority).to_bytes()
        try:
            if params is None or params.type is not DataType.OCTET_STRING:
                raise AuthenticationFailed()
            if not meter.profile.has("hls-reply-unchecked"):
                hls.verify(self.mechanism, creds, bytes(params.value), own_challenge=self.stoc,
                           peer_challenge=self.ctos, own_title=meter.state.system_title,
                           peer_title=self.client_title)
        except AuthenticationFailed:
            meter.auth_failure(self.client_sap, "HLS pass 3 failed")
            return ActionResponseNormal(ActionResult.OTHER_REASON, None,
                                        request.invoke_id_and_priority).to_bytes()
        answer = hls.respond(self.mechanism, creds, challenge=self.ctos, own_challenge=self.stoc,
                             own_title=meter.state.system_title, peer_title=self.client_title,
                             invocation_counter=self._own_counter())
        self.phase = Phase.ASSOCIATED
        return ActionResponseNormal(ActionResult.SUCCESS, DlmsData.octet_string(answer),
                                    request.invoke_id_and_priority).to_bytes()

    def _lookup(self, class_id: int, obis: ObisCode, kind: str,
                index: int) -> tuple[CosemObject | None, DataAccessResult]:
        """The object, or None and why it may not be used (undefined / denied)."""
        assert self.role is not None
        if self._lookups_role is not self.role:  # another association on this session
            self._lookups, self._lookups_role = {}, self.role
        key = (class_id, obis, kind, index)
        found = self._lookups.get(key)
        if found is None:
            found = self._lookups[key] = self.meter.lookup(self.role, class_id, obis, kind,
                                                           index)
            if len(self._lookups) > 256:  # requests may name any OBIS code
                self._lookups.clear()
        return found

    def _block_limit(self) -> int:
        return max(64, min(self.client_max_pdu, self.meter.profile.max_pdu) - 40)

    def _get(self, request: GetRequestNormal) -> bytes:
        a = request.attribute
        iip = request.invoke_id_and_priority
        obj, denied = self._lookup(a.class_id, a.instance, "read", a.attribute_id)
        if obj is None:
            return GetResponseNormal(denied, iip).to_bytes()
        value = obj.get(a.attribute_id, self)
        if isinstance(value, DataAccessResult):
            return GetResponseNormal(value, iip).to_bytes()
        raw = encode_data(value)
        # get-response-normal with data: tag C4 01, invoke-id-and-priority, choice 0, data
        response = b"\xc4\x01" + bytes((iip,)) + b"\x00" + raw
        if len(response) <= 64:  # the least block limit
            return response
        limit = self._block_limit()
        if len(response) <= limit:
            return response
        self.blocks = [raw[i:i + limit - 16] for i in range(0, len(raw), limit - 16)]
        self.block_invoke = iip
        return self._block(1)

    def _block(self, number: int) -> bytes:
        last = number == len(self.blocks)
        out = GetResponseWithDatablock(last, number, self.blocks[number - 1],
                                       self.block_invoke).to_bytes()
        if last:
            self.blocks = []
        return out

    def _get_next(self, request: GetRequestNext) -> bytes:
        number = request.block_number + 1
        if not self.blocks or not 1 <= number <= len(self.blocks):
            self.blocks = []
            return GetResponseWithDatablock(True, number & 0xFFFFFFFF,
                                            DataAccessResult.NO_LONG_GET_IN_PROGRESS,
                                            request.invoke_id_and_priority).to_bytes()
        return self._block(number)

    def _set(self, request: SetRequestNormal) -> bytes:
        a = request.attribute
        obj, denied = self._lookup(a.class_id, a.instance, "write", a.attribute_id)
        if obj is None:
            return SetResponseNormal(denied, request.invoke_id_and_priority).to_bytes()
        return SetResponseNormal(obj.set(a.attribute_id, request.value, self),
                                 request.invoke_id_and_priority).to_bytes()

    def _action(self, request: ActionRequestNormal) -> bytes:
        m = request.method
        iip = request.invoke_id_and_priority
        if m.instance == CURRENT_ASSOCIATION and m.method_id == 1:
            return ActionResponseNormal(ActionResult.OTHER_REASON, None, iip).to_bytes()
        obj, denied = self._lookup(m.class_id, m.instance, "methods", m.method_id)
        if obj is None:
            return ActionResponseNormal(ActionResult(int(denied)), None, iip).to_bytes()
        result, data = obj.action(m.method_id, request.parameters, self)
        return ActionResponseNormal(result, data, iip).to_bytes()
