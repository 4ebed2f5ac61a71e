"""dlms-cosem 25.1.0's client (pwitab/dlms-cosem) against our reference meter on 127.0.0.1.

Two things dlms-cosem cannot do as configured by default are pinned here (see
docs/interop.md): it refuses a meter whose first response carries invocation
counter 0 unless ``meter_initial_invocation_counter=-1``, and its
``dedicated_ciphering`` flag is accepted but never used.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import pytest

pytest.importorskip("dlms_cosem")

import structlog
from dlms_cosem import cosem, enumerations, exceptions
from dlms_cosem.client import DlmsClient
from dlms_cosem.io import BlockingTcpIO, TcpTransport
from dlms_cosem.security import HighLevelSecurityGmacAuthentication, NoSecurityAuthentication
from interop_meters import RunningMeter

from metercert.cosem import AARQ, CosemDateTime, InitiateRequest, decode_data
from metercert.security import unprotect

# dlms-cosem logs every APDU through structlog at debug level: keep test output readable
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

CLOCK = cosem.CosemAttribute(interface=enumerations.CosemInterface.CLOCK,
                             instance=cosem.Obis(0, 0, 1, 0, 0, 255), attribute=2)


class RecordingIO(BlockingTcpIO):  # type: ignore[misc]
    """dlms-cosem's blocking TCP IO that also keeps the APDUs it sent (header stripped)."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(host, port, timeout=5)
        self.sent: list[bytes] = []

    def send(self, data: bytes) -> None:
        self.sent.append(bytes(data[8:]))
        super().send(data)


def _public(meter: RunningMeter) -> tuple[DlmsClient, RecordingIO]:
    io = RecordingIO(meter.host, meter.port)
    transport = TcpTransport(client_logical_address=16, server_logical_address=1, io=io)
    return DlmsClient(transport=transport, authentication=NoSecurityAuthentication()), io


def _hls(meter: RunningMeter, **overrides: Any) -> tuple[DlmsClient, RecordingIO]:
    io = RecordingIO(meter.host, meter.port)
    transport = TcpTransport(client_logical_address=meter.keys["client_sap"],
                             server_logical_address=1, io=io)
    options: dict[str, Any] = {
        "authentication": HighLevelSecurityGmacAuthentication(challenge_length=32),
        "encryption_key": meter.key("guek"), "authentication_key": meter.key("ak"),
        "client_system_title": meter.key("client_system_title"),
        "security_suite": meter.keys["security_suite"],
        # our meter's first counter is 0; dlms-cosem wants every counter > its start value
        "meter_initial_invocation_counter": -1}
    options.update(overrides)
    return DlmsClient(transport=transport, **options), io


def _clock_value(raw: bytes) -> dt.datetime:
    value, end = decode_data(raw)
    assert end == len(raw)
    return CosemDateTime.from_bytes(bytes(value.value)).to_datetime()


def _assert_now(when: dt.datetime) -> None:
    assert abs(when - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=2)


def test_dlms_cosem_public_client_reads_the_clock(suite0_meter: RunningMeter) -> None:
    client, io = _public(suite0_meter)
    with client.session() as s:
        raw = s.get(CLOCK)
    _assert_now(_clock_value(raw))
    assert [apdu[0] for apdu in io.sent] == [0x60, 0xC0, 0x62]


def test_dlms_cosem_hls_gmac_suite0_reads_the_clock(suite0_meter: RunningMeter) -> None:
    """AARQ with a glo-initiate-request, HLS passes 3/4 (dlms-cosem verifies the meter's
    f(CtoS)), then a general-glo-ciphering GET answered in kind."""
    client, io = _hls(suite0_meter)
    with client.session() as s:
        raw = s.get(CLOCK)
    _assert_now(_clock_value(raw))
    assert [apdu[0] for apdu in io.sent] == [0x60, 0xDB, 0xDB, 0x62]
    # dlms-cosem's general-glo-ciphering carries its system title and SC 0x30 (suite 0)
    title = suite0_meter.key("client_system_title")
    assert io.sent[2][1:10] == bytes([8]) + title and io.sent[2][11] == 0x30


def test_dlms_cosem_hls_gmac_against_the_shipped_suite1_meter(suite1_meter: RunningMeter) -> None:
    client, io = _hls(suite1_meter)
    with client.session() as s:
        raw = s.get(CLOCK)
    _assert_now(_clock_value(raw))
    assert io.sent[2][11] == 0x31


def test_dlms_cosem_suite0_is_refused_by_the_suite1_meter(suite1_meter: RunningMeter) -> None:
    client, _ = _hls(suite1_meter, security_suite=0)
    client.connect()
    try:
        with pytest.raises(exceptions.DlmsClientException, match="REJECTED_PERMANENT"):
            client.associate()
    finally:
        client.disconnect()


def test_dlms_cosem_with_a_wrong_authentication_key_is_refused(suite0_meter: RunningMeter) -> None:
    client, _ = _hls(suite0_meter, authentication_key=bytes(16))
    client.connect()
    try:
        with pytest.raises(exceptions.DlmsClientException, match="AUTHENTICATION_FAILED"):
            client.associate()
    finally:
        client.disconnect()


def test_meter_refuses_a_dlms_cosem_client_that_restarts_its_counter(
        suite0_meter: RunningMeter) -> None:
    """dlms-cosem keeps no counter across runs: a second run from 0 is a replay and refused."""
    first, _ = _hls(suite0_meter)
    with first.session() as s:
        s.get(CLOCK)
    second, _ = _hls(suite0_meter)   # client_initial_invocation_counter defaults to 0 again
    second.connect()
    try:
        with pytest.raises(exceptions.DlmsClientException, match="REJECTED"):
            second.associate()
    finally:
        second.disconnect()
    third, _ = _hls(suite0_meter, client_initial_invocation_counter=first.client_invocation_counter)
    with third.session() as s:
        _assert_now(_clock_value(s.get(CLOCK)))


def test_limitation_dlms_cosem_refuses_a_first_meter_counter_of_zero(
        suite0_meter: RunningMeter) -> None:
    """dlms-cosem starts its own counter at 0 but requires the meter's first counter to be > 0
    (its ``meter_initial_invocation_counter`` defaults to 0): a fresh meter is refused unless
    the caller passes -1. Both starting points are legal, so this is a peer limitation."""
    client, _ = _hls(suite0_meter, meter_initial_invocation_counter=0)
    client.connect()
    try:
        with pytest.raises(exceptions.LocalDlmsProtocolError, match="invocation counter"):
            client.associate()
    finally:
        client.disconnect()


def test_limitation_dlms_cosem_dedicated_ciphering_flag_is_ignored(
        suite0_meter: RunningMeter) -> None:
    """``dedicated_ciphering=True`` neither sends a dedicated key in the initiate-request nor
    switches to general-ded-ciphering (0xDC): dlms-cosem 25.1.0 never reads the flag."""
    client, io = _hls(suite0_meter, dedicated_ciphering=True)
    with client.session() as s:
        s.get(CLOCK)
    assert [apdu[0] for apdu in io.sent] == [0x60, 0xDB, 0xDB, 0x62]
    aarq = AARQ.from_bytes(io.sent[0])
    opened = unprotect(aarq.user_information, encryption_key=suite0_meter.key("guek"),
                       authentication_key=suite0_meter.key("ak"),
                       system_title=suite0_meter.key("client_system_title"))
    assert InitiateRequest.from_bytes(opened.plaintext).dedicated_key is None
