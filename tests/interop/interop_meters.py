"""Our reference meter served from a background event loop, for the peers' blocking
clients (a uniquely named module: ``conftest`` is ambiguous under importlib mode)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from metercert.meter.profile import MeterProfile
from metercert.meter.server import MeterFleet

CLOCK_OBIS = "0.0.1.0.0.255"


@dataclass(frozen=True)
class RunningMeter:
    """A reference meter on 127.0.0.1 and its client key-file entry (as a mapping)."""

    host: str
    port: int
    keys: dict[str, Any]
    fleet: MeterFleet

    def key(self, name: str) -> bytes:
        return bytes.fromhex(self.keys[name])


def serve_reference_meter(profile: MeterProfile, state_dir: Path) -> Iterator[RunningMeter]:
    loop = asyncio.new_event_loop()
    fleet = MeterFleet(profile, state_dir, port=0, idle_timeout=10.0)
    loop.run_until_complete(fleet.start())
    key_file = fleet.write_key_file(state_dir / "keys.yaml")
    keys = yaml.safe_load(key_file.read_text("utf-8"))
    thread = threading.Thread(target=loop.run_forever, name="reference-meter", daemon=True)
    thread.start()
    host, port = fleet.endpoints[0]
    try:
        yield RunningMeter(host, port, keys, fleet)
    finally:
        asyncio.run_coroutine_threadsafe(fleet.stop(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
