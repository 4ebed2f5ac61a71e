"""general-ciphering (0xDD) and general-signing (0xDF): worked example, round trips, nesting,
tamper rejection (property tests) and bad input.

[GB-41] Green Book Table 41 (ACCESS.request, general-ciphering with an agreed key,
C(1e, 1s)), as carried byte for byte by u9n/dlms-cosem
``tests/test_xdlms/test_general_ciphering.py`` and gurux Java ``GXSymmetricTest``
(plaintext of Table 133 and the page 499 ciphertext). The example's tag does not verify with
the authentication key the public copies give (D0D1...DF) under any AAD candidate, so the test
pins the framing, the agreed key (KDF) and the deciphered plaintext; docs/ciphering.md.
"""

import os

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from metercert.security import Key, KeySet, SecurityControl, _gcm
from metercert.security import general as g
from metercert.security.errors import (
    ApduFormatError,
    AuthenticationFailed,
    InvalidKey,
    KeyUnwrapFailed,
    SecurityError,
)
from metercert.security.keywrap import wrap_key

TABLE_41 = bytes.fromhex(
    "DD080102030405060708084D4D4D0000BC614E084D4D4D000000000100000102"
    "01018180C323C2BD45711DE4688637D919F92E9DB8FB2DFC213A88D21C9DC8DC"
    "BA917D8170511DE1BADB360D50058F794B0960AE11FA28D392CFF907A62D13E3"
    "357B1DC0B51BE089D0B682863B2217201E73A1A9031968A9B4121DCBC3281A69"
    "739AF87429F5B3AC5471E7B6A04A2C0F2F8A25FD772A317DF97FC5463FEAC248"
    "EB8AB8BE81EB3100000000F435069679270C5BF4425EE5777402A6C8D51C620E"
    "ED52DBB188378B836E2857D5C053E6DDF27FA87409AEF502CD9618AE47017C01"
    "0224FD109CC0BEB21E742D44AB40CD11908743EC90EC8C40E221D517F72228E1"
    "A26E827F43DC18ED27B5F458D66508B05A2A4CC6FED178C881AFC3BC67064689"
    "BE8BB41C80ABB3C114A31F4CB03B8B64C7E0B4CE77B2399C93347858888F9223"
    "9713B38DF01C4858245827A92EF334172EA636B31CBBDF2A96AD5D035F66AA38"
    "F1A2D97D4BBA99622E6B5F18789CECB2DFB3937D9F3E17F8B472098E6563238F"
    "37528374809836002AEA6E7012D2ADFAA7")
TABLE_133_PLAIN = bytes.fromhex(
    "D94000000000040100010000600100FF020100080000010000FF0202001400000D0000FF0702001400000D"
    "0000FF0804000001040203090100090CFFFFFFFFFFFFFF00000000000901FF0203090101090CFFFFFFFFFF"
    "FFFF00000000000901FF0203090102090CFFFFFFFFFFFFFF00000000000901FF0203090103090CFFFFFFFF"
    "FFFFFF00000000000901FF0104020809010011FF11FF11FF11FF11FF11FF11FF020809010111021101110111"
    "01110111011101020809010211FF11FF11FF11FF11FF11FF11FF02080901031101110211021102110211021102")
UC = bytes.fromhex("4D4D4D0000BC614E")
VS = bytes.fromhex("4D4D4D0000000001")
GET = bytes.fromhex("C0010000080000010000FF0200")


def test_green_book_table_41_framing_key_and_plaintext():  # [GB-41]
    parsed = g.parse_general_ciphering(TABLE_41)
    assert parsed.header == g.GeneralHeader(bytes.fromhex("0102030405060708"), UC, VS)
    assert parsed.key_info.scheme is g._agreement.KeyAgreementScheme.ONE_PASS_DIFFIE_HELLMAN
    assert parsed.security_control == SecurityControl(1) and parsed.invocation_counter == 0
    assert parsed.to_bytes() == TABLE_41
    server_static = ec.derive_private_key(
        int("AAD3FD0732E991CF52A74C66C1F2827DDC53522A2E0A169D7C4FFCC0FB5D6A4D", 16), ec.SECP256R1())
    client_sign = g._agreement.public_key_from_bytes(bytes.fromhex(
        "BAAFFDE06A8CB1C9DAE8D94023C601DBBB249254BA22EDD827E820BCA2BCC643"
        "62FBB83D86A82B87BB8B7161D2AAB5521911A946B97A284A90F7785CD9047D25"), 1)
    key = g.receiver_key(parsed, agreement=g.AgreementKeys(server_static, client_sign))
    assert key.secret.hex().upper() == "59A71FD81C929A86A99438DA17A66C05"
    iv = _gcm.iv(UC, 0)
    assert _gcm.ctr(key.secret, iv, parsed.payload[:-12]) == TABLE_133_PLAIN
    # the receiver's recipe with those keys refuses (the example's AK is not public)
    with pytest.raises(AuthenticationFailed):
        g.open_general(TABLE_41, keys=KeySet(ak=Key(bytes(range(0xD0, 0xE0)), "ak")),
                       agreement=g.AgreementKeys(server_static, client_sign))


def _keys(size: int = 16) -> KeySet:
    return KeySet(client_system_title=UC, server_system_title=VS,
                  guek=Key(os.urandom(size), "guek"), gbek=Key(os.urandom(size), "gbek"),
                  ak=Key(os.urandom(size), "ak"), kek=Key(os.urandom(size), "kek"))


@pytest.mark.parametrize("suite", [0, 1, 2])
@pytest.mark.parametrize("mode", [(True, True), (True, False), (False, True), (False, False)])
def test_round_trip_every_mode_identified_key(suite, mode):
    keys = _keys(32 if suite == 2 else 16)
    sc = SecurityControl(suite, *mode)
    for key_id, key in ((0, keys.guek), (1, keys.gbek)):
        apdu = g.protect_general(GET, header=g.GeneralHeader(b"\x00\x01", UC, VS, b"\x07" * 12,
                                                             b"oi"),
                                 security_control=sc, invocation_counter=5,
                                 encryption_key=key, authentication_key=keys.ak,
                                 key_info=g.IdentifiedKey(key_id))
        opened = g.open_general(apdu, keys=keys, require_authenticated=False)
        assert opened.plaintext == GET and opened.authenticated is mode[0]
        if mode[0] and mode[1]:
            assert GET not in apdu
        if not mode[0]:
            with pytest.raises(AuthenticationFailed):
                g.open_general(apdu, keys=keys)


def test_aad_covers_the_header():
    keys = _keys()
    apdu = g.protect_general(GET, header=g.GeneralHeader(b"\x01", UC, VS), security_control=
                             SecurityControl(1), invocation_counter=1, encryption_key=keys.guek,
                             authentication_key=keys.ak)
    tampered = apdu.replace(VS, bytes.fromhex("4D4D4D0000000002"), 1)
    with pytest.raises(AuthenticationFailed):
        g.open_general(tampered, keys=keys)
    expected_aad = bytes((0x31,)) + keys.ak.secret + b"\x01\x01\x08" + UC + b"\x08" + VS + b"\0\0"
    assert g.general_ciphering_aad(SecurityControl(1), keys.ak.secret,
                                   g.GeneralHeader(b"\x01", UC, VS).to_bytes()) == expected_aad


def test_wrapped_key_and_failed_unwrap():
    keys = _keys()
    session = Key(os.urandom(16), "session")
    wrapped = wrap_key(keys.kek, session)
    apdu = g.protect_general(GET, header=g.GeneralHeader(b"\x09", UC, VS),
                             security_control=SecurityControl(1), invocation_counter=0,
                             encryption_key=session, authentication_key=keys.ak,
                             key_info=g.WrappedKey(wrapped))
    assert g.open_general(apdu, keys=keys).plaintext == GET
    bad = apdu.replace(wrapped, wrapped[:-1] + bytes((wrapped[-1] ^ 1,)))
    with pytest.raises(KeyUnwrapFailed):
        g.open_general(bad, keys=keys)


@pytest.mark.parametrize("suite", [1, 2])
def test_agreed_keys_both_schemes(suite):
    curve = ec.SECP256R1() if suite == 1 else ec.SECP384R1()
    size = 16 if suite == 1 else 32
    keys = _keys(size)
    server_static, client_sign, client_static = (ec.generate_private_key(curve) for _ in range(3))
    key, kcd = g._agreement.one_pass_originate(suite=suite, recipient_static=server_static
                                               .public_key(), signing_key=client_sign,
                                               party_u=UC, party_v=VS)
    apdu = g.protect_general(GET, header=g.GeneralHeader(b"\x01" * 8, UC, VS),
                             security_control=SecurityControl(suite), invocation_counter=0,
                             encryption_key=key, authentication_key=keys.ak,
                             key_info=g.AgreedKey(b"\x01", kcd))
    agr = g.AgreementKeys(server_static, client_sign.public_key(), client_static.public_key())
    assert g.open_general(apdu, keys=keys, agreement=agr).plaintext == GET
    with pytest.raises(AuthenticationFailed):  # signed by another key
        g.open_general(apdu, keys=keys, agreement=g.AgreementKeys(
            server_static, ec.generate_private_key(curve).public_key()))
    tid = b"\x00" * 7 + b"\x2A"
    key2 = g._agreement.static_unified_model(client_static, server_static.public_key(),
                                             suite=suite, party_u=UC, party_v=VS,
                                             transaction_id=tid)
    apdu2 = g.protect_general(GET, header=g.GeneralHeader(tid, UC, VS),
                              security_control=SecurityControl(suite), invocation_counter=0,
                              encryption_key=key2, authentication_key=keys.ak,
                              key_info=g.AgreedKey(b"\x02"))
    assert g.open_general(apdu2, keys=keys, agreement=agr).plaintext == GET
    with pytest.raises(InvalidKey):
        g.open_general(apdu2, keys=keys)  # no agreement keys: a one-line error, not a guess


@pytest.mark.parametrize("suite", [1, 2])
def test_signing_both_suites_and_wrong_keys(suite):
    curve = ec.SECP256R1() if suite == 1 else ec.SECP384R1()
    signer = ec.generate_private_key(curve)
    header = g.GeneralHeader(b"\x05", UC, VS)
    apdu = g.sign_general(GET, header=header, signing_key=signer, suite=suite)
    parsed = g.verify_general(apdu, public_key=signer.public_key(), suite=suite)
    assert parsed.content == GET and len(parsed.signature) == (64 if suite == 1 else 96)
    assert parsed.signed == header.to_bytes() + bytes((len(GET),)) + GET
    with pytest.raises(AuthenticationFailed):
        g.verify_general(apdu, public_key=ec.generate_private_key(curve).public_key(), suite=suite)
    other = 2 if suite == 1 else 1
    with pytest.raises(AuthenticationFailed):  # the same APDU judged under the other suite
        g.verify_general(apdu, public_key=signer.public_key(), suite=other)


def test_p256_signature_on_a_suite_2_exchange_is_refused():
    p256 = ec.generate_private_key(ec.SECP256R1())
    apdu = g.sign_general(GET, header=g.GeneralHeader(b"\x05", UC, VS), signing_key=p256, suite=1)
    with pytest.raises(AuthenticationFailed):
        g.verify_general(apdu, public_key=p256.public_key(), suite=2)


def test_nesting_both_orders():
    keys = _keys()
    signer = ec.generate_private_key(ec.SECP256R1())
    header = g.GeneralHeader(b"\x07", UC, VS)
    signed = g.sign_general(GET, header=header, signing_key=signer, suite=1)
    signed_then_ciphered = g.protect_general(signed, header=header,
                                             security_control=SecurityControl(1),
                                             invocation_counter=3, encryption_key=keys.guek,
                                             authentication_key=keys.ak,
                                             key_info=g.IdentifiedKey(0))
    ciphered = g.protect_general(GET, header=header, security_control=SecurityControl(1),
                                 invocation_counter=4, encryption_key=keys.guek,
                                 authentication_key=keys.ak, key_info=g.IdentifiedKey(0))
    ciphered_then_signed = g.sign_general(ciphered, header=header, signing_key=signer, suite=1)
    signers = {UC: signer.public_key()}
    plain, layers = g.open_nested(signed_then_ciphered, keys=keys, signers=signers)
    assert plain == GET and [x.tag for x in layers] == [0xDD, 0xDF]
    plain, layers = g.open_nested(ciphered_then_signed, keys=keys, signers=signers)
    assert plain == GET and [x.tag for x in layers] == [0xDF, 0xDD]
    with pytest.raises(InvalidKey):
        g.open_nested(ciphered_then_signed, keys=keys, signers={})


# --- property tests: any single-bit change is rejected --------------------------------------

def _flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


_REJECTED = (SecurityError,)  # AuthenticationFailed, ApduFormatError, InvalidKey, unwrap


@settings(max_examples=150, deadline=None)
@given(plain=st.binary(min_size=1, max_size=40), dt=st.binary(max_size=12),
       suite=st.sampled_from([0, 1, 2]), auth_only=st.booleans(), key_id=st.sampled_from([0, 1]),
       data=st.data())
def test_any_bit_flip_in_general_ciphering_is_rejected(plain, dt, suite, auth_only, key_id, data):
    keys = _keys(32 if suite == 2 else 16)
    sc = SecurityControl(suite, True, not auth_only)
    apdu = g.protect_general(plain, header=g.GeneralHeader(b"\x01\x02", UC, VS, dt),
                             security_control=sc, invocation_counter=9,
                             encryption_key=keys.gbek if key_id else keys.guek,
                             authentication_key=keys.ak, key_info=g.IdentifiedKey(key_id))
    assert g.open_general(apdu, keys=keys).plaintext == plain
    bit = data.draw(st.integers(0, len(apdu) * 8 - 1))
    with pytest.raises(_REJECTED):
        g.open_general(_flip(apdu, bit), keys=keys)


_SIGNERS = {1: ec.generate_private_key(ec.SECP256R1()), 2: ec.generate_private_key(ec.SECP384R1())}


@settings(max_examples=150, deadline=None)
@given(plain=st.binary(min_size=1, max_size=40), oi=st.binary(max_size=8),
       suite=st.sampled_from([1, 2]), data=st.data())
def test_any_bit_flip_in_general_signing_is_rejected(plain, oi, suite, data):
    signer = _SIGNERS[suite]
    apdu = g.sign_general(plain, header=g.GeneralHeader(b"\x03", UC, VS, b"", oi),
                          signing_key=signer, suite=suite)
    g.verify_general(apdu, public_key=signer.public_key(), suite=suite)
    bit = data.draw(st.integers(0, len(apdu) * 8 - 1))
    with pytest.raises(_REJECTED):
        g.verify_general(_flip(apdu, bit), public_key=signer.public_key(), suite=suite)


_AGREE = {suite: tuple(ec.generate_private_key(curve) for _ in range(2))
          for suite, curve in ((1, ec.SECP256R1()), (2, ec.SECP384R1()))}


@settings(max_examples=60, deadline=None)
@given(suite=st.sampled_from([1, 2]), plain=st.binary(min_size=1, max_size=24), data=st.data())
def test_any_bit_flip_in_agreed_key_general_ciphering_is_rejected(suite, plain, data):
    server_static, client_sign = _AGREE[suite]
    keys = _keys(32 if suite == 2 else 16)
    key, kcd = g._agreement.one_pass_originate(suite=suite, recipient_static=server_static
                                               .public_key(), signing_key=client_sign,
                                               party_u=UC, party_v=VS)
    apdu = g.protect_general(plain, header=g.GeneralHeader(b"\x01" * 8, UC, VS),
                             security_control=SecurityControl(suite), invocation_counter=0,
                             encryption_key=key, authentication_key=keys.ak,
                             key_info=g.AgreedKey(b"\x01", kcd))
    agr = g.AgreementKeys(server_static, client_sign.public_key())
    assert g.open_general(apdu, keys=keys, agreement=agr).plaintext == plain
    bit = data.draw(st.integers(0, len(apdu) * 8 - 1))
    with pytest.raises(_REJECTED):
        g.open_general(_flip(apdu, bit), keys=keys, agreement=agr)


# --- bad input: the project's exceptions, never IndexError/ValueError --------------------------

@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=60))
def test_garbage_raises_only_format_errors(blob):
    for parse in (g.parse_general_ciphering, g.parse_general_signing):
        for data in (blob, bytes((0xDD,)) + blob, bytes((0xDF,)) + blob):
            try:
                parse(data)
            except ApduFormatError:
                pass


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_truncations_raise_format_errors(data):
    keys = _keys()
    apdu = g.protect_general(GET, header=g.GeneralHeader(b"\x01", UC, VS),
                             security_control=SecurityControl(1), invocation_counter=1,
                             encryption_key=keys.guek, authentication_key=keys.ak,
                             key_info=g.WrappedKey(b"\x00" * 24))
    cut = data.draw(st.integers(0, len(apdu) - 1))
    with pytest.raises(ApduFormatError):
        g.parse_general_ciphering(apdu[:cut])


def test_specific_format_messages():
    with pytest.raises(ApduFormatError, match="key-info choice 7"):
        g.parse_general_ciphering(bytes.fromhex("DD0101") + b"\x08" + UC + b"\x08" + VS
                                  + bytes.fromhex("00000107"))
    with pytest.raises(ApduFormatError, match="originator system title must be 8 bytes"):
        g.parse_general_ciphering(bytes.fromhex("DD01010101000000"))
    with pytest.raises(ApduFormatError, match="key-set bit"):
        g.protect_general(GET, header=g.GeneralHeader(b"\x01", UC, VS),
                          security_control=SecurityControl(1, broadcast=True),
                          invocation_counter=0, encryption_key=bytes(16),
                          authentication_key=bytes(16))
    with pytest.raises(ApduFormatError, match="agreed-key key-parameters 03"):
        g.parse_general_ciphering(bytes.fromhex("DD0101") + b"\x08" + UC + b"\x08" + VS
                                  + bytes.fromhex("0000010201030000"))


def test_a_lower_suite_is_refused_by_a_receiver_that_expects_its_own():
    keys = _keys(16)
    for claimed in (0, 1):
        apdu = g.protect_general(GET, header=g.GeneralHeader(b"\x01", UC, VS),
                                 security_control=SecurityControl(claimed), invocation_counter=1,
                                 encryption_key=keys.guek, authentication_key=keys.ak,
                                 key_info=g.IdentifiedKey(0))
        assert g.open_general(apdu, keys=keys, expected_suite=claimed).plaintext == GET
        with pytest.raises(AuthenticationFailed):
            g.open_general(apdu, keys=keys, expected_suite=2)
