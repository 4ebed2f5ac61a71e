"""Security Setup v1 on the general-protection reference meter (issue 16): attribute 6, key
agreement (method 3) and the certificate methods 4-8, over a real loopback socket."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509

from metercert.client.errors import ExceptionResponseReceived
from metercert.cosem import ActionResult, DataType, DlmsData
from metercert.cosem.security_setup import (
    CertificateIdentification,
    KeyAgreementItem,
    key_agreement_data,
    read_certificates_attribute,
    read_key_agreement_data,
)
from metercert.security import agreement as agr
from metercert.security import certificates as certs
from metercert.security.certificates import CertificateEntity, CertificateType

from ._support import CLOCK, run, serving

SETUP = "0.0.43.0.6.255"  # the management association's Security Setup (SECADM, e = 6)


def _file(target, name: str) -> bytes:  # type: ignore[no-untyped-def]
    return (target.keys.base_dir / target.keys.extra[name]).read_bytes()


def test_attribute_6_lists_the_factory_certificates_and_export_returns_them(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(tmp_path / "m", "suite2-general") as bench:
            target = bench.target()
            async with target.client() as c:
                infos = read_certificates_attribute(await c.get(64, SETUP, 6))
                ident = CertificateIdentification(
                    entity=int(CertificateEntity.SERVER),
                    certificate_type=int(CertificateType.DIGITAL_SIGNATURE),
                    system_title=c.server_title)
                result, exported = await c.action(64, SETUP, 7, ident.to_data())
        kinds = {(i.entity, i.certificate_type) for i in infos}
        # server signing / agreement, client signing / agreement
        assert kinds == {(0, 0), (0, 1), (1, 0), (1, 1)}
        assert result is ActionResult.SUCCESS and exported is not None
        cert = x509.load_der_x509_certificate(bytes(exported.value))
        assert cert.public_key() == target.keys.server_public_key
        ca = certs.load_certificate(_file(target, "dlms_ca_certificate"))
        certs.check_certificate(cert, trust_anchors=[ca], kind=CertificateType.DIGITAL_SIGNATURE,
                                system_title=bench.meter.state.system_title, suite=2)

    run(scenario)


def test_import_takes_only_trusted_current_certificates_and_keeps_them(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(tmp_path / "m", "suite1-general") as bench:
            target = bench.target()
            ca = certs.load_certificate(_file(target, "dlms_ca_certificate"))
            from metercert.security.keys import load_pem_key

            ca_key = load_pem_key(target.keys.extra["dlms_ca_key"], target.keys.base_dir, "t",
                                  private=True)
            title = target.keys.client_system_title
            leaf = agr.generate_key_pair(1).public_key()
            rogue_key = agr.generate_key_pair(1)
            rogue = certs.issue(leaf, system_title=title, kind=CertificateType.TLS,
                                issuer=certs.build_ca(rogue_key), issuer_key=rogue_key)
            expired = certs.issue(leaf, system_title=title, kind=CertificateType.TLS, issuer=ca,
                                  issuer_key=ca_key, days=1,
                                  not_before=dt.datetime.now(dt.UTC) - dt.timedelta(days=10))
            p384 = certs.issue(agr.generate_key_pair(2).public_key(), system_title=title,
                               kind=CertificateType.TLS, issuer=ca, issuer_key=ca_key)
            good = certs.issue(leaf, system_title=title, kind=CertificateType.TLS, issuer=ca,
                               issuer_key=ca_key)
            async with target.client() as c:
                for cert in (rogue, expired, p384):
                    result, _ = await c.action(64, SETUP, 6, DlmsData.octet_string(certs.der(cert)))
                    assert result is ActionResult.OTHER_REASON
                result, _ = await c.action(64, SETUP, 6, DlmsData.octet_string(b"not a cert"))
                assert result is ActionResult.OTHER_REASON
                result, _ = await c.action(64, SETUP, 6, DlmsData.octet_string(certs.der(good)))
                assert result is ActionResult.SUCCESS
        # a power cycle (a new process on the same state) keeps the import
        async with serving(tmp_path / "m", "suite1-general") as bench, \
                bench.target().client() as c:
            infos = read_certificates_attribute(await c.get(64, SETUP, 6))
        assert certs.certificate_info(good, CertificateEntity.CLIENT) in infos

    run(scenario)


def test_key_agreement_installs_the_agreed_guek_only_for_a_signed_ephemeral_key(
        tmp_path: Path) -> None:
    from dataclasses import replace

    async def scenario() -> None:
        async with serving(tmp_path / "m", "suite2-general") as bench:
            target = bench.target()
            keys = target.keys
            async with target.client() as c:
                unsigned = agr.generate_key_pair(2)
                request = key_agreement_data([KeyAgreementItem(0, agr.public_key_bytes(unsigned))])
                result, _ = await c.action(64, SETUP, 3, request)
                assert result is ActionResult.OTHER_REASON
                eph = agr.generate_key_pair(2)
                item = KeyAgreementItem(0, agr.signed_ephemeral_key(0, eph, keys.client_private_key, 2))
                result, answer = await c.action(64, SETUP, 3, key_agreement_data([item]))
                assert result is ActionResult.SUCCESS and answer is not None
            peer = agr.verify_signed_ephemeral_key(0, read_key_agreement_data(answer)[0].key_data,
                                                   keys.server_public_key, 2)
            agreed = agr.ephemeral_unified_model(eph, peer, suite=2,
                                                 party_u=keys.client_system_title,
                                                 party_v=keys.server_system_title, role="guek")
            assert agreed != keys.guek and len(agreed) == 32
            with pytest.raises(Exception):  # noqa: B017 - the old GUEK no longer associates
                async with target.client() as old:
                    await old.get(8, CLOCK, 2)
            target.keys = replace(keys, guek=agreed)
            async with target.client() as c:
                value = await c.get(8, CLOCK, 2, general="signed-then-ciphered")
                assert value.type is DataType.OCTET_STRING

    run(scenario)


def test_key_pair_request_and_removal(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(tmp_path / "m", "suite1-general") as bench:
            target = bench.target()
            tls = DlmsData.enum(2)
            async with target.client() as c:
                result, _ = await c.action(64, SETUP, 5, tls)
                assert result is ActionResult.OBJECT_UNAVAILABLE  # no pair generated yet
                result, returned = await c.action(64, SETUP, 4, tls)
                assert result is ActionResult.SUCCESS and returned is None
                result, der = await c.action(64, SETUP, 5, tls)
                csr = x509.load_der_x509_csr(bytes(der.value))
                assert csr.is_signature_valid
                assert certs.subject_for(bench.meter.state.system_title) == csr.subject
                own = certs.load_certificate(_file(target, "client_signing_certificate"))
                info = certs.certificate_info(own, CertificateEntity.CLIENT)
                by_serial = CertificateIdentification(serial_number=info.serial_number,
                                                      issuer=info.issuer)
                result, _ = await c.action(64, SETUP, 8, by_serial.to_data())
                assert result is ActionResult.SUCCESS
                result, _ = await c.action(64, SETUP, 8, by_serial.to_data())
                assert result is ActionResult.OBJECT_UNAVAILABLE  # already gone
                with pytest.raises(ExceptionResponseReceived):
                    await c.get(8, CLOCK, 2, general="signed-then-ciphered")
                result, _ = await c.action(64, SETUP, 6, DlmsData.octet_string(certs.der(own)))
                assert result is ActionResult.SUCCESS
                await c.get(8, CLOCK, 2, general="signed-then-ciphered")

    run(scenario)


def test_meter_without_general_protection_has_no_certificate_methods(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(tmp_path / "m", "conformant") as bench, bench.target().client() as c:
            result, _ = await c.action(64, SETUP, 4, DlmsData.enum(2))
        assert result is not ActionResult.SUCCESS
        assert bench.meter.state.pki is None

    run(scenario)
