"""Key agreement, KDF and ECDSA against the worked examples public stacks carry.

Sources (each vector names its own):

* [GB-C1] Green Book Table C.1 (ECDSA, key_agreement signed data), as carried by
  EnergyICT/Connexo ``ECDSASignatureImplTest.java`` (chandangeek/Connexo_Code) and gurux Java
  ``GXSymmetricTest.generateEphemeralPublicKeySignatureTest``.
* [GB-C2] Green Book Table C.2 (One-Pass Diffie-Hellman, suite 1), as carried by
  gvtret/spodes-rs ``src/security/agreement.rs`` (``kdf_matches_green_book_c2_*``) and by
  gurux Java ``GXSymmetricTest`` (block cipher key 59A71FD8...).
* [EICT] EnergyICT/Connexo ``KeyAgreementImplTest.java``: key pairs and shared secrets
  (their KDF outputs disagree with gurux and spodes-rs; see docs/ciphering.md).
* [SUITEB] "Suite B Implementer's Guide to FIPS 186-3" P-384 example, as carried by
  ``ECDSASignatureImplTest.java``.
"""

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from metercert.security import agreement
from metercert.security.errors import AuthenticationFailed, InvalidKey

UC = bytes.fromhex("4D4D4D0000BC614E")  # client, party U
VS = bytes.fromhex("4D4D4D0000000001")  # server, party V

CLIENT_SIGN_PRIV = "418073C239FA6125011DE4D6CD2E645780289F761BB21BFB0835CB5585E8B373"
CLIENT_SIGN_PUB = ("BAAFFDE06A8CB1C9DAE8D94023C601DBBB249254BA22EDD827E820BCA2BCC643"
                   "62FBB83D86A82B87BB8B7161D2AAB5521911A946B97A284A90F7785CD9047D25")
SERVER_SIGN_PRIV = "AE55414FFE079F9FC95649536BD1C2B5653D200813727E07D501A8B550C69207"
SERVER_SIGN_PUB = ("933ACF15B03A9248E029B2787FB52A0AECAF635F07C42A0019FB3197E38F8F54"
                   "9A125EA36781B0CA96BE89A0E1FE2CF9B7361ED48B3C5E24592B9C0F4EDD31D1")
ONE_PASS_EPH_PUB = ("C323C2BD45711DE4688637D919F92E9DB8FB2DFC213A88D21C9DC8DCBA917D81"
                    "70511DE1BADB360D50058F794B0960AE11FA28D392CFF907A62D13E3357B1DC0")
ONE_PASS_EPH_SIG = ("B51BE089D0B682863B2217201E73A1A9031968A9B4121DCBC3281A69739AF874"
                    "29F5B3AC5471E7B6A04A2C0F2F8A25FD772A317DF97FC5463FEAC248EB8AB8BE")
SERVER_STATIC_PRIV = "AAD3FD0732E991CF52A74C66C1F2827DDC53522A2E0A169D7C4FFCC0FB5D6A4D"


def _priv(hex_scalar: str, curve: ec.EllipticCurve | None = None) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(int(hex_scalar, 16), curve or ec.SECP256R1())


def _pub(hex_point: str, suite: int = 1) -> ec.EllipticCurvePublicKey:
    return agreement.public_key_from_bytes(bytes.fromhex(hex_point), suite)


def test_green_book_signing_keys_are_pairs():  # [GB-C1]
    assert agreement.public_key_bytes(_priv(CLIENT_SIGN_PRIV)).hex().upper() == CLIENT_SIGN_PUB
    assert agreement.public_key_bytes(_priv(SERVER_SIGN_PRIV)).hex().upper() == SERVER_SIGN_PUB


def test_key_agreement_signature_over_key_id_and_point():  # [GB-C1]
    signed = agreement.key_agreement_signed_data(0, bytes.fromhex(
        "2914D60E10AB705F62ED6CC349D7CB99B9AB3F3978E59278C7AF595B3AF98794"
        "1372DAB6D5AF1FA867E134167E6F23DE664A6693E05F43414611058D1B48F894"))
    sig = bytes.fromhex("06F0607702AA0E2435A183E2F6B1ECD19629712E389A213610C03F77B2590860"
                        "EA840AF5C3FA1F2BCDF055D4744E9A01CE9A0E55026BCAA4EEBEB764CED64BB3")
    agreement.verify(_pub(CLIENT_SIGN_PUB), signed, sig, 1)
    with pytest.raises(AuthenticationFailed):  # the "invalid" copy of the same test
        agreement.verify(_pub(CLIENT_SIGN_PUB), signed, sig[:-2] + b"\x4F" + sig[-1:], 1)


def test_one_pass_ephemeral_point_is_signed_by_the_client():  # [GB-C2]
    agreement.verify(_pub(CLIENT_SIGN_PUB), bytes.fromhex(ONE_PASS_EPH_PUB),
                     bytes.fromhex(ONE_PASS_EPH_SIG), 1)


def test_server_ephemeral_signature():  # [EICT] GREENBOOK_SIGNATURE_SERVER
    agreement.verify(_pub(SERVER_SIGN_PUB), bytes.fromhex(
        "6439724714B47CD9CB988897D8424AB946DCD083D37A954637616011B9C23787"
        "73295F0F850D8DAFD1BBE9FE666E53E4F097CD10B38B69622152724A90987444"),
        bytes.fromhex("E1FF47974A1F6931A6502F58147463F0E8CC517D47F55B0AC56DD8AC5C9D0E48"
                      "1934F2D90F9893016BD82B6E3FFE21FF1588F3278B4E9D98EB4FB62ADD64B380"), 1)


def test_p384_suite_b_signature():  # [SUITEB]
    pub = _pub("1fbac8eebd0cbf35640b39efe0808dd774debff20a2a329e91713baf7d7f3c3e81546d883730bee7"
               "e48678f857b02ca0eb213103bd68ce343365a8a4c3d4555fa385f5330203bdd76ffad1f3affb9575"
               "1c132007e1b240353cb0a4cf1693bdf9", suite=2)
    sig = bytes.fromhex("a0c27ec893092dea1e1bd2ccfed3cf945c8134ed0c9f81311a0f4a05942db8db"
                        "ed8dd59f267471d5462aa14fe72de85620ab3f45b74f10b6e11f96a2c8eb694d"
                        "206b9dda86d3c7e331c26b22c987b7537726577667adadf168ebbe803794a402")
    agreement.verify(pub, b"This is only a test message. It is 48 bytes long", sig, 2)
    with pytest.raises(AuthenticationFailed):
        agreement.verify(pub, b"This is only a test message. It is 48 bytes long",
                         sig[:-2] + b"\xa5\x02", 2)


def test_one_pass_shared_secret_and_kdf():  # [GB-C2]
    z = agreement.shared_secret(_priv(SERVER_STATIC_PRIV), _pub(ONE_PASS_EPH_PUB), 1)
    assert z.hex().upper() == "0D4385BA0DD756CBCAB9887EB538396EE8F090A14C1079B4359F115B977F4615"
    key = agreement.kdf(z, suite=1, party_u=UC, party_v=VS)
    assert key.secret.hex().upper() == "59A71FD81C929A86A99438DA17A66C05"
    assert "59A7" not in repr(key).upper()


def test_server_to_client_kdf():  # [GB-C2] server side, [EICT] key pair and Z
    z = agreement.shared_secret(
        _priv("A51C16FF5C498FCC89323D4A9267CD71BF81FD6F6A891CD240DA7F3D6F283E65"),
        _pub("6439724714B47CD9CB988897D8424AB946DCD083D37A954637616011B9C23787"
             "73295F0F850D8DAFD1BBE9FE666E53E4F097CD10B38B69622152724A90987444"), 1)
    assert z.hex().upper() == "2B4302DC49790E2E78D990CFB52ED6E2F273DECE441A2D95E4301B93812A9FAC"
    assert agreement.kdf(z, suite=1, party_u=VS, party_v=UC).secret.hex().upper() == \
        "F0184BDA9466BFA4601A64A7EF46504A"


def test_ephemeral_unified_model_shared_secret():  # [EICT] testKeyAgreement
    server_eph = _priv("34A8C23A34DBB519D09B245754C85A6CFE05D14A063EFA5AA41545AA8241EFAE")
    assert agreement.public_key_bytes(server_eph).hex().upper() == (
        "95F41066009B185B074F5FFFF736B71C325FCADB2BC0CF1A4F4B17BBE7AB81D6"
        "2946506BC8169C7B539B39A5D8463787F449C9BD2583FA67A1075B0DBFC638BA")
    client_eph = _pub("2914D60E10AB705F62ED6CC349D7CB99B9AB3F3978E59278C7AF595B3AF98794"
                      "1372DAB6D5AF1FA867E134167E6F23DE664A6693E05F43414611058D1B48F894")
    assert agreement.shared_secret(server_eph, client_eph, 1).hex().upper() == (
        "C1CF8FE7891AEF3617D7190795E61FE6C24EFC3CCA2E08469BAD1A225CE6EA08")


def test_one_pass_round_trip_and_forgery():
    for suite, curve in ((1, ec.SECP256R1()), (2, ec.SECP384R1())):
        server_static = ec.generate_private_key(curve)
        client_sign = ec.generate_private_key(curve)
        key_u, kcd = agreement.one_pass_originate(
            suite=suite, recipient_static=server_static.public_key(), signing_key=client_sign,
            party_u=UC, party_v=VS)
        assert len(kcd) == 4 * agreement.coordinate_bytes(suite)
        key_v = agreement.one_pass_receive(
            suite=suite, own_static=server_static, key_ciphered_data=kcd,
            originator_signing_key=client_sign.public_key(), party_u=UC, party_v=VS)
        assert key_u == key_v and len(key_u) == (16 if suite == 1 else 32)
        # an attacker's own ephemeral point, signed by the attacker: refused
        attacker = ec.generate_private_key(curve)
        _, forged = agreement.one_pass_originate(
            suite=suite, recipient_static=server_static.public_key(), signing_key=attacker,
            party_u=UC, party_v=VS)
        with pytest.raises(AuthenticationFailed):
            agreement.one_pass_receive(
                suite=suite, own_static=server_static, key_ciphered_data=forged,
                originator_signing_key=client_sign.public_key(), party_u=UC, party_v=VS)
        # the point without its signature: refused
        with pytest.raises(AuthenticationFailed):
            agreement.one_pass_receive(
                suite=suite, own_static=server_static, key_ciphered_data=kcd[:len(kcd) // 2],
                originator_signing_key=client_sign.public_key(), party_u=UC, party_v=VS)


def test_static_unified_model_depends_on_transaction_id():
    u, v = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    k1 = agreement.static_unified_model(u, v.public_key(), suite=1, party_u=UC, party_v=VS,
                                        transaction_id=b"\x00" * 7 + b"\x01")
    k1v = agreement.static_unified_model(v, u.public_key(), suite=1, party_u=UC, party_v=VS,
                                         transaction_id=b"\x00" * 7 + b"\x01")
    k2 = agreement.static_unified_model(u, v.public_key(), suite=1, party_u=UC, party_v=VS,
                                        transaction_id=b"\x00" * 7 + b"\x02")
    assert k1 == k1v and k1 != k2
    assert agreement.other_info(agreement.AlgorithmId.AES_GCM_128, UC, VS, b"\x01\x02") == (
        bytes.fromhex("60857405080300") + UC + b"\x02\x01\x02" + VS)


def test_wrong_curve_and_bad_points_are_refused():
    p256 = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(AuthenticationFailed):  # a P-256 signer on a suite-2 exchange
        agreement.verify(p256.public_key(), b"x", agreement.sign(p256, b"x", 1), 2)
    with pytest.raises(InvalidKey):
        agreement.sign(p256, b"x", 2)
    with pytest.raises(InvalidKey):
        agreement.public_key_from_bytes(b"\x01" * 64, 1)  # not on the curve
    with pytest.raises(InvalidKey):
        agreement.public_key_from_bytes(b"\x01" * 63, 1)
    with pytest.raises(InvalidKey):
        agreement.kdf(b"z" * 32, suite=0, party_u=UC, party_v=VS)
    with pytest.raises(InvalidKey):
        agreement.kdf(b"z" * 32, suite=1, party_u=UC[:7], party_v=VS)


def test_signed_ephemeral_key_green_book_and_refusals():  # [GB-C1] key_agreement element
    point = bytes.fromhex("2914D60E10AB705F62ED6CC349D7CB99B9AB3F3978E59278C7AF595B3AF98794"
                          "1372DAB6D5AF1FA867E134167E6F23DE664A6693E05F43414611058D1B48F894")
    sig = bytes.fromhex("06F0607702AA0E2435A183E2F6B1ECD19629712E389A213610C03F77B2590860"
                        "EA840AF5C3FA1F2BCDF055D4744E9A01CE9A0E55026BCAA4EEBEB764CED64BB3")
    peer = agreement.verify_signed_ephemeral_key(0, point + sig, _pub(CLIENT_SIGN_PUB), 1)
    assert agreement.public_key_bytes(peer) == point
    with pytest.raises(AuthenticationFailed):  # same data under another key id
        agreement.verify_signed_ephemeral_key(1, point + sig, _pub(CLIENT_SIGN_PUB), 1)
    with pytest.raises(AuthenticationFailed):  # unsigned
        agreement.verify_signed_ephemeral_key(0, point, _pub(CLIENT_SIGN_PUB), 1)
    with pytest.raises(AuthenticationFailed):  # signed by another key
        agreement.verify_signed_ephemeral_key(0, point + sig, _pub(SERVER_SIGN_PUB), 1)
    # both sides of C(2e,0s) through the element format
    signer_c, signer_s = ec.generate_private_key(ec.SECP384R1()), ec.generate_private_key(
        ec.SECP384R1())
    eph_c, eph_s = ec.generate_private_key(ec.SECP384R1()), ec.generate_private_key(
        ec.SECP384R1())
    data_c = agreement.signed_ephemeral_key(2, eph_c, signer_c, 2)
    data_s = agreement.signed_ephemeral_key(2, eph_s, signer_s, 2)
    k_s = agreement.ephemeral_unified_model(
        eph_s, agreement.verify_signed_ephemeral_key(2, data_c, signer_c.public_key(), 2),
        suite=2, party_u=UC, party_v=VS)
    k_c = agreement.ephemeral_unified_model(
        eph_c, agreement.verify_signed_ephemeral_key(2, data_s, signer_s.public_key(), 2),
        suite=2, party_u=UC, party_v=VS)
    assert k_c == k_s and len(k_c) == 32
