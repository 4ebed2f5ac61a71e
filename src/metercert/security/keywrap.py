"""Key transfer: RFC 3394 AES key wrap under the KEK (via ``cryptography``).

The Security Setup ``key_transfer`` method (``global_key_transfer`` in version 0)
takes an array of ``{key_id, key_wrapped}``; key ids are :class:`KeyId`
(0 GUEK, 1 GBEK, 2 AK, 3 KEK). A wrap whose integrity check fails must be refused
and the old key kept; :func:`unwrap_key` raises :class:`KeyUnwrapFailed` for it.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from metercert.security.errors import InvalidKey, KeyUnwrapFailed
from metercert.security.keys import Key


def wrap_key(kek: Key, key: Key) -> bytes:
    if len(kek) not in (16, 32):
        raise InvalidKey("KEK must be 16 or 32 bytes")
    return aes_key_wrap(kek.secret, key.secret)


def unwrap_key(kek: Key, wrapped: bytes, role: str = "key") -> Key:
    if len(wrapped) not in (24, 40):
        raise KeyUnwrapFailed()
    try:
        return Key(aes_key_unwrap(kek.secret, bytes(wrapped)), role)
    except (InvalidUnwrap, ValueError):
        raise KeyUnwrapFailed() from None
