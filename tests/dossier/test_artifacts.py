"""SBOM formats, firmware signatures and OSV matching, each shown to pass and to fail."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from metercert.checks.base import Verdict
from metercert.dossier.firmware import SignatureProblem, verify_image
from metercert.dossier.model import Sbom, SbomComponent
from metercert.dossier.osv import affected_components, parse_version, read_osv
from metercert.dossier.sbom import SbomError, read_sbom

from ._support import assess, edit

CDX_XML = """<?xml version="1.0" encoding="UTF-8"?>
<bom xmlns="http://cyclonedx.org/schema/bom/1.5" version="1">
  <components>
    <component type="library" bom-ref="zlib">
      <name>zlib</name>
      <version>1.3.1</version>
      <cpe>cpe:2.3:a:zlib:zlib:1.3.1:*:*:*:*:*:*:*</cpe>
    </component>
    <component type="firmware" bom-ref="firmware">
      <name>fw</name>
      <version>2.0</version>
      <hashes><hash alg="SHA-256">{sha}</hash></hashes>
      <purl>pkg:generic/acme/fw@2.0</purl>
    </component>
  </components>
</bom>
"""

SPDX = {
    "spdxVersion": "SPDX-2.3",
    "SPDXID": "SPDXRef-DOCUMENT",
    "name": "meter",
    "packages": [
        {
            "SPDXID": "SPDXRef-fw",
            "name": "fw",
            "versionInfo": "2.0",
            "checksums": [{"algorithm": "SHA256", "checksumValue": "AB" * 32}],
            "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                              "referenceLocator": "pkg:generic/acme/fw@2.0"}],
        },
        {"SPDXID": "SPDXRef-x", "name": "x", "versionInfo": "1"},
    ],
}


def test_cyclonedx_xml_is_read_through_the_library(tmp_path: Path):
    path = tmp_path / "bom.xml"
    path.write_text(CDX_XML.format(sha="cd" * 32))
    sbom = read_sbom(path)
    assert sbom.format == "CycloneDX XML"
    fw = sbom.find("firmware")
    assert fw is not None and fw.sha256 == "cd" * 32 and fw.purl == "pkg:generic/acme/fw@2.0"
    assert sbom.find("zlib").cpe.startswith("cpe:2.3:a:zlib")


def test_spdx_json_is_read(tmp_path: Path):
    path = tmp_path / "bom.spdx.json"
    path.write_text(json.dumps(SPDX))
    sbom = read_sbom(path)
    assert sbom.format == "SPDX JSON"
    assert sbom.find("SPDXRef-fw").sha256 == "ab" * 32
    assert sbom.find("x").purl == "" and sbom.find("x").cpe == ""


@pytest.mark.parametrize("content", ["{not json", '{"hello": 1}', "<bom><component></bom>"])
def test_unreadable_sbom_raises(tmp_path: Path, content: str):
    path = tmp_path / "bom"
    path.write_text(content)
    with pytest.raises(SbomError):
        read_sbom(path)


def test_xml_entity_expansion_is_refused(tmp_path: Path):
    path = tmp_path / "bomb.xml"
    path.write_text('<?xml version="1.0"?><!DOCTYPE b [<!ENTITY a "aaaa">]><bom>&a;</bom>')
    with pytest.raises(SbomError):
        read_sbom(path)


def test_spdx_dossier_with_unidentified_package_fails_sbom_check(reference: Path):
    (reference / "bom.spdx.json").write_text(json.dumps(SPDX))
    edit(reference / "dossier.yaml", "sbom: sbom.cdx.json", "sbom: bom.spdx.json")
    outcome = assess(reference)["DOSSIER-SBOM-01"]
    assert outcome.verdict is Verdict.FAIL and "1 of 2" in outcome.reason
    assert "x@1" in outcome.evidence[1].content


def _cert(key, *, days: int = 3650) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test signer")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def test_p384_signature_verifies_and_a_flipped_bit_does_not():
    key = ec.generate_private_key(ec.SECP384R1())
    image = b"\x01firmware" * 100
    sig = key.sign(image, ec.ECDSA(hashes.SHA384()))
    good = verify_image(image, sig, _cert(key))
    assert good.valid and good.curve == "secp384r1" and good.hash_name == "SHA384"
    assert good.image_sha256 == hashlib.sha256(image).hexdigest()
    tampered = bytearray(image)
    tampered[5] ^= 1
    assert not verify_image(bytes(tampered), sig, _cert(key)).valid


def test_signature_with_another_key_does_not_verify():
    signer, other = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    sig = signer.sign(b"image", ec.ECDSA(hashes.SHA256()))
    assert not verify_image(b"image", sig, _cert(other)).valid


def test_rsa_certificate_and_garbage_signature_are_refused():
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(SignatureProblem, match="not an EC key"):
        verify_image(b"image", b"sig", _cert(rsa_key))
    key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(SignatureProblem, match="not a DER ECDSA"):
        verify_image(b"image", b"\x00garbage", _cert(key))


def test_tampered_firmware_image_fails_the_check(reference: Path):
    image = reference / "firmware" / "meter-fw-0.1.0.bin"
    data = bytearray(image.read_bytes())
    data[100] ^= 0x80
    image.write_bytes(bytes(data))
    outcome = assess(reference)["DOSSIER-FW-01"]
    assert outcome.verdict is Verdict.FAIL
    assert "does not verify" in outcome.reason and "differs from SBOM" in outcome.reason


def test_image_resigned_by_someone_else_fails(reference: Path):
    key = ec.generate_private_key(ec.SECP256R1())
    image = (reference / "firmware" / "meter-fw-0.1.0.bin").read_bytes()
    (reference / "firmware" / "meter-fw-0.1.0.bin.sig").write_bytes(key.sign(image, ec.ECDSA(hashes.SHA256())))
    outcome = assess(reference)["DOSSIER-FW-01"]
    assert outcome.verdict is Verdict.FAIL and "does not verify" in outcome.reason


def test_sbom_hash_mismatch_alone_fails(reference: Path):
    sbom = json.loads((reference / "sbom.cdx.json").read_text())
    sbom["components"][0]["hashes"][0]["content"] = "00" * 32
    (reference / "sbom.cdx.json").write_text(json.dumps(sbom))
    outcome = assess(reference)["DOSSIER-FW-01"]
    assert outcome.verdict is Verdict.FAIL
    assert outcome.reason == "firmware[0]: image SHA-256 differs from SBOM component 'firmware'"


def _sbom(*components: tuple[str, str, str]) -> Sbom:
    return Sbom("test", tuple(SbomComponent(name=n, version=v, purl=p) for n, v, p in components))


def test_osv_matching_by_range_version_list_and_name(tmp_path: Path):
    path = tmp_path / "osv.json"
    path.write_text(json.dumps({"vulns": [
        {"id": "A", "affected": [{"package": {"purl": "pkg:github/mbed-tls/mbedtls"},
                                  "ranges": [{"type": "SEMVER", "events": [{"introduced": "3.0.0"},
                                                                           {"last_affected": "3.5.2"}]}]}]},
        {"id": "B", "affected": [{"package": {"name": "zlib"}, "versions": ["1.2.11"]}]},
        {"id": "C", "affected": [{"package": {"name": "lwip"},
                                  "ranges": [{"type": "GIT", "events": [{"introduced": "0"}]}]}]},
    ]}))
    advisories = read_osv(path)
    sbom = _sbom(
        ("mbedtls", "3.5.2", "pkg:github/mbed-tls/mbedtls@3.5.2"),
        ("mbedtls-old", "2.28.0", "pkg:github/mbed-tls/mbedtls@2.28.0"),
        ("zlib", "1.2.11", ""),
        ("zlib2", "1.2.12", ""),
        ("lwip", "2.1.0", ""),
    )
    hits = sorted((c.name, a.id) for c, a in affected_components(sbom, advisories))
    assert hits == [("mbedtls", "A"), ("zlib", "B")]
    assert affected_components(_sbom(("mbedtls", "3.6.0", "pkg:github/mbed-tls/mbedtls@3.6.0")), advisories) == []


def test_no_advisory_export_is_inconclusive(reference: Path):
    edit(reference / "dossier.yaml", "advisories: advisories/osv.json\n", "")
    assert assess(reference)["DOSSIER-VULN-01"].verdict is Verdict.INCONCLUSIVE

_versions = st.lists(st.integers(min_value=0, max_value=999), min_size=1, max_size=5)


@settings(max_examples=200, deadline=None)
@given(_versions, _versions)
def test_dotted_version_order_matches_numeric_order(a: list[int], b: list[int]):
    def padded(v: list[int]) -> list[int]:
        return v + [0] * (6 - len(v))

    va, vb = ".".join(map(str, a)), ".".join(map(str, b))
    pa, pb = parse_version("dotted", va), parse_version("dotted", vb)
    assert (pa < pb) == (padded(a) < padded(b))
    assert (pa == pb) == (padded(a) == padded(b))
