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


# --- general-ciphering / general-signing and AARQ/AARE user-information -------------------------

GENERAL_KEYS = """client_system_title: 4D4D4D0000BC614E
server_system_title: 4D4D4D0000000001
guek: 000102030405060708090A0B0C0D0E0F
gbek: 101112131415161718191A1B1C1D1E1F
ak: D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF
kek: 202122232425262728292A2B2C2D2E2F
"""
GET = "C0010000080000010000FF0200"


@pytest.fixture
def pki(tmp_path):
    from cryptography.hazmat.primitives import serialization as ser
    from cryptography.hazmat.primitives.asymmetric import ec

    out = {"keys": str(tmp_path / "general.yaml")}
    (tmp_path / "general.yaml").write_text(GENERAL_KEYS)
    for name, curve in (("client", ec.SECP256R1()), ("server", ec.SECP256R1()),
                        ("other", ec.SECP256R1()), ("client384", ec.SECP384R1())):
        key = ec.generate_private_key(curve)
        (tmp_path / f"{name}.key").write_bytes(key.private_bytes(
            ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption()))
        (tmp_path / f"{name}.pub").write_bytes(key.public_key().public_bytes(
            ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo))
        out[name] = str(tmp_path / f"{name}.key")
        out[name + "_pub"] = str(tmp_path / f"{name}.pub")
    return out


def _run(argv, capsys):
    code = main(argv)
    return code, capsys.readouterr().out


@pytest.mark.parametrize("key_info",
                         ["identified", "none", "wrapped", "agreed-1e1s", "agreed-0e2s"])
def test_general_ciphering_protect_then_inspect(pki, capsys, key_info):
    extra = {"agreed-1e1s": ["--signing-key", pki["client"], "--peer-agreement-key",
                             pki["server_pub"]],
             "agreed-0e2s": ["--agreement-key", pki["client"], "--peer-agreement-key",
                             pki["server_pub"]]}.get(key_info, [])
    code, out = _run(["apdu", "protect", GET, "--keys", pki["keys"], "--ic", "7", "--suite", "1",
                      "--form", "general", "--key-info", key_info, *extra], capsys)
    assert code == 0 and out.startswith("DD")
    receive = {"agreed-1e1s": ["--agreement-key", pki["server"], "--signer-key",
                               pki["client_pub"]],
               "agreed-0e2s": ["--agreement-key", pki["server"], "--peer-agreement-key",
                               pki["client_pub"]]}.get(key_info, [])
    code, text = _run(["apdu", "inspect", out.strip(), "--keys", pki["keys"], "--json", *receive],
                      capsys)
    info = json.loads(text)
    assert code == 0 and info["verified"] is True and info["plaintext"] == GET
    layer = info["layers"][0]
    assert layer["originator_system_title"] == "4D4D4D0000BC614E"
    assert layer["recipient_system_title"] == "4D4D4D0000000001"
    assert layer["transaction_id"] == "0000000000000007"
    if key_info == "agreed-1e1s":  # the ephemeral key signed by another key: refused
        code, text = _run(["apdu", "inspect", out.strip(), "--keys", pki["keys"], "--json",
                           "--agreement-key", pki["server"], "--signer-key", pki["other_pub"]],
                          capsys)
        assert code == 1 and json.loads(text)["verified"] is False


@pytest.mark.parametrize("order,tags", [("first", [0xDD, 0xDF]), ("last", [0xDF, 0xDD])])
def test_signed_and_ciphered_nesting(pki, capsys, order, tags):
    code, out = _run(["apdu", "protect", GET, "--keys", pki["keys"], "--ic", "9", "--suite", "1",
                      "--form", "general", "--sign", order, "--signing-key", pki["client"]], capsys)
    assert code == 0
    code, text = _run(["apdu", "inspect", out.strip(), "--keys", pki["keys"], "--json",
                       "--signer-key", pki["client_pub"]], capsys)
    info = json.loads(text)
    assert code == 0 and [x["tag"] for x in info["layers"]] == tags
    assert info["verified"] is True and info["plaintext"] == GET
    code, text = _run(["apdu", "inspect", out.strip(), "--keys", pki["keys"], "--json",
                       "--signer-key", pki["other_pub"]], capsys)
    assert code == 1 and json.loads(text)["verified"] is False


def test_signed_only_and_wrong_suite(pki, capsys):
    code, out = _run(["apdu", "protect", GET, "--keys", pki["keys"], "--ic", "1", "--form",
                      "signed", "--signing-key", pki["client"]], capsys)
    assert code == 0 and out.startswith("DF")
    code, text = _run(["apdu", "inspect", out.strip(), "--json", "--signer-key",
                       pki["client_pub"]], capsys)
    assert code == 0 and json.loads(text)["plaintext"] == GET
    code, text = _run(["apdu", "inspect", out.strip(), "--json", "--signer-key",
                       pki["client_pub"], "--suite", "2"], capsys)  # P-256 judged as suite 2
    assert code == 1 and json.loads(text)["verified"] is False
    code, text = _run(["apdu", "inspect", out.strip(), "--json"], capsys)  # no key: content shown
    info = json.loads(text)
    assert code == 0 and info["verified"] is None and info["plaintext"] == GET


def test_private_keys_never_printed(pki, capsys):
    from cryptography.hazmat.primitives import serialization as ser

    with open(pki["client"], "rb") as fh:
        key = ser.load_pem_private_key(fh.read(), None)
    scalar = format(key.private_numbers().private_value, "064X")
    code, out = _run(["apdu", "protect", GET, "--keys", pki["keys"], "--ic", "2", "--suite", "1",
                      "--form", "general", "--sign", "first", "--signing-key", pki["client"],
                      "--json"], capsys)
    assert code == 0
    apdu = json.loads(out)["apdu"]
    main(["apdu", "inspect", apdu, "--keys", pki["keys"], "--signer-key", pki["client_pub"]])
    main(["apdu", "inspect", apdu, "--keys", pki["keys"], "--json"])
    seen = out + capsys.readouterr().out
    assert scalar not in seen.upper()
    assert "000102030405060708090A0B0C0D0E0F" not in seen.upper()


# Green Book V3 / V4 (STANDARDS.md) carried in an AARQ / AARE user-information
AARQ_V3 = ("604DA109060760857405080101A60A04084D4D4D0000BC614EBE34043221303001234567801302FF8A"
           "7874133D414CED25B42534D28DB0047720606B175BD52211BE6841DB204D39EE6FDB8E356855")
AARE_V4 = ("6148A109060760857405080101A203020100A305A103020100A40A04084D4D4D0000BC614EBE230421"
           "281F3001234567891214A0845E475714383F65BC19745CA235906525E4F3E1C893")


def test_aarq_and_aare_ciphered_user_information(keyfile, capsys):
    code, text = _run(["apdu", "inspect", AARQ_V3, "--keys", keyfile, "--json"], capsys)
    info = json.loads(text)
    assert code == 0 and info["verified"] is True
    inner = info["user_information"]
    assert inner["tag_name"] == "glo-initiate-request"
    assert inner["system_title"] == "4D4D4D0000BC614E"
    assert inner["decoded"]["type"] == "InitiateRequest"
    assert inner["decoded"]["dedicated_key"] == "<redacted>"
    assert "00112233445566778899AABBCCDDEEFF" not in text.upper()
    code, text = _run(["apdu", "inspect", AARE_V4, "--keys", keyfile, "--json"], capsys)
    info = json.loads(text)
    assert code == 0 and info["user_information"]["plaintext"] == "0800065F1F0400007C1F04000007"
    tampered = AARE_V4[:-2] + "94"
    code, text = _run(["apdu", "inspect", tampered, "--keys", keyfile, "--json"], capsys)
    assert code == 1 and json.loads(text)["user_information"]["verified"] is False


@pytest.mark.parametrize("argv,message", [
    (["apdu", "inspect", "DD0101"], "originator-system-title"),
    (["apdu", "inspect", "DF01010800"], "originator-system-title"),
    (["apdu", "inspect", "DD010108" + "4D4D4D0000BC614E" + "00000001"], "truncated"),
    (["apdu", "protect", GET, "--ic", "1", "--system-title", "4D4D4D0000BC614E", "--form",
      "signed"], "--signing-key"),
    (["apdu", "protect", GET, "--ic", "1", "--system-title", "4D4D4D0000BC614E", "--form",
      "general", "--key-info", "agreed-1e1s"], "--suite 1 or 2"),
    (["apdu", "inspect", "DF00", "--signer-key", "/nonexistent.pem"], "cannot read"),
])
def test_general_bad_input_is_one_line_exit_2(argv, message):
    proc = subprocess.run([sys.executable, "-m", "metercert", *argv], capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr


def test_general_ciphering_with_the_broadcast_key(pki, capsys):
    code, out = _run(["apdu", "protect", GET, "--keys", pki["keys"], "--ic", "3", "--suite", "1",
                      "--form", "general", "--broadcast", "--json"], capsys)
    assert code == 0 and json.loads(out)["security_control"] == 0x31  # key-set bit stays 0
    apdu = json.loads(out)["apdu"]
    code, text = _run(["apdu", "inspect", apdu, "--keys", pki["keys"], "--json"], capsys)
    info = json.loads(text)
    assert code == 0 and info["verified"] is True
    assert info["layers"][0]["key_info"] == {"choice": "identified-key", "key_id": 1,
                                             "key": "GBEK"}
