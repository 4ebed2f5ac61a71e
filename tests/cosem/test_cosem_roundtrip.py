"""Property tests: every data type and every typed APDU survives encode -> decode,
and decoding arbitrary or mutated bytes raises only CosemDecodeError."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metercert.cosem import (
    AARE,
    AARQ,
    RLRE,
    RLRQ,
    AcseServiceProviderDiagnostic,
    AcseServiceUserDiagnostic,
    ActionRequestNextPblock,
    ActionRequestNormal,
    ActionRequestWithFirstPblock,
    ActionRequestWithList,
    ActionRequestWithPblock,
    ActionResponseNextPblock,
    ActionResponseNormal,
    ActionResponseWithList,
    ActionResponseWithPblock,
    ActionResult,
    ActionResultWithData,
    ApplicationContextName,
    AssociationResult,
    AttributeReference,
    AuthenticationMechanism,
    ConfirmedServiceError,
    ConfirmedServiceErrorChoice,
    Conformance,
    CosemAttributeDescriptor,
    CosemDate,
    CosemDateTime,
    CosemMethodDescriptor,
    CosemTime,
    DataAccessResult,
    DataNotification,
    DataType,
    DlmsData,
    EventNotificationRequest,
    ExceptionResponse,
    GetRequestNext,
    GetRequestNormal,
    GetRequestWithList,
    GetResponseNormal,
    GetResponseWithDatablock,
    GetResponseWithList,
    InitiateRequest,
    InitiateResponse,
    ObisCode,
    ObjectIdentifier,
    OpaqueCipheredApdu,
    ReleaseRequestReason,
    ReleaseResponseReason,
    SelectiveAccess,
    ServiceError,
    ServiceErrorKind,
    SetRequestNormal,
    SetRequestWithDatablock,
    SetRequestWithFirstDatablock,
    SetRequestWithList,
    SetResponseDatablock,
    SetResponseLastDatablock,
    SetResponseNormal,
    SetResponseWithList,
    StateError,
    decode_apdu,
    decode_data,
)
from metercert.cosem.errors import CosemDecodeError, InvalidValue

# -- strategies ------------------------------------------------------------------

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFF_FFFF)
i8 = st.integers(-128, 127)
obis = st.builds(ObisCode, u8, u8, u8, u8, u8, u8)

dates = st.builds(
    CosemDate,
    st.one_of(u16),
    st.sampled_from([*range(1, 13), 0xFD, 0xFE, 0xFF]),
    st.sampled_from([*range(1, 32), 0xFD, 0xFE, 0xFF]),
    st.sampled_from([*range(1, 8), 0xFF]),
)
times = st.builds(
    CosemTime,
    st.sampled_from([*range(24), 0xFF]),
    st.sampled_from([*range(60), 0xFF]),
    st.sampled_from([*range(60), 0xFF]),
    st.sampled_from([*range(100), 0xFF]),
)
date_times = st.builds(
    CosemDateTime, dates, times, st.one_of(st.integers(-720, 720), st.just(-0x8000)), u8
)

_INT_RANGES = {
    DataType.DOUBLE_LONG: (-(2**31), 2**31 - 1),
    DataType.DOUBLE_LONG_UNSIGNED: (0, 2**32 - 1),
    DataType.BCD: (0, 255),
    DataType.INTEGER: (-128, 127),
    DataType.LONG: (-(2**15), 2**15 - 1),
    DataType.UNSIGNED: (0, 255),
    DataType.LONG_UNSIGNED: (0, 2**16 - 1),
    DataType.LONG64: (-(2**63), 2**63 - 1),
    DataType.LONG64_UNSIGNED: (0, 2**64 - 1),
    DataType.ENUM: (0, 255),
}


def _ints(t: DataType) -> st.SearchStrategy[DlmsData]:
    lo, hi = _INT_RANGES[t]
    return st.integers(lo, hi).map(lambda v: DlmsData(t, v))


SCALARS: dict[DataType, st.SearchStrategy[DlmsData]] = {
    DataType.NULL_DATA: st.just(DlmsData.null()),
    DataType.BOOLEAN: st.booleans().map(DlmsData.boolean),
    DataType.BIT_STRING: st.text(alphabet="01", max_size=40).map(DlmsData.bit_string),
    **{t: _ints(t) for t in _INT_RANGES},
    DataType.OCTET_STRING: st.binary(max_size=300).map(DlmsData.octet_string),
    DataType.VISIBLE_STRING: st.text(alphabet=st.characters(max_codepoint=255), max_size=40).map(
        DlmsData.visible_string
    ),
    DataType.UTF8_STRING: st.text(max_size=40).map(DlmsData.utf8_string),
    DataType.FLOAT32: st.floats(width=32, allow_nan=False).map(DlmsData.float32),
    DataType.FLOAT64: st.floats(allow_nan=False).map(DlmsData.float64),
    DataType.DATE_TIME: date_times.map(DlmsData.date_time),
    DataType.DATE: dates.map(DlmsData.date),
    DataType.TIME: times.map(DlmsData.time),
}
scalar_data = st.one_of(*SCALARS.values())


def _containers(children: st.SearchStrategy[DlmsData]) -> st.SearchStrategy[DlmsData]:
    return st.one_of(
        st.lists(children, max_size=5).map(DlmsData.structure),
        st.tuples(children, st.integers(0, 4)).map(lambda t: DlmsData.array([t[0]] * t[1])),
    )


dlms_data = st.recursive(scalar_data, _containers, max_leaves=12)

iip = u8
attr_desc = st.builds(CosemAttributeDescriptor, u16, obis, i8)
method_desc = st.builds(CosemMethodDescriptor, u16, obis, i8)
access = st.one_of(st.none(), st.builds(SelectiveAccess, u8, dlms_data))
dar = st.sampled_from(DataAccessResult)
data_result = st.one_of(dlms_data, dar)
conformance = st.integers(0, 0xFFFFFF).map(Conformance)

XDLMS_STRATEGIES = [
    st.builds(GetRequestNormal, attr_desc, access, iip),
    st.builds(GetRequestNext, u32, iip),
    st.builds(
        GetRequestWithList,
        st.lists(st.builds(AttributeReference, attr_desc, access), max_size=4).map(tuple),
        iip,
    ),
    st.builds(GetResponseNormal, data_result, iip),
    st.builds(GetResponseWithDatablock, st.booleans(), u32, st.one_of(st.binary(max_size=200), dar), iip),
    st.builds(GetResponseWithList, st.lists(data_result, max_size=4).map(tuple), iip),
    st.builds(SetRequestNormal, attr_desc, dlms_data, access, iip),
    st.builds(SetRequestWithFirstDatablock, attr_desc, st.booleans(), u32, st.binary(max_size=200), access, iip),
    st.builds(SetRequestWithDatablock, st.booleans(), u32, st.binary(max_size=200), iip),
    st.builds(SetResponseNormal, dar, iip),
    st.builds(SetResponseDatablock, u32, iip),
    st.builds(SetResponseLastDatablock, dar, u32, iip),
    st.builds(ActionRequestNormal, method_desc, st.one_of(st.none(), dlms_data), iip),
    st.builds(ActionResponseNormal, st.sampled_from(ActionResult), st.one_of(st.none(), data_result), iip),
    st.builds(EventNotificationRequest, attr_desc, dlms_data, st.one_of(st.none(), st.binary(min_size=12, max_size=12))),
    st.builds(
        ExceptionResponse,
        st.sampled_from(StateError),
        st.sampled_from([e for e in ServiceError if e is not ServiceError.INVOCATION_COUNTER_ERROR]),
    ),
    st.builds(ExceptionResponse, st.sampled_from(StateError), st.just(ServiceError.INVOCATION_COUNTER_ERROR), u32),
    st.builds(ConfirmedServiceError, st.sampled_from(ConfirmedServiceErrorChoice), st.sampled_from(ServiceErrorKind), u8),
    st.builds(
        InitiateRequest,
        conformance,
        u16,
        u8,
        st.one_of(st.none(), st.binary(min_size=16, max_size=32)),
        st.booleans(),
        st.one_of(st.none(), i8),
    ),
    st.builds(InitiateResponse, conformance, u16, u8, u16, st.one_of(st.none(), i8)),
    st.builds(ActionRequestNextPblock, u32, iip),
    st.builds(
        ActionRequestWithList,
        st.lists(method_desc, max_size=3).map(tuple),
        st.lists(dlms_data, max_size=3).map(tuple),
        iip,
    ),
    st.builds(ActionRequestWithFirstPblock, method_desc, st.booleans(), u32, st.binary(max_size=200), iip),
    st.builds(ActionRequestWithPblock, st.booleans(), u32, st.binary(max_size=200), iip),
    st.builds(ActionResponseWithPblock, st.booleans(), u32, st.binary(max_size=200), iip),
    st.builds(
        ActionResponseWithList,
        st.lists(
            st.builds(ActionResultWithData, st.sampled_from(ActionResult), st.one_of(st.none(), data_result)),
            max_size=3,
        ).map(tuple),
        iip,
    ),
    st.builds(ActionResponseNextPblock, u32, iip),
    st.builds(
        SetRequestWithList,
        st.lists(st.builds(AttributeReference, attr_desc, access), max_size=3).map(tuple),
        st.lists(dlms_data, max_size=3).map(tuple),
        iip,
    ),
    st.builds(SetResponseWithList, st.lists(dar, max_size=5).map(tuple), iip),
    st.builds(DataNotification, dlms_data, u32, st.one_of(st.just(b""), st.binary(min_size=12, max_size=12))),
]  # fmt: skip

oids = st.one_of(
    st.sampled_from(ApplicationContextName).map(lambda c: c.oid),
    st.sampled_from(AuthenticationMechanism).map(lambda m: m.oid),
    st.builds(
        lambda a, b, rest: ObjectIdentifier((a, b, *rest)),
        st.integers(0, 1),
        st.integers(0, 39),
        st.lists(st.integers(0, 2**40), max_size=6),
    ),
)
opt_bytes = st.one_of(st.none(), st.binary(max_size=200))
# unmodelled ACSE elements: context-specific tags the typed fields do not use
aarq_other = st.lists(
    st.tuples(
        st.sampled_from([0xA2, 0xA3, 0xA4, 0xA5, 0xA7, 0xA8, 0xA9, 0x9D]), st.binary(max_size=20)
    ),
    max_size=3,
    unique_by=lambda t: t[0],
).map(lambda xs: tuple(sorted(xs, key=lambda t: t[0] & 0x1F)))
aare_other = st.lists(
    st.tuples(st.sampled_from([0xA5, 0xA6, 0xA7, 0x9D]), st.binary(max_size=20)),
    max_size=3,
    unique_by=lambda t: t[0],
).map(lambda xs: tuple(sorted(xs, key=lambda t: t[0] & 0x1F)))
diagnostics = st.one_of(
    st.sampled_from(AcseServiceUserDiagnostic), st.sampled_from(AcseServiceProviderDiagnostic)
)

ACSE_STRATEGIES = [
    st.builds(
        AARQ,
        oids,
        opt_bytes,
        st.one_of(st.none(), st.booleans()),
        st.one_of(st.none(), oids),
        opt_bytes,
        opt_bytes,
        st.one_of(st.none(), st.just(b"\x07\x80")),
        aarq_other,
    ),
    st.builds(
        AARE,
        st.sampled_from(AssociationResult),
        diagnostics,
        oids,
        opt_bytes,
        st.one_of(st.none(), st.booleans()),
        st.one_of(st.none(), oids),
        opt_bytes,
        opt_bytes,
        st.one_of(st.none(), st.just(b"\x07\x80")),
        aare_other,
    ),
    st.builds(RLRQ, st.one_of(st.none(), st.sampled_from(ReleaseRequestReason)), opt_bytes),
    st.builds(RLRE, st.one_of(st.none(), st.sampled_from(ReleaseResponseReason)), opt_bytes),
]  # fmt: skip

xdlms_apdus = st.one_of(*XDLMS_STRATEGIES)
acse_apdus = st.one_of(*ACSE_STRATEGIES)
all_apdus = st.one_of(xdlms_apdus, acse_apdus)


# -- properties -------------------------------------------------------------------

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(dlms_data)
def test_data_round_trip(value: DlmsData) -> None:
    raw = value.to_bytes()
    assert decode_data(raw) == (value, len(raw))
    assert decode_data(b"\xaa" + raw + b"\xbb", 1) == (value, len(raw) + 1)


def test_strategies_cover_every_data_type() -> None:
    containers = {DataType.ARRAY, DataType.STRUCTURE, DataType.COMPACT_ARRAY}
    assert set(SCALARS) == set(DataType) - containers


@pytest.mark.parametrize("data_type", list(SCALARS), ids=lambda t: t.name.lower())
def test_each_scalar_type_round_trips(data_type: DataType) -> None:
    @settings(max_examples=25, deadline=None)
    @given(SCALARS[data_type])
    def check(value: DlmsData) -> None:
        raw = value.to_bytes()
        assert raw[0] == data_type
        assert DlmsData.from_bytes(raw) == value

    check()


@pytest.mark.parametrize("index", range(len(XDLMS_STRATEGIES) + len(ACSE_STRATEGIES)))
def test_each_apdu_class_round_trips(index: int) -> None:
    strategy = (XDLMS_STRATEGIES + ACSE_STRATEGIES)[index]

    @settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(strategy)
    def check(apdu: object) -> None:
        raw = apdu.to_bytes()  # type: ignore[attr-defined]
        assert decode_apdu(raw) == apdu

    check()


def test_every_apdu_class_has_a_strategy() -> None:
    import metercert.cosem.apdu as dispatch

    classes = set(dispatch._SINGLE.values())
    for choices in dispatch._WITH_CHOICE.values():
        classes |= set(choices.values())
    drawn: set[type] = set()

    @settings(max_examples=1, deadline=None, database=None)
    @given(st.data())
    def draw_each(data: st.DataObject) -> None:
        drawn.update(type(data.draw(s)) for s in XDLMS_STRATEGIES + ACSE_STRATEGIES)

    draw_each()
    assert classes <= drawn


@FAST
@given(xdlms_apdus)
def test_xdlms_apdu_round_trip(apdu: object) -> None:
    raw = apdu.to_bytes()  # type: ignore[attr-defined]
    assert type(apdu).from_bytes(raw) == apdu
    assert decode_apdu(raw) == apdu


@FAST
@given(acse_apdus)
def test_acse_apdu_round_trip(apdu: AARQ | AARE | RLRQ | RLRE) -> None:
    raw = apdu.to_bytes()
    assert type(apdu).from_bytes(raw) == apdu
    assert decode_apdu(raw) == apdu


def _decode_or_decode_error(raw: bytes) -> None:
    try:
        decoded = decode_apdu(raw)
    except CosemDecodeError as exc:
        assert str(exc)
        return
    # whatever decodes must encode again and decode to the same value
    if not isinstance(decoded, OpaqueCipheredApdu):
        assert decode_apdu(decoded.to_bytes()) == decoded


@settings(max_examples=600, deadline=None)
@given(st.binary(max_size=120))
def test_random_bytes_raise_only_decode_errors(raw: bytes) -> None:
    _decode_or_decode_error(raw)
    try:
        decode_data(raw)
    except CosemDecodeError:
        pass


_TAGS = [
    0x01,
    0x08,
    0x0E,
    0x0F,
    0x60,
    0x61,
    0x62,
    0x63,
    0xC0,
    0xC1,
    0xC2,
    0xC3,
    0xC4,
    0xC5,
    0xC7,
    0xD8,
]


@settings(max_examples=600, deadline=None)
@given(st.sampled_from(_TAGS), st.integers(0, 3), st.binary(max_size=80))
def test_random_bodies_behind_real_tags(tag: int, choice: int, body: bytes) -> None:
    _decode_or_decode_error(bytes([tag, choice]) + body)
    if tag >= 0x60:
        _decode_or_decode_error(bytes([tag, len(body)]) + body)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(all_apdus, st.data())
def test_mutated_valid_apdus_raise_only_decode_errors(apdu: object, data: st.DataObject) -> None:
    raw = bytearray(apdu.to_bytes())  # type: ignore[attr-defined]
    op = data.draw(st.sampled_from(["flip", "truncate", "insert", "delete"]))
    pos = data.draw(st.integers(0, len(raw) - 1))
    if op == "flip":
        raw[pos] ^= data.draw(st.integers(1, 255))
    elif op == "truncate":
        del raw[pos:]
    elif op == "insert":
        raw.insert(pos, data.draw(st.integers(0, 255)))
    else:
        del raw[pos]
    _decode_or_decode_error(bytes(raw))


@pytest.mark.timeout(10)
def test_deep_nesting_is_capped() -> None:
    hostile = b"\x01\x01" * 100_000 + b"\x00"
    with pytest.raises(InvalidValue, match="nested deeper"):
        decode_data(hostile)
    with pytest.raises(InvalidValue, match="nested deeper"):
        decode_apdu(b"\xc4\x01\xc1\x00" + hostile)


@pytest.mark.timeout(10)
def test_huge_counts_are_refused_before_allocation() -> None:
    for raw in (
        b"\x01\x84\xff\xff\xff\xff",  # array of 4 billion elements
        b"\x02\x84\x7f\xff\xff\xff\x00",
        b"\x04\x84\xff\xff\xff\xff\x00",  # bit-string of 4 billion bits
        b"\x09\x84\xff\xff\xff\xff",
        b"\xc0\x03\xc1\x84\xff\xff\xff\xff",  # get-with-list of 4 billion
        b"\xc4\x03\xc1\x84\xff\xff\xff\xff",
        b"\x60\x84\xff\xff\xff\xff",
    ):
        with pytest.raises(CosemDecodeError):
            decode_apdu(raw) if raw[0] >= 0x60 else decode_data(raw)


@pytest.mark.timeout(20)
def test_wide_flat_array_decodes_in_linear_time() -> None:
    n = 50_000
    raw = b"\x01\x83" + n.to_bytes(3, "big") + b"\x11\x07" * n
    value, end = decode_data(raw)
    assert end == len(raw) and len(value.value) == n


@FAST
@given(obis)
def test_obis_text_forms_round_trip(code: ObisCode) -> None:
    assert ObisCode.parse(str(code)) == code
    assert ObisCode.parse(code.iec()) == code
    assert ObisCode.from_bytes(code.to_bytes()) == code


@FAST
@given(
    st.datetimes(
        min_value=dt.datetime(1970, 1, 1),
        max_value=dt.datetime(2200, 12, 31),
        timezones=st.integers(-720, 720).map(lambda m: dt.timezone(dt.timedelta(minutes=m))),
    )
)
def test_python_datetime_survives_cosem_date_time(when: dt.datetime) -> None:
    cosem = CosemDateTime.from_datetime(when)
    back = CosemDateTime.from_bytes(cosem.to_bytes()).to_datetime()
    assert back == when.replace(microsecond=when.microsecond // 10_000 * 10_000)
    assert back.utcoffset() == when.utcoffset()


def test_every_table_driven_apdu_declares_its_wire_fields_once():
    """get/set/action APDUs are read and written by walking FIELDS (cosem/xdlms/fields.py):
    each dataclass field appears exactly once in the table, so no field is silently
    skipped on the wire or written twice."""
    import dataclasses

    from metercert.cosem import xdlms

    classes = [c for c in vars(xdlms).values()
               if isinstance(c, type) and issubclass(c, xdlms.XdlmsApdu) and c.FIELDS]
    assert len(classes) >= 20
    for cls in classes:
        names = [f.name for f in cls.FIELDS]
        assert sorted(names) == sorted(f.name for f in dataclasses.fields(cls)), cls.__name__
