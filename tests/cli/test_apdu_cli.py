import json
import subprocess
import sys

import pytest

from metercert.cli import main

KEYS = """client_system_title: 4D4D4D0000BC614E
server_system_title: 4D4D4D0000BC614E
guek: 000102030405060708090A0B0C0D0E0F
ak: D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF
"""
V1 = "C81E3001234567411312FF935A47566827C467BC7D825C3BE4A77C3FCC056B6B"


@pytest.fixture
def keyfile(tmp_path):
    path = tmp_path / "keys.yaml"
    path.write_text(KEYS)
    return str(path)


def test_inspect_json_with_keys(keyfile, capsys):
    assert main(["apdu", "inspect", V1, "--keys", keyfile, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["tag"] == 0xC8
    assert info["security_control"]["byte"] == 0x30
    assert info["invocation_counter"] == 0x01234567
    assert info["system_title"] == "4D4D4D0000BC614E"
    assert info["verified"] is True
    assert info["plaintext"] == "C0010000080000010000FF0200"


def test_inspect_tampered_apdu_reports_unverified_with_exit_1(keyfile, capsys):
    tampered = V1[:-2] + "6A"
    assert main(["apdu", "inspect", tampered, "--keys", keyfile, "--json"]) == 1
    info = json.loads(capsys.readouterr().out)
    assert info["verified"] is False and info["plaintext"] is None


def test_inspect_without_keys_shows_framing(capsys):
    assert main(["apdu", "inspect", V1, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["verified"] is None and info["invocation_counter"] == 0x01234567


def test_protect_then_inspect_round_trip(keyfile, capsys):
    assert main(["apdu", "protect", "C0010000080000010000FF0200", "--keys", keyfile,
                 "--ic", "0x01234567"]) == 0
    assert capsys.readouterr().out.strip() == V1
    assert main(["apdu", "protect", "C4010000090411223344", "--keys", keyfile, "--ic", "9",
                 "--form", "general-glo", "--mode", "auth", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)["apdu"]
    assert main(["apdu", "inspect", out, "--keys", keyfile, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["plaintext"] == "C4010000090411223344"


def test_keys_never_printed(keyfile, capsys):
    main(["apdu", "inspect", V1, "--keys", keyfile])
    main(["apdu", "inspect", V1, "--keys", keyfile, "--json"])
    out = capsys.readouterr()
    for secret in ("000102030405060708090A0B0C0D0E0F", "D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF"):
        assert secret not in (out.out + out.err).upper()


@pytest.mark.parametrize("argv,message", [
    (["apdu", "inspect", "zz"], "not valid hex"),
    (["apdu", "inspect", "C81E30"], "truncated"),
    (["apdu", "inspect", V1, "--keys", "/nonexistent/keys.yaml"], "no such file"),
    (["apdu", "protect", "C001", "--ic", "1", "--system-title", "0011"], "8 bytes"),
    (["apdu", "protect", "C001", "--ic", "1", "--system-title", "4D4D4D0000BC614E",
      "--suite", "2", "--keys", "KEYFILE"], "256"),
])
def test_bad_input_is_one_line_exit_2(argv, message, keyfile):
    argv = [keyfile if a == "KEYFILE" else a for a in argv]
    proc = subprocess.run([sys.executable, "-m", "metercert", *argv], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr


def test_wrong_key_length_in_key_file(tmp_path):
    path = tmp_path / "k.yaml"
    path.write_text("guek: 0011223344\n")
    proc = subprocess.run([sys.executable, "-m", "metercert", "apdu", "inspect", V1, "--keys",
                           str(path)], capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and "16 or 32 bytes, got 5" in proc.stderr


def test_dedicated_key_in_an_initiate_request_is_redacted(keyfile, capsys):
    dedicated = "A1" * 16
    plain = "0101" + "10" + dedicated + "0000065F1F0400007E1F04B0"
    assert main(["apdu", "protect", plain, "--keys", keyfile, "--ic", "3"]) == 0
    ciphered = capsys.readouterr().out.strip()
    assert main(["apdu", "inspect", ciphered, "--keys", keyfile, "--json"]) == 0
    out = capsys.readouterr().out
    info = json.loads(out)
    assert info["decoded"]["dedicated_key"] == "<redacted>"
    assert dedicated not in out.upper()
    assert "<redacted>" in info["plaintext"]
