"""The reference meter's side of general-ciphering (0xDD) and general-signing (0xDF).

A profile with ``general_protection`` serves requests protected with the general forms,
alone or nested (signed-then-ciphered: a 0xDD around a 0xDF; ciphered-then-signed: a 0xDF
around a 0xDD), and answers each one with the same layers in the same order.

What the meter checks, outermost layer first:

* every layer names the association's client as originator and this meter as recipient
  (an empty or foreign recipient title is refused: a unicast request is not for anyone);
* a 0xDD layer claims the configured suite (another one is a downgrade), meets the
  security policy, resolves its key from key-info (identified GUEK, a key wrapped under the
  association's KEK, or a C(1e, 1s) agreed key whose ephemeral key the client's installed
  certificate signed, with the meter's key-agreement key), verifies, and carries an invocation counter above the last one
  accepted from this originator on this association (the window the other forms share:
  the client draws every form's counter from one sequence);
* a 0xDF layer verifies with the client's signing key in the configured suite (so a
  P-256 signature on a suite-2 meter fails);
* ``general_protection: signing`` requires a general-signing layer on every general
  request; a general request must also carry a general-ciphering layer whenever the
  policy asks for authentication (signing alone proves origin, but has no counter).

The named flaws ``general-signature-unchecked``, ``unsigned-general-accepted`` and
``general-suite-unchecked`` each switch off exactly one of these.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from metercert.meter.objects import Event
from metercert.security import AuthenticationFailed, InvalidKey, Key, KeySet, SecurityControl
from metercert.security import agreement as agr
from metercert.security import general as g
from metercert.security.keywrap import wrap_key

if TYPE_CHECKING:
    from metercert.meter.session import MeterSession

GENERAL_TAGS = (g.GENERAL_CIPHERING, g.GENERAL_SIGNING)


class GeneralRefused(Exception):
    """The request is refused; ``reason`` is what the security log records."""

    def __init__(self, reason: str, event: Event = Event.DECIPHERING_ERROR,
                 counter_error: bool = False) -> None:
        super().__init__(reason)
        self.reason, self.event, self.counter_error = reason, event, counter_error


@dataclass(frozen=True, repr=False)
class GeneralRequest:
    """How a request was protected, so that the answer mirrors it (never printed)."""

    layers: tuple[int, ...]  # outermost first
    suite: int
    key_info: g.KeyInfo | None
    key: Key | None

    def __repr__(self) -> str:
        return f"GeneralRequest({'/'.join(f'{t:02X}' for t in self.layers)}, <redacted>)"


def _check_titles(session: MeterSession, header: g.GeneralHeader, what: str) -> None:
    if header.originator_system_title != session.client_title:
        raise GeneralRefused(f"{what}: originator is not the associated client")
    if header.recipient_system_title != session.meter.state.system_title:
        raise GeneralRefused(f"{what}: recipient title is not this meter's")


def _keys(session: MeterSession) -> KeySet:
    s = session.secrets
    assert s is not None
    return KeySet(client_system_title=session.client_title,
                  server_system_title=session.meter.state.system_title,
                  guek=s.guek, ak=s.ak, kek=s.kek)


def _open_ciphering(session: MeterSession, data: bytes) -> tuple[bytes, g.GeneralCiphering, Key]:
    meter = session.meter
    parsed = g.parse_general_ciphering(data)
    _check_titles(session, parsed.header, "general-ciphering")
    sc = parsed.security_control
    configured = meter.profile.security_suite
    if sc.suite != configured and not meter.profile.has("general-suite-unchecked"):
        raise GeneralRefused(f"general-ciphering in suite {sc.suite}, {configured} required",
                             Event.SUITE_DOWNGRADE)
    need_auth, need_enc = meter.requires
    if (need_auth and not sc.authenticated) or (need_enc and not sc.encrypted):
        raise GeneralRefused(f"under-protected general-ciphering SC 0x{sc.byte:02X}",
                             Event.UNPROTECTED_REQUEST)
    if isinstance(parsed.key_info, g.IdentifiedKey) and parsed.key_info.key_id != 0:
        raise GeneralRefused("general-ciphering names the broadcast key on a unicast request")
    keys = _keys(session)
    agreement = None
    if isinstance(parsed.key_info, g.AgreedKey):
        pki = meter.state.pki
        if parsed.key_info.scheme is not agr.KeyAgreementScheme.ONE_PASS_DIFFIE_HELLMAN \
                or pki is None:
            raise GeneralRefused("agreed key: only C(1e, 1s) is offered by this meter")
        signer = pki.client_signing_key(session.e, session.client_title)
        if signer is None:
            raise GeneralRefused("agreed key: no certificate of this client is installed")
        agreement = g.AgreementKeys(own_agreement_key=pki.agreement_key, peer_signing_key=signer)
    try:  # a bad wrap raises KeyUnwrapFailed; an unsigned or forged ephemeral key fails here
        if agreement is not None and meter.profile.has("key-agreement-unverified"):
            key = _unverified_agreed_key(parsed, agreement, configured)
        else:
            key = g.receiver_key(parsed, keys=keys, agreement=agreement)
    except AuthenticationFailed:
        raise GeneralRefused("agreed key: the ephemeral key is not signed by the client") from None
    if key is None:
        raise GeneralRefused("no key for this general-ciphering APDU")
    # the suite-unchecked flaw goes on with the keys it has, whatever suite was claimed
    size = len(key) if sc.suite != configured else None
    try:
        opened = g.unprotect_general(parsed, encryption_key=key, authentication_key=keys.ak,
                                     key_size=size)
    except AuthenticationFailed:
        raise GeneralRefused("general-ciphering does not verify") from None
    if not session._fresh(meter.state.rx_guard(session.e), parsed.invocation_counter):
        raise GeneralRefused(f"counter {parsed.invocation_counter}", Event.REPLAY_REJECTED,
                             counter_error=True)
    return opened.plaintext, parsed, key


def _unverified_agreed_key(parsed: g.GeneralCiphering, agreement: g.AgreementKeys,
                           suite: int) -> Key:
    """The key-agreement-unverified flaw: the ephemeral point is used, its signature never
    looked at (what a man in the middle needs)."""
    assert isinstance(parsed.key_info, g.AgreedKey) and agreement.own_agreement_key is not None
    size = 2 * agr.coordinate_bytes(suite)
    try:
        point = agr.public_key_from_bytes(parsed.key_info.key_ciphered_data[:size], suite)
    except InvalidKey:
        raise AuthenticationFailed() from None
    secret = agr.shared_secret(agreement.own_agreement_key, point, suite)
    return agr.kdf(secret, suite=suite, party_u=parsed.header.originator_system_title,
                   party_v=parsed.header.recipient_system_title)


def _open_signing(session: MeterSession, data: bytes) -> bytes:
    meter = session.meter
    parsed = g.parse_general_signing(data)
    _check_titles(session, parsed.header, "general-signing")
    if meter.profile.has("general-signature-unchecked"):
        return parsed.content
    # the public key of the client's installed digital-signature certificate (a removed
    # certificate stops that client's signed requests)
    signer = (meter.state.pki.client_signing_key(session.e, session.client_title)
              if meter.state.pki is not None else None)
    if signer is None:
        raise GeneralRefused("general-signing: no certificate of this client is installed")
    try:
        g.verify_general(parsed, public_key=signer, suite=meter.profile.security_suite)
    except AuthenticationFailed:
        raise GeneralRefused("general-signing signature does not verify") from None
    return parsed.content


def open_request(session: MeterSession, apdu: bytes) -> tuple[bytes, GeneralRequest]:
    """The plain request inside the general layers, and how to answer. Raises GeneralRefused
    (and, for what does not even parse, ApduFormatError / KeyUnwrapFailed / InvalidKey)."""
    meter = session.meter
    if not meter.profile.general_protection:
        raise GeneralRefused("general protection is not offered by this meter")
    layers: list[int] = []
    data = apdu
    cipher: tuple[g.GeneralCiphering, Key] | None = None
    while data and data[0] in GENERAL_TAGS:
        if data[0] in layers or len(layers) == 2:
            raise GeneralRefused("general layers repeated or nested too deep")
        layers.append(data[0])
        if data[0] == g.GENERAL_CIPHERING:
            data, parsed, key = _open_ciphering(session, data)
            cipher = (parsed, key)
        else:
            data = _open_signing(session, data)
    need_auth, _ = meter.requires
    if cipher is None and need_auth:
        raise GeneralRefused("general-signing without general-ciphering: no counter, "
                             "no confidentiality", Event.UNPROTECTED_REQUEST)
    if (meter.profile.general_protection == "signing" and g.GENERAL_SIGNING not in layers
            and not meter.profile.has("unsigned-general-accepted")):
        raise GeneralRefused("general request without a signature", Event.UNPROTECTED_REQUEST)
    if not data or data[0] in (0xDB, 0xDC, 0xDD, 0xDE, 0xDF) or 0xC8 <= data[0] <= 0xD7:
        raise GeneralRefused("the general layers do not hold a plain xDLMS request")
    suite = cipher[0].security_control.suite if cipher else meter.profile.security_suite
    return data, GeneralRequest(tuple(layers), suite, cipher[0].key_info if cipher else None,
                                cipher[1] if cipher else None)


def protect_response(session: MeterSession, response: bytes, request: GeneralRequest) -> bytes:
    """The answer, wrapped in the request's layers (innermost applied first)."""
    meter = session.meter
    secrets = session.secrets
    assert secrets is not None and session.client_title is not None
    data = response
    for tag in reversed(request.layers):
        counter = session._own_counter()
        header = g.GeneralHeader(counter.to_bytes(4, "big"), meter.state.system_title,
                                 session.client_title)
        if tag == g.GENERAL_SIGNING:
            if meter.state.signing_key is None:
                raise GeneralRefused("no signing key: cannot answer a signed request")
            data = g.sign_general(data, header=header, signing_key=meter.state.signing_key,
                                  suite=meter.profile.security_suite)
            continue
        key_info = request.key_info
        key = secrets.guek
        if isinstance(key_info, g.AgreedKey):
            # C(1e, 1s) back: a fresh ephemeral key of ours against the client's static
            # key-agreement key (its installed certificate), signed with our signing key
            peer = (meter.state.pki.client_agreement_key(session.e, session.client_title)
                    if meter.state.pki is not None else None)
            if peer is None or meter.state.signing_key is None:
                raise GeneralRefused("no key-agreement certificate of this client: cannot "
                                     "answer with an agreed key")
            key, data_ = agr.one_pass_originate(
                suite=meter.profile.security_suite, recipient_static=peer,
                signing_key=meter.state.signing_key, party_u=meter.state.system_title,
                party_v=session.client_title)
            key_info = g.AgreedKey(bytes((agr.KeyAgreementScheme.ONE_PASS_DIFFIE_HELLMAN,)),
                                   data_)
        elif isinstance(key_info, g.WrappedKey):
            # a fresh key of our own for the answer, wrapped under the same KEK
            key = Key(os.urandom(len(secrets.kek)), "response key")
            key_info = g.WrappedKey(wrap_key(secrets.kek, key))
        sc = SecurityControl(request.suite, *meter.requires)
        size = len(key) if request.suite != meter.profile.security_suite else None
        data = g.protect_general(data, header=header, security_control=sc,
                                 invocation_counter=counter, encryption_key=key,
                                 authentication_key=secrets.ak, key_info=key_info,
                                 key_size=size)
    return data
