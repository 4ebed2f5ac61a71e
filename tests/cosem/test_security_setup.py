"""Security Setup v1 method parameters and attribute 6: round trips, gurux byte equality,
and bad shapes refused with the codec's own errors."""

import pytest
from gurux_dlms.objects.GXDLMSSecuritySetup import GXDLMSSecuritySetup

from metercert.cosem.axdr import DlmsData
from metercert.cosem.errors import CosemDecodeError
from metercert.cosem.security_setup import (
    CertificateIdentification,
    CertificateInfo,
    KeyAgreementItem,
    certificates_attribute,
    key_agreement_data,
    read_certificates_attribute,
    read_key_agreement_data,
)

TITLE = bytes.fromhex("4D4D4D0000BC614E")


class _Capture:
    """Stands in for a gurux client: method() hands back the encoded parameter."""

    def method(self, _obj, _index, data, _type=None):
        return bytes(data) if isinstance(data, (bytes, bytearray)) else data


def test_identification_by_entity_matches_gurux():
    ours = CertificateIdentification(entity=0, certificate_type=1, system_title=TITLE)
    setup = GXDLMSSecuritySetup()
    assert ours.to_data().to_bytes() == setup.exportCertificateByEntity(_Capture(), 0, 1, TITLE)
    assert ours.to_data().to_bytes() == setup.removeCertificateByEntity(_Capture(), 0, 1, TITLE)
    assert CertificateIdentification.from_data(DlmsData.from_bytes(
        ours.to_data().to_bytes())) == ours


def test_identification_by_serial_round_trip():
    ours = CertificateIdentification(serial_number=b"\x01\x02", issuer=b"\x30\x00")
    assert CertificateIdentification.from_data(ours.to_data()) == ours


def test_key_agreement_matches_gurux_shape():
    items = [KeyAgreementItem(0, b"\xAA" * 128), KeyAgreementItem(2, b"\xBB" * 128)]
    encoded = key_agreement_data(items).to_bytes()
    from gurux_dlms.objects.GXDLMSSecuritySetup import GXDLMSSecuritySetup as S

    class Item(bytes):
        def getKey(self):  # gurux calls it by this name
            return self.key_id

    gx_items = []
    for it in items:
        x = Item(it.key_data)
        x.key_id = it.key_id
        gx_items.append(x)
    assert encoded == S()._GXDLMSSecuritySetup__keyAgreement(_Capture(), gx_items)
    assert read_key_agreement_data(DlmsData.from_bytes(encoded)) == items


def test_certificates_attribute_round_trip():
    infos = [CertificateInfo(0, 0, b"\x01", b"issuer", b"subject"),
             CertificateInfo(1, 2, b"\x7F\xFF", b"i", b"s", b"alt")]
    data = certificates_attribute(infos)
    assert read_certificates_attribute(DlmsData.from_bytes(data.to_bytes())) == infos


@pytest.mark.parametrize("value", [
    DlmsData.octet_string(b"x"),
    DlmsData.array([DlmsData.structure([DlmsData.enum(0)])]),
    DlmsData.array([DlmsData.structure([DlmsData.unsigned(0), DlmsData.octet_string(b"")])]),
])
def test_bad_key_agreement_shapes(value):
    with pytest.raises(CosemDecodeError):
        read_key_agreement_data(value)


@pytest.mark.parametrize("value", [
    DlmsData.structure([DlmsData.enum(2), DlmsData.structure([])]),
    DlmsData.structure([DlmsData.enum(0), DlmsData.structure([DlmsData.enum(0)])]),
    DlmsData.enum(0),
])
def test_bad_identification_shapes(value):
    with pytest.raises(CosemDecodeError):
        CertificateIdentification.from_data(value)
