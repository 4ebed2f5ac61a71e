"""Every input a fuzz target or hardening test found crashing, kept as a regression test.

Each case names the module that was fixed. The contract asserted is the one the
fuzz target checks: bad input raises a :class:`MetercertError` (one CLI line, exit
2), never a bare ``ValueError``/``TypeError``/``IndexError``/``RecursionError``.
"""

from __future__ import annotations

from pathlib import Path

import dpkt
import pytest

from metercert.campaign.config import load_campaign, parse_campaign
from metercert.dossier.load import load_dossier
from metercert.errors import MetercertError
from metercert.fleet.ingest import ingest_pcap
from metercert.fleet.pcap import CaptureStats, read_apdus
from metercert.meter.profile import load_profile, profile_from_mapping
from metercert.meter.rbac import load_rbac
from metercert.security import load_key_file
from metercert.tlsprobe.profile import load_profile as load_tls_profile

DEEP_YAML = "[" * 5000
BAD_DATE_YAML = "name: x\nwhen: 2024-13-01\n"


# -- files that are not UTF-8 (security/keys.py, meter/profile.py, meter/rbac.py) --------

@pytest.mark.parametrize("loader", [load_key_file, load_profile, load_rbac])
def test_non_utf8_file_is_an_input_error(tmp_path: Path, loader) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "bad.yaml"
    path.write_bytes(b"\xb7\xff guek: 00\n")
    with pytest.raises(MetercertError, match="UTF-8"):
        loader(str(path))


# -- YAML values PyYAML cannot build, and nesting that overflows its recursion -----------

@pytest.mark.parametrize("text", [DEEP_YAML, BAD_DATE_YAML, "a: !!int x\n", "a: !!timestamp x\n"],
                         ids=["deep", "bad-date", "bad-int", "bad-timestamp"])
@pytest.mark.parametrize("loader", ["key_file", "meter_profile", "rbac", "campaign", "dossier",
                                    "tls_profile"])
def test_unbuildable_yaml_is_an_input_error(tmp_path: Path, loader: str, text: str) -> None:
    path = tmp_path / "input.yaml"
    path.write_text(text)
    call = {
        "key_file": lambda: load_key_file(path),
        "meter_profile": lambda: load_profile(str(path)),
        "rbac": lambda: load_rbac(str(path)),
        "campaign": lambda: load_campaign(path, check_files=False),
        "dossier": lambda: load_dossier(path),
        "tls_profile": lambda: load_tls_profile(path),
    }[loader]
    if loader == "key_file" and text != DEEP_YAML:
        # key files load with BaseLoader: every scalar stays a string, so only the
        # nesting depth can break them; a key file without keys is valid.
        call()
        return
    with pytest.raises(MetercertError):
        call()


def test_deep_json_key_file(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text("[" * 100000)
    with pytest.raises(MetercertError):
        load_key_file(path)


# -- meter profile values of the wrong type (meter/profile.py) ---------------------------

@pytest.mark.parametrize("data", [
    {"flaws": [{}]},                 # fuzz: `flaws: [?$]` -> unhashable dict
    {"flaws": "accepts-downgrade"},  # a string is not a list of flaws
    {None: 1},                       # fuzz: `~: 1` -> sorting None with str
    {"policy": ["authenticated"]},   # unhashable policy
    {"max_pdu": "big"},
    {"max_pdu": 0},
    {"auth_failures_before_lockout": -1},
    {"security_suite": True},
])
def test_profile_with_wrong_types(data: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(MetercertError):
        profile_from_mapping(data, "fuzz")


def test_valid_profile_still_loads() -> None:
    profile = profile_from_mapping({"max_pdu": 128, "lockout_seconds": 2,
                                    "flaws": ["accepts-downgrade"]}, "ok")
    assert profile.max_pdu == 128 and profile.has("accepts-downgrade")


# -- campaign targets that make urlsplit raise (campaign/config.py) ----------------------

@pytest.mark.parametrize("target", ["tcp://127.0.0.1:4059p2only3 [dlms.*]", "tcp://[x", "tcp://[::1"])
def test_campaign_target_urlsplit_errors(target: str) -> None:
    with pytest.raises(MetercertError, match="target"):
        parse_campaign(f"target: '{target}'\n", check_files=False)


# -- an empty wrapper frame in a capture (fleet/pcap.py) ---------------------------------

def _capture(path: Path, payloads: list[bytes], *, udp: bool) -> None:
    with path.open("wb") as fh:
        writer = dpkt.pcap.Writer(fh)
        seq = 1000
        for i, data in enumerate(payloads):
            if udp:
                l4 = dpkt.udp.UDP(sport=40000, dport=4059, data=data)
                l4.ulen = len(l4)
                proto = dpkt.ip.IP_PROTO_UDP
            else:
                l4 = dpkt.tcp.TCP(sport=40000, dport=4059, seq=seq,
                                  flags=dpkt.tcp.TH_ACK | dpkt.tcp.TH_PUSH, data=data)
                proto = dpkt.ip.IP_PROTO_TCP
            seq += len(data)
            ip = dpkt.ip.IP(src=bytes([127, 0, 0, 1]), dst=bytes([127, 0, 0, 2]), p=proto, data=l4)
            ip.len = len(ip)
            writer.writepkt(bytes(dpkt.ethernet.Ethernet(type=dpkt.ethernet.ETH_TYPE_IP, data=ip)),
                            ts=1.0 + i)


@pytest.mark.parametrize("udp", [True, False])
def test_empty_wrapper_frame_in_capture(tmp_path: Path, udp: bool) -> None:
    path = tmp_path / "empty.pcap"
    empty = bytes.fromhex("0001001000010000")
    get = bytes.fromhex("0001001000010004") + bytes.fromhex("C001C100")
    _capture(path, [empty, get], udp=udp)
    stats = CaptureStats()
    apdus = [w.apdu for w in read_apdus(path, stats=stats)]
    assert apdus == [bytes.fromhex("C001C100")]
    assert stats.bad_frames == 1
    table = ingest_pcap(path)
    assert table.num_rows == 1


# -- campaign file paths with ~user for an unknown user (campaign/config.py) -------------

@pytest.mark.parametrize("field", ["keys", "dossier"])
def test_campaign_path_with_unknown_user(field: str) -> None:
    # fuzz input: "keys: ~e." -> Path.expanduser raised RuntimeError
    with pytest.raises(MetercertError, match="no such user"):
        parse_campaign(f"target: tcp://127.0.0.1:4059\n{field}: ~no-such-user-xyz/k.yaml\n",
                       check_files=False)


# -- a YAML key that is not a string, in a schema-checked file (dossier/yamldoc.py) -------

@pytest.mark.parametrize("key", ["~", "true", "1", "2024-01-01", "[a]"])
def test_dossier_with_non_string_key(tmp_path: Path, key: str) -> None:
    # fuzz: a null key next to string keys made the "unknown field" message sort None with str
    path = tmp_path / "dossier.yaml"
    path.write_text(f"dossier_version: 1\n{key}: x\nzzz: 1\n")
    with pytest.raises(MetercertError):
        load_dossier(path)


# -- a hostile meter asking a public client for HLS pass 3 (client/session.py) ------------

def test_public_client_told_authentication_required() -> None:
    # fuzz (client_responses): an AARE "accepted, authentication-required" answering a public
    # AARQ hit an assert in the client's HLS pass 3
    import asyncio

    from metercert.client.session import ClientSettings, DlmsClient
    from metercert.cosem import (
        AARE,
        AcseServiceUserDiagnostic,
        ApplicationContextName,
        AssociationResult,
    )

    aare = AARE(application_context_name=ApplicationContextName.LOGICAL_NAME.oid,
                result=AssociationResult.ACCEPTED,
                result_source_diagnostic=AcseServiceUserDiagnostic.AUTHENTICATION_REQUIRED,
                responding_authentication_value=b"12345678").to_bytes()

    class Hostile(DlmsClient):
        async def exchange(self, apdu: bytes, **kw: object) -> bytes:  # type: ignore[override]
            return aare

    with pytest.raises(MetercertError, match="did not offer"):
        asyncio.run(Hostile("127.0.0.1", 0, ClientSettings()).associate())
