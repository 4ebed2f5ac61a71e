import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from metercert.security import (
    AuthenticationFailed,
    HlsCredentials,
    Key,
    Mechanism,
    MechanismRefused,
    hls,
)

CLIENT = bytes.fromhex("4D4D4D0000000001")
METER = bytes.fromhex("4D4D4D0000BC614E")


def _four_pass(mechanism, client_creds, meter_creds):
    ctos, stoc = hls.new_challenge(16), hls.new_challenge(32)
    f_stoc = hls.respond(mechanism, client_creds, challenge=stoc, own_challenge=ctos,
                         own_title=CLIENT, peer_title=METER, invocation_counter=5)
    hls.verify(mechanism, meter_creds, f_stoc, own_challenge=stoc, peer_challenge=ctos,
               own_title=METER, peer_title=CLIENT)
    f_ctos = hls.respond(mechanism, meter_creds, challenge=ctos, own_challenge=stoc,
                         own_title=METER, peer_title=CLIENT, invocation_counter=9)
    hls.verify(mechanism, client_creds, f_ctos, own_challenge=ctos, peer_challenge=stoc,
               own_title=CLIENT, peer_title=METER)
    return f_stoc, f_ctos


def test_gmac_four_pass(ek, ak):
    creds = HlsCredentials(encryption_key=ek, authentication_key=ak)
    f_stoc, _f_ctos = _four_pass(Mechanism.HLS_GMAC, creds, creds)
    assert f_stoc[0] == 0x10 and f_stoc[1:5] == (5).to_bytes(4, "big") and len(f_stoc) == 17
    wrong = HlsCredentials(encryption_key=ek, authentication_key=Key(bytes(16)))
    with pytest.raises(AuthenticationFailed):
        _four_pass(Mechanism.HLS_GMAC, creds, wrong)


def test_sha256_four_pass_and_formula():
    import hashlib

    creds = HlsCredentials(secret=b"hls-secret-0001")
    _four_pass(Mechanism.HLS_SHA256, creds, creds)
    out = hls.respond(Mechanism.HLS_SHA256, creds, challenge=b"S" * 8, own_challenge=b"C" * 8,
                      own_title=CLIENT, peer_title=METER)
    assert out == hashlib.sha256(b"hls-secret-0001" + CLIENT + METER + b"S" * 8 + b"C" * 8).digest()
    with pytest.raises(AuthenticationFailed):
        _four_pass(Mechanism.HLS_SHA256, creds, HlsCredentials(secret=b"other"))


@pytest.mark.parametrize("curve,size", [(ec.SECP256R1(), 64), (ec.SECP384R1(), 96)])
def test_ecdsa_four_pass_raw_signatures(curve, size):
    client_key, meter_key = ec.generate_private_key(curve), ec.generate_private_key(curve)
    client = HlsCredentials(private_key=client_key, peer_public_key=meter_key.public_key())
    meter = HlsCredentials(private_key=meter_key, peer_public_key=client_key.public_key())
    f_stoc, f_ctos = _four_pass(Mechanism.HLS_ECDSA, client, meter)
    assert len(f_stoc) == len(f_ctos) == size
    impostor = HlsCredentials(private_key=ec.generate_private_key(curve),
                              peer_public_key=meter_key.public_key())
    with pytest.raises(AuthenticationFailed):
        _four_pass(Mechanism.HLS_ECDSA, impostor, meter)


@pytest.mark.parametrize("mechanism", [Mechanism.HLS_MD5, Mechanism.HLS_SHA1])
def test_legacy_mechanisms_are_refused(mechanism):
    with pytest.raises(MechanismRefused, match="legacy"):
        hls.respond(mechanism, HlsCredentials(secret=b"x"), challenge=b"12345678",
                    own_challenge=b"12345678", own_title=CLIENT, peer_title=METER)
    assert hls.mechanism_from_oid(mechanism.oid) is mechanism


def test_unknown_mechanism_oid():
    with pytest.raises(MechanismRefused):
        hls.mechanism_from_oid("2.16.756.5.8.2.9")
    with pytest.raises(MechanismRefused):
        hls.mechanism_from_oid("1.2.3")
