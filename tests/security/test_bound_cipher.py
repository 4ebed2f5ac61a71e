"""The bound cipher (``ApduCipher``) that client, meter and ingest call per APDU.

It must give the free functions' bytes and verdicts for every protection mode, form,
suite and BER length form, including the in-place framing of 2- and 3-byte lengths.
The known-answer vector is the Green Book's glo-get-request (STANDARDS.md, "Reference
vectors", as in test_green_book_vectors.py).
"""

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
from metercert.security.protection import cipher_for

GREEN_BOOK_TITLE = bytes.fromhex("4D4D4D0000BC614E")
V1_PLAIN = bytes.fromhex("C0010000080000010000FF0200")
V1_APDU = bytes.fromhex("C81E3001234567411312FF935A47566827C467BC7D825C3BE4A77C3FCC056B6B")
DEDICATED_CAPABLE = [0xC0, 0xC1, 0xC2, 0xC3, 0xC4, 0xC5, 0xC7]
SERVICE_TAGS = [*DEDICATED_CAPABLE, 0x01, 0x08, 0x0E]


def test_green_book_vector_both_ways(ek, ak):
    client = ApduCipher(encryption_key=ek, authentication_key=ak, own_title=GREEN_BOOK_TITLE)
    assert client.protect(V1_PLAIN, 0x01234567) == V1_APDU
    meter = ApduCipher(encryption_key=ek, authentication_key=ak, own_title=bytes(8),
                       peer_title=GREEN_BOOK_TITLE)
    assert meter.unprotect(V1_APDU) == V1_PLAIN
    assert meter.open_parsed(parse_ciphered(V1_APDU)) == V1_PLAIN


@st.composite
def case(draw):
    suite = draw(st.sampled_from([0, 1, 2]))
    size = 32 if suite == 2 else 16
    form = draw(st.sampled_from(list(CipheringForm)))
    tags = DEDICATED_CAPABLE if form is CipheringForm.DEDICATED else SERVICE_TAGS
    # lengths around the 1-, 2- and 3-byte BER forms (content = payload + 5 bytes)
    body = draw(st.one_of(st.integers(0, 140), st.integers(230, 280), st.integers(990, 1100)))
    plain = bytes([draw(st.sampled_from(tags))]) + draw(st.binary(min_size=body, max_size=body))
    sc = SecurityControl(suite=suite, authenticated=draw(st.booleans()),
                         encrypted=draw(st.booleans()), broadcast=draw(st.booleans()))
    return {"plaintext": plain, "security_control": sc,
            "system_title": draw(st.binary(min_size=8, max_size=8)),
            "invocation_counter": draw(st.integers(0, 0xFFFFFFFF)),
            "encryption_key": draw(st.binary(min_size=size, max_size=size)),
            "authentication_key": draw(st.binary(min_size=size, max_size=size)), "form": form}


def _bound(c: dict, *, peer: bool) -> ApduCipher:
    return ApduCipher(encryption_key=c["encryption_key"],
                      authentication_key=c["authentication_key"], own_title=c["system_title"],
                      peer_title=c["system_title"] if peer else None,
                      security_control=c["security_control"], form=c["form"])


@settings(max_examples=400, deadline=None)
@given(case())
def test_same_bytes_and_verdicts_as_the_free_functions(c):
    sender, receiver = _bound(c, peer=False), _bound(c, peer=True)
    apdu = sender.protect(c["plaintext"], c["invocation_counter"])
    assert apdu == protect(**c)
    assert receiver.unprotect(apdu) == c["plaintext"]
    assert receiver.open_parsed(parse_ciphered(apdu)) == c["plaintext"]
    # the form can be chosen per APDU (a meter answers in the form it was asked in)
    assert ApduCipher(encryption_key=c["encryption_key"],
                      authentication_key=c["authentication_key"], own_title=c["system_title"],
                      security_control=c["security_control"]).protect(
        c["plaintext"], c["invocation_counter"], c["form"]) == apdu
    sc = c["security_control"]
    for i in (len(apdu) - 1, len(apdu) // 2):
        bad = bytearray(apdu)
        bad[i] ^= 0x01
        bad_apdu = bytes(bad)
        try:
            free = unprotect(bad_apdu, encryption_key=c["encryption_key"],
                             authentication_key=c["authentication_key"],
                             system_title=c["system_title"]).plaintext
        except (AuthenticationFailed, ApduFormatError) as exc:
            free = type(exc)
        try:
            ours = receiver.unprotect(bad_apdu)
        except (AuthenticationFailed, ApduFormatError) as exc:
            ours = type(exc)
        if sc.authenticated:  # a flipped bit never verifies, whichever check finds it
            assert free in (AuthenticationFailed, ApduFormatError)
            assert ours in (AuthenticationFailed, ApduFormatError)
        elif i <= len(apdu) - len(c["plaintext"]) - 5:
            # nothing to verify, but the flip is in the header (a system title or security
            # control byte of another sender or suite): the bound cipher, which knows its peer
            # and suite, refuses it; the free function, told neither, may read it
            assert ours in (free, AuthenticationFailed)
        else:  # nothing to verify: both give the same bytes (or the same framing error)
            assert ours == free

@pytest.mark.parametrize("body", [120, 121, 250, 251, 1018])
def test_every_length_form_is_read_in_place_and_verified(ek, ak, body):
    plain = b"\xC4" + bytes(body)
    c = ApduCipher(encryption_key=ek, authentication_key=ak, own_title=GREEN_BOOK_TITLE,
                   peer_title=GREEN_BOOK_TITLE)
    apdu = c.protect(plain, 7)
    n = body + 1 + 17
    assert apdu[1:2] == (bytes((n,)) if n < 0x80 else b"\x81" if n < 0x100 else b"\x82")
    assert c.unprotect(apdu) == plain
    for i in range(len(apdu)):  # any bit flipped anywhere is refused
        bad = bytearray(apdu)
        bad[i] ^= 0x80
        with pytest.raises((AuthenticationFailed, ApduFormatError)):
            c.unprotect(bytes(bad))


def test_relabelled_service_and_foreign_security_control_are_refused(ek, ak):
    c = ApduCipher(encryption_key=ek, authentication_key=ak, own_title=GREEN_BOOK_TITLE,
                   peer_title=GREEN_BOOK_TITLE)
    apdu = bytearray(c.protect(V1_PLAIN, 5))
    apdu[0] = 0xC9  # glo-set-request label on a get
    with pytest.raises(AuthenticationFailed):
        c.unprotect(bytes(apdu))
    other = ApduCipher(encryption_key=ek, authentication_key=ak, own_title=GREEN_BOOK_TITLE,
                       peer_title=GREEN_BOOK_TITLE, security_control=SecurityControl(0, True, False))
    with pytest.raises(AuthenticationFailed):
        c.unprotect(other.protect(V1_PLAIN, 6))


def test_bad_input_gets_a_format_error(ek, ak):
    c = ApduCipher(encryption_key=ek, authentication_key=ak, own_title=GREEN_BOOK_TITLE)
    with pytest.raises(ApduFormatError, match="32 bits"):
        c.protect(V1_PLAIN, 1 << 32)
    with pytest.raises(ApduFormatError, match="32 bits"):
        c.protect(V1_PLAIN, -1)
    with pytest.raises(ApduFormatError):
        c.protect(b"", 1)
    with pytest.raises(ApduFormatError, match="system title"):
        c.unprotect(V1_APDU)  # no peer title bound
    with pytest.raises(ApduFormatError):
        c.unprotect(b"")


def test_cipher_for_reuses_one_object_and_follows_key_changes(ek, ak):
    sc = SecurityControl(0)
    first = cipher_for(ek, ak, GREEN_BOOK_TITLE, None, sc)
    assert cipher_for(ek, ak, GREEN_BOOK_TITLE, None, sc) is first
    changed = cipher_for(bytes(16), ak, GREEN_BOOK_TITLE, None, sc)
    assert changed is not first
    assert changed.protect(V1_PLAIN, 0x01234567) != V1_APDU


def test_held_ciphers_are_remade_when_the_stamp_changes(ek, ak):
    from metercert.security import Key
    from metercert.security.protection import HeldCiphers

    made = []
    keys = {"ek": ek}

    def make():
        c = cipher_for(keys["ek"], ak, GREEN_BOOK_TITLE, GREEN_BOOK_TITLE, SecurityControl(0))
        made.append(c)
        return c, c

    held = HeldCiphers(make)
    first = held.get((keys["ek"], ak))
    assert held.get((keys["ek"], ak)) is first and len(made) == 1
    apdu = first[1].protect(V1_PLAIN, 1)
    # a key transfer installs a new Key object: the next APDU gets the new key's cipher
    keys["ek"] = Key(bytes(16), "guek")
    second = held.get((keys["ek"], ak))
    assert len(made) == 2 and second[0] is not first[0]
    with pytest.raises(AuthenticationFailed):
        second[0].unprotect_counted(apdu)
    assert second[0].unprotect_counted(second[1].protect(V1_PLAIN, 2)) == (V1_PLAIN, 2)
