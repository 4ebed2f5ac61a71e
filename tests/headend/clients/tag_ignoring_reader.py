"""A deliberately broken client for the head-end tests: metercert's reader whose response
deciphering never looks at the GCM tag (the keystream alone, as a client that skips the
tag would do). Everything else a response must pass stays: system title, suite, the
protection the association asks for, and the counter window. So it must fail exactly the
checks tagged ``tag`` and pass the others. Never use this outside the tests."""

from __future__ import annotations

import asyncio
import sys

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from metercert.client.errors import ResponseNotTrusted
from metercert.client.session import DlmsClient
from metercert.headend import reader
from metercert.security import parse_ciphered

TAG = 12


def open_without_tag(self: DlmsClient, apdu: bytes) -> bytes:
    parsed = parse_ciphered(apdu)
    title = parsed.system_title or self.server_title
    if parsed.system_title is not None and parsed.system_title != self.server_title:
        raise ResponseNotTrusted("response carries another system title")
    sc, s = parsed.security_control, self.settings
    if sc.suite != s.suite:
        raise ResponseNotTrusted(f"response in security suite {sc.suite}")
    if (s.authenticated and not sc.authenticated) or (s.encrypted and not sc.encrypted):
        raise ResponseNotTrusted(f"response protected less (SC 0x{sc.byte:02X})")
    assert title is not None and s.keys.guek is not None
    body = parsed.payload[:-TAG] if sc.authenticated else parsed.payload   # tag dropped unread
    if sc.encrypted:
        nonce = title + parsed.invocation_counter.to_bytes(4, "big")
        # GCM encrypts with the counter block J0 + 1 = IV || 00000002
        body = Cipher(algorithms.AES(s.keys.guek.secret),
                      modes.CTR(nonce + b"\x00\x00\x00\x02")).decryptor().update(body)
    if not self._rx.accept(parsed.invocation_counter):
        raise ResponseNotTrusted(f"response replays or reuses invocation counter "
                                 f"{parsed.invocation_counter}")
    return body


if __name__ == "__main__":
    DlmsClient._open = open_without_tag  # type: ignore[method-assign]
    sys.exit(asyncio.run(reader.main()))
