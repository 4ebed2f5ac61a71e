"""general-ciphering (0xDD) against gurux-dlms 1.0.203 (Python), both directions.

gurux -> metercert: gurux computes the ciphertext and tag itself (``encryptAesGcm`` with a
recipient system title: its suite-1/2 AAD with the general header); metercert frames them as
0xDD and must verify the tag. This is what proves the AAD agrees.

metercert -> gurux: ``decryptAesGcm`` parses our 0xDD and deciphers it. gurux 1.0.203 cannot
do that unpatched: it calls setters ``AesGcmParameter`` lacks (``setSystemTitle``,
``setRecipientSystemTitle``, ``setKeyParameters``, ``setInvocationCounter``) and reads
``p.vml`` (a typo of ``xml``). The fixture below adds those four setters and the attribute,
on the class, for this module only. gurux's 0xDD parser also reads key-info as agreed-key
only, so identified and wrapped keys are not exchanged with it; and it never checks tags
(STANDARDS.md), so this direction proves framing and keys, not tamper rejection.

Forms gurux does not implement, so not exchanged: general-signing (0xDF: no builder or
verifier in gurux Python), authenticated-only 0xDD (gurux leaves the header out of that AAD;
metercert follows the Green Book text, docs/ciphering.md), suite 0 0xDD (gurux uses the
general-glo AAD there), date-time/other-information (gurux writes them as empty in its AAD),
and a transaction-id other than the invocation counter (gurux puts the IC there).
"""

import contextlib
import io
import os

import pytest
from gurux_dlms.AesGcmParameter import AesGcmParameter
from gurux_dlms.CountType import CountType
from gurux_dlms.enums import Security
from gurux_dlms.GXByteBuffer import GXByteBuffer
from gurux_dlms.GXDLMSChippering import GXDLMSChippering
from gurux_dlms.GXDLMSSettings import GXDLMSSettings
from gurux_dlms.objects.enums.SecuritySuite import SecuritySuite as GxSuite

from metercert.security import SecurityControl
from metercert.security import general as g

UC = bytes.fromhex("4D4D4D0000BC614E")
VS = bytes.fromhex("4D4D4D0000000001")


@pytest.fixture
def patched_gurux(monkeypatch):
    for name in ("systemTitle", "recipientSystemTitle", "keyParameters", "invocationCounter"):
        def setter(self, value, _name=name):
            setattr(self, _name, value)
        monkeypatch.setattr(AesGcmParameter, "set" + name[0].upper() + name[1:], setter,
                            raising=False)
    monkeypatch.setattr(AesGcmParameter, "vml", None, raising=False)


CASES = [(suite, ic, size) for suite, size in ((1, 16), (2, 32)) for ic in (0, 1, 0xFFFFFFFF)]


@pytest.mark.parametrize("suite,ic,size", CASES)
def test_gurux_ciphertext_verifies_in_metercert(suite, ic, size):
    ek, ak = os.urandom(size), os.urandom(size)
    plain = bytes.fromhex("C0010000080000010000FF0200") + os.urandom(ic % 50)
    p = AesGcmParameter(0xDD, UC, ek, ak)
    p.security = Security.AUTHENTICATION_ENCRYPTION
    p.securitySuite = GxSuite(suite)
    p.invocationCounter = ic
    p.recipientSystemTitle = VS
    p.type_ = CountType.DATA | CountType.TAG
    body = bytes(GXDLMSChippering.encryptAesGcm(p, plain))
    header = g.GeneralHeader(ic.to_bytes(8, "big"), UC, VS)
    apdu = g.GeneralCiphering(header, g.AgreedKey(b"\x02"), SecurityControl(suite), ic,
                              body).to_bytes()
    assert g.unprotect_general(apdu, encryption_key=ek, authentication_key=ak).plaintext == plain
    # and our own protection of the same input is byte-identical to gurux's
    ours = g.protect_general(plain, header=header, security_control=SecurityControl(suite),
                             invocation_counter=ic, encryption_key=ek, authentication_key=ak,
                             key_info=g.AgreedKey(b"\x02"))
    assert ours == apdu


@pytest.mark.parametrize("suite,ic,size", CASES)
@pytest.mark.parametrize("key_info", [g.AgreedKey(b"\x02"), g.AgreedKey(b"\x01", bytes(128))])
@pytest.mark.parametrize("encrypted_only", [False, True])
def test_metercert_general_ciphering_opens_in_gurux(patched_gurux, suite, ic, size, key_info,
                                                    encrypted_only):
    ek, ak = os.urandom(size), os.urandom(size)
    plain = bytes.fromhex("C4010000090C07E6") + os.urandom(20)
    sc = SecurityControl(suite, authenticated=not encrypted_only)
    apdu = g.protect_general(plain, header=g.GeneralHeader(ic.to_bytes(8, "big"), UC, VS),
                             security_control=sc, invocation_counter=ic, encryption_key=ek,
                             authentication_key=ak, key_info=key_info)
    p = AesGcmParameter(0, UC, ek, ak)
    p.securitySuite = GxSuite(suite)
    with contextlib.redirect_stdout(io.StringIO()):  # gurux prints while decrypting
        out = bytes(GXDLMSChippering.decryptAesGcm(GXDLMSSettings(False, None), p,
                                                   GXByteBuffer(apdu)))
    assert out == plain
    assert p.recipientSystemTitle == VS and p.keyParameters == key_info.key_parameters[0]
