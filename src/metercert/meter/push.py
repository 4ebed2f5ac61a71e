"""The reference meter's pushes: one at power-up (an event) and then on a schedule.

Each push is a DataNotification protected as general-glo-ciphering (authenticated and
encrypted, the sender's system title in the APDU) under the management association's
keys, with the meter's own sending counter for that key: the very counter its responses
use, so a meter whose counter restarts at boot (``own-ic-reset-at-boot``) pushes with
counters it has used before, which a push listener sees as a regression.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from datetime import UTC, datetime

from metercert.cosem.axdr import DlmsData
from metercert.cosem.cosem_time import CosemDateTime
from metercert.cosem.xdlms.notification import DataNotification
from metercert.errors import UsageError
from metercert.meter.model import Meter
from metercert.meter.push_setup import protect_push
from metercert.transport.wrapper import encode_wrapper

__all__ = ["PushSender", "parse_push_target"]

log = logging.getLogger("metercert.meter.push")
EVENT_POWER_UP = 1   # the long-invoke-id of the power-up push (then the schedule counts on)


def parse_push_target(text: str) -> tuple[str, str, int]:
    """``tcp://HOST:PORT`` or ``udp://HOST:PORT`` -> (transport, host, port)."""
    scheme, sep, rest = text.partition("://")
    host, colon, port = rest.rpartition(":")
    if not sep or scheme not in ("tcp", "udp") or not colon or not port.isdigit() \
            or not 0 < int(port) < 65536:
        raise UsageError(f"--push-to {text!r}: expected tcp://HOST:PORT or udp://HOST:PORT")
    return scheme, host.strip("[]") or "127.0.0.1", int(port)


class PushSender:
    """Sends a meter's pushes to one destination until cancelled."""

    def __init__(self, meter: Meter, target: str, interval: float | None) -> None:
        self.meter = meter
        self.transport, self.host, self.port = parse_push_target(target)
        if interval is not None and interval <= 0:
            raise UsageError("--push-interval must be positive")
        self.interval = interval
        self.sent = 0
        role = meter.rbac.roles.get("SECADM")
        if role is None or role.association not in meter.state.secrets:
            raise UsageError("pushes need the management (SECADM) association's keys")
        self.association = role.association
        self.client_sap = role.client_sap

    def build(self, number: int) -> bytes:
        """Push ``number``: the energy register's reading, ciphered with the next counter."""
        # the time of the reading is in the push, as in a real meter's: two pushes never
        # carry the same plaintext, so a reused counter shows as reuse, not as a copy
        stamp = CosemDateTime.from_datetime(datetime.now(UTC)).to_bytes()
        note = DataNotification(DlmsData.double_long_unsigned(1000 + number), number,
                                stamp).to_bytes()
        with self.meter.lock:  # the counter store is shared with the sessions' threads
            return protect_push(self.meter, note)  # as method 1 of the Push Setup does

    async def send(self, apdu: bytes) -> None:
        frame = encode_wrapper(1, self.client_sap, apdu)
        if self.transport == "udp":
            loop = asyncio.get_running_loop()
            udp, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol,
                                                         remote_addr=(self.host, self.port),
                                                         family=socket.AF_UNSPEC)
            udp.sendto(frame)
            udp.close()
            return
        _, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), 5.0)
        try:
            writer.write(frame)
            await writer.drain()
        finally:
            writer.close()

    async def run(self) -> None:
        number = EVENT_POWER_UP
        while True:
            try:
                await self.send(self.build(number))
                self.sent += 1
            except (OSError, TimeoutError) as exc:  # nobody listens: the push is lost
                log.info("push %d to %s:%d not delivered: %s", number, self.host, self.port,
                         exc.__class__.__name__)
            number += 1
            if self.interval is None:
                return
            await asyncio.sleep(self.interval)
