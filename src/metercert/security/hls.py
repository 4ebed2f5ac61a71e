"""HLS authentication: the 4-pass challenge/response of IEC 62056-5-3.

Pass 1: the client sends CtoS in the AARQ. Pass 2: the meter sends StoC in the
AARE. Pass 3: the client calls ``reply_to_HLS_authentication`` with f(StoC).
Pass 4: the meter answers with f(CtoS). Each side computes f over the challenge
the *other* side sent; :func:`respond` computes it and :func:`verify` checks the
peer's answer to the challenge we sent.

f per mechanism (``own`` = the side that answers):

* 5 GMAC: SC(0x10|suite) || IC || GMAC(EK; IV = own title || IC; AAD = SC || AK || challenge)
* 6 SHA-256: SHA-256(secret || own title || peer title || challenge || own challenge)
* 7 ECDSA: raw r||s signature by own key over own title || peer title || challenge ||
  own challenge (P-256/SHA-256 for suite 1, P-384/SHA-384 for suite 2)

Mechanisms 3 (MD5) and 4 (SHA-1) are recognised only so they can be refused.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from metercert.security import _gcm
from metercert.security.errors import AuthenticationFailed, InvalidKey, MechanismRefused
from metercert.security.keys import Key
from metercert.security.suites import SecurityControl


class Mechanism(enum.IntEnum):
    NONE = 0
    LLS = 1
    HLS_MANUFACTURER = 2
    HLS_MD5 = 3
    HLS_SHA1 = 4
    HLS_GMAC = 5
    HLS_SHA256 = 6
    HLS_ECDSA = 7

    @property
    def oid(self) -> str:
        return f"2.16.756.5.8.2.{int(self)}"

    @property
    def is_hls(self) -> bool:
        return self >= Mechanism.HLS_MANUFACTURER


LEGACY_MECHANISMS = frozenset({Mechanism.HLS_MD5, Mechanism.HLS_SHA1})
SUPPORTED_HLS = frozenset({Mechanism.HLS_GMAC, Mechanism.HLS_SHA256, Mechanism.HLS_ECDSA})


def mechanism_from_oid(oid: str) -> Mechanism:
    prefix = "2.16.756.5.8.2."
    if not oid.startswith(prefix) or not oid[len(prefix):].isdigit():
        raise MechanismRefused(f"unknown authentication mechanism name {oid}")
    number = int(oid[len(prefix):])
    try:
        return Mechanism(number)
    except ValueError:
        raise MechanismRefused(f"unknown authentication mechanism {number}") from None


def require_secure_mechanism(mechanism: Mechanism) -> None:
    """Raise for the legacy HLS mechanisms a secure meter must refuse."""
    if mechanism in LEGACY_MECHANISMS:
        raise MechanismRefused(f"mechanism {int(mechanism)} ({mechanism.name}) is legacy and refused")


def new_challenge(length: int = 32) -> bytes:
    if not 8 <= length <= 64:
        raise ValueError("HLS challenges are 8 to 64 bytes")
    return os.urandom(length)


@dataclass(frozen=True)
class HlsCredentials:
    """What one side needs to answer and verify HLS.

    ``secret`` is the shared HLS secret (mechanism 6); ``encryption_key`` and
    ``authentication_key`` serve mechanism 5; ``private_key`` (own) and
    ``peer_public_key`` serve mechanism 7.
    """

    encryption_key: Key | None = None
    authentication_key: Key | None = None
    secret: bytes | None = None
    private_key: ec.EllipticCurvePrivateKey | None = None
    peer_public_key: ec.EllipticCurvePublicKey | None = None
    suite: int = 0

    def __repr__(self) -> str:
        return f"HlsCredentials(suite={self.suite}, <redacted>)"


def _hash_for(curve: ec.EllipticCurve) -> hashes.HashAlgorithm:
    if isinstance(curve, ec.SECP256R1):
        return hashes.SHA256()
    if isinstance(curve, ec.SECP384R1):
        return hashes.SHA384()
    raise InvalidKey(f"curve {curve.name} is not used by DLMS suites 1 or 2")


def ecdsa_sign_raw(private_key: ec.EllipticCurvePrivateKey, message: bytes) -> bytes:
    """ECDSA signature as DLMS carries it: r || s, each the curve's size."""
    size = (private_key.curve.key_size + 7) // 8
    der = private_key.sign(message, ec.ECDSA(_hash_for(private_key.curve)))
    r, s = decode_dss_signature(der)
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def ecdsa_verify_raw(public_key: ec.EllipticCurvePublicKey, signature: bytes, message: bytes) -> None:
    size = (public_key.curve.key_size + 7) // 8
    if len(signature) != 2 * size:
        raise AuthenticationFailed()
    r = int.from_bytes(signature[:size], "big")
    s = int.from_bytes(signature[size:], "big")
    try:
        public_key.verify(encode_dss_signature(r, s), message, ec.ECDSA(_hash_for(public_key.curve)))
    except InvalidSignature:
        raise AuthenticationFailed() from None


def _gmac_tag(creds: HlsCredentials, sc_byte: int, title: bytes, ic: int, challenge: bytes) -> bytes:
    if creds.encryption_key is None or creds.authentication_key is None:
        raise InvalidKey("HLS-GMAC needs the encryption key and the authentication key")
    nonce = title + ic.to_bytes(4, "big")
    aad = bytes((sc_byte,)) + creds.authentication_key.secret + challenge
    return _gcm.mac(creds.encryption_key.secret, nonce, aad)


def respond(
    mechanism: Mechanism,
    creds: HlsCredentials,
    *,
    challenge: bytes,
    own_challenge: bytes,
    own_title: bytes,
    peer_title: bytes,
    invocation_counter: int = 0,
) -> bytes:
    """f(challenge): our answer to the challenge the peer sent us."""
    require_secure_mechanism(mechanism)
    if mechanism is Mechanism.HLS_GMAC:
        sc = SecurityControl(suite=creds.suite, authenticated=True, encrypted=False).byte
        tag = _gmac_tag(creds, sc, own_title, invocation_counter, challenge)
        return bytes((sc,)) + invocation_counter.to_bytes(4, "big") + tag
    if mechanism is Mechanism.HLS_SHA256:
        if creds.secret is None:
            raise InvalidKey("HLS-SHA256 needs the shared HLS secret")
        return hashlib.sha256(creds.secret + own_title + peer_title + challenge + own_challenge).digest()
    if mechanism is Mechanism.HLS_ECDSA:
        if creds.private_key is None:
            raise InvalidKey("HLS-ECDSA needs our private key")
        return ecdsa_sign_raw(creds.private_key, own_title + peer_title + challenge + own_challenge)
    raise MechanismRefused(f"mechanism {int(mechanism)} ({mechanism.name}) has no HLS response here")


def verify(
    mechanism: Mechanism,
    creds: HlsCredentials,
    response: bytes,
    *,
    own_challenge: bytes,
    peer_challenge: bytes,
    own_title: bytes,
    peer_title: bytes,
) -> int | None:
    """Check the peer's f(own_challenge). Returns the GMAC invocation counter, if any.

    Raises :class:`AuthenticationFailed` on any mismatch.
    """
    require_secure_mechanism(mechanism)
    if mechanism is Mechanism.HLS_GMAC:
        if len(response) != 1 + 4 + _gcm.TAG_BYTES:
            raise AuthenticationFailed()
        sc_byte = response[0]
        sc = SecurityControl.from_byte(sc_byte)
        if not sc.authenticated or sc.encrypted or sc.suite != creds.suite:
            raise AuthenticationFailed()
        ic = int.from_bytes(response[1:5], "big")
        expected = _gmac_tag(creds, sc_byte, peer_title, ic, own_challenge)
        if not hmac.compare_digest(expected, response[5:]):
            raise AuthenticationFailed()
        return ic
    if mechanism is Mechanism.HLS_SHA256:
        if creds.secret is None:
            raise InvalidKey("HLS-SHA256 needs the shared HLS secret")
        expected = hashlib.sha256(
            creds.secret + peer_title + own_title + own_challenge + peer_challenge).digest()
        if not hmac.compare_digest(expected, response):
            raise AuthenticationFailed()
        return None
    if mechanism is Mechanism.HLS_ECDSA:
        if creds.peer_public_key is None:
            raise InvalidKey("HLS-ECDSA needs the peer's public key")
        ecdsa_verify_raw(creds.peer_public_key, response,
                         peer_title + own_title + own_challenge + peer_challenge)
        return None
    raise MechanismRefused(f"mechanism {int(mechanism)} ({mechanism.name}) cannot be verified here")
