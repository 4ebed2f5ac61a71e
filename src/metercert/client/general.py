"""The client's general-ciphering (0xDD) and general-signing (0xDF): build a request in any
layering and trust an answer only once every layer verifies.

Layerings (``general=`` of :meth:`DlmsClient.protect_request`):

* ``ciphering``: a 0xDD around the request;
* ``signing``: a 0xDF around the request (no counter, no confidentiality: a meter whose
  policy asks for authentication refuses it);
* ``signed-then-ciphered``: the request signed, then ciphered (0xDD around a 0xDF);
* ``ciphered-then-signed``: the request ciphered, then signed (0xDF around a 0xDD).

Every header carries our system title as originator, the meter's as recipient and the
invocation counter (4 bytes) as transaction-id, which is what gurux-dlms sends. The counter
comes from the association's one sequence, so every form shares one replay window.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric import ec

from metercert.client.errors import DlmsError, ResponseNotTrusted
from metercert.security import AuthenticationFailed, Key, SecurityControl, SecurityError
from metercert.security import agreement as agr
from metercert.security import general as g
from metercert.security.keys import load_pem_key

if TYPE_CHECKING:
    from metercert.client.session import DlmsClient

LAYERINGS: dict[str, tuple[int, ...]] = {  # outermost first
    "ciphering": (g.GENERAL_CIPHERING,),
    "signing": (g.GENERAL_SIGNING,),
    "signed-then-ciphered": (g.GENERAL_CIPHERING, g.GENERAL_SIGNING),
    "ciphered-then-signed": (g.GENERAL_SIGNING, g.GENERAL_CIPHERING),
}
GENERAL_TAGS = (g.GENERAL_CIPHERING, g.GENERAL_SIGNING)


def protect(client: DlmsClient, plain: bytes, general: str, *, suite: int | None = None,
            invocation_counter: int | None = None, authenticated: bool | None = None,
            encrypted: bool | None = None, key_info: g.KeyInfo | None = None,
            encryption_key: Key | None = None, signing_key: ec.EllipticCurvePrivateKey | None = None,
            sign_suite: int | None = None, recipient: bytes | None = None,
            agreed: bool = False, ephemeral_signer: ec.EllipticCurvePrivateKey | None = None,
            **_: Any) -> bytes:
    """``plain`` in the general layers ``general`` names (each part overridable for checks).

    ``key_info`` defaults to the identified GUEK; with a wrapped key pass ``encryption_key``
    (the key that ``key_info`` carries wrapped); ``agreed`` agrees a one-APDU key with
    C(1e, 1s): a fresh ephemeral key, signed with our signing key, against the meter's static
    key-agreement key (``server_agreement_certificate`` in the key file); ``ephemeral_signer``
    signs that ephemeral key instead of our signing key (a check's forgery). ``signing_key`` / ``sign_suite`` replace
    our signing key and the suite it signs in (a check signing with another key or curve).
    """
    layers = LAYERINGS.get(general)
    if layers is None:
        raise DlmsError(f"unknown general protection {general!r}; use one of "
                        + ", ".join(LAYERINGS))
    s = client.settings
    title = s.keys.client_system_title
    if title is None:
        raise DlmsError("general protection needs the client system title (key file)")
    peer = client.server_title if recipient is None else recipient
    if peer is None:
        raise DlmsError("general protection needs the meter's system title (key file)")
    chosen = s.suite if suite is None else suite
    ic = client._counter.next() if invocation_counter is None else invocation_counter
    client.last_sent_counter = ic
    header = g.GeneralHeader(ic.to_bytes(4, "big"), title, peer)
    data = plain
    for tag in reversed(layers):
        if tag == g.GENERAL_SIGNING:
            key = signing_key or s.keys.client_private_key
            if key is None:
                raise DlmsError("general-signing needs the client's signing key "
                                "(client_private_key in the key file)")
            data = g.sign_general(data, header=header, signing_key=key,
                                  suite=sign_suite or chosen or g.suite_of_key(key.public_key()))
            continue
        sc = SecurityControl(chosen, s.authenticated if authenticated is None else authenticated,
                             s.encrypted if encrypted is None else encrypted)
        ek = encryption_key or s.keys.guek
        info = g.IdentifiedKey(0) if key_info is None else key_info
        if agreed:
            ek, info = _originate(client, chosen, title, peer, ephemeral_signer or signing_key)
        data = g.protect_general(data, header=header, security_control=sc, invocation_counter=ic,
                                 encryption_key=ek, authentication_key=s.keys.ak,
                                 key_info=info, key_size=client._key_size(ek, chosen))
    return data


def open_answer(client: DlmsClient, apdu: bytes, *, move_window: bool = True) -> bytes:
    """The plaintext of a general answer once every layer verifies; ResponseNotTrusted else.

    Each layer must come from the meter (originator) to us (recipient); a 0xDD layer must be
    in our suite, protected as our requests are, and carry a fresh counter (the window moves
    only when ``move_window``); a 0xDF layer must verify with the meter's public key in our
    suite. A ciphered association trusts no answer without a 0xDD layer."""
    s = client.settings
    data = apdu
    ciphered = False
    seen: list[int] = []
    try:
        while data and data[0] in GENERAL_TAGS:
            if data[0] in seen:
                raise ResponseNotTrusted("general layers repeated in the answer")
            seen.append(data[0])
            if data[0] == g.GENERAL_SIGNING:
                gs = g.parse_general_signing(data)
                _titles(client, gs.header)
                if s.keys.server_public_key is None:
                    raise ResponseNotTrusted("signed answer: the meter's public key is not known "
                                             "(server_public_key in the key file)")
                g.verify_general(gs, public_key=s.keys.server_public_key, suite=s.suite)
                data = gs.content
                continue
            gc = g.parse_general_ciphering(data)
            _titles(client, gc.header)
            sc = gc.security_control
            if sc.suite != s.suite:
                raise ResponseNotTrusted(f"answer in security suite {sc.suite} on a suite "
                                         f"{s.suite} association")
            if (s.authenticated and not sc.authenticated) or (s.encrypted and not sc.encrypted):
                raise ResponseNotTrusted(f"answer protected less (SC 0x{sc.byte:02X}) than "
                                         "our requests")
            key = g.receiver_key(gc, keys=s.keys, agreement=_agreement_keys(client)
                                 if isinstance(gc.key_info, g.AgreedKey) else None)
            opened = g.unprotect_general(gc, encryption_key=key, authentication_key=s.keys.ak,
                                         key_size=client._key_size(key, sc.suite))
            if move_window and not client._rx.accept(gc.invocation_counter):
                raise ResponseNotTrusted(
                    f"answer replays or reuses invocation counter {gc.invocation_counter}")
            ciphered = True
            data = opened.plaintext
    except AuthenticationFailed:
        raise ResponseNotTrusted("general answer does not verify") from None
    except SecurityError as exc:
        raise ResponseNotTrusted(f"general answer refused: {exc}") from None
    if s.ciphered and not ciphered:
        raise ResponseNotTrusted("general answer without general-ciphering on a ciphered "
                                 "association")
    return data


def _key_file_key(client: DlmsClient, name: str, *, private: bool) -> Any:
    keys = client.settings.keys
    ref = keys.extra.get(name)
    if not ref:
        raise DlmsError(f"agreed key: the key file names no {name}")
    return load_pem_key(ref, keys.base_dir, "key file", private=private)


def _originate(client: DlmsClient, suite: int, title: bytes, peer: bytes,
               signing_key: ec.EllipticCurvePrivateKey | None) -> tuple[Key, g.AgreedKey]:
    key = signing_key or client.settings.keys.client_private_key
    if key is None:
        raise DlmsError("agreed key: C(1e, 1s) needs the client's signing key")
    agreed, data = agr.one_pass_originate(
        suite=suite, recipient_static=_key_file_key(client, "server_agreement_certificate",
                                                    private=False),
        signing_key=key, party_u=title, party_v=peer)
    return agreed, g.AgreedKey(bytes((agr.KeyAgreementScheme.ONE_PASS_DIFFIE_HELLMAN,)), data)


def _agreement_keys(client: DlmsClient) -> g.AgreementKeys:
    """What an agreed-key answer needs: our key-agreement key, the meter's signing key."""
    return g.AgreementKeys(own_agreement_key=_key_file_key(client, "client_agreement_key",
                                                           private=True),
                           peer_signing_key=client.settings.keys.server_public_key)


def _titles(client: DlmsClient, header: g.GeneralHeader) -> None:
    if client.server_title is not None and header.originator_system_title != client.server_title:
        raise ResponseNotTrusted("answer comes from another system title")
    own = client.settings.keys.client_system_title
    if header.recipient_system_title != own:
        raise ResponseNotTrusted("answer is addressed to another system title")
