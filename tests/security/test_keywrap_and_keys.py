import json
import os

import pytest

from metercert.errors import InputFileError
from metercert.security import (
    InvalidKey,
    Key,
    KeyId,
    KeyUnwrapFailed,
    keyset_from_env,
    load_key_file,
    load_keyset,
    unwrap_key,
    wrap_key,
    write_key_file,
)

RFC3394_KEK = bytes.fromhex("000102030405060708090A0B0C0D0E0F")
RFC3394_KEY = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
RFC3394_WRAPPED = bytes.fromhex("1FA68B0A8112B447AEF34BD8FB5A7B829D3E862371D2CFE5")


def test_rfc3394_vector():
    assert wrap_key(Key(RFC3394_KEK), Key(RFC3394_KEY)) == RFC3394_WRAPPED
    assert unwrap_key(Key(RFC3394_KEK), RFC3394_WRAPPED).secret == RFC3394_KEY


def test_corrupted_wrap_is_refused():
    bad = bytearray(RFC3394_WRAPPED)
    bad[5] ^= 0x40
    with pytest.raises(KeyUnwrapFailed):
        unwrap_key(Key(RFC3394_KEK), bytes(bad))
    with pytest.raises(KeyUnwrapFailed):
        unwrap_key(Key(bytes(16)), RFC3394_WRAPPED)
    with pytest.raises(KeyUnwrapFailed):
        unwrap_key(Key(RFC3394_KEK), RFC3394_WRAPPED[:-1])


def test_256_bit_wrap_round_trip():
    kek, key = Key(os.urandom(32)), Key(os.urandom(32))
    assert unwrap_key(kek, wrap_key(kek, key)) == key


def test_key_repr_never_shows_bytes():
    key = Key(RFC3394_KEY, "guek")
    for text in (repr(key), str(key), f"{key}"):
        assert RFC3394_KEY.hex() not in text.lower()
        assert "redacted" in text


def test_bad_key_lengths_and_hex():
    with pytest.raises(InvalidKey, match="16 or 32 bytes, got 15"):
        Key(bytes(15))
    with pytest.raises(InvalidKey, match="not valid hex"):
        Key.from_hex("zz" * 16, "guek")


def test_key_file_yaml_aliases_and_pem(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    (tmp_path / "client.pem").write_bytes(pem)
    path = tmp_path / "keys.yaml"
    path.write_text(
        "client_system_title: 4D4D4D0000000001\n"
        "server_system_title: 4D4D4D0000BC614E\n"
        "encryption_key: 000102030405060708090A0B0C0D0E0F\n"
        "authentication_key: D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF\n"
        "master_key: 00112233445566778899AABBCCDDEEFF\n"
        "client_private_key: client.pem\n")
    ks = load_keyset(path)
    assert ks.guek.secret == bytes.fromhex("000102030405060708090A0B0C0D0E0F")
    assert ks.key(KeyId.KEK).secret == RFC3394_KEY
    assert ks.gbek is None
    assert ks.client_private_key is not None
    assert "000102" not in repr(ks)


def test_key_file_json_and_multi_meter(tmp_path):
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"meters": [
        {"guek": "00" * 16, "ak": "11" * 16, "server_system_title": "4D4D4D0000000010"},
        {"guek": "22" * 16, "ak": "33" * 16, "server_system_title": "4D4D4D0000000011"},
    ]}))
    sets = load_key_file(path)
    assert [s.server_system_title[-1] for s in sets] == [0x10, 0x11]
    out = write_key_file(tmp_path / "copy.yaml", sets)
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    assert [s.guek for s in load_key_file(out)] == [s.guek for s in sets]


@pytest.mark.parametrize("content,message", [
    ("guek: [unclosed\n", "invalid YAML at line"),
    ("guek: 0011\n", "16 or 32 bytes"),
    ("guek: 00112233445566778899AABBCCDDEEXX\n", "not valid hex"),
    ("- a\n- b\n", "expected a mapping"),
    ("guek: " + "00" * 16 + "\nencryption_key: " + "11" * 16 + "\n", "both"),
    ("server_system_title: 0011\n", "8 bytes"),
])
def test_bad_key_files_name_the_problem_without_values(tmp_path, content, message):
    path = tmp_path / "keys.yaml"
    path.write_text(content)
    with pytest.raises((InputFileError, InvalidKey)) as info:
        load_key_file(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)
    assert "EEXX" not in str(info.value)


def test_missing_key_file(tmp_path):
    with pytest.raises(InputFileError, match="no such file"):
        load_key_file(tmp_path / "absent.yaml")


def test_keyset_from_environment():
    env = {"METERCERT_GUEK": "00" * 16, "METERCERT_AK": "11" * 16,
           "METERCERT_SERVER_SYSTEM_TITLE": "4D4D4D0000BC614E"}
    ks = keyset_from_env(env)
    assert ks is not None and ks.ak.secret == bytes.fromhex("11" * 16)
    assert keyset_from_env({}) is None
