"""The client's own sending counter: never reused, also not by a client used after close()."""

from __future__ import annotations

import asyncio
import os

import pytest

from metercert.client.errors import DlmsError
from metercert.client.session import ClientSettings, DlmsClient
from metercert.security import Key, KeySet, Mechanism


def _client(folder) -> DlmsClient:  # type: ignore[no-untyped-def]
    keys = KeySet(client_system_title=b"MCC\x00\x00\x00\x00\x01",
                  server_system_title=b"MCT\x00\x00\x00\x00\x01",
                  guek=Key(os.urandom(16), "guek"), ak=Key(os.urandom(16), "ak"))
    return DlmsClient("127.0.0.1", 9, ClientSettings(
        client_sap=1, mechanism=Mechanism.HLS_GMAC, keys=keys, suite=0, counter_dir=folder))


def test_a_closed_client_refuses_to_cipher_instead_of_counting_from_zero(tmp_path) -> None:
    c = _client(tmp_path)
    c.protect_request(b"\xc0\x01\xc1\x00\x08\x00\x00\x01\x00\x00\xff\x02\x00")
    first = c.last_sent_counter
    asyncio.run(c.close())
    with pytest.raises(DlmsError, match="closed"):
        c.protect_request(b"\xc0\x01\xc1\x00\x08\x00\x00\x01\x00\x00\xff\x02\x00")
    # a new client on the same folder goes on above every counter handed out
    d = _client(tmp_path)
    d.protect_request(b"\xc0\x01\xc1\x00\x08\x00\x00\x01\x00\x00\xff\x02\x00")
    assert d.last_sent_counter is not None and first is not None
    assert d.last_sent_counter > first
    asyncio.run(d.close())
