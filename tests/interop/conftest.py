"""Fixtures for interop against the peer stacks: our reference meter served from a
background event loop (the peers' clients are blocking), and the gurux meter."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from interop_meters import RunningMeter, serve_reference_meter

from metercert.meter.profile import load_profile, profile_from_mapping


@pytest.fixture
def suite0_meter(tmp_path: Path) -> Iterator[RunningMeter]:
    """A fresh conformant reference meter configured for security suite 0."""
    yield from serve_reference_meter(profile_from_mapping({"name": "suite-0", "security_suite": 0}), tmp_path)


@pytest.fixture
def suite1_meter(tmp_path: Path) -> Iterator[RunningMeter]:
    """A fresh conformant reference meter as shipped (suite 1)."""
    yield from serve_reference_meter(load_profile("conformant"), tmp_path)


@pytest.fixture
def gurux_meter() -> Iterator[tuple[str, int, Any]]:
    pytest.importorskip("gurux_dlms")
    from gurux_server import start_gurux_server

    host, port, stop = start_gurux_server()
    try:
        yield host, port, stop
    finally:
        stop()


@pytest.fixture
def gurux_hls_meter() -> Iterator[tuple[str, int, Any]]:
    """The gurux meter with the runtime patches that let SAP 1 complete HLS-GMAC."""
    pytest.importorskip("gurux_dlms")
    from gurux_server import start_gurux_server

    host, port, stop = start_gurux_server(hls_gmac=True)
    try:
        yield host, port, stop
    finally:
        stop()


@pytest.fixture
def ecdsa_meter(tmp_path: Path) -> Iterator[RunningMeter]:
    """A reference meter in suite 1 whose associations authenticate with HLS-ECDSA (P-256)."""
    profile = profile_from_mapping({"name": "ecdsa", "security_suite": 1, "mechanism": "hls-ecdsa"})
    yield from serve_reference_meter(profile, tmp_path)
