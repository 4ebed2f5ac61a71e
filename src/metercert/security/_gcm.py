"""AES-GCM as DLMS uses it (internal; use :mod:`metercert.security.protection`).

DLMS truncates the GCM tag to 12 bytes. ``cryptography``'s fast ``AESGCM`` only
verifies full 16-byte tags, so verification recomputes the tag with the same call
and compares the 12-byte prefix in constant time. Encrypt-only mode is GCM's CTR
part alone: the ciphertext of an ``AESGCM.encrypt`` call does not depend on the AAD
or the tag, so the same call decrypts (CTR is its own inverse).
"""

from __future__ import annotations

import hmac
from functools import lru_cache

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from metercert.security.errors import AuthenticationFailed

TAG_BYTES = 12


@lru_cache(maxsize=4096)
def _aead(secret: bytes) -> AESGCM:
    return AESGCM(secret)


def iv(system_title: bytes, invocation_counter: int) -> bytes:
    return system_title + invocation_counter.to_bytes(4, "big")


def seal(secret: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """Authenticated encryption: ciphertext || 12-byte tag."""
    return _aead(secret).encrypt(nonce, plaintext, aad)[:-4]


def open_sealed(secret: bytes, nonce: bytes, data: bytes, aad: bytes) -> bytes:
    if len(data) < TAG_BYTES:
        raise AuthenticationFailed()
    encrypt = _aead(secret).encrypt
    # pass 1 recovers the plaintext (CTR), pass 2 recomputes the tag over the ciphertext
    plaintext = encrypt(nonce, data[:-TAG_BYTES], None)[:-16]
    if not hmac.compare_digest(encrypt(nonce, plaintext, aad)[-16:-4], data[-TAG_BYTES:]):
        raise AuthenticationFailed()
    return plaintext


def mac(secret: bytes, nonce: bytes, aad: bytes) -> bytes:
    """GMAC: the 12-byte tag of GCM over ``aad`` with no ciphertext."""
    return _aead(secret).encrypt(nonce, b"", aad)[:TAG_BYTES]


def verify_mac(secret: bytes, nonce: bytes, aad: bytes, tag: bytes) -> None:
    if not hmac.compare_digest(mac(secret, nonce, aad), tag):
        raise AuthenticationFailed()


def ctr(secret: bytes, nonce: bytes, data: bytes) -> bytes:
    """Encrypt-only (and its inverse): the GCM keystream applied to ``data``."""
    return _aead(secret).encrypt(nonce, data, b"")[:-16]


def protect_payload(authenticated: bool, encrypted: bool, secret: bytes | None, nonce: bytes,
                    plaintext: bytes, aad: bytes) -> bytes:
    """The payload of a ciphered APDU in each mode; ``aad`` is what precedes the plaintext in
    the authenticated data (SC || AK, and for general-ciphering its header)."""
    if authenticated and secret is not None:
        if encrypted:
            return seal(secret, nonce, plaintext, aad)
        return plaintext + mac(secret, nonce, aad + plaintext)
    if encrypted and secret is not None:
        return ctr(secret, nonce, plaintext)
    return plaintext


def unprotect_payload(authenticated: bool, encrypted: bool, secret: bytes | None, nonce: bytes,
                      payload: bytes, aad: bytes) -> bytes:
    """Inverse of :func:`protect_payload`; raises :class:`AuthenticationFailed` on any mismatch."""
    if authenticated and secret is not None:
        if encrypted:
            return open_sealed(secret, nonce, payload, aad)
        if len(payload) < TAG_BYTES:
            raise AuthenticationFailed()
        plaintext = payload[:-TAG_BYTES]
        verify_mac(secret, nonce, aad + plaintext, payload[-TAG_BYTES:])
        return plaintext
    if encrypted and secret is not None:
        return ctr(secret, nonce, payload)
    return payload
