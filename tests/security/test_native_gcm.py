"""The OpenSSL helper (``_gcm_native``) against the pure-Python path of ``ApduCipher``.

Both must give byte-identical APDUs and the same verdicts (plaintext, or the same exception
with the same message) for every protection mode, ciphered form, suite (128- and 256-bit
keys) and BER length form (1, 2 and 3 bytes: 64 B, 200 B, 1 KiB, 60 KiB), and for tampered
bytes, another security control byte and another outer tag.

The known-answer vector is the DLMS UA Green Book's worked glo-get-request example
(DLMS UA 1000-2 Ed. 10, "Reference vectors" in STANDARDS.md; the same bytes as
test_green_book_vectors.py: EK 000102..0F, AK D0D1..DF, system title 4D4D4D0000BC614E,
IC 0x01234567).

Where the helper is not built the tests here skip saying so, unless METERCERT_REQUIRE_NATIVE=1
(scripts/test sets it): then they fail, so a CI without the helper does not pass silently.
"""

import os
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metercert.security import (
    ApduCipher,
    ApduFormatError,
    AuthenticationFailed,
    CipheringForm,
    SecurityControl,
    parse_ciphered,
    protection,
    unprotect_parsed,
)

if not protection.NATIVE:
    if os.environ.get("METERCERT_REQUIRE_NATIVE") == "1":
        pytest.fail(f"METERCERT_REQUIRE_NATIVE=1 but {protection.NATIVE_STATUS}",
                    pytrace=False)
    pytest.skip(protection.NATIVE_STATUS, allow_module_level=True)

GREEN_BOOK_EK = bytes.fromhex("000102030405060708090A0B0C0D0E0F")
GREEN_BOOK_AK = bytes.fromhex("D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF")
GREEN_BOOK_TITLE = bytes.fromhex("4D4D4D0000BC614E")
V1_PLAIN = bytes.fromhex("C0010000080000010000FF0200")
V1_APDU = bytes.fromhex("C81E3001234567411312FF935A47566827C467BC7D825C3BE4A77C3FCC056B6B")

DEDICATED_CAPABLE = [0xC0, 0xC1, 0xC2, 0xC3, 0xC4, 0xC5, 0xC7]
SERVICE_TAGS = [*DEDICATED_CAPABLE, 0x01, 0x08, 0x0E]
OTHER_TITLE = bytes.fromhex("4D4D4D0000000001")


def _pair(ek, ak, own, peer, sc, form=CipheringForm.GLOBAL, key_size=None):
    kw = {"encryption_key": ek, "authentication_key": ak, "own_title": own, "peer_title": peer,
              "security_control": sc, "form": form, "key_size": key_size}
    return ApduCipher(native=True, **kw), ApduCipher(native=False, **kw)


def _verdict(call, *args):
    try:
        return ("ok", call(*args))
    except (AuthenticationFailed, ApduFormatError) as exc:
        return (type(exc).__name__, str(exc))


def _same(native, pure, method, *args):
    a = _verdict(getattr(native, method), *args)
    b = _verdict(getattr(pure, method), *args)
    assert a == b, (method, a[0], b[0])
    return a


def test_the_native_helper_is_what_apdu_cipher_uses():
    c = ApduCipher(encryption_key=GREEN_BOOK_EK, authentication_key=GREEN_BOOK_AK,
                   own_title=GREEN_BOOK_TITLE)
    assert c.native
    assert not ApduCipher(encryption_key=GREEN_BOOK_EK, authentication_key=GREEN_BOOK_AK,
                          own_title=GREEN_BOOK_TITLE, native=False).native
    assert "native" in protection.NATIVE_STATUS
    assert GREEN_BOOK_AK.hex() not in repr(c) and GREEN_BOOK_EK.hex() not in repr(c)
    assert GREEN_BOOK_AK.hex() not in repr(c._native)


def test_green_book_vector_native():
    sender, _ = _pair(GREEN_BOOK_EK, GREEN_BOOK_AK, GREEN_BOOK_TITLE, None, SecurityControl(0))
    assert sender.protect(V1_PLAIN, 0x01234567) == V1_APDU
    receiver, _ = _pair(GREEN_BOOK_EK, GREEN_BOOK_AK, bytes(8), GREEN_BOOK_TITLE,
                        SecurityControl(0))
    assert receiver.unprotect(V1_APDU) == V1_PLAIN
    assert receiver.unprotect_counted(V1_APDU) == (V1_PLAIN, 0x01234567)
    assert receiver.open_parsed(parse_ciphered(V1_APDU)) == V1_PLAIN
    bad = bytearray(V1_APDU)
    bad[-1] ^= 1  # the 12th tag byte: OpenSSL must check all 12
    with pytest.raises(AuthenticationFailed):
        receiver.unprotect(bytes(bad))
    with pytest.raises(AuthenticationFailed):
        receiver.unprotect_counted(bytes(bad))


@st.composite
def case(draw):
    suite = draw(st.sampled_from([0, 1, 2]))
    size = 32 if suite == 2 else 16
    form = draw(st.sampled_from(list(CipheringForm)))
    tags = DEDICATED_CAPABLE if form is CipheringForm.DEDICATED else SERVICE_TAGS
    # 64 B, 200 B, 1 KiB, 60 KiB and around the 1-, 2- and 3-byte BER length boundaries
    body = draw(st.one_of(st.sampled_from([63, 199, 1023, 60 * 1024 - 1]),
                          st.integers(0, 140), st.integers(230, 280),
                          st.integers(65490, 65530)))
    plain = bytes([draw(st.sampled_from(tags))]) + draw(st.binary(min_size=body, max_size=body))
    sc = SecurityControl(suite=suite, authenticated=draw(st.booleans()),
                         encrypted=draw(st.booleans()), broadcast=draw(st.booleans()))
    return {"plain": plain, "sc": sc, "form": form,
            "own": draw(st.binary(min_size=8, max_size=8)),
            "ic": draw(st.integers(0, 0xFFFFFFFF)),
            "ek": draw(st.binary(min_size=size, max_size=size)),
            "ak": draw(st.binary(min_size=size, max_size=size)),
            "flips": draw(st.lists(st.integers(0, 2 ** 20), min_size=1, max_size=4)),
            "other_sc": draw(st.integers(0, 255)),
            "other_tag": draw(st.sampled_from([*protection.CIPHERED_TAGS, 0x00, 0xC4, 0x60])),
            "override": draw(st.sampled_from([None, *CipheringForm]))}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case())
def test_native_and_pure_python_agree(c):
    plain, sc, form = c["plain"], c["sc"], c["form"]
    sender_n, sender_p = _pair(c["ek"], c["ak"], c["own"], None, sc, form)
    receiver_n, receiver_p = _pair(c["ek"], c["ak"], bytes(8), c["own"], sc, form)
    assert sender_n.native == sc.protected  # no key, nothing native: plain framing in Python
    kind, apdu = _same(sender_n, sender_p, "protect", plain, c["ic"])
    assert kind == "ok"
    _same(sender_n, sender_p, "protect", plain, c["ic"], c["override"])
    assert _same(receiver_n, receiver_p, "unprotect", apdu) == ("ok", plain)
    _same(receiver_n, receiver_p, "unprotect_counted", apdu)
    assert _same(receiver_n, receiver_p, "open_parsed", parse_ciphered(apdu)) == ("ok", plain)
    variants = []
    for flip in c["flips"]:
        bad = bytearray(apdu)
        bad[flip % len(apdu)] ^= 1 << (flip % 8)
        variants.append(bytes(bad))
    head = len(apdu) - len(plain) - (12 if sc.authenticated else 0) - 5
    other_sc = bytearray(apdu)
    other_sc[head] = c["other_sc"]
    other_tag = bytearray(apdu)
    other_tag[0] = c["other_tag"]
    variants += [bytes(other_sc), bytes(other_tag), apdu[:-1], apdu + b"\x00"]
    for bad in [apdu, *variants]:
        for method in ("unprotect", "unprotect_counted"):
            _same(receiver_n, receiver_p, method, bad)
        try:
            parsed = parse_ciphered(bad)
        except ApduFormatError:
            continue
        _same(receiver_n, receiver_p, "open_parsed", parsed)
        # the free function (what fleet ingest calls) runs the helper too: same verdicts
        free = {}
        for native in (True, False):
            with mock.patch.object(protection, "_NATIVE", protection._NATIVE if native else None):
                free[native] = _verdict(lambda p: unprotect_parsed(
                    p, encryption_key=c["ek"], authentication_key=c["ak"],
                    system_title=c["own"]).plaintext, parsed)
        assert free[True] == free[False]


@pytest.mark.parametrize("size", [64, 200, 1024, 60 * 1024])
@pytest.mark.parametrize("suite", [0, 2])
def test_every_length_form_and_key_size_natively(size, suite):
    key = bytes(range(32 if suite == 2 else 16))
    sc = SecurityControl(suite)
    plain = b"\xC4" + bytes(size - 1)
    sender_n, sender_p = _pair(key, key[::-1], GREEN_BOOK_TITLE, None, sc)
    receiver_n, _ = _pair(key, key[::-1], bytes(8), GREEN_BOOK_TITLE, sc)
    apdu = sender_n.protect(plain, 5)
    assert apdu == sender_p.protect(plain, 5)
    assert apdu[1] in (0x81, 0x82) or size < 100
    assert receiver_n.unprotect_counted(apdu) == (plain, 5)
    for i in (0, 1, len(apdu) // 2, len(apdu) - 12, len(apdu) - 1):
        bad = bytearray(apdu)
        bad[i] ^= 0x40
        with pytest.raises((AuthenticationFailed, ApduFormatError)):
            receiver_n.unprotect(bytes(bad))


def test_what_the_helper_does_not_serve_goes_to_the_python_path():
    sender_n, sender_p = _pair(GREEN_BOOK_EK, GREEN_BOOK_AK, GREEN_BOOK_TITLE, None,
                               SecurityControl(0))
    for plain, ic in ((b"", 1), (b"\x60abc", 1), (V1_PLAIN, -1), (V1_PLAIN, 2 ** 32),
                      (bytearray(V1_PLAIN), 1)):
        _same(sender_n, sender_p, "protect", plain, ic)
    # a 4-byte BER length (content of 64 KiB or more) is built by the Python path, alike
    big = b"\xC4" + bytes(70000)
    assert sender_n.protect(big, 1) == sender_p.protect(big, 1)
    receiver_n, receiver_p = _pair(GREEN_BOOK_EK, GREEN_BOOK_AK, bytes(8), GREEN_BOOK_TITLE,
                                   SecurityControl(0))
    apdu = sender_n.protect(big, 1)
    assert apdu[1] == 0x83
    assert receiver_n.unprotect(apdu) == big
    assert receiver_n.unprotect_counted(apdu) is None  # not the in-place framing
    assert receiver_p.unprotect_counted(apdu) is None
    # a general-glo-ciphering APDU carries the title: the parsed path
    glo_n, glo_p = _pair(GREEN_BOOK_EK, GREEN_BOOK_AK, GREEN_BOOK_TITLE, None, SecurityControl(0),
                         CipheringForm.GENERAL_GLO)
    apdu = glo_n.protect(V1_PLAIN, 9)
    assert apdu == glo_p.protect(V1_PLAIN, 9)
    assert receiver_n.unprotect(apdu) == V1_PLAIN == receiver_p.unprotect(apdu)
    # no peer title: the same error as the Python path
    lonely_n, lonely_p = _pair(GREEN_BOOK_EK, GREEN_BOOK_AK, bytes(8), None, SecurityControl(0))
    _same(lonely_n, lonely_p, "unprotect", V1_APDU)
    _same(lonely_n, lonely_p, "unprotect_counted", V1_APDU)
    # bytearray input: the Python path, same answer
    assert receiver_n.unprotect(bytearray(V1_APDU)) == V1_PLAIN


def test_downgrade_key_size_override_natively():
    # a suite-2 meter with the accepts-downgrade flaw keeps its 256-bit keys under suite 0
    key = bytes(range(32))
    sc = SecurityControl(0)
    n, p = _pair(key, key, GREEN_BOOK_TITLE, GREEN_BOOK_TITLE, sc, key_size=32)
    assert n.native
    apdu = n.protect(V1_PLAIN, 3)
    assert apdu == p.protect(V1_PLAIN, 3)
    assert n.unprotect(apdu) == V1_PLAIN == p.unprotect(apdu)


def test_pure_python_can_be_forced(monkeypatch):
    import subprocess
    import sys

    code = ("from metercert.security import protection as p, ApduCipher;"
            "c = ApduCipher(encryption_key=bytes(16), authentication_key=bytes(16),"
            " own_title=bytes(8));"
            "print(p.NATIVE, c.native, p.NATIVE_STATUS)")
    env = {**os.environ, "METERCERT_PURE_PYTHON": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout
    assert out.startswith("False False METERCERT_PURE_PYTHON=1")


def test_a_stale_helper_is_not_used():
    from types import SimpleNamespace

    stale = SimpleNamespace(ABI_VERSION=0, OPENSSL_VERSION="x")
    with mock.patch.object(protection.importlib, "import_module", return_value=stale):
        module, status = protection._load_native()
    assert module is None and "stale" in status and "pip install" in status
