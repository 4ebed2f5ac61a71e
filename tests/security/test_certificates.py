"""The DLMS certificate profile: build, check, refuse; read back by gurux-dlms."""

import datetime as dt

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from metercert.security import certificates as c

TITLE = bytes.fromhex("4D4D4D0000BC614E")
NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def ca():
    key = ec.generate_private_key(ec.SECP256R1())
    return key, c.build_ca(key, now=NOW)


def _leaf(ca, kind=c.CertificateType.DIGITAL_SIGNATURE, curve=None, **kw):
    key = ec.generate_private_key(curve or ec.SECP256R1())
    cert = c.issue(key.public_key(), system_title=TITLE, kind=kind, issuer=ca[1],
                   issuer_key=ca[0], now=NOW, **kw)
    return key, cert


@pytest.mark.parametrize("kind", [c.CertificateType.DIGITAL_SIGNATURE,
                                  c.CertificateType.KEY_AGREEMENT, c.CertificateType.TLS])
def test_profile_round_trip(ca, kind):
    _, cert = _leaf(ca, kind)
    assert c.system_title_of(cert) == TITLE
    assert c.certificate_type_of(cert) is kind
    assert c.load_certificate(c.der(cert)) == cert
    c.check_certificate(cert, trust_anchors=[ca[1]], kind=kind, system_title=TITLE, suite=1,
                        now=NOW)


def test_untrusted_chain_is_refused(ca):
    other_key = ec.generate_private_key(ec.SECP256R1())
    other = c.build_ca(other_key, name="rogue", now=NOW)
    _, cert = _leaf((other_key, other))
    with pytest.raises(c.CertificateRefused, match="does not chain"):
        c.check_certificate(cert, trust_anchors=[ca[1]], now=NOW)
    # same issuer name, different key: the signature decides, not the name
    forged_ca = c.build_ca(other_key, name="metercert DLMS test CA", now=NOW)
    _, forged = _leaf((other_key, forged_ca))
    with pytest.raises(c.CertificateRefused, match="does not chain"):
        c.check_certificate(forged, trust_anchors=[ca[1]], now=NOW)


def test_intermediate_must_be_a_ca(ca):
    mid_key = ec.generate_private_key(ec.SECP256R1())
    # a leaf used as an issuer
    _, leaf_as_ca = _leaf(ca)
    fake = c.issue(ec.generate_private_key(ec.SECP256R1()).public_key(), system_title=TITLE,
                   kind=c.CertificateType.DIGITAL_SIGNATURE, issuer=leaf_as_ca,
                   issuer_key=mid_key, now=NOW)
    with pytest.raises(c.CertificateRefused):
        c.check_certificate(fake, trust_anchors=[ca[1]], intermediates=[leaf_as_ca], now=NOW)


def test_expired_and_not_yet_valid(ca):
    _, old = _leaf(ca, not_before=NOW - dt.timedelta(days=400), days=30)
    with pytest.raises(c.CertificateRefused, match="not valid now"):
        c.check_certificate(old, trust_anchors=[ca[1]], now=NOW)
    _, future = _leaf(ca, not_before=NOW + dt.timedelta(days=1))
    with pytest.raises(c.CertificateRefused, match="not valid now"):
        c.check_certificate(future, trust_anchors=[ca[1]], now=NOW)


def test_wrong_usage_suite_and_title(ca):
    _, ka = _leaf(ca, c.CertificateType.KEY_AGREEMENT)
    with pytest.raises(c.CertificateRefused, match="digital_signature"):
        c.check_certificate(ka, trust_anchors=[ca[1]], kind=c.CertificateType.DIGITAL_SIGNATURE,
                            now=NOW)
    with pytest.raises(c.CertificateRefused, match="suite 2 needs secp384r1"):
        c.check_certificate(ka, trust_anchors=[ca[1]], suite=2, now=NOW)
    with pytest.raises(c.CertificateRefused, match="another system title"):
        c.check_certificate(ka, trust_anchors=[ca[1]], system_title=bytes(8), now=NOW)


def test_request_and_bad_input():
    key = ec.generate_private_key(ec.SECP384R1())
    csr = c.certificate_request(key, system_title=TITLE, kind=c.CertificateType.KEY_AGREEMENT)
    assert csr.is_signature_valid
    assert csr.subject.rfc4514_string() == "CN=4D4D4D0000BC614E"
    with pytest.raises(c.CertificateRefused, match="not an X.509"):
        c.load_certificate(b"\x30\x03\x02\x01\x00")
    with pytest.raises(c.CertificateRefused, match="8 bytes"):
        c.subject_for(b"\x01")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(c.CertificateRefused, match="not a system title"):
        c.system_title_of(c.build_ca(ca_key, name="meter"))


def test_gurux_reads_our_certificates(ca):
    """gurux-dlms 1.0.203 takes a critical extension's flag for its value (TypeError on a
    critical keyUsage), so these are issued with critical=False; the profile is the same.
    TLS certificates are not exchanged: gurux refuses one without extendedKeyUsage and fails
    (AttributeError on GXAsn1ObjectIdentifier.object_identifier) on one with it."""
    from gurux_dlms.asn.enums.KeyUsage import KeyUsage
    from gurux_dlms.asn.GXx509Certificate import GXx509Certificate

    for kind, usage in ((c.CertificateType.DIGITAL_SIGNATURE, KeyUsage.DIGITAL_SIGNATURE),
                        (c.CertificateType.KEY_AGREEMENT, KeyUsage.KEY_AGREEMENT)):
        _, cert = _leaf(ca, kind, critical=False)
        c.check_certificate(cert, trust_anchors=[ca[1]], kind=kind, now=NOW)
        gx = GXx509Certificate(c.der(cert))
        assert bytes(gx.getSystemTitle()) == TITLE
        assert gx.keyUsage == usage


def test_certificate_info_and_identification(ca):
    from metercert.cosem.security_setup import CertificateIdentification

    _, cert = _leaf(ca, c.CertificateType.KEY_AGREEMENT)
    info = c.certificate_info(cert, c.CertificateEntity.SERVER)
    assert (info.entity, info.certificate_type) == (0, 1)
    assert info.subject == cert.subject.public_bytes()
    assert int.from_bytes(info.serial_number, "big") == cert.serial_number
    by_entity = CertificateIdentification(entity=0, certificate_type=1, system_title=TITLE)
    assert c.matches(cert, by_entity, c.CertificateEntity.SERVER)
    assert not c.matches(cert, by_entity, c.CertificateEntity.CLIENT)
    assert not c.matches(cert, CertificateIdentification(entity=0, certificate_type=0,
                                                         system_title=TITLE))
    by_serial = CertificateIdentification(serial_number=info.serial_number, issuer=info.issuer)
    assert c.matches(cert, by_serial)
    assert not c.matches(cert, CertificateIdentification(serial_number=b"\x01",
                                                         issuer=info.issuer))
