"""A deliberately broken client for the head-end tests: metercert's reader with the GCM tag
check taken out of response deciphering (AES-CTR only, as a client that skips the tag
would do). Counters, suite and protection checks stay, so it must fail exactly the checks
tagged ``tag`` and pass the others. Never use this outside the tests."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

import metercert.client.session as session_module
from metercert.headend import reader


def _secret(key: Any) -> bytes:
    return bytes(key.secret if hasattr(key, "secret") else key)


def unprotect_without_tag(parsed: Any, *, encryption_key: Any, authentication_key: Any,
                          system_title: bytes | None = None, key_size: int | None = None) -> Any:
    """Decipher with the GCM keystream and never look at the tag."""
    title = parsed.system_title if parsed.system_title is not None else system_title
    assert title is not None
    sc = parsed.security_control
    body = parsed.payload[:-12] if sc.authenticated else parsed.payload
    if not sc.encrypted:
        return _plain(body)
    iv = title + parsed.invocation_counter.to_bytes(4, "big")
    ctr = Cipher(algorithms.AES(_secret(encryption_key)), modes.CTR(iv + b"\x00\x00\x00\x02"))
    plain = ctr.decryptor().update(body)
    return _plain(plain)


class _plain:  # stands in for security.Unprotected: only .plaintext is read
    def __init__(self, plaintext: bytes) -> None:
        self.plaintext = plaintext




if __name__ == "__main__":
    session_module.unprotect_parsed = unprotect_without_tag  # type: ignore[assignment]
    sys.exit(asyncio.run(reader.main()))
