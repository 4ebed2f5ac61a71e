"""Interop against dlms-cosem 25.1.0 (pwitab/dlms-cosem): bytes its classes write
decode with ours to the same fields, and bytes we write decode with theirs.

Avoided peer defects: its GetResponseNormal.to_bytes raises TypeError and its
ExceptionResponse.to_bytes writes the invocation counter as one byte, so those two
are only tested in the direction ours -> theirs. Its InitiateRequest.from_bytes
loses the general-protection conformance bit (also on its own output), so that bit
is checked only theirs -> ours. Its data classes cannot encode null, boolean, floats,
utf8-string or date (and cannot parse floats); gurux covers those types. Its
DataNotification.to_bytes writes the date-time as 0x01 + 12 bytes instead of a
length-prefixed octet string (0x0C + 12 bytes), so only ours -> theirs is tested.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

pytest.importorskip("dlms_cosem")

from dlms_cosem import cosem as dc_cosem
from dlms_cosem import dlms_data as dd
from dlms_cosem import enumerations as en
from dlms_cosem import time as dc_time
from dlms_cosem import utils as dc_utils
from dlms_cosem.protocol import acse, xdlms

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
    DataNotification,
    DlmsData,
    ExceptionResponse,
    GetRequestNext,
    GetRequestNormal,
    GetResponseNormal,
    GetResponseWithDatablock,
    InitiateRequest,
    InitiateResponse,
    ObisCode,
    ReleaseRequestReason,
    ServiceError,
    SetRequestNormal,
    SetResponseNormal,
    StateError,
    decode_apdu,
    decode_data,
    make_invoke_id_and_priority,
)

SYSTEM_TITLE = bytes.fromhex("4D4D4D0000BC614E")
SERVER_TITLE = bytes.fromhex("4D4D4D0000000001")
CLOCK = ObisCode(0, 0, 1, 0, 0, 255)


def _their_conformance() -> xdlms.Conformance:
    return xdlms.Conformance(
        general_protection=True,
        block_transfer_with_get_or_read=True,
        get=True,
        set=True,
        action=True,
        selective_access=True,
    )


OUR_CONFORMANCE = (
    Conformance.GENERAL_PROTECTION
    | Conformance.BLOCK_TRANSFER_WITH_GET_OR_READ
    | Conformance.GET
    | Conformance.SET
    | Conformance.ACTION
    | Conformance.SELECTIVE_ACCESS
)


def _their_initiate_request() -> xdlms.InitiateRequest:
    return xdlms.InitiateRequest(
        proposed_conformance=_their_conformance(),
        client_max_receive_pdu_size=1200,
        dedicated_key=bytes(range(16)),
    )


# -- theirs -> ours -------------------------------------------------------------------


def test_their_hls_gmac_aarq_decodes_with_ours() -> None:
    theirs = acse.ApplicationAssociationRequest(
        user_information=acse.UserInformation(content=_their_initiate_request()),
        system_title=SYSTEM_TITLE,
        authentication=en.AuthenticationMechanism.HLS_GMAC,
        ciphered=True,
        authentication_value=b"K56iVagY",
    )
    ours = decode_apdu(theirs.to_bytes())
    assert isinstance(ours, AARQ)
    assert ours.context is ApplicationContextName.LOGICAL_NAME_WITH_CIPHERING
    assert ours.calling_ap_title == SYSTEM_TITLE
    assert ours.sender_acse_requirements is True
    assert ours.mechanism is AuthenticationMechanism.HLS_GMAC
    assert ours.calling_authentication_value == b"K56iVagY"
    init = decode_apdu(ours.user_information or b"")
    assert init == InitiateRequest(OUR_CONFORMANCE, 1200, 6, bytes(range(16)))
    assert ours.to_bytes() == theirs.to_bytes()


def test_their_plain_aarq_decodes_with_ours() -> None:
    theirs = acse.ApplicationAssociationRequest(
        user_information=acse.UserInformation(content=_their_initiate_request()),
        authentication=en.AuthenticationMechanism.LLS,
        authentication_value=b"12345678",
    )
    ours = AARQ.from_bytes(theirs.to_bytes())
    assert ours.context is ApplicationContextName.LOGICAL_NAME
    assert ours.mechanism is AuthenticationMechanism.LLS
    assert ours.calling_authentication_value == b"12345678"
    assert ours.calling_ap_title is None


@pytest.mark.parametrize(
    ("result", "diag", "our_result", "our_diag"),
    [
        (
            en.AssociationResult.ACCEPTED,
            en.AcseServiceUserDiagnostics.NULL,
            AssociationResult.ACCEPTED,
            AcseServiceUserDiagnostic.NULL,
        ),
        (
            en.AssociationResult.REJECTED_PERMANENT,
            en.AcseServiceUserDiagnostics.AUTHENTICATION_FAILED,
            AssociationResult.REJECTED_PERMANENT,
            AcseServiceUserDiagnostic.AUTHENTICATION_FAILURE,
        ),
    ],
)
def test_their_aare_decodes_with_ours(result, diag, our_result, our_diag) -> None:  # type: ignore[no-untyped-def]
    irs = xdlms.InitiateResponse(
        negotiated_conformance=_their_conformance(), server_max_receive_pdu_size=512
    )
    theirs = acse.ApplicationAssociationResponse(
        result=result,
        result_source_diagnostics=diag,
        ciphered=True,
        authentication=en.AuthenticationMechanism.HLS_GMAC,
        system_title=SERVER_TITLE,
        authentication_value=b"StoC" * 4,
        user_information=acse.UserInformation(content=irs),
    )
    ours = AARE.from_bytes(theirs.to_bytes())
    assert ours.result is our_result
    assert ours.result_source_diagnostic is our_diag
    assert ours.responding_ap_title == SERVER_TITLE
    assert ours.mechanism is AuthenticationMechanism.HLS_GMAC
    assert ours.responding_authentication_value == b"StoC" * 4
    assert ours.responder_acse_requirements is True
    assert decode_apdu(ours.user_information or b"") == InitiateResponse(OUR_CONFORMANCE, 512)
    assert ours.to_bytes() == theirs.to_bytes()


def test_their_xdlms_requests_decode_with_ours() -> None:
    iip = xdlms.InvokeIdAndPriority(invoke_id=3, confirmed=True, high_priority=True)
    our_iip = make_invoke_id_and_priority(3)
    attr = dc_cosem.CosemAttribute(en.CosemInterface.CLOCK, dc_cosem.Obis(0, 0, 1, 0, 0, 255), 2)
    get = xdlms.GetRequestNormal(attr, invoke_id_and_priority=iip)
    assert decode_apdu(get.to_bytes()) == GetRequestNormal(
        CosemAttributeDescriptor(8, CLOCK, 2), invoke_id_and_priority=our_iip
    )
    nxt = xdlms.GetRequestNext(block_number=9, invoke_id_and_priority=iip)
    assert decode_apdu(nxt.to_bytes()) == GetRequestNext(9, our_iip)
    value = dd.UnsignedIntegerData(7).to_bytes()
    set_ = xdlms.SetRequestNormal(attr, data=value, invoke_id_and_priority=iip)
    assert decode_apdu(set_.to_bytes()) == SetRequestNormal(
        CosemAttributeDescriptor(8, CLOCK, 2), DlmsData.unsigned(7), invoke_id_and_priority=our_iip
    )
    method = dc_cosem.CosemMethod(
        en.CosemInterface.DISCONNECT_CONTROL, dc_cosem.Obis(0, 0, 96, 3, 10, 255), 1
    )
    act = xdlms.ActionRequestNormal(
        method, data=dd.IntegerData(0).to_bytes(), invoke_id_and_priority=iip
    )
    assert decode_apdu(act.to_bytes()) == ActionRequestNormal(
        CosemMethodDescriptor(70, ObisCode(0, 0, 96, 3, 10, 255), 1),
        DlmsData.integer(0),
        our_iip,
    )


def test_their_responses_and_release_decode_with_ours() -> None:
    iip = xdlms.InvokeIdAndPriority(invoke_id=1, confirmed=True, high_priority=True)
    assert decode_apdu(
        xdlms.SetResponseNormal(en.DataAccessResult.READ_WRITE_DENIED, iip).to_bytes()
    ) == SetResponseNormal(DataAccessResult.READ_WRITE_DENIED)
    exc = xdlms.ExceptionResponse(
        en.StateException.SERVICE_UNKNOWN, en.ServiceException.OTHER_REASON
    )
    assert decode_apdu(exc.to_bytes()) == ExceptionResponse(
        StateError.SERVICE_UNKNOWN, ServiceError.OTHER_REASON
    )
    rlrq = acse.ReleaseRequest(reason=en.ReleaseRequestReason.NORMAL)
    assert decode_apdu(rlrq.to_bytes()) == RLRQ(ReleaseRequestReason.NORMAL)
    assert decode_apdu(acse.ReleaseRequest().to_bytes()) == RLRQ(reason=None)
    assert (
        decode_apdu(acse.ReleaseResponse(reason=en.ReleaseResponseReason.NORMAL).to_bytes())
        == RLRE()
    )


def test_their_data_values_decode_with_ours() -> None:
    cases = [
        (dd.DoubleLongData(-5), -5),
        (dd.DoubleLongUnsignedData(4_000_000_000), 4_000_000_000),
        (dd.OctetStringData(b"\x00\x01"), b"\x00\x01"),
        (dd.VisibleStringData("meter"), "meter"),
        (dd.IntegerData(-1), -1),
        (dd.LongData(-300), -300),
        (dd.UnsignedLongData(65535), 65535),
        (dd.Long64Data(-(2**40)), -(2**40)),
        (dd.UnsignedLong64Data(2**63), 2**63),
        (dd.EnumData(3), 3),
        (
            dd.DataStructure([dd.UnsignedLongData(5), dd.VisibleStringData("abc")]),
            [5, "abc"],
        ),
        (dd.DataArray([dd.UnsignedIntegerData(1), dd.UnsignedIntegerData(2)]), [1, 2]),
    ]
    for theirs, expected in cases:
        raw = theirs.to_bytes()
        value, end = decode_data(raw)
        assert end == len(raw)
        assert value.to_python() == expected, type(theirs).__name__


def test_date_time_deviation_convention_matches_theirs() -> None:
    when = datetime(2024, 6, 1, 8, 30, 15, tzinfo=timezone(timedelta(hours=2)))
    ours = CosemDateTime.from_bytes(dc_time.datetime_to_bytes(when))
    assert ours.deviation == -120
    assert ours.to_datetime() == when
    theirs, _status = dc_time.datetime_from_bytes(CosemDateTime.from_datetime(when).to_bytes())
    assert theirs == when


# -- ours -> theirs -------------------------------------------------------------------


def test_our_aarq_decodes_with_theirs() -> None:
    ours = AARQ(
        application_context_name=ApplicationContextName.LOGICAL_NAME_WITH_CIPHERING.oid,
        calling_ap_title=SYSTEM_TITLE,
        sender_acse_requirements=True,
        mechanism_name=AuthenticationMechanism.HLS_GMAC.oid,
        calling_authentication_value=b"CtoS1234",
        user_information=InitiateRequest(OUR_CONFORMANCE, 1200, dedicated_key=bytes(16)).to_bytes(),
    )
    theirs = acse.ApplicationAssociationRequest.from_bytes(ours.to_bytes())
    assert theirs.ciphered is True
    assert theirs.system_title == SYSTEM_TITLE
    assert theirs.authentication == en.AuthenticationMechanism.HLS_GMAC
    assert theirs.authentication_value == b"CtoS1234"
    init = theirs.user_information.content
    assert init.dedicated_key == bytes(16)
    assert init.client_max_receive_pdu_size == 1200
    # dlms-cosem drops general-protection when it parses an InitiateRequest (even its
    # own), so only the other bits are compared
    assert init.proposed_conformance.get and init.proposed_conformance.selective_access
    assert init.proposed_conformance.block_transfer_with_get_or_read
    assert not init.proposed_conformance.multiple_references


def test_our_aare_decodes_with_theirs() -> None:
    ours = AARE(
        result=AssociationResult.REJECTED_PERMANENT,
        result_source_diagnostic=AcseServiceUserDiagnostic.AUTHENTICATION_MECHANISM_NAME_REQUIRED,
        application_context_name=ApplicationContextName.LOGICAL_NAME_WITH_CIPHERING.oid,
        responding_ap_title=SERVER_TITLE,
        responder_acse_requirements=True,
        mechanism_name=AuthenticationMechanism.HLS_GMAC.oid,
        responding_authentication_value=b"S" * 16,
        user_information=InitiateResponse(OUR_CONFORMANCE, 1024).to_bytes(),
    )
    theirs = acse.ApplicationAssociationResponse.from_bytes(ours.to_bytes())
    assert theirs.result == en.AssociationResult.REJECTED_PERMANENT
    assert theirs.result_source_diagnostics == en.AcseServiceUserDiagnostics(12)
    assert theirs.system_title == SERVER_TITLE
    assert theirs.authentication_value == b"S" * 16
    assert theirs.user_information.content.server_max_receive_pdu_size == 1024


def test_our_xdlms_apdus_decode_with_theirs() -> None:
    get = GetRequestNormal(CosemAttributeDescriptor(8, CLOCK, 2), invoke_id_and_priority=0xC2)
    theirs = xdlms.GetRequestFactory.from_bytes(get.to_bytes())
    assert theirs.cosem_attribute.interface == en.CosemInterface.CLOCK
    assert theirs.cosem_attribute.attribute == 2
    assert theirs.invoke_id_and_priority.invoke_id == 2

    value = DlmsData.structure([DlmsData.long_unsigned(5), DlmsData.octet_string(b"ab")])
    resp = xdlms.GetResponseFactory.from_bytes(GetResponseNormal(value).to_bytes())
    assert dc_utils.parse_as_dlms_data(resp.data) == [5, bytearray(b"ab")]
    err = xdlms.GetResponseFactory.from_bytes(
        GetResponseNormal(DataAccessResult.OBJECT_UNDEFINED).to_bytes()
    )
    assert err.error == en.DataAccessResult.OBJECT_UNDEFINED
    block = xdlms.GetResponseFactory.from_bytes(
        GetResponseWithDatablock(True, 4, b"xyz").to_bytes()
    )
    assert isinstance(block, xdlms.GetResponseLastBlock)
    assert (block.block_number, bytes(block.data)) == (4, b"xyz")

    act = xdlms.ActionResponseFactory.from_bytes(
        ActionResponseNormal(ActionResult.SUCCESS, DlmsData.octet_string(b"StoC")).to_bytes()
    )
    assert act.status == en.ActionResultStatus.SUCCESS
    assert bytes(act.data) == DlmsData.octet_string(b"StoC").to_bytes()

    exc = xdlms.ExceptionResponse.from_bytes(
        ExceptionResponse(
            StateError.SERVICE_NOT_ALLOWED, ServiceError.INVOCATION_COUNTER_ERROR, 77
        ).to_bytes()
    )
    assert exc.service_error == en.ServiceException.INVOCATION_COUNTER_ERROR
    assert exc.invocation_counter_data == 77
    assert (
        acse.ReleaseResponse.from_bytes(RLRE().to_bytes()).reason == en.ReleaseResponseReason.NORMAL
    )


def test_our_data_values_decode_with_theirs() -> None:
    value = DlmsData.structure(
        [
            DlmsData.boolean(False),
            DlmsData.double_long(-7),
            DlmsData.long64_unsigned(2**63),
            DlmsData.enum(4),
            DlmsData.visible_string("LGZ"),
            DlmsData.octet_string(bytes(130)),  # long-form length 0x81
            DlmsData.array([DlmsData.long(-2), DlmsData.long(3)]),
        ]
    )
    theirs = dc_utils.parse_as_dlms_data(value.to_bytes())
    assert theirs == [False, -7, 2**63, 4, "LGZ", bytearray(130), [-2, 3]]


def test_our_data_notification_decodes_with_theirs() -> None:
    when = datetime(2024, 6, 1, 8, 30, 15, tzinfo=timezone(timedelta(hours=2)))
    push = DataNotification(
        DlmsData.structure([DlmsData.octet_string(b"LGZ1"), DlmsData.double_long_unsigned(42)]),
        long_invoke_id_and_priority=0x40000007,
        date_time=CosemDateTime.from_datetime(when).to_bytes(),
    )
    theirs = xdlms.DataNotification.from_bytes(push.to_bytes())
    assert theirs.long_invoke_id_and_priority.long_invoke_id == 7
    assert theirs.long_invoke_id_and_priority.confirmed is True
    assert theirs.date_time == when
    assert dc_utils.parse_as_dlms_data(theirs.body) == [bytearray(b"LGZ1"), 42]
