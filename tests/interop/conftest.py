"""Fixtures for interop against the peer stacks: our reference meter served from a
background event loop (the peers' clients are blocking), and the gurux meter."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))

from metercert.meter.profile import MeterProfile, load_profile, profile_from_mapping  # noqa: E402
from metercert.meter.server import MeterFleet  # noqa: E402

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


def _serve(profile: MeterProfile, state_dir: Path) -> Iterator[RunningMeter]:
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


@pytest.fixture
def suite0_meter(tmp_path: Path) -> Iterator[RunningMeter]:
    """A fresh conformant reference meter configured for security suite 0."""
    yield from _serve(profile_from_mapping({"name": "suite-0", "security_suite": 0}), tmp_path)


@pytest.fixture
def suite1_meter(tmp_path: Path) -> Iterator[RunningMeter]:
    """A fresh conformant reference meter as shipped (suite 1)."""
    yield from _serve(load_profile("conformant"), tmp_path)


@pytest.fixture
def gurux_meter() -> Iterator[tuple[str, int, Any]]:
    pytest.importorskip("gurux_dlms")
    from gurux_server import start_gurux_server

    host, port, stop = start_gurux_server()
    try:
        yield host, port, stop
    finally:
        stop()
