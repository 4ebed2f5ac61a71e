"""Campaign files: every field, relative paths, and one-line errors with file and line."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import pytest

from metercert.campaign import CampaignFileError, load_campaign, parse_campaign
from metercert.errors import InputFileError, UsageError

GOOD = """\
name: bench 3
target: tcp://127.0.0.1:4061
framing: hdlc
keys: secrets/keys.yaml
roles:
  reader: {client_sap: 16, mechanism: none}
  VIEWER: {client_sap: 17, mechanism: lls, password_env: VIEWER_PW}
  SECADM: {client_sap: 1, mechanism: 5}
  SECAUD: {client_sap: 48, mechanism: hls-sha256, secret_env: SECAUD_SECRET}
power: {kind: command, on: "relay on 3", off: "relay off 3", settle_s: 1.5}
tls:
  endpoint: "[::1]:4443"
  client_cert: pki/c.pem
  client_key: pki/c.key
  ca: pki/ca.pem
  profile: iec62351-3-ed2
dossier: dossier.yaml
firmware: {image: fw/vendor.bin, identifier: FW-2.4.1, verify_timeout_s: 90}
only: [dlms.*]
skip: replay
no_destructive: true
"""


@pytest.fixture
def campaign_dir(tmp_path: Path) -> Path:
    for name in ("secrets/keys.yaml", "pki/c.pem", "pki/c.key", "pki/ca.pem", "dossier.yaml",
                 "fw/vendor.bin"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x: 1\n", "utf-8")
    return tmp_path


def write(directory: Path, text: str) -> Path:
    path = directory / "campaign.yaml"
    path.write_text(text, "utf-8")
    return path


def test_every_field_is_read(campaign_dir: Path) -> None:
    cfg = load_campaign(write(campaign_dir, GOOD))
    assert cfg.source == (campaign_dir / "campaign.yaml").resolve()
    assert cfg.name == "bench 3"
    assert (cfg.target.scheme, cfg.target.host, cfg.target.port) == ("tcp", "127.0.0.1", 4061)
    assert cfg.target.url == "tcp://127.0.0.1:4061"
    assert cfg.framing == "hdlc"
    assert cfg.keys == campaign_dir.resolve() / "secrets/keys.yaml"  # relative to the file
    assert list(cfg.roles) == ["READER", "VIEWER", "SECADM", "SECAUD"]
    assert cfg.roles["SECADM"].mechanism == 5 and cfg.roles["SECADM"].mechanism_name == "hls-gmac"
    assert cfg.roles["VIEWER"].password_env == "VIEWER_PW"
    assert cfg.roles["SECAUD"].secret_env == "SECAUD_SECRET"
    assert cfg.power.kind == "command" and cfg.power.argv("off") == ["relay", "off", "3"]
    assert cfg.power.argv("cycle") is None and cfg.power.settle_s == 1.5
    assert cfg.tls is not None and (cfg.tls.host, cfg.tls.port) == ("::1", 4443)
    assert cfg.tls.endpoint == "[::1]:4443" and cfg.tls.profile == "iec62351-3-ed2"
    assert cfg.tls.ca == campaign_dir.resolve() / "pki/ca.pem"
    assert cfg.dossier == campaign_dir.resolve() / "dossier.yaml"
    assert cfg.firmware is not None and cfg.firmware.image == campaign_dir.resolve() / "fw/vendor.bin"
    assert (cfg.firmware.identifier, cfg.firmware.verify_timeout_s) == ("FW-2.4.1", 90.0)
    assert cfg.only == ("dlms.*",) and cfg.skip == ("replay",)
    assert cfg.no_destructive and not cfg.include_destructive


def test_defaults_and_default_port(tmp_path: Path) -> None:
    cfg = parse_campaign("target: tcp://meter.lab\n", name="c.yaml", base_dir=tmp_path)
    assert cfg.target.port == 4059 and cfg.framing == "wrapper"
    assert cfg.power.kind == "manual" and dict(cfg.roles) == {} and cfg.tls is None
    assert cfg.include_destructive


def test_role_credentials_come_from_the_environment_only(campaign_dir: Path) -> None:
    cfg = load_campaign(write(campaign_dir, GOOD))
    assert cfg.roles["VIEWER"].credential({"VIEWER_PW": "00000000"}) == "00000000"
    assert cfg.roles["READER"].credential({}) is None
    with pytest.raises(UsageError, match="environment variable VIEWER_PW is not set"):
        cfg.roles["VIEWER"].credential({})
    assert "00000000" not in repr(cfg)


@pytest.mark.parametrize(
    "text, line, needle",
    [
        ("target: tcp://h:1\nframing: serial\n", 2, "framing must be wrapper or hdlc"),
        ("target: http://h:1\n", 1, "target must look like tcp://HOST:PORT"),
        ("target: tcp://h:99999\n", 1, "bad port"),
        ("target: tcp://h:1\ntargett: x\n", 2, "unknown key targett"),
        (("target: tcp://h:1\nroles:\n  OPERATOR:\n    client_sap: 32\n    mechanism: hls-gmac\n"
          "    password: '12345678'\n"), 6, "secrets never go in a campaign file"),
        ("target: tcp://h:1\nroles:\n  BOSS: {client_sap: 1, mechanism: none}\n", 3, "unknown role 'BOSS'"),
        ("target: tcp://h:1\nroles:\n  VIEWER:\n    client_sap: 1\n    mechanism: lls\n", 3,
         "mechanism lls needs password_env"),
        ("target: tcp://h:1\nroles:\n  VIEWER:\n    client_sap: 0x1ffff\n    mechanism: none\n", 4,
         "client_sap must be an integer 1..65535"),
        ("target: tcp://h:1\nroles:\n  VIEWER:\n    client_sap: 3\n    mechanism: hls-md4\n", 5,
         "mechanism must be 0..7 or one of"),
        ("target: tcp://h:1\nroles:\n  VIEWER: {client_sap: 3, mechanism: lls, password_env: 'a b'}\n", 3,
         "must be an environment variable name"),
        ("target: tcp://h:1\npower:\n  kind: command\n  on: relay on\n", 2, "needs cycle, or both on and off"),
        ("target: tcp://h:1\npower:\n  kind: manual\n  settle_s: -1\n", 4, "settle_s must be seconds"),
        ("target: tcp://h:1\npower:\n  kind: builtin\n  cycle: 'x'\n", 3, "only used with kind: command"),
        ("tls:\n  endpoint: host-without-port\n", 2, "needs a port"),
        ("tls:\n  endpoint: h:1\n  client_cert: missing.pem\n", 3, "file 'missing.pem' does not exist"),
        ("target: tcp://h:1\nkeys: nowhere/keys.yaml\n", 2, "file 'nowhere/keys.yaml' does not exist"),
        ("target: tcp://h:1\nonly: {a: 1}\n", 2, "only must be a list"),
        ("target: tcp://h:1\nno_destructive: yes please\n", 2, "no_destructive must be true or false"),
        ("target: tcp://h:1\ntarget: tcp://h:2\n", 2, "key 'target' appears twice"),
        ("target: tcp://h:1\nfirmware: {identifier: x}\n", 2, "firmware needs image"),
        ("target: tcp://h:1\nfirmware:\n  image: fw.bin\n", 3, "file 'fw.bin' does not exist"),
        ("target: tcp://h:1\nfirmware:\n  image: campaign.yaml\n  verify_timeout_s: 0\n", 4,
         "verify_timeout_s must be seconds"),
        ("target: tcp://h:1\nroles: [a, b\n", 3, "not valid YAML"),
        ("framing: wrapper\n", None, "nothing to test"),
        ("", None, "campaign file is empty"),
        ("- a\n- b\n", 1, "the campaign must be a mapping"),
    ],
)
def test_errors_name_file_and_line(tmp_path: Path, text: str, line: int | None, needle: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(CampaignFileError) as info:
        load_campaign(path)
    message = str(info.value)
    assert isinstance(info.value, InputFileError)
    assert "\n" not in message and needle in message, message
    prefix = f"{path}:{line}: " if line else f"{path}: "
    assert message.startswith(prefix), message


def test_missing_campaign_file(tmp_path: Path) -> None:
    with pytest.raises(CampaignFileError, match="no such campaign file"):
        load_campaign(tmp_path / "nope.yaml")


def test_shipped_example_is_valid_and_documents_its_files() -> None:
    example = resources.files("metercert.campaign").joinpath("examples/campaign.yaml")
    with resources.as_file(example) as path:
        cfg = load_campaign(path, check_files=False)
        assert cfg.target is not None and cfg.tls is not None and cfg.dossier is not None
        assert {"READER", "VIEWER", "OPERATOR", "SECAUD", "SECADM"} <= set(cfg.roles)
        with pytest.raises(CampaignFileError, match=r"campaign.yaml:\d+: keys: file 'keys.yaml'"):
            load_campaign(path)
    root = Path(__file__).parents[2]
    doc = root / "docs" / "reports.md"
    documented = (doc if doc.exists() else root / "README.md").read_text("utf-8")
    for key in ("target", "framing", "keys", "roles", "client_sap", "mechanism", "password_env",
                "secret_env", "power", "settle_s", "tls", "endpoint", "client_cert", "client_key",
                "ca", "profile", "dossier", "firmware", "image", "identifier", "verify_timeout_s",
                "only", "skip", "no_destructive"):
        assert re.search(rf"`(?:[\w.]+\.)?{key}`", documented), f"docs/reports.md does not document {key}"
