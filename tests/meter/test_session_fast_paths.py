"""The meter's shortcuts give what the general code gives.

* ``decode_request`` reads a get-request-normal without selective access itself and
  must return exactly what ``decode_apdu`` returns, for every such 13-byte APDU;
* a GET answer with data is encoded by hand and must equal ``GetResponseNormal``'s;
* the clock's encoding is shared by every meter and follows the time (and each
  meter's own offset);
* object lookups are remembered per role: a role that may not read an object is still
  refused after another role read it on the same meter.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metercert.cosem import (
    CosemAttributeDescriptor,
    CosemDecodeError,
    DataAccessResult,
    DlmsData,
    GetRequestNormal,
    GetResponseNormal,
    ObisCode,
    decode_apdu,
)
from metercert.meter.model import Meter
from metercert.meter.objects import ClockObject
from metercert.meter.profile import load_profile
from metercert.meter.session import decode_request


@given(st.integers(0, 255), st.integers(0, 0xFFFF), st.binary(min_size=6, max_size=6),
       st.integers(0, 255))
def test_decode_request_reads_get_normal_as_decode_apdu_does(iip: int, class_id: int,
                                                            obis: bytes, attr: int) -> None:
    apdu = (bytes((0xC0, 0x01, iip)) + class_id.to_bytes(2, "big") + obis + bytes((attr, 0)))
    assert decode_request(apdu) == decode_apdu(apdu)


@given(st.binary(min_size=0, max_size=20))
def test_decode_request_leaves_everything_else_to_decode_apdu(apdu: bytes) -> None:
    try:
        expected = decode_apdu(apdu)
    except Exception as exc:
        try:
            decode_request(apdu)
        except type(exc):
            return
        if len(apdu) == 13 and apdu[:2] == b"\xc0\x01" and apdu[12] == 0:
            raise AssertionError("the fast path read what decode_apdu refuses") from None
        raise
    assert decode_request(apdu) == expected


def test_selective_access_goes_to_decode_apdu() -> None:
    plain = GetRequestNormal(CosemAttributeDescriptor(8, ObisCode.parse("0.0.1.0.0.255"), 2),
                             None, 0xC1).to_bytes()
    assert len(plain) == 13 and decode_request(plain) == decode_apdu(plain)
    # an access selection flag of 1 is not the fast path: decode_apdu wants the selector
    with pytest.raises(CosemDecodeError):
        decode_request(plain[:-1] + b"\x01")


def test_get_answer_bytes_equal_the_encoder() -> None:
    from metercert.cosem import encode_data

    for value in (DlmsData.octet_string(bytes(12)), DlmsData.double_long_unsigned(7),
                  DlmsData.visible_string("MCT00000001")):
        for iip in (0x00, 0xC1, 0xFF):
            assert (b"\xc4\x01" + bytes((iip,)) + b"\x00" + encode_data(value)
                    == GetResponseNormal(value, iip).to_bytes())
    assert GetResponseNormal(DataAccessResult.OBJECT_UNDEFINED, 0xC1).to_bytes()[3] == 1


def test_clock_encoding_follows_each_meters_offset() -> None:
    a, b = ClockObject(), ClockObject()
    b.offset = dt.timedelta(days=3)
    for clock in (a, b, a, b):
        for _ in range(10):  # the second may turn between reading the time and the value
            before = clock.now()
            value = clock.get(2, None)  # type: ignore[arg-type]
            if clock.now() == before:
                break
        assert value == DlmsData.octet_string(DlmsData.date_time(before).to_bytes()[1:])


def test_object_lookups_remembered_per_role_match_the_rbac(tmp_path: Path) -> None:
    meter = Meter(load_profile("conformant"), tmp_path, 0)
    try:
        roles = list(meter.rbac.roles.values())
        assert len(roles) >= 2
        denied = 0
        for _ in range(2):  # the second pass answers from what was remembered
            for role in roles + roles[::-1]:
                for obj in meter.objects.values():
                    for attr in (1, 2, 7):
                        found = meter.lookup(role, int(obj.class_id), obj.obis, "read", attr)
                        if not meter.visible(role, obj):
                            want = (None, DataAccessResult.OBJECT_UNDEFINED)
                        elif not meter.grants(role, obj.obis, "read", attr):
                            want = (None, DataAccessResult.READ_WRITE_DENIED)
                        else:
                            want = (obj, DataAccessResult.SUCCESS)
                        assert found == want
                        denied += found[0] is None
                    wrong_class = meter.lookup(role, int(obj.class_id) + 1000, obj.obis,
                                               "read", 2)
                    assert wrong_class == (None, DataAccessResult.OBJECT_UNDEFINED)
        assert denied  # some role is refused something
    finally:
        meter.close()
