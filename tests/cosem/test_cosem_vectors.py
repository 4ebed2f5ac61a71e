"""Byte-exact known vectors (STANDARDS.md V3/V4 plaintexts, Green Book get clock) and
the small value types: OBIS codes, date-time, conformance, OIDs."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from metercert.cosem import (
    AARE,
    AARQ,
    RLRE,
    RLRQ,
    AcseServiceUserDiagnostic,
    ActionRequestNormal,
    ActionResponseNormal,
    ActionResult,
    ApplicationContextName,
    AssociationResult,
    AuthenticationMechanism,
    Conformance,
    CosemAttributeDescriptor,
    CosemDateTime,
    CosemMethodDescriptor,
    DataAccessResult,
    DataType,
    DlmsData,
    ExceptionResponse,
    GetRequestNormal,
    GetResponseNormal,
    InitiateRequest,
    InitiateResponse,
    ObisCode,
    ObjectIdentifier,
    OpaqueCipheredApdu,
    ServiceError,
    SetResponseNormal,
    StateError,
    decode_apdu,
    decode_data,
    make_invoke_id_and_priority,
)
from metercert.cosem.errors import (
    BadLength,
    CosemDecodeError,
    CosemEncodeError,
    InvalidValue,
    TruncatedData,
    UnknownTag,
    UnsupportedEncoding,
)
from metercert.cosem.interface_classes import CLOCK, ClassId, ClockAttr
from metercert.errors import UsageError

V3_INITIATE_REQUEST = "01011000112233445566778899AABBCCDDEEFF0000065F1F0400007E1F04B0"
V4_INITIATE_RESPONSE = "0800065F1F0400007C1F04000007"
GET_CLOCK_TIME = "C0010000080000010000FF0200"


def test_v3_initiate_request_fields_and_reencode() -> None:
    raw = bytes.fromhex(V3_INITIATE_REQUEST)
    req = decode_apdu(raw)
    assert isinstance(req, InitiateRequest)
    assert req.dedicated_key == bytes.fromhex("00112233445566778899AABBCCDDEEFF")
    assert req.response_allowed is True
    assert req.proposed_quality_of_service is None
    assert req.proposed_dlms_version_number == 6
    assert req.proposed_conformance == Conformance(0x007E1F)
    assert Conformance.GET in req.proposed_conformance
    assert Conformance.BLOCK_TRANSFER_WITH_ACTION in req.proposed_conformance
    assert Conformance.GENERAL_PROTECTION not in req.proposed_conformance
    assert req.client_max_receive_pdu_size == 1200
    assert req.to_bytes() == raw


def test_dedicated_key_never_in_repr() -> None:
    req = InitiateRequest.from_bytes(bytes.fromhex(V3_INITIATE_REQUEST))
    aarq = AARQ(user_information=req.to_bytes(), calling_authentication_value=b"sEcReTpW")
    for text in (repr(req), repr(aarq), str(aarq)):
        assert "112233" not in text and "\\x11\\x22" not in text and "sEcReTpW" not in text


def test_v4_initiate_response_fields_and_reencode() -> None:
    raw = bytes.fromhex(V4_INITIATE_RESPONSE)
    resp = decode_apdu(raw)
    assert isinstance(resp, InitiateResponse)
    assert resp.negotiated_quality_of_service is None
    assert resp.negotiated_dlms_version_number == 6
    assert resp.negotiated_conformance == Conformance(0x007C1F)
    assert Conformance.MULTIPLE_REFERENCES not in resp.negotiated_conformance
    assert resp.server_max_receive_pdu_size == 0x0400
    assert resp.vaa_name == 0x0007
    assert resp.to_bytes() == raw


def test_get_clock_time_vector() -> None:
    raw = bytes.fromhex(GET_CLOCK_TIME)
    req = decode_apdu(raw)
    assert isinstance(req, GetRequestNormal)
    assert req.attribute == CosemAttributeDescriptor(ClassId.CLOCK, CLOCK, ClockAttr.TIME)
    assert req.access_selection is None
    assert req.invoke_id_and_priority == 0
    assert GetRequestNormal(req.attribute, invoke_id_and_priority=0).to_bytes() == raw


def test_invoke_id_and_priority_bits() -> None:
    assert make_invoke_id_and_priority(1) == 0xC1
    assert make_invoke_id_and_priority(5, confirmed=False, high_priority=False) == 0x05
    assert (
        GetRequestNormal(
            CosemAttributeDescriptor(8, CLOCK, 2), invoke_id_and_priority=0xC7
        ).invoke_id
        == 7
    )
    with pytest.raises(CosemEncodeError):
        make_invoke_id_and_priority(16)


def test_get_response_with_clock_value_and_error() -> None:
    when = datetime(2026, 11, 25, 13, 5, 7, 250000, tzinfo=timezone(timedelta(hours=1)))
    resp = GetResponseNormal(DlmsData.date_time(when))
    raw = resp.to_bytes()
    assert raw.hex().upper() == "C401C1001907EA0B19030D050719FFC400"
    back = decode_apdu(raw)
    assert isinstance(back, GetResponseNormal) and isinstance(back.result, DlmsData)
    assert back.result.to_python() == when
    denied = GetResponseNormal(DataAccessResult.READ_WRITE_DENIED)
    assert denied.to_bytes() == bytes.fromhex("C401C10103")
    assert decode_apdu(bytes.fromhex("C401C1010D")) == GetResponseNormal(
        DataAccessResult.SCOPE_OF_ACCESS_VIOLATED
    )


def test_set_and_action_vectors() -> None:
    assert SetResponseNormal(DataAccessResult.SUCCESS).to_bytes() == bytes.fromhex("C501C100")
    act = ActionRequestNormal(
        CosemMethodDescriptor(15, ObisCode(0, 0, 40, 0, 0, 255), 1),
        DlmsData.octet_string(bytes(17)),
    )
    raw = act.to_bytes()
    assert raw.hex().upper().startswith("C301C1000F0000280000FF010109")
    assert decode_apdu(raw) == act
    resp = ActionResponseNormal(ActionResult.SUCCESS, DlmsData.octet_string(b"\x10abc"))
    assert resp.to_bytes() == bytes.fromhex("C701C1000100090410616263")
    assert decode_apdu(bytes.fromhex("C701C10300")) == ActionResponseNormal(
        ActionResult.READ_WRITE_DENIED
    )


def test_exception_response_invocation_counter_error() -> None:
    raw = bytes.fromhex("D8010600000102")
    exc = decode_apdu(raw)
    assert exc == ExceptionResponse(
        StateError.SERVICE_NOT_ALLOWED, ServiceError.INVOCATION_COUNTER_ERROR, 0x102
    )
    assert exc.to_bytes() == raw
    with pytest.raises(CosemEncodeError):
        ExceptionResponse(StateError.SERVICE_NOT_ALLOWED, ServiceError.OTHER_REASON, 5)


def test_aarq_hls_gmac_layout() -> None:
    aarq = AARQ(
        application_context_name=ApplicationContextName.LOGICAL_NAME_WITH_CIPHERING.oid,
        calling_ap_title=bytes.fromhex("4D4D4D0000BC614E"),
        sender_acse_requirements=True,
        mechanism_name=AuthenticationMechanism.HLS_GMAC.oid,
        calling_authentication_value=b"K56iVagY",
        user_information=bytes.fromhex(V3_INITIATE_REQUEST),
    )
    raw = aarq.to_bytes()
    assert raw.hex().upper() == (
        "6053A109060760857405080103A60A04084D4D4D0000BC614E8A0207808B0760857405080205"
        "AC0A80084B35366956616759BE21041F" + V3_INITIATE_REQUEST
    )
    back = AARQ.from_bytes(raw)
    assert back == aarq
    assert back.mechanism is AuthenticationMechanism.HLS_GMAC
    assert back.context is ApplicationContextName.LOGICAL_NAME_WITH_CIPHERING
    assert isinstance(decode_apdu(back.user_information or b""), InitiateRequest)


def test_aare_rejection_and_release() -> None:
    aare = AARE(
        result=AssociationResult.REJECTED_PERMANENT,
        result_source_diagnostic=AcseServiceUserDiagnostic.AUTHENTICATION_FAILURE,
    )
    raw = aare.to_bytes()
    assert raw.hex().upper() == "6117A109060760857405080101A203020101A305A10302010D"
    assert decode_apdu(raw) == aare
    assert RLRQ().to_bytes() == bytes.fromhex("6203800100")
    assert RLRE().to_bytes() == bytes.fromhex("6303800100")
    assert decode_apdu(bytes.fromhex("6300")) == RLRE(reason=None)


def test_ciphered_tags_come_back_opaque() -> None:
    v1 = bytes.fromhex("C81E3001234567411312FF935A47566827C467BC7D825C3BE4A77C3FCC056B6B")
    apdu = decode_apdu(v1)
    assert apdu == OpaqueCipheredApdu(0xC8, v1)
    assert apdu.kind == "glo-get-request"
    assert isinstance(decode_apdu(b"\x21\x00"), OpaqueCipheredApdu)


def test_obis_parsing_forms() -> None:
    clock = ObisCode(0, 0, 1, 0, 0, 255)
    assert ObisCode.parse("0.0.1.0.0.255") == clock
    assert ObisCode.parse("0-0:1.0.0.255") == clock
    assert ObisCode.parse("1-0:1.8.0*255") == ObisCode(1, 0, 1, 8, 0, 255)
    assert ObisCode.from_bytes(bytes.fromhex("0000010000FF")) == clock
    assert str(clock) == "0.0.1.0.0.255" and clock.iec() == "0-0:1.0.0.255"
    assert clock.to_bytes() == bytes.fromhex("0000010000FF")
    for bad in ("0.0.1.0.0", "0.0.1.0.0.256", "a.b.c.d.e.f", "0-0:1.0.0", ""):
        with pytest.raises(InvalidValue, match="OBIS"):
            ObisCode.parse(bad)
    with pytest.raises(BadLength):
        ObisCode.from_bytes(b"\x00" * 5)


def test_cosem_date_time_deviation_follows_blue_book() -> None:
    cet = datetime(2024, 3, 1, 12, 0, tzinfo=timezone(timedelta(hours=1)))
    dt = CosemDateTime.from_datetime(cet)
    assert dt.deviation == -60
    assert dt.date.weekday == 5
    assert dt.to_datetime() == cet
    naive = CosemDateTime.from_datetime(datetime(2024, 3, 1, 12, 0))
    assert naive.deviation == -0x8000 and naive.to_datetime().tzinfo is None
    wildcard = CosemDateTime.from_bytes(bytes.fromhex("FFFFFFFFFFFFFFFFFF8000FF"))
    assert DlmsData.date_time(wildcard).to_python() == wildcard
    with pytest.raises(InvalidValue):
        wildcard.to_datetime()
    with pytest.raises(InvalidValue, match="month"):
        CosemDateTime.from_bytes(bytes.fromhex("07E80D01FF0C000000FFC400"))


def test_conformance_ber_bit_string() -> None:
    c = Conformance.GET | Conformance.SET | Conformance.ACTION | Conformance.GENERAL_PROTECTION
    assert c.to_ber() == bytes.fromhex("5F1F0400400019")
    assert Conformance.from_ber(c.to_ber()) == c
    with pytest.raises(InvalidValue, match="length"):
        Conformance.from_ber(bytes.fromhex("5F1F03000000"))


def test_oid_encoding() -> None:
    assert ApplicationContextName.LOGICAL_NAME_WITH_CIPHERING.oid.content() == bytes.fromhex(
        "60857405080103"
    )
    assert AuthenticationMechanism.HLS_ECDSA.oid.content() == bytes.fromhex("60857405080207")
    assert str(AuthenticationMechanism.LLS.oid) == "2.16.756.5.8.2.1"
    assert ObjectIdentifier.from_content(bytes.fromhex("2A864886F70D")).arcs == (1, 2, 840, 113549)
    assert AuthenticationMechanism.from_oid(ObjectIdentifier.parse("1.2.3")) is None
    with pytest.raises(InvalidValue):
        ObjectIdentifier.from_content(b"\x60\x85")


def test_axdr_length_forms() -> None:
    for size, prefix in ((0x7F, "7F"), (0x80, "8180"), (0x100, "820100"), (0x10000, "83010000")):
        raw = DlmsData.octet_string(bytes(size)).to_bytes()
        assert raw[1 : 1 + len(prefix) // 2].hex().upper() == prefix
        assert decode_data(raw) == (DlmsData.octet_string(bytes(size)), len(raw))


@pytest.mark.parametrize(
    ("hexdata", "error", "words"),
    [
        ("", TruncatedData, "data type tag"),
        ("12 00", TruncatedData, "long-unsigned"),
        ("09 05 0102", BadLength, "exceeds"),
        ("09 85 0000000001", BadLength, "not a valid length"),
        ("01 84 FFFFFFFF", BadLength, "cannot fit"),
        ("07 00", UnknownTag, "type tag 7"),
        ("13 00", UnsupportedEncoding, "compact-array"),
        ("0C 01 FF", InvalidValue, "UTF-8"),
        ("01 02 11 00 12 0000", InvalidValue, "same type"),
    ],
)
def test_data_errors_name_problem_and_offset(hexdata: str, error: type, words: str) -> None:
    with pytest.raises(error, match=words) as info:
        decode_data(bytes.fromhex(hexdata.replace(" ", "")))
    assert "offset" in str(info.value)
    assert isinstance(info.value, CosemDecodeError) and isinstance(info.value, UsageError)


@pytest.mark.parametrize(
    ("hexdata", "error", "words"),
    [
        ("99", UnknownTag, "0x99"),
        ("C009", UnknownTag, "get-request choice 9"),
        ("C00100", TruncatedData, "class id"),
        ("C0010000080000010000FF020000", BadLength, "trailing"),
        ("C0010000080000010000FF0205", InvalidValue, "presence flag"),
        ("C401C10163", InvalidValue, "data-access-result 99"),
        ("0800065F1F0300007C1F04000007", InvalidValue, "conformance"),
        ("6103A10100", InvalidValue, "no result"),
        ("6004A1020600", InvalidValue, "object identifier is empty"),
        ("600EA1050603608574A1050603608574", InvalidValue, "twice"),
    ],
)
def test_apdu_errors_name_problem(hexdata: str, error: type, words: str) -> None:
    with pytest.raises(error, match=words):
        decode_apdu(bytes.fromhex(hexdata))


def test_values_checked_at_construction() -> None:
    with pytest.raises(CosemEncodeError):
        DlmsData.unsigned(256)
    with pytest.raises(CosemEncodeError):
        DlmsData.long(True)
    with pytest.raises(CosemEncodeError):
        DlmsData.array([DlmsData.unsigned(1), DlmsData.long(1)])
    with pytest.raises(CosemEncodeError):
        DlmsData.float32(1e39)
    with pytest.raises(CosemEncodeError):
        DlmsData(DataType.COMPACT_ARRAY, b"")
    with pytest.raises(CosemEncodeError):
        GetRequestNormal(CosemAttributeDescriptor(70000, CLOCK, 2)).to_bytes()


def test_secret_fields_are_flagged_for_serialisers() -> None:
    from dataclasses import fields

    flagged = {
        cls.__name__: {f.name for f in fields(cls) if f.metadata.get("secret")}
        for cls in (InitiateRequest, AARQ, AARE, RLRQ)
    }
    assert flagged == {
        "InitiateRequest": {"dedicated_key"},
        "AARQ": {"calling_authentication_value", "user_information"},
        "AARE": {"responding_authentication_value"},
        "RLRQ": {"user_information"},
    }
