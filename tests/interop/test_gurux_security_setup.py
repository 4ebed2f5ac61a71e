"""Security Setup v1 certificate methods and attribute 6 against gurux-dlms 1.0.203 (Python).

gurux -> metercert: the method parameters gurux's ``GXDLMSSecuritySetup`` builds
(generate_key_pair, generate_certificate_request, import_certificate, export and remove by
entity) are captured from its ``client.method`` call, decoded as A-XDR and sent by our client
over a real socket to the suite-1 general-protection reference meter, which must act on them.

metercert -> gurux: the reference meter's attribute 6 (certificates), as it is on the wire,
is read by gurux's own parser (``GXDLMSSecuritySetup.setValue``).

Not exchanged, with the reason:

* key_agreement (method 3): gurux 1.0.203's ``keyAgreement`` leaves the signature of the
  ephemeral key commented out (an unsigned key, which the reference meter refuses by design,
  DLMS-KEYAGREE-01) and its ``__keyAgreement`` calls ``getKey()`` on a tuple, so it cannot
  build the parameter at all.
* remove/export by serial: gurux sends the serial number as text in remove-by-serial and as a
  DER INTEGER in export-by-serial (cosem/security_setup.py); the reference meter takes the DER
  forms only, as attribute 6 gives them.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("gurux_dlms")

from gurux_dlms.GXByteBuffer import GXByteBuffer
from gurux_dlms.GXDLMSSettings import GXDLMSSettings
from gurux_dlms.internal._GXCommon import _GXCommon
from gurux_dlms.internal._GXDataInfo import _GXDataInfo
from gurux_dlms.objects.GXDLMSSecuritySetup import GXDLMSSecuritySetup
from gurux_dlms.ValueEventArgs import ValueEventArgs

from metercert.client.target import DlmsTarget
from metercert.cosem import ActionResult, DlmsData, decode_data, encode_data
from metercert.meter.profile import load_profile
from metercert.meter.server import MeterFleet
from metercert.security import agreement as agr
from metercert.security import certificates as certs
from metercert.security import load_key_file
from metercert.security.certificates import CertificateType

SETUP = "0.0.43.0.6.255"


class _Capture:
    """Stands in for a GXDLMSClient: keeps what gurux would send as method parameters."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, DlmsData]] = []

    def method(self, obj: Any, index: int, data: Any, type_: Any) -> list[bytes]:
        from gurux_dlms.enums import DataType as GxType

        if type_ in (GxType.ARRAY, GxType.STRUCTURE):
            value, _ = decode_data(bytes(data))  # gurux hands over the encoded A-XDR
        elif type_ == GxType.ENUM:
            value = DlmsData.enum(int(data))
        else:
            value = DlmsData.octet_string(bytes(data))
        self.calls.append((index, value))
        return []


class _Der:
    def __init__(self, der: bytes) -> None:
        self.encoded = der


def _run(coro_fn: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro_fn(), 60))


async def _with_meter(tmp_path: Path, body: Any) -> Any:
    fleet = MeterFleet(load_profile("suite1-general"), tmp_path / "m", host="127.0.0.1",
                       port=0, idle_timeout=20.0)
    await fleet.start()
    try:
        keys = load_key_file(fleet.write_key_file(tmp_path / "m" / "client-keys.yaml"))[0]
        host, port = fleet.endpoints[0]
        target = DlmsTarget(host, port, keys, counter_dir=tmp_path / "client", timeout=5.0)
        async with target.client() as c:
            return await body(target, c)
    finally:
        await fleet.stop()


def test_gurux_built_certificate_method_parameters_drive_the_reference_meter(
        tmp_path: Path) -> None:
    async def body(target: DlmsTarget, c: Any) -> None:
        setup = GXDLMSSecuritySetup(SETUP)
        capture = _Capture()
        title = c.server_title
        setup.generateKeyPair(capture, 2)
        setup.generateCertificate(capture, 2)
        setup.exportCertificateByEntity(capture, 0, 0, title)
        answers = [await c.action(64, SETUP, index, value) for index, value in capture.calls]
        assert [r for r, _ in answers] == [ActionResult.SUCCESS] * 3
        csr_der, exported = bytes(answers[1][1].value), bytes(answers[2][1].value)
        from cryptography import x509

        assert x509.load_der_x509_csr(csr_der).is_signature_valid
        assert certs.load_certificate(exported).public_key() == target.keys.server_public_key
        # import a certificate from the operator CA, then remove it by entity, as gurux asks
        ca = certs.load_certificate((target.keys.base_dir / target.keys.extra[
            "dlms_ca_certificate"]).read_bytes())
        from metercert.security.keys import load_pem_key

        ca_key = load_pem_key(target.keys.extra["dlms_ca_key"], target.keys.base_dir, "t",
                              private=True)
        leaf = certs.issue(agr.generate_key_pair(1).public_key(),
                           system_title=target.keys.client_system_title,
                           kind=CertificateType.TLS, issuer=ca, issuer_key=ca_key)
        capture.calls.clear()
        setup.importCertificate(capture, _Der(certs.der(leaf)))
        setup.removeCertificateByEntity(capture, 1, 2, target.keys.client_system_title)
        setup.removeCertificateByEntity(capture, 1, 2, target.keys.client_system_title)
        results = [(await c.action(64, SETUP, i, v))[0] for i, v in capture.calls]
        assert results == [ActionResult.SUCCESS, ActionResult.SUCCESS,
                           ActionResult.OBJECT_UNAVAILABLE]

    _run(lambda: _with_meter(tmp_path, body))


def test_gurux_reads_the_reference_meters_attribute_6(tmp_path: Path) -> None:
    async def body(target: DlmsTarget, c: Any) -> tuple[bytes, Any]:
        return encode_data(await c.get(64, SETUP, 6)), c.server_title

    raw, title = _run(lambda: _with_meter(tmp_path, body))
    settings = GXDLMSSettings(False, None)
    value = _GXCommon.getData(settings, GXByteBuffer(raw), _GXDataInfo())
    setup = GXDLMSSecuritySetup(SETUP)
    e = ValueEventArgs(settings, setup, 6)
    e.value = value
    setup.setValue(settings, e)
    seen = {(int(i.entity), int(i.type_)) for i in setup.certificates}
    assert seen == {(0, 0), (0, 1), (1, 0), (1, 1)}
    subjects = {bytes(i.subject) for i in setup.certificates if int(i.entity) == 0}
    assert subjects == {certs.subject_for(title).public_bytes()}
