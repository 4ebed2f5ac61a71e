"""The Green Book example vectors (STANDARDS.md, "Reference vectors")."""

from metercert.security import SecurityControl, _gcm, protect, unprotect

GREEN_BOOK_EK = bytes.fromhex("000102030405060708090A0B0C0D0E0F")
GREEN_BOOK_AK = bytes.fromhex("D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF")
GREEN_BOOK_TITLE = bytes.fromhex("4D4D4D0000BC614E")

V1_PLAIN = bytes.fromhex("C0010000080000010000FF0200")
V1_APDU = bytes.fromhex("C81E3001234567411312FF935A47566827C467BC7D825C3BE4A77C3FCC056B6B")
V3_APDU = bytes.fromhex(
    "21303001234567801302FF8A7874133D414CED25B42534D28DB0047720606B175BD52211BE6841DB"
    "204D39EE6FDB8E356855")
V3_PLAIN = bytes.fromhex("01011000112233445566778899AABBCCDDEEFF0000065F1F0400007E1F04B0")
V4_APDU = bytes.fromhex("281F3001234567891214A0845E475714383F65BC19745CA235906525E4F3E1C893")
V4_PLAIN = bytes.fromhex("0800065F1F0400007C1F04000007")


def test_v1_glo_get_request_is_byte_exact(ek, ak):
    out = protect(V1_PLAIN, security_control=SecurityControl(0), system_title=GREEN_BOOK_TITLE,
                  invocation_counter=0x01234567, encryption_key=ek, authentication_key=ak)
    assert out == V1_APDU
    assert out[7:20] == bytes.fromhex("411312FF935A47566827C467BC")
    assert out[-12:] == bytes.fromhex("7D825C3BE4A77C3FCC056B6B")


def test_v1_unprotects(ek, ak):
    result = unprotect(V1_APDU, encryption_key=ek, authentication_key=ak,
                       system_title=GREEN_BOOK_TITLE)
    assert result.plaintext == V1_PLAIN
    assert result.invocation_counter == 0x01234567
    assert result.security_control.byte == 0x30


def test_v2_gmac_tag():
    nonce = bytes.fromhex("4D4D4D000000000100000001")
    aad = b"\x10" + GREEN_BOOK_AK + bytes.fromhex("503677524A323146")
    assert _gcm.mac(GREEN_BOOK_EK, nonce, aad) == bytes.fromhex("1A52FE7DD3E72748973C1E28")


def test_v3_glo_initiate_request(ek, ak):
    result = unprotect(V3_APDU, encryption_key=ek, authentication_key=ak,
                       system_title=GREEN_BOOK_TITLE)
    assert result.plaintext == V3_PLAIN
    again = protect(V3_PLAIN, security_control=SecurityControl(0), system_title=GREEN_BOOK_TITLE,
                    invocation_counter=0x01234567, encryption_key=ek, authentication_key=ak)
    assert again == V3_APDU


def test_v4_glo_initiate_response_needs_the_right_system_title(ek, ak):
    import pytest

    from metercert.security import AuthenticationFailed

    assert unprotect(V4_APDU, encryption_key=ek, authentication_key=ak,
                     system_title=GREEN_BOOK_TITLE).plaintext == V4_PLAIN
    with pytest.raises(AuthenticationFailed):
        unprotect(V4_APDU, encryption_key=ek, authentication_key=ak,
                  system_title=bytes.fromhex("4D4D4D0000000001"))
