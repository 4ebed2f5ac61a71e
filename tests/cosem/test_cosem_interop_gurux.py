"""Interop of the A-XDR data codec against gurux-dlms 1.0.203, both directions,
for every data type gurux can write (compact-array excluded on purpose)."""

from __future__ import annotations

import datetime as dt

import pytest

pytest.importorskip("gurux_dlms")

from gurux_dlms import GXArray, GXBitString, GXByteBuffer, GXDateTime, GXDLMSSettings, GXStructure
from gurux_dlms.enums import DataType as GxType
from gurux_dlms.internal._GXCommon import _GXCommon
from gurux_dlms.internal._GXDataInfo import _GXDataInfo

from metercert.cosem import CosemDateTime, DataType, DlmsData, decode_data

UTC_PLUS_2 = dt.timezone(dt.timedelta(hours=2))
WHEN = dt.datetime(2024, 6, 1, 8, 30, 15, tzinfo=UTC_PLUS_2)


def _gurux_encode(gx_type: GxType, value: object) -> bytes:
    buf = GXByteBuffer()
    _GXCommon.setData(GXDLMSSettings(True, None), buf, gx_type, value)
    return bytes(buf.array())


def _gurux_decode(raw: bytes) -> object:
    return _GXCommon.getData(GXDLMSSettings(True, None), GXByteBuffer(raw), _GXDataInfo())


GURUX_WRITES = [
    (GxType.NONE, None, DlmsData.null()),
    (GxType.BOOLEAN, True, DlmsData.boolean(True)),
    # gurux rounds the bit count up to whole bytes, so use a whole byte here
    (GxType.BITSTRING, GXBitString("10100110"), DlmsData.bit_string("10100110")),
    (GxType.INT32, -5, DlmsData.double_long(-5)),
    (GxType.UINT32, 4_000_000_000, DlmsData.double_long_unsigned(4_000_000_000)),
    (GxType.OCTET_STRING, bytes(300), DlmsData.octet_string(bytes(300))),
    (GxType.STRING, "LGZ meter", DlmsData.visible_string("LGZ meter")),
    (GxType.STRING_UTF8, "Zähler", DlmsData.utf8_string("Zähler")),
    (GxType.BCD, 0x12, DlmsData.bcd(0x12)),
    (GxType.INT8, -1, DlmsData.integer(-1)),
    (GxType.INT16, -300, DlmsData.long(-300)),
    (GxType.UINT8, 200, DlmsData.unsigned(200)),
    (GxType.UINT16, 65535, DlmsData.long_unsigned(65535)),
    (GxType.INT64, -(2**62), DlmsData.long64(-(2**62))),
    (GxType.UINT64, 2**63, DlmsData.long64_unsigned(2**63)),
    (GxType.ENUM, 8, DlmsData.enum(8)),
    (GxType.FLOAT32, 0.5, DlmsData.float32(0.5)),
    (GxType.FLOAT64, -2.25, DlmsData.float64(-2.25)),
]


@pytest.mark.parametrize(("gx_type", "value", "expected"), GURUX_WRITES, ids=lambda x: str(x)[:20])
def test_gurux_encoded_scalars_decode_with_ours(
    gx_type: GxType, value: object, expected: DlmsData
) -> None:
    raw = _gurux_encode(gx_type, value)
    assert decode_data(raw) == (expected, len(raw))
    assert expected.to_bytes() == raw


def test_gurux_containers_decode_with_ours() -> None:
    inner = GXArray()
    inner.extend([1, 2, 3])
    st = GXStructure()
    st.extend([inner, "abc", b"\x01\x02"])
    buf = GXByteBuffer()
    settings = GXDLMSSettings(True, None)
    _GXCommon.setData(settings, buf, GxType.STRUCTURE, st)
    value, _ = decode_data(bytes(buf.array()))
    assert value.type is DataType.STRUCTURE
    assert value.to_python()[1:] == ["abc", b"\x01\x02"]
    assert value.to_python()[0] == [1, 2, 3]


def test_gurux_date_time_matches_ours() -> None:
    raw = _gurux_encode(GxType.DATETIME, GXDateTime(WHEN))
    value, _ = decode_data(raw)
    cosem: CosemDateTime = value.value
    assert cosem.deviation == -120
    assert (cosem.time.hour, cosem.time.minute, cosem.time.second) == (8, 30, 15)
    assert value.to_python() == WHEN


@pytest.mark.parametrize(
    ("ours", "check"),
    [
        (DlmsData.boolean(True), lambda v: v is True),
        (DlmsData.double_long(-5), lambda v: int(v) == -5),
        (DlmsData.long64_unsigned(2**63), lambda v: int(v) == 2**63),
        (DlmsData.long(-300), lambda v: int(v) == -300),
        (DlmsData.enum(3), lambda v: int(v) == 3),
        (DlmsData.float32(0.5), lambda v: float(v) == 0.5),
        (DlmsData.float64(-2.25), lambda v: float(v) == -2.25),
        (DlmsData.octet_string(bytes(200)), lambda v: bytes(v) == bytes(200)),
        (DlmsData.visible_string("abc"), lambda v: v == "abc"),
        (DlmsData.bit_string("1010011"), lambda v: str(v) == "1010011"),
        (
            DlmsData.structure([DlmsData.unsigned(1), DlmsData.array([DlmsData.long(2)] * 3)]),
            lambda v: int(v[0]) == 1 and [int(x) for x in v[1]] == [2, 2, 2],
        ),
        (
            DlmsData.date_time(WHEN),
            lambda v: v.value.replace(microsecond=0) == WHEN,
        ),
    ],
    ids=lambda x: getattr(x, "type", "check").__str__()[:24],
)
def test_our_encoding_decodes_with_gurux(ours: DlmsData, check) -> None:  # type: ignore[no-untyped-def]
    assert check(_gurux_decode(ours.to_bytes()))


# -- APDUs: gurux's client writes, ours reads; ours writes, gurux's translator reads ----


def _gurux_lls_client():  # type: ignore[no-untyped-def]
    from gurux_dlms import GXDLMSClient
    from gurux_dlms.enums import Authentication, InterfaceType

    return GXDLMSClient(True, 16, 1, Authentication.LOW, "12345678", InterfaceType.WRAPPER)


def test_gurux_client_aarq_and_get_decode_with_ours() -> None:
    from gurux_dlms.objects import GXDLMSClock

    from metercert.cosem import (
        AARQ,
        ApplicationContextName,
        AuthenticationMechanism,
        Conformance,
        GetRequestNormal,
        InitiateRequest,
        decode_apdu,
    )

    client = _gurux_lls_client()
    frame = bytes(client.aarqRequest()[0])
    aarq = decode_apdu(frame[8:])  # strip the 8-byte wrapper header
    assert isinstance(aarq, AARQ)
    assert aarq.context is ApplicationContextName.LOGICAL_NAME
    assert aarq.mechanism is AuthenticationMechanism.LLS
    assert aarq.calling_authentication_value == b"12345678"
    init = decode_apdu(aarq.user_information or b"")
    assert isinstance(init, InitiateRequest)
    assert Conformance.GET in init.proposed_conformance
    assert aarq.to_bytes() == frame[8:]

    get = decode_apdu(bytes(client.read(GXDLMSClock("0.0.1.0.0.255"), 2)[0])[8:])
    assert isinstance(get, GetRequestNormal)
    assert (get.attribute.class_id, str(get.attribute.instance), get.attribute.attribute_id) == (
        8,
        "0.0.1.0.0.255",
        2,
    )


def test_our_apdus_read_by_gurux_translator() -> None:
    from gurux_dlms import GXDLMSTranslator
    from gurux_dlms.enums import TranslatorOutputType

    from metercert.cosem import (
        AARE,
        AARQ,
        DEFAULT_LN_CONFORMANCE,
        AcseServiceUserDiagnostic,
        ApplicationContextName,
        AssociationResult,
        AuthenticationMechanism,
        CosemAttributeDescriptor,
        GetRequestNormal,
        InitiateRequest,
        InitiateResponse,
        ObisCode,
    )

    translator = GXDLMSTranslator(TranslatorOutputType.SIMPLE_XML)

    def xml(apdu: bytes) -> str:
        return str(translator.pduToXml(GXByteBuffer(apdu)))

    aarq = AARQ(
        ApplicationContextName.LOGICAL_NAME_WITH_CIPHERING.oid,
        bytes.fromhex("4D4D4D0000BC614E"),
        True,
        AuthenticationMechanism.HLS_GMAC.oid,
        b"K56iVagY",
        InitiateRequest(DEFAULT_LN_CONFORMANCE, 1200).to_bytes(),
    )
    text = xml(aarq.to_bytes())
    for needle in (
        '<ApplicationContextName Value="LN_WITH_CIPHERING" />',
        '<CallingAPTitle Value="4D4D4D0000BC614E" />',
        '<MechanismName Value="HighGmac" />',
        '<ProposedMaxPduSize Value="04B0" />',
        '<ConformanceBit Name="BlockTransferWithAction" />',
    ):
        assert needle in text
    aare = AARE(
        AssociationResult.REJECTED_PERMANENT,
        AcseServiceUserDiagnostic.AUTHENTICATION_FAILURE,
        responding_ap_title=b"12345678",
        user_information=InitiateResponse(DEFAULT_LN_CONFORMANCE, 512).to_bytes(),
    )
    text = xml(aare.to_bytes())
    assert '<AssociationResult Value="01" />' in text
    assert '<ACSEServiceUser Value="0D" />' in text
    assert '<NegotiatedMaxPduSize Value="0200" />' in text
    get = GetRequestNormal(CosemAttributeDescriptor(8, ObisCode.parse("0.0.1.0.0.255"), 2))
    text = xml(get.to_bytes())
    assert '<InstanceId Value="0000010000FF" />' in text and '<ClassId Value="0008" />' in text


def test_our_data_notification_read_by_gurux_translator() -> None:
    from gurux_dlms import GXDLMSTranslator
    from gurux_dlms.enums import TranslatorOutputType

    from metercert.cosem import CosemDateTime, DataNotification

    push = DataNotification(
        DlmsData.structure([DlmsData.octet_string(b"LGZ1"), DlmsData.double_long_unsigned(42)]),
        long_invoke_id_and_priority=0x12345678,
        date_time=CosemDateTime.from_datetime(WHEN).to_bytes(),
    )
    raw = push.to_bytes()
    assert raw[:6].hex().upper() == "0F123456780C"
    text = str(GXDLMSTranslator(TranslatorOutputType.SIMPLE_XML).pduToXml(GXByteBuffer(raw)))
    assert '<LongInvokeIdAndPriority Value="12345678" />' in text
    assert '<DateTime Value="07E8060106081E0F00FF8800" />' in text
    assert "4C475A31" in text and "0000002A" in text
