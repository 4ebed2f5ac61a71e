"""Discovery against meters that are not the default: probe objects come from the meter's
object lists, a campaign file may name them, and a missing object is absent (never
"denied"). Each meter runs as its own process on a real loopback socket."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from metercert.campaign.config import CampaignFileError, parse_campaign
from metercert.client.target import DlmsTarget
from metercert.cosem import ObisCode
from metercert.errors import UsageError
from metercert.lab.power import MeterProcess
from metercert.security import load_keyset


@pytest.fixture
def start_meter(tmp_path):
    started: list[MeterProcess] = []

    def start(profile: str) -> MeterProcess:
        proc = MeterProcess(tmp_path / profile, profile=profile, port=0)
        proc.start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


def _discover(meter: MeterProcess, **kw):  # type: ignore[no-untyped-def]
    target = DlmsTarget(meter.host, meter.port, load_keyset(meter.keys_out), **kw)
    return target, asyncio.run(target.discover())


def test_sparse_meter_probes_come_from_its_object_list(start_meter) -> None:
    inv = _discover(start_meter("sparse-objects"))[1]
    assert inv.probe("firmware_id") is None          # the meter has none: absent
    assert inv.probe("disconnect") is None
    assert inv.probe("register") == ObisCode.parse("1.0.15.8.0.255")
    assert inv.probe("clock") == ObisCode.parse("0.0.1.0.0.255")
    assert inv.probe("image_transfer") is not None


def test_version_0_security_setup_is_read_as_an_enumeration(start_meter) -> None:
    inv = _discover(start_meter("security-setup-v0"))[1]
    assert inv.security_setup_version == 0
    assert inv.security_policy == 3
    assert inv.policy_flags() == (True, True)   # v0 value 3: authenticated and encrypted


def test_associations_the_key_file_does_not_name_are_found(start_meter) -> None:
    meter = start_meter("lls-second-association")
    keys = load_keyset(meter.keys_out)
    inv = _discover(meter)[1]
    known = {int(r["client_sap"]) for r in keys.extra.get("roles", [])}
    assert 17 in inv.association_saps() and 17 not in known


def test_campaign_probes_override_discovery(start_meter, tmp_path) -> None:
    meter = start_meter("conformant")
    config = parse_campaign(f"target: tcp://{meter.host}:{meter.port}\n"
                            "probes: {register: 1.0.2.8.0.255}\nchallenge_length: 24\n",
                            check_files=False)
    assert config.probes == {"register": "1.0.2.8.0.255"} and config.challenge_length == 24
    target, inv = _discover(meter, probe_overrides={"register": ObisCode.parse("1.0.2.8.0.255")},
                            challenge_length=24)
    assert inv.probe("register") == ObisCode.parse("1.0.2.8.0.255")
    assert target.settings().ctos_length == 24
    assert "(campaign file)" in inv.summary()


def test_bad_probe_names_and_values_are_one_line_errors(tmp_path) -> None:
    with pytest.raises(CampaignFileError, match="not an OBIS code"):
        parse_campaign("target: tcp://127.0.0.1:4059\nprobes: {clock: 1.2.3}\n",
                       check_files=False)
    with pytest.raises(CampaignFileError, match="unknown key"):
        parse_campaign("target: tcp://127.0.0.1:4059\nprobes: {wallclock: 0.0.1.0.0.255}\n",
                       check_files=False)
    with pytest.raises(CampaignFileError, match="challenge_length"):
        parse_campaign("target: tcp://127.0.0.1:4059\nchallenge_length: 4\n", check_files=False)


def test_a_challenge_length_the_meter_refuses_stops_the_campaign_up_front(start_meter) -> None:
    meter = start_meter("short-challenge")      # takes 16-byte challenges only
    target = DlmsTarget(meter.host, meter.port, load_keyset(meter.keys_out), challenge_length=32)
    with pytest.raises(UsageError, match="management association"):
        asyncio.run(target.discover())
    # the default (16 bytes) interoperates
    assert asyncio.run(DlmsTarget(meter.host, meter.port,
                                  load_keyset(meter.keys_out)).discover()).security_suite == 1


def test_the_meters_suite_is_read_not_taken_on_trust_from_the_key_file(start_meter) -> None:
    meter = start_meter("conformant")            # a suite-1 meter
    keys = load_keyset(meter.keys_out)
    # left out of the key file: discovery finds the suite the meter takes
    missing = dataclasses.replace(keys, extra={k: v for k, v in keys.extra.items()
                                               if k != "security_suite"})
    target = DlmsTarget(meter.host, meter.port, missing)
    inv = asyncio.run(target.discover())
    assert target.suite == 1 and inv.security_suite == 1
    assert any("names no security_suite" in n for n in inv.notes)
    # wrong in the key file: the mismatch is reported and the campaign runs in the real one
    wrong = dataclasses.replace(keys, extra={**keys.extra, "security_suite": 0})
    target = DlmsTarget(meter.host, meter.port, wrong)
    inv = asyncio.run(target.discover())
    assert target.suite == 1
    assert any("says security_suite 0" in n and "took suite 1" in n for n in inv.notes)
