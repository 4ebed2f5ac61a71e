"""Interoperability with the public stacks, both directions.

gurux-dlms: byte-exact protection for every service-specific and general form and
suites 0/1/2 (gurux does not verify tags on decrypt, so it is not used to prove
tamper rejection). dlms-cosem: general-glo-ciphering and HLS-GMAC, suites 0/1/2.
"""

import contextlib
import io

import pytest
from dlms_cosem import security as dc_security
from dlms_cosem.protocol.xdlms.general_global_cipher import GeneralGlobalCipher
from gurux_dlms.AesGcmParameter import AesGcmParameter
from gurux_dlms.enums import Security
from gurux_dlms.GXByteBuffer import GXByteBuffer
from gurux_dlms.GXDLMSChippering import GXDLMSChippering
from gurux_dlms.GXDLMSSettings import GXDLMSSettings
from gurux_dlms.objects.enums.SecuritySuite import SecuritySuite as GxSuite
from hypothesis import given, settings
from hypothesis import strategies as st

from metercert.security import (
    CipheringForm,
    HlsCredentials,
    Key,
    Mechanism,
    SecurityControl,
    hls,
    protect,
    unprotect,
)

_GX_SECURITY = {
    (True, True): Security.AUTHENTICATION_ENCRYPTION,
    (True, False): Security.AUTHENTICATION,
    (False, True): Security.ENCRYPTION,
}
_GLO = {0xC0: 0xC8, 0xC1: 0xC9, 0xC3: 0xCB, 0xC4: 0xCC, 0xC5: 0xCD, 0xC7: 0xCF, 0x01: 0x21,
        0x08: 0x28}


@st.composite
def cases(draw):
    suite = draw(st.sampled_from([0, 1, 2]))
    size = 32 if suite == 2 else 16
    auth, enc = draw(st.sampled_from(list(_GX_SECURITY)))
    plain_tag = draw(st.sampled_from(list(_GLO)))
    return {
        "suite": suite, "auth": auth, "enc": enc,
        "plaintext": bytes([plain_tag]) + draw(st.binary(max_size=200)),
        "title": draw(st.binary(min_size=8, max_size=8)),
        "ic": draw(st.integers(0, 0xFFFFFFFF)),
        "ek": draw(st.binary(min_size=size, max_size=size)),
        "ak": draw(st.binary(min_size=size, max_size=size)),
        "general": draw(st.booleans()),
    }


def _gurux_protect(c) -> bytes:
    tag = 0xDB if c["general"] else _GLO[c["plaintext"][0]]
    p = AesGcmParameter(tag, c["title"], c["ek"], c["ak"])
    p.security = _GX_SECURITY[(c["auth"], c["enc"])]
    p.securitySuite = GxSuite(c["suite"])
    p.invocationCounter = c["ic"]
    return bytes(GXDLMSChippering.encryptAesGcm(p, c["plaintext"]))


def _gurux_unprotect(apdu: bytes, c) -> bytes:
    p = AesGcmParameter(0, c["title"], c["ek"], c["ak"])
    p.securitySuite = GxSuite(c["suite"])
    with contextlib.redirect_stdout(io.StringIO()):  # gurux prints while decrypting
        return bytes(GXDLMSChippering.decryptAesGcm(GXDLMSSettings(False, None), p,
                                                    GXByteBuffer(apdu)))


def _ours(c) -> bytes:
    return protect(
        c["plaintext"],
        security_control=SecurityControl(c["suite"], c["auth"], c["enc"]),
        system_title=c["title"], invocation_counter=c["ic"],
        encryption_key=c["ek"], authentication_key=c["ak"],
        form=CipheringForm.GENERAL_GLO if c["general"] else CipheringForm.GLOBAL)


@settings(max_examples=150, deadline=None)
@given(cases())
def test_our_protection_is_byte_identical_to_gurux(c):
    assert _ours(c) == _gurux_protect(c)


@settings(max_examples=150, deadline=None)
@given(cases())
def test_gurux_accepts_ours_and_we_accept_gurux(c):
    assert _gurux_unprotect(_ours(c), c) == c["plaintext"]
    result = unprotect(_gurux_protect(c), encryption_key=c["ek"], authentication_key=c["ak"],
                       system_title=c["title"])
    assert result.plaintext == c["plaintext"]


@settings(max_examples=100, deadline=None)
@given(cases())
def test_dlms_cosem_general_glo_both_ways(c):
    if not c["auth"]:
        return  # dlms-cosem implements authenticated encryption only
    c = dict(c, enc=True)
    sc = dc_security.SecurityControlField(security_suite=c["suite"], authenticated=True,
                                          encrypted=True)
    # theirs -> ours
    ct = dc_security.encrypt(sc, c["title"], c["ic"], c["ek"], c["plaintext"], c["ak"])
    apdu = GeneralGlobalCipher(c["title"], sc, c["ic"], ct).to_bytes()
    assert unprotect(apdu, encryption_key=c["ek"], authentication_key=c["ak"]).plaintext == \
        c["plaintext"]
    # ours -> theirs
    ours = protect(c["plaintext"], security_control=SecurityControl(c["suite"]),
                   system_title=c["title"], invocation_counter=c["ic"], encryption_key=c["ek"],
                   authentication_key=c["ak"], form=CipheringForm.GENERAL_GLO)
    parsed = GeneralGlobalCipher.from_bytes(ours)
    assert parsed.system_title == c["title"] and parsed.invocation_counter == c["ic"]
    assert dc_security.decrypt(parsed.security_control, parsed.system_title,
                               parsed.invocation_counter, c["ek"], parsed.ciphered_text,
                               c["ak"]) == c["plaintext"]


def test_dlms_cosem_rejects_our_tampered_apdu_like_we_do(ek, ak):
    from dlms_cosem.exceptions import DecryptionError

    title = bytes.fromhex("4D4D4D0000BC614E")
    ours = bytearray(protect(b"\xC4\x01\xC1\x00\x09\x04abcd", security_control=SecurityControl(0),
                             system_title=title, invocation_counter=99, encryption_key=ek,
                             authentication_key=ak, form=CipheringForm.GENERAL_GLO))
    ours[-1] ^= 0x01
    parsed = GeneralGlobalCipher.from_bytes(bytes(ours))
    with pytest.raises(DecryptionError):
        dc_security.decrypt(parsed.security_control, parsed.system_title,
                            parsed.invocation_counter, ek.secret, parsed.ciphered_text, ak.secret)


@settings(max_examples=50, deadline=None)
@given(suite=st.sampled_from([0, 1, 2]), challenge=st.binary(min_size=8, max_size=64),
       title=st.binary(min_size=8, max_size=8), ic=st.integers(0, 0xFFFFFFFF),
       seed=st.binary(min_size=32, max_size=32))
def test_hls_gmac_response_agrees_with_dlms_cosem(suite, challenge, title, ic, seed):
    size = 32 if suite == 2 else 16
    ek, ak = seed[:size].ljust(size, b"\x01"), seed[::-1][:size].ljust(size, b"\x02")
    creds = HlsCredentials(encryption_key=Key(ek), authentication_key=Key(ak), suite=suite)
    ours = hls.respond(Mechanism.HLS_GMAC, creds, challenge=challenge, own_challenge=b"x" * 8,
                       own_title=title, peer_title=bytes(8), invocation_counter=ic)
    sc = dc_security.SecurityControlField(security_suite=suite, authenticated=True,
                                          encrypted=False)
    theirs = sc.to_bytes() + ic.to_bytes(4, "big") + dc_security.gmac(sc, title, ic, ek, ak,
                                                                        challenge)
    assert ours == theirs
    assert hls.verify(Mechanism.HLS_GMAC, creds, theirs, own_challenge=challenge,
                      peer_challenge=b"x" * 8, own_title=bytes(8), peer_title=title) == ic
