"""A reference meter and a real DLMS client talking in-process (no sockets).

The client is metercert's own :class:`DlmsClient`; only ``exchange`` is replaced so
that each APDU goes straight to :meth:`MeterSession.handle`. A ``CloseConnection``
from the meter is reported as :class:`Closed` carrying its last APDU.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from metercert.client.session import DlmsClient, settings_for_role
from metercert.meter.model import Meter
from metercert.meter.profile import load_profile
from metercert.meter.session import CloseConnection, MeterSession
from metercert.security.keys import keyset_from_mapping


@dataclass(frozen=True)
class Closed(Exception):
    """The meter answered with ``last`` (maybe None) and closed the connection."""

    last: bytes | None


class InProcessMeter:
    def __init__(self, state_dir: Path, profile: str = "conformant") -> None:
        self.meter = Meter(load_profile(profile), state_dir)
        self.keys = keyset_from_mapping(self.meter.state.client_entry("127.0.0.1", 4059))
        self.settings = settings_for_role(self.keys)
        self.session = MeterSession(self.meter, self.settings.client_sap)
        self.client = self._client()

    def _client(self) -> DlmsClient:
        owner = self

        class _Client(DlmsClient):
            async def exchange(self, apdu: bytes, *, plain: bytes | None = None,
                               timeout: float | None = None, note: str = "") -> bytes:
                self.trace.record("->", apdu, plain, note)
                try:
                    answer = owner.session.handle(apdu)
                except CloseConnection as close:
                    owner.session = MeterSession(owner.meter, owner.settings.client_sap)
                    raise Closed(close.last) from None
                self.trace.record("<-", answer or b"")
                return answer or b""
        return _Client("127.0.0.1", 0, self.settings)

    def associate(self) -> None:
        previous = self.client
        self.client = self._client()
        self.client._counter = previous._counter
        self.client._rx = previous._rx
        asyncio.run(self.client.associate())

    def get(self, class_id: int, obis: str, attribute: int):  # type: ignore[no-untyped-def]
        return asyncio.run(self.client.get(class_id, obis, attribute))

    def raw(self, apdu: bytes) -> bytes:
        """Send one APDU as is; raises :class:`Closed` if the meter closes."""
        return asyncio.run(self.client.exchange(apdu))

    def close(self) -> None:
        self.meter.close()
