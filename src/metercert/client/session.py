"""An async DLMS/COSEM client: associate (public, LLS, HLS-GMAC/SHA-256), GET/SET/ACTION
in any ciphering form, block transfer, release, and an evidence trace of every APDU.

The client is deliberately scriptable: checks use :meth:`DlmsClient.exchange` and
:meth:`DlmsClient.protect_request` to send what a conformant client would never
send (a lower suite, an old counter, a flipped bit) and to see the meter's answer.
Responses are trusted only after their tag verifies; the received-counter window
moves only then.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Self

from metercert.client.errors import (
    AssociationRejected,
    DataAccessFailed,
    DlmsError,
    ExceptionResponseReceived,
    NoResponse,
    ResponseNotTrusted,
)
from metercert.client.trace import Trace
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
    CosemMethodDescriptor,
    DataAccessResult,
    DlmsData,
    ExceptionResponse,
    GetRequestNext,
    GetRequestNormal,
    GetResponseNormal,
    GetResponseWithDatablock,
    InitiateRequest,
    InitiateResponse,
    ObisCode,
    ReleaseResponseReason,
    SetRequestNormal,
    SetResponseNormal,
    decode_apdu,
    decode_data,
)
from metercert.errors import ConnectionFailed, InputFileError
from metercert.security import (
    ApduFormatError,
    AuthenticationFailed,
    CipheringForm,
    HlsCredentials,
    InvalidKey,
    InvocationCounterStore,
    Key,
    KeySet,
    Mechanism,
    ReplayGuard,
    SecurityControl,
    SecurityError,
    hls,
    is_ciphered,
    parse_ciphered,
    protect,
    unprotect_parsed,
)
from metercert.security.keys import load_pem_key
from metercert.security.protection import GLOBAL_TAGS, ApduCipher, HeldCiphers, cipher_for
from metercert.transport.errors import TransportError
from metercert.transport.stream import ApduStream, open_dlms_connection

CURRENT_ASSOCIATION = ObisCode(0, 0, 40, 0, 0, 255)
DEFAULT_COUNTER_OBJECT = ObisCode(0, 0, 43, 1, 0, 255)
DEFAULT_CLOCK = ObisCode(0, 0, 1, 0, 0, 255)
CLIENT_CONFORMANCE = (Conformance.GET | Conformance.SET | Conformance.ACTION
                      | Conformance.SELECTIVE_ACCESS | Conformance.BLOCK_TRANSFER_WITH_GET_OR_READ
                      | Conformance.GENERAL_PROTECTION)


@dataclass(frozen=True)
class ClientSettings:
    """How to associate. ``keys`` holds the association's GUEK/AK(/KEK) and titles."""

    client_sap: int = 16
    server_sap: int = 1
    framing: str = "wrapper"
    transport: str = "tcp"  # or "udp" (wrapper only)
    mechanism: Mechanism = Mechanism.NONE
    keys: KeySet = field(default_factory=KeySet)
    suite: int = 0
    authenticated: bool = True
    encrypted: bool = True
    form: CipheringForm = CipheringForm.GLOBAL
    dedicated_key: bool = False
    password: bytes | None = field(default=None, repr=False)      # LLS
    hls_secret: bytes | None = field(default=None, repr=False)    # HLS-SHA256
    counter_dir: Path | None = None   # where the client's own counters persist
    invocation_counter_object: ObisCode | None = None  # read via the public client to sync
    max_pdu: int = 0xFFFF
    timeout: float = 10.0
    ssl: Any = None
    #: length of our HLS challenge CtoS; None: 16 bytes (32 for HLS-ECDSA), which every
    #: meter we know takes (the Green Book allows 8-64; some meters handle only 16)
    challenge_length: int | None = None

    @property
    def ctos_length(self) -> int:
        if self.challenge_length is not None:
            return self.challenge_length
        return 32 if self.mechanism is Mechanism.HLS_ECDSA else 16

    @property
    def ciphered(self) -> bool:
        return self.mechanism.is_hls

    def __repr__(self) -> str:
        return (f"ClientSettings(client_sap={self.client_sap}, mechanism={self.mechanism.name}, "
                f"suite={self.suite}, form={self.form.value}, keys={self.keys!r})")


@dataclass
class _Counter:
    """The client's sending counter: persisted when a folder is given, else in memory."""

    store: InvocationCounterStore | None
    value: int = 0
    #: the persistent store was released (the client closed): counting on in memory from
    #: some old value would reuse nonces, so the client refuses to cipher again
    released: bool = False

    def next(self) -> int:
        if self.released:
            raise DlmsError("this client was closed and its invocation counter released: "
                            "make a new client (reusing it could repeat a counter)")
        if self.store is not None:
            return self.store.next()
        v = self.value
        self.value += 1
        return v

    def at_least(self, value: int) -> None:
        if self.store is not None:
            self.store.advance_to(value)
        else:
            self.value = max(self.value, value)


class DlmsClient:
    def __init__(self, host: str, port: int, settings: ClientSettings) -> None:
        self.host, self.port, self.settings = host, port, settings
        #: the suite the keys are for; an association claiming another suite (a downgrade
        #: attempt) ciphers and checks with these keys all the same
        self._keys_suite = settings.suite
        self.stream: ApduStream | None = None
        self.trace = Trace()
        self.associated = False
        self.aare: AARE | None = None
        self.server_title: bytes | None = settings.keys.server_system_title
        self.negotiated_conformance = Conformance(0)
        self.server_max_pdu = 0xFFFF
        self._dedicated: Key | None = None
        self._rx = ReplayGuard(None, b"\0" * 8, "server")
        self._rx_dedicated = ReplayGuard(None, b"\0" * 8, "server-dedicated")
        self._held = HeldCiphers(self._make_held_ciphers)  # the association's bound ciphers
        self._ctos = b""
        store = None
        if settings.ciphered and settings.counter_dir is not None and settings.keys.client_system_title:
            store = InvocationCounterStore(settings.counter_dir, settings.keys.client_system_title,
                                           f"sap{settings.client_sap}-to-{self.server_title_hex}")
        self._counter = _Counter(store)
        self.last_sent_counter: int | None = None
        #: the clock object probe requests read (discovery may name another)
        self.clock_obis = DEFAULT_CLOCK
        if settings.ciphered and settings.keys.guek is not None:
            digest = hashlib.sha256(b"metercert counter space" + settings.keys.guek.secret
                                    + (settings.keys.server_system_title or b"")).hexdigest()
            self.trace.counter_space = digest[:16]

    @property
    def server_title_hex(self) -> str:
        t = self.settings.keys.server_system_title
        return t.hex().upper() if t else "unknown"

    # -- connection -----------------------------------------------------------------------
    async def connect(self) -> None:
        if self.stream is not None:
            return
        try:
            self.stream = await open_dlms_connection(
                self.host, self.port, framing=self.settings.framing,  # type: ignore[arg-type]
                client_address=self.settings.client_sap, server_address=self.settings.server_sap,
                timeout=self.settings.timeout, ssl=self.settings.ssl,
                transport=self.settings.transport)  # type: ignore[arg-type]
        except OSError as exc:
            raise ConnectionFailed(f"cannot connect to {self.host}:{self.port}: {exc}") from None

    async def close(self) -> None:
        if self.stream is not None:
            await self.stream.aclose()
            self.stream = None
        self.associated = False
        if self._counter.store is not None:
            self._counter.store.close()
            self._counter.store = None
            self._counter.released = True

    async def open(self, **overrides: Any) -> AARE:
        """Synchronise the sending counter with the meter, then connect and associate.

        The counter is read first, on a public association of its own that is released
        and closed before ours opens: many meters serve one connection at a time."""
        await self.sync_counter()
        await self.connect()
        return await self.associate(**overrides)

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            if self.associated and self.stream is not None and not self.stream.closed:
                await self.release()
        finally:
            await self.close()

    async def exchange(self, apdu: bytes, *, plain: bytes | None = None,
                       timeout: float | None = None, note: str = "") -> bytes:
        """Send one APDU as is and return the raw answer (recorded in the trace)."""
        await self.connect()
        assert self.stream is not None
        self.trace.record("->", apdu, plain, note)
        try:
            await self.stream.send(apdu)
            answer = await self.stream.recv(timeout=timeout or self.settings.timeout)
        except TransportError as exc:
            self.trace.note(f"no answer: {exc}")
            raise NoResponse(f"meter at {self.host}:{self.port} gave no answer: {exc}") from None
        self.trace.record("<-", answer)
        return answer

    # -- association ------------------------------------------------------------------------
    def _security_control(self, suite: int | None = None) -> SecurityControl:
        s = self.settings
        return SecurityControl(s.suite if suite is None else suite, s.authenticated, s.encrypted)

    def initiate_request(self) -> bytes:
        s = self.settings
        key = None
        if s.dedicated_key and s.ciphered:
            size = 32 if s.suite == 2 else 16
            self._dedicated = Key(os.urandom(size), "dedicated")
            self.trace.add_secret(self._dedicated.secret)
            key = self._dedicated.secret
        return InitiateRequest(CLIENT_CONFORMANCE, s.max_pdu, dedicated_key=key).to_bytes()

    def build_aarq(self, *, suite: int | None = None, mechanism: Mechanism | None = None,
                   invocation_counter: int | None = None, ctos: bytes | None = None,
                   user_information: bytes | None = None) -> tuple[bytes, bytes]:
        """(AARQ, plaintext initiate-request) with optional overrides for attacks."""
        s = self.settings
        mech = s.mechanism if mechanism is None else mechanism
        initiate = self.initiate_request()
        if mech.is_hls:
            self._ctos = ctos if ctos is not None else os.urandom(s.ctos_length)
            title = s.keys.client_system_title
            if title is None:
                raise DlmsError("HLS needs the client system title (key file)")
            if user_information is None:
                ic = self._counter.next() if invocation_counter is None else invocation_counter
                self.last_sent_counter = ic
                user_information = protect(
                    initiate, security_control=self._security_control(suite), system_title=title,
                    invocation_counter=ic, encryption_key=s.keys.guek,
                    authentication_key=s.keys.ak,
                    form=CipheringForm.GENERAL_GLO if s.form is CipheringForm.GENERAL_GLO
                    else CipheringForm.GLOBAL,
                    key_size=self._key_size(s.keys.guek, s.suite if suite is None else suite))
            aarq = AARQ(application_context_name=ApplicationContextName.LOGICAL_NAME_WITH_CIPHERING.oid,
                        calling_ap_title=title, sender_acse_requirements=True,
                        mechanism_name=AuthenticationMechanism(int(mech)).oid,
                        calling_authentication_value=self._ctos,
                        user_information=user_information)
        elif mech is Mechanism.LLS:
            aarq = AARQ(application_context_name=ApplicationContextName.LOGICAL_NAME.oid,
                        sender_acse_requirements=True,
                        mechanism_name=AuthenticationMechanism.LLS.oid,
                        calling_authentication_value=s.password or b"",
                        user_information=user_information or initiate)
        else:
            aarq = AARQ(application_context_name=ApplicationContextName.LOGICAL_NAME.oid,
                        user_information=user_information or initiate)
        return aarq.to_bytes(), initiate

    async def sync_counter(self) -> int | None:
        """Read the meter's expected counter through the public client and start above it.

        Without a configured object the common 0.0.43.1.0.255 is tried; a meter that does
        not offer it leaves the client's own (persisted) counter in charge."""
        if not self.settings.ciphered:
            return None
        if self.stream is not None:
            # a second connection while ours is open: a one-connection meter would not
            # answer it, so the caller must sync before connecting
            raise DlmsError("sync_counter() must run before connect(): the meter may serve "
                            "one connection at a time")
        obis = self.settings.invocation_counter_object
        if obis is None:
            try:
                return await self._read_counter(DEFAULT_COUNTER_OBJECT)
            except (DlmsError, ConnectionFailed, CosemDecodeError):
                self.trace.note("no invocation counter object at 0.0.43.1.0.255: using our own")
                return None
        return await self._read_counter(obis)

    async def _read_counter(self, obis: ObisCode) -> int:
        public = DlmsClient(self.host, self.port, ClientSettings(
            client_sap=16, server_sap=self.settings.server_sap, framing=self.settings.framing,
            transport=self.settings.transport, timeout=self.settings.timeout,
            ssl=self.settings.ssl))
        async with public:
            value = await public.get(1, obis, 2)
        expected = int(value.value)
        self._counter.at_least(expected)
        self.trace.note(f"public client read {obis}: the meter expects counter {expected} next")
        return expected

    async def associate(self, *, hls_reply: bool = True,
                        tamper_hls_reply: Callable[[bytes], bytes] | None = None,
                        **overrides: Any) -> AARE:
        """Run the association (and HLS passes 3-4). Raises AssociationRejected.

        A ``suite`` override applies to the whole association (a downgrading client
        stays in the lower suite for HLS pass 3 and every request). For checks:
        ``hls_reply=False`` stops after the AARE (pass 3 not sent, not associated);
        ``tamper_hls_reply`` alters our f(StoC) before it is sent."""
        if overrides.get("suite") is not None:
            self.settings = replace(self.settings, suite=overrides["suite"])
        aarq, _ = self.build_aarq(**overrides)
        answer = await self.exchange(aarq, note="AARQ")
        if not answer or answer[0] != 0x61:
            raise DlmsError(f"expected an AARE, got {answer[:1].hex() or 'nothing'}")
        aare = AARE.from_bytes(answer)
        self.aare = aare
        if aare.result is not AssociationResult.ACCEPTED:
            self.trace.note(f"association rejected: {aare.result_source_diagnostic!r}")
            raise AssociationRejected(int(aare.result), aare.result_source_diagnostic)
        if aare.responding_ap_title:
            if self.server_title and aare.responding_ap_title != self.server_title:
                raise ResponseNotTrusted("meter's system title differs from the key file's")
            self.server_title = aare.responding_ap_title
        user_info = aare.user_information or b""
        if is_ciphered(user_info):
            plain = self._open(user_info)
        else:
            plain = user_info
        if plain and plain[0] == 0x08:
            response = InitiateResponse.from_bytes(plain)
            self.negotiated_conformance = response.negotiated_conformance
            self.server_max_pdu = response.server_max_receive_pdu_size
        elif plain and plain[0] == 0x0E:
            raise DlmsError("meter refused the initiate-request (confirmed-service-error)")
        if aare.result_source_diagnostic is AcseServiceUserDiagnostic.AUTHENTICATION_REQUIRED:
            if not hls_reply:
                return aare
            await self._hls_pass_3(aare, tamper_hls_reply)
        self.associated = True
        return aare

    def _credentials(self) -> HlsCredentials:
        k = self.settings.keys
        return HlsCredentials(encryption_key=k.guek, authentication_key=k.ak,
                              secret=self.settings.hls_secret, private_key=k.client_private_key,
                              peer_public_key=k.server_public_key, suite=self.settings.suite)

    async def _hls_pass_3(self, aare: AARE, tamper: Callable[[bytes], bytes] | None = None) -> None:
        stoc = aare.responding_authentication_value or b""
        title = self.settings.keys.client_system_title
        mech = self.settings.mechanism
        if not mech.is_hls or title is None or self.server_title is None:
            # a meter asking for HLS pass 3 where we did not offer HLS (or with no titles)
            raise ResponseNotTrusted("meter asked for HLS authentication this association did not offer")
        creds = self._credentials()
        f_stoc = hls.respond(mech, creds, challenge=stoc, own_challenge=self._ctos,
                             own_title=title, peer_title=self.server_title,
                             invocation_counter=self._counter.next())
        if tamper is not None:
            f_stoc = tamper(f_stoc)
        # reply_to_HLS_authentication is method 1 of Association LN (class 15)
        result, data = await self.action(15, CURRENT_ASSOCIATION, 1, DlmsData.octet_string(f_stoc),
                                         _during_hls=True)
        if result is not ActionResult.SUCCESS or data is None:
            raise AssociationRejected(1, AcseServiceUserDiagnostic.AUTHENTICATION_FAILURE)
        try:
            hls.verify(mech, creds, bytes(data.value), own_challenge=self._ctos,
                       peer_challenge=stoc, own_title=title, peer_title=self.server_title)
        except AuthenticationFailed:
            raise ResponseNotTrusted("meter's f(CtoS) does not verify: not the genuine meter") from None
        self.trace.note("HLS passes 3 and 4 verified both ways")

    def build_rlrq(self, *, protected: bool | None = None) -> bytes:
        """RLRQ (reason normal). On a ciphered association it carries a ciphered
        InitiateRequest in user-information (the protected release of the Green Book: the
        meter can tell the release comes from its peer); ``protected=False`` leaves it out."""
        s = self.settings
        if protected is None:
            protected = s.ciphered and s.keys.client_system_title is not None
        if not protected:
            return RLRQ().to_bytes()
        assert s.keys.client_system_title is not None
        initiate = InitiateRequest(CLIENT_CONFORMANCE, s.max_pdu).to_bytes()
        ic = self._counter.next()
        self.last_sent_counter = ic
        user_info = protect(
            initiate, security_control=self._security_control(), system_title=s.keys.client_system_title,
            invocation_counter=ic, encryption_key=s.keys.guek, authentication_key=s.keys.ak,
            form=CipheringForm.GENERAL_GLO if s.form is CipheringForm.GENERAL_GLO
            else CipheringForm.GLOBAL, key_size=self._key_size(s.keys.guek, s.suite))
        return RLRQ(user_information=user_info).to_bytes()

    async def release(self, *, protected: bool | None = None) -> bool:
        """Release the association; True when the meter answered with an RLRE that says so.

        Never raises for the meter's answer: a refused or missing release is recorded in
        the trace (it is evidence, and must not cost a check the verdicts it has seen)."""
        self.associated = False
        try:
            answer = await self.exchange(self.build_rlrq(protected=protected), note="RLRQ")
        except (DlmsError, ConnectionFailed) as exc:
            self.trace.note(f"release not answered: {exc}")
            return False
        if not answer or answer[0] != 0x63:
            self.trace.note(f"release answered with {answer[:1].hex() or 'nothing'}, not an RLRE")
            return False
        try:
            rlre = RLRE.from_bytes(answer)
        except CosemDecodeError as exc:
            # The meter did release (it answered with an RLRE); a badly encoded one (gurux-dlms
            # 1.0.203 under-counts its length) is evidence, not a reason to fail the caller.
            self.trace.note(f"malformed RLRE from the meter: {exc}")
            return True
        if rlre.reason not in (None, ReleaseResponseReason.NORMAL):
            self.trace.note(f"release refused: RLRE reason {rlre.reason!r}")
            return False
        info = rlre.user_information or b""
        if info and is_ciphered(info):
            try:
                self._open(info)
                self.trace.note("protected RLRE verified")
            except (DlmsError, SecurityError, ValueError) as exc:
                self.trace.note(f"RLRE user-information does not verify: {exc}")
        return True

    # -- protection ---------------------------------------------------------------------------
    def protect_request(self, plain: bytes, *, form: CipheringForm | None = None,
                        suite: int | None = None, invocation_counter: int | None = None,
                        authenticated: bool | None = None, encrypted: bool | None = None,
                        general: str | None = None, **general_options: Any) -> bytes:
        """Cipher a request as this association would (each argument overridable).

        ``general`` (ciphering, signing, signed-then-ciphered, ciphered-then-signed) builds
        general-ciphering / general-signing instead, see :mod:`metercert.client.general`."""
        if general is not None:
            from metercert.client import general as _general

            return _general.protect(self, plain, general, suite=suite,
                                    invocation_counter=invocation_counter,
                                    authenticated=authenticated, encrypted=encrypted,
                                    **general_options)
        s = self.settings
        form = form or s.form
        key = self._dedicated if form.dedicated else s.keys.guek
        if form.dedicated and key is None:
            raise DlmsError("no dedicated key: associate with dedicated_key=True")
        ic = self._counter.next() if invocation_counter is None else invocation_counter
        self.last_sent_counter = ic
        if (form is CipheringForm.GLOBAL and suite is None and authenticated is None
                and encrypted is None):
            send = self._held_ciphers()[1]  # fast path: the association's held cipher
            if send is not None:
                return send.protect(plain, ic)
        sc = SecurityControl(s.suite if suite is None else suite,
                             s.authenticated if authenticated is None else authenticated,
                             s.encrypted if encrypted is None else encrypted)
        assert s.keys.client_system_title is not None
        # the bound cipher of these keys, titles and SC (made once, see cipher_for)
        return cipher_for(key, s.keys.ak, s.keys.client_system_title, self._peer_title(), sc,
                          self._key_size(key, sc.suite)).protect(plain, ic, form)

    def _make_held_ciphers(self) -> tuple[ApduCipher | None, ApduCipher | None]:
        """The association's fast-path cipher, global form, GUEK, in the settings' security
        control, for both directions: a response in that SC passes every check of
        :meth:`_open` before the tag. None where the keys cannot serve it (the full path
        says why)."""
        s = self.settings
        keys = s.keys
        if keys.guek is None or keys.client_system_title is None:
            return None, None
        try:
            cipher = cipher_for(keys.guek, keys.ak, keys.client_system_title, self._peer_title(),
                                SecurityControl(s.suite, s.authenticated, s.encrypted),
                                self._key_size(keys.guek, s.suite))
        except (InvalidKey, ApduFormatError):
            return None, None
        return cipher, cipher

    def _held_ciphers(self) -> tuple[ApduCipher | None, ApduCipher | None]:
        """The held (receive, send) pair, re-made when a key, a title or the settings changed."""
        s = self.settings
        keys = s.keys
        return self._held.get((keys.guek, keys.ak, keys.client_system_title, self.server_title,
                               s, self._keys_suite))

    def _peer_title(self) -> bytes | None:
        """The meter's system title if it is one a cipher can use (8 bytes), else None."""
        title = self.server_title
        return title if title is not None and len(title) == 8 else None

    def peek(self, apdu: bytes) -> bytes | None:
        """Plaintext of a meter's answer if it verifies, without moving any window (for checks)."""
        if not is_ciphered(apdu):
            return apdu
        try:
            if apdu[0] in (0xDD, 0xDF):
                from metercert.client import general as _general

                return _general.open_answer(self, apdu, move_window=False)
            parsed = parse_ciphered(apdu)
            key = self._dedicated if parsed.form.dedicated else self.settings.keys.guek
            return unprotect_parsed(parsed, encryption_key=key,
                                    authentication_key=self.settings.keys.ak,
                                    system_title=parsed.system_title or self.server_title,
                                    key_size=self._key_size(key, parsed.security_control.suite)).plaintext
        except (AuthenticationFailed, DlmsError, ValueError):
            return None
        except Exception:  # noqa: BLE001 - malformed answers are "not served"
            return None

    def skip_counter_to(self, value: int) -> None:
        """Never use a counter below ``value`` again (after deliberately jumping ahead)."""
        self._counter.at_least(value)

    def _key_size(self, key: Key | None, suite: int) -> int | None:
        """None (the suite decides, and a key of the wrong size is an error) for the suite the
        keys are for; for any other suite, claimed by a downgrade attempt or by a meter that
        went along with one, the size of the keys the client has."""
        if suite == self._keys_suite or key is None:
            return None
        return len(key.secret)

    def _open(self, apdu: bytes) -> bytes:
        if apdu[:1] in (b"\xdd", b"\xdf"):
            from metercert.client import general as _general

            return _general.open_answer(self, apdu)
        if apdu and apdu[0] in GLOBAL_TAGS:
            # fast path: the held cipher opens a response in the association's own security
            # control (None: another SC or framing, the full path below)
            receive = self._held_ciphers()[0]
            if receive is not None:
                try:
                    opened = receive.unprotect_counted(apdu)
                except AuthenticationFailed:
                    raise ResponseNotTrusted("response does not verify") from None
                if opened is not None:
                    if not self._rx.accept(opened[1]):  # only after the tag verified
                        raise ResponseNotTrusted(
                            f"response replays or reuses invocation counter {opened[1]}")
                    return opened[0]
        parsed = parse_ciphered(apdu)
        if parsed.system_title is not None and parsed.system_title != self.server_title:
            raise ResponseNotTrusted("response carries another system title")
        sc, s = parsed.security_control, self.settings
        if sc.suite != s.suite:
            # same AES key size or not, a response may not name another suite than ours
            raise ResponseNotTrusted(f"response in security suite {sc.suite} on a suite "
                                     f"{s.suite} association")
        if (s.authenticated and not sc.authenticated) or (s.encrypted and not sc.encrypted):
            raise ResponseNotTrusted(f"response protected less (SC 0x{sc.byte:02X}) than "
                                     "the association's requests")
        key = self._dedicated if parsed.form.dedicated else self.settings.keys.guek
        try:
            own = self.settings.keys.client_system_title or bytes(8)  # not used to open
            # the bound cipher of these keys, titles and SC (made once, see cipher_for)
            plaintext = cipher_for(key, self.settings.keys.ak, own, self._peer_title(), sc,
                                   self._key_size(key, sc.suite)).open_parsed(parsed)
        except (AuthenticationFailed, InvalidKey):  # InvalidKey: no key the suite can use
            raise ResponseNotTrusted("response does not verify") from None
        guard = self._rx_dedicated if parsed.form.dedicated else self._rx
        if not guard.accept(parsed.invocation_counter):  # only after the tag verified
            raise ResponseNotTrusted(
                f"response replays or reuses invocation counter {parsed.invocation_counter}")
        return plaintext

    async def receive_push(self, timeout: float | None = None) -> bytes:
        """The plaintext of one unsolicited APDU (a push) on this association, trusted only
        as a response is: ciphered when the association is, tag verified, then the
        server's counter window moved."""
        if self.stream is None:
            raise DlmsError("not connected")
        try:
            apdu = await self.stream.recv(timeout=timeout or self.settings.timeout)
        except TransportError as exc:
            raise NoResponse(f"no push from {self.host}:{self.port}: {exc}") from None
        self.trace.record("<-", apdu, None, "push")
        if not self.settings.ciphered:
            return apdu
        if not is_ciphered(apdu):
            raise ResponseNotTrusted(f"unprotected push 0x{apdu[0]:02X} on a protected association")
        return self._open(apdu)

    async def request_decoded(self, plain: bytes, **protect_overrides: Any) -> Any:
        """:meth:`request`, then decode the answer (a decode failure is a DlmsError)."""
        answer = await self.request(plain, **protect_overrides)
        try:
            return decode_apdu(answer)
        except CosemDecodeError as exc:
            raise DlmsError(f"the meter's answer does not decode: {exc}") from None

    async def request(self, plain: bytes, **protect_overrides: Any) -> bytes:
        """Send a plaintext xDLMS request (ciphered when the association is) and return the
        plaintext answer. Raises ExceptionResponseReceived for an exception-response."""
        if self.settings.ciphered:
            wire = self.protect_request(plain, **protect_overrides)
        else:
            wire = plain
        answer = await self.exchange(wire, plain=plain if wire != plain else None)
        if not answer:
            raise NoResponse("empty answer")
        if answer[0] == 0xD8:
            exc = ExceptionResponse.from_bytes(answer)
            raise ExceptionResponseReceived(exc.state_error, exc.service_error,
                                            exc.invocation_counter)
        if self.settings.ciphered:
            if not is_ciphered(answer):
                raise ResponseNotTrusted(
                    f"unprotected answer 0x{answer[0]:02X} on a protected association")
            plain_answer = self._open(answer)
            self.trace.entries[-1] = replace(self.trace.entries[-1], plain=plain_answer)
            return plain_answer
        return answer

    # -- services --------------------------------------------------------------------------------
    async def get_result(self, class_id: int, obis: ObisCode | str, attribute: int,
                         **overrides: Any) -> DlmsData | DataAccessResult:
        obis = ObisCode.parse(obis) if isinstance(obis, str) else obis
        answer = await self.request_decoded(
            GetRequestNormal(CosemAttributeDescriptor(class_id, obis, attribute)).to_bytes(),
            **overrides)
        if isinstance(answer, GetResponseNormal):
            return answer.result
        if isinstance(answer, GetResponseWithDatablock):
            return await self._collect_blocks(answer)
        raise DlmsError(f"unexpected answer to GET: {type(answer).__name__}")

    async def _collect_blocks(self, first: GetResponseWithDatablock) -> DlmsData | DataAccessResult:
        parts: list[bytes] = []
        block = first
        for _ in range(100000):
            if isinstance(block.result, DataAccessResult):
                return block.result
            parts.append(block.result)
            if block.last_block:
                value, _ = decode_data(b"".join(parts))
                return value
            answer = await self.request_decoded(GetRequestNext(block.block_number).to_bytes())
            if not isinstance(answer, GetResponseWithDatablock):
                raise DlmsError("block transfer interrupted")
            block = answer
        raise DlmsError("block transfer did not end")

    async def get(self, class_id: int, obis: ObisCode | str, attribute: int,
                  **overrides: Any) -> DlmsData:
        result = await self.get_result(class_id, obis, attribute, **overrides)
        if isinstance(result, DataAccessResult):
            raise DataAccessFailed(f"GET {obis} attribute {attribute}", result)
        return result

    async def set(self, class_id: int, obis: ObisCode | str, attribute: int, value: DlmsData,
                  **overrides: Any) -> DataAccessResult:
        obis = ObisCode.parse(obis) if isinstance(obis, str) else obis
        answer = await self.request_decoded(
            SetRequestNormal(CosemAttributeDescriptor(class_id, obis, attribute), value).to_bytes(),
            **overrides)
        if not isinstance(answer, SetResponseNormal):
            raise DlmsError(f"unexpected answer to SET: {type(answer).__name__}")
        return answer.result

    async def action(self, class_id: int, obis: ObisCode | str, method: int,
                     parameters: DlmsData | None = None, *, _during_hls: bool = False,
                     **overrides: Any) -> tuple[ActionResult, DlmsData | None]:
        obis = ObisCode.parse(obis) if isinstance(obis, str) else obis
        plain = await self.request(
            ActionRequestNormal(CosemMethodDescriptor(class_id, obis, method), parameters).to_bytes(),
            **overrides)
        try:
            answer = decode_apdu(plain)
        except CosemDecodeError as exc:
            if len(plain) == 4 and plain[:2] == b"\xc7\x01":
                # action-response-normal without the presence flag of its optional
                # return-parameters (gurux-dlms's server sends this): the result is there
                self.trace.note("action-response without the optional-field flag: read as "
                                "no return parameters")
                try:
                    return ActionResult(plain[3]), None
                except ValueError:
                    pass
            raise DlmsError(f"the meter's answer does not decode: {exc}") from None
        if not isinstance(answer, ActionResponseNormal):
            raise DlmsError(f"unexpected answer to ACTION: {type(answer).__name__}")
        data = answer.return_data
        if isinstance(data, DataAccessResult):
            data = None
        return answer.result, data


_ROLE_MECHANISMS = {"none": Mechanism.NONE, "lls": Mechanism.LLS, "hls-gmac": Mechanism.HLS_GMAC,
                    "hls-sha256": Mechanism.HLS_SHA256, "hls-ecdsa": Mechanism.HLS_ECDSA}


def _mechanism(value: Any, default: Mechanism, where: str) -> Mechanism:
    if value in (None, ""):
        return default
    mechanism = _ROLE_MECHANISMS.get(str(value).lower())
    if mechanism is None:
        raise InputFileError(f"{where}: unknown mechanism {value!r}; use one of "
                             f"{', '.join(_ROLE_MECHANISMS)}")
    return mechanism


def _hex_secret(value: Any, where: str) -> bytes | None:
    if not value:
        return None
    try:
        return bytes.fromhex(str(value))
    except ValueError:
        raise InputFileError(f"{where}: hls_secret is not hex") from None


def _challenge_length(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 8 <= value <= 64:
        raise InputFileError(f"key file: challenge_length must be 8..64 bytes, got {value!r}")
    return value


def settings_for_role(keys: KeySet, role: str | None = None, **extra: Any) -> ClientSettings:
    """Client settings for the management association of a key file, or one of its roles.

    The management association uses the key file's top-level ``mechanism`` (HLS-GMAC when
    absent), keys and ``hls_secret``; a role entry may name its own ``mechanism``, keys,
    ``hls_secret`` and ``client_private_key`` (a PEM file, for HLS-ECDSA).
    """
    entry: dict[str, Any] = dict(keys.extra)
    suite = int(entry.get("security_suite", 0))
    counter_obis = entry.get("invocation_counter_object")
    base: dict[str, Any] = {
        "client_sap": int(entry.get("client_sap", 1)),
        "mechanism": _mechanism(entry.get("mechanism"), Mechanism.HLS_GMAC, "key file"),
        "keys": keys, "suite": suite,
        "hls_secret": _hex_secret(entry.get("hls_secret"), "key file"),
        "invocation_counter_object": ObisCode.parse(counter_obis) if counter_obis else None,
        "challenge_length": _challenge_length(entry.get("challenge_length"))}
    if role is not None:
        roles = {r.get("role"): r for r in entry.get("roles", []) if isinstance(r, dict)}
        if role not in roles:
            raise DlmsError(f"the key file has no role {role}")
        spec = roles[role]
        where = f"key file, role {role}"
        mechanism = _mechanism(spec.get("mechanism"),
                               Mechanism.HLS_GMAC if "guek" in spec else Mechanism.NONE, where)
        role_keys = keys
        if "guek" in spec:
            role_keys = replace(keys, guek=Key.from_hex(spec["guek"], f"{where}: guek"),
                                ak=Key.from_hex(spec.get("ak", ""), f"{where}: ak"),
                                kek=Key.from_hex(spec["kek"], f"{where}: kek") if spec.get("kek") else None)
        elif mechanism is Mechanism.NONE:
            role_keys = KeySet(server_system_title=keys.server_system_title)
        if spec.get("client_private_key"):
            role_keys = replace(role_keys, client_private_key=load_pem_key(
                spec["client_private_key"], keys.base_dir, where, private=True))
        role_counter = spec.get("invocation_counter_object")
        base = {
            "client_sap": int(spec["client_sap"]), "mechanism": mechanism, "keys": role_keys,
            "suite": suite if mechanism.is_hls else 0,
            "password": str(spec["password"]).encode() if spec.get("password") else None,
            "hls_secret": _hex_secret(spec.get("hls_secret"), where),
            "invocation_counter_object": ObisCode.parse(role_counter) if role_counter else None,
            "challenge_length": _challenge_length(spec.get("challenge_length",
                                                           entry.get("challenge_length")))}
    base.update(extra)
    return ClientSettings(**base)
