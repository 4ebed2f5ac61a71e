"""Round trips of every form x mode x suite, and tamper rejection."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metercert.security import (
    ApduCipher,
    ApduFormatError,
    AuthenticationFailed,
    CipheringForm,
    SecurityControl,
    parse_ciphered,
    protect,
    unprotect,
)

SERVICE_TAGS = [0xC0, 0xC1, 0xC2, 0xC3, 0xC4, 0xC5, 0xC7, 0x01, 0x08, 0x0E]
DEDICATED_CAPABLE = [0xC0, 0xC1, 0xC2, 0xC3, 0xC4, 0xC5, 0xC7]


@st.composite
def protect_case(draw, authenticated_only=False):
    suite = draw(st.sampled_from([0, 1, 2]))
    size = 32 if suite == 2 else 16
    form = draw(st.sampled_from(list(CipheringForm)))
    tags = DEDICATED_CAPABLE if form is CipheringForm.DEDICATED else SERVICE_TAGS
    plain = bytes([draw(st.sampled_from(tags))]) + draw(st.binary(max_size=300))
    if authenticated_only:
        auth, enc = True, draw(st.booleans())
    else:
        auth, enc = draw(st.booleans()), draw(st.booleans())
    sc = SecurityControl(suite=suite, authenticated=auth, encrypted=enc,
                         broadcast=draw(st.booleans()))
    return {
        "plaintext": plain,
        "security_control": sc,
        "system_title": draw(st.binary(min_size=8, max_size=8)),
        "invocation_counter": draw(st.integers(0, 0xFFFFFFFF)),
        "encryption_key": draw(st.binary(min_size=size, max_size=size)),
        "authentication_key": draw(st.binary(min_size=size, max_size=size)),
        "form": form,
    }


@settings(max_examples=300, deadline=None)
@given(protect_case())
def test_round_trip_every_form_mode_and_suite(case):
    apdu = protect(**case)
    parsed = parse_ciphered(apdu)
    assert parsed.security_control == case["security_control"]
    assert parsed.invocation_counter == case["invocation_counter"]
    assert parsed.form is case["form"]
    if case["form"] in (CipheringForm.GENERAL_GLO, CipheringForm.GENERAL_DED):
        assert parsed.system_title == case["system_title"]
    else:
        assert parsed.plain_tag == case["plaintext"][0]
    result = unprotect(apdu, encryption_key=case["encryption_key"],
                       authentication_key=case["authentication_key"],
                       system_title=case["system_title"])
    assert result.plaintext == case["plaintext"]
    sc = case["security_control"]
    if sc.encrypted and len(case["plaintext"]) >= 8:
        assert parsed.payload[:len(case["plaintext"])] != case["plaintext"]


@settings(max_examples=200, deadline=None)
@given(protect_case(authenticated_only=True), st.data())
def test_any_single_bit_change_is_rejected(case, data):
    apdu = protect(**case)
    bit = data.draw(st.integers(0, len(apdu) * 8 - 1))
    tampered = bytearray(apdu)
    tampered[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises((AuthenticationFailed, ApduFormatError)):
        result = unprotect(bytes(tampered), encryption_key=case["encryption_key"],
                           authentication_key=case["authentication_key"],
                           system_title=case["system_title"])
        # a flip in the security control can turn authentication off: that must
        # still not yield an *authenticated* result
        if not result.authenticated:
            raise AuthenticationFailed()


@settings(max_examples=100, deadline=None)
@given(protect_case(authenticated_only=True), st.data())
def test_truncation_never_leaks_anything_but_our_errors(case, data):
    apdu = protect(**case)
    cut = data.draw(st.integers(0, len(apdu) - 1))
    with pytest.raises((AuthenticationFailed, ApduFormatError)):
        unprotect(apdu[:cut], encryption_key=case["encryption_key"],
                  authentication_key=case["authentication_key"],
                  system_title=case["system_title"])


@given(st.binary(max_size=64))
def test_random_bytes_raise_only_format_or_authentication_errors(blob):
    try:
        unprotect(blob, encryption_key=bytes(16), authentication_key=bytes(16),
                  system_title=bytes(8))
    except (ApduFormatError, AuthenticationFailed):
        pass


def test_wrong_key_wrong_tag_and_wrong_title_give_the_same_error(ek, ak):
    title = bytes.fromhex("4D4D4D0000BC614E")
    apdu = protect(b"\xC0\x01\x00", security_control=SecurityControl(0), system_title=title,
                   invocation_counter=7, encryption_key=ek, authentication_key=ak)
    messages = set()
    attempts = [
        {"apdu": apdu, "encryption_key": bytes(16), "authentication_key": ak, "system_title": title},
        {"apdu": apdu, "encryption_key": ek, "authentication_key": bytes(16), "system_title": title},
        {"apdu": apdu[:-1] + bytes([apdu[-1] ^ 1]), "encryption_key": ek, "authentication_key": ak,
             "system_title": title},
        {"apdu": apdu, "encryption_key": ek, "authentication_key": ak, "system_title": bytes(8)},
    ]
    for attempt in attempts:
        with pytest.raises(AuthenticationFailed) as info:
            unprotect(attempt.pop("apdu"), **attempt)
        messages.add(str(info.value))
    assert len(messages) == 1


def test_wrong_key_length_is_a_clear_error(ek):
    from metercert.security import InvalidKey

    with pytest.raises(InvalidKey, match="256"):
        protect(b"\xC0\x01", security_control=SecurityControl(suite=2), system_title=bytes(8),
                invocation_counter=1, encryption_key=ek, authentication_key=ek)


def test_initiate_request_has_no_dedicated_form(ek, ak):
    with pytest.raises(ApduFormatError, match="no dedicated"):
        protect(b"\x01\x00", security_control=SecurityControl(0), system_title=bytes(8),
                invocation_counter=1, encryption_key=ek, authentication_key=ak,
                form=CipheringForm.DEDICATED)


def test_security_control_byte_round_trip():
    for value in range(256):
        assert SecurityControl.from_byte(value).byte == value


@settings(max_examples=200, deadline=None)
@given(protect_case(authenticated_only=True))
def test_bound_cipher_is_byte_identical_to_protect_and_verifies(case):
    cipher = ApduCipher(encryption_key=case["encryption_key"],
                        authentication_key=case["authentication_key"],
                        own_title=case["system_title"], peer_title=case["system_title"],
                        security_control=case["security_control"], form=case["form"])
    apdu = cipher.protect(case["plaintext"], case["invocation_counter"])
    assert apdu == protect(**case)
    assert cipher.unprotect(apdu) == case["plaintext"]
    tampered = bytearray(apdu)
    tampered[-1] ^= 1
    with pytest.raises(AuthenticationFailed):
        cipher.unprotect(bytes(tampered))


@pytest.mark.parametrize("suite_bit", [0x01, 0x02])
def test_a_suite_our_keys_cannot_serve_is_unverifiable(ek, ak, suite_bit):
    apdu = bytearray(protect(b"\xC0\x01\x00", security_control=SecurityControl(0),
                             system_title=bytes(8), invocation_counter=1, encryption_key=ek,
                             authentication_key=ak, form=CipheringForm.GENERAL_GLO))
    apdu[11] ^= suite_bit  # the security control byte: suite 1 or 2 instead of 0
    with pytest.raises(AuthenticationFailed):
        unprotect(bytes(apdu), encryption_key=ek, authentication_key=ak)
