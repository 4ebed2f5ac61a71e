"""Checks of issue 18 item 5 against servers with exactly one flaw: application-layer
refusal after a completed handshake, a TLS 1.3 stack that drops the session on
KeyUpdate, and OCSP stapling (openssl s_server -status_file)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from metercert.checks.base import Verdict
from metercert.cli.tls import _tls_specs, run_tls_checks
from metercert.tlsprobe import pki
from metercert.tlsprobe.audit import TlsTarget

from .conftest import CONFIGS, TlsTestServer, s_server


def _verdicts(port: int, p) -> dict[str, tuple[Verdict, str]]:
    target = TlsTarget("127.0.0.1", port, p.client.cert, p.client.key, p.ca_cert)
    return {r.spec.id: (r.verdict, r.outcome.reason) for r in run_tls_checks(target, _tls_specs())}


def test_refusal_at_the_application_layer_is_reported_as_such(test_pki) -> None:
    """Client certificate optional in TLS, then an HTTP 400 (nginx ssl_verify_client style)."""
    ctx = CONFIGS["no-client-auth"][0](test_pki)
    ctx.maximum_version = ctx.maximum_version.TLSv1_2
    answer = b"HTTP/1.1 400 No required SSL certificate was sent\r\nContent-Length: 0\r\n\r\n"
    with TlsTestServer(ctx, refuse_without_cert=answer) as server:
        verdict, reason = _verdicts(server.port, test_pki)["TLS-MUTUAL-01"]
    assert verdict == Verdict.INCONCLUSIVE
    assert "application layer" in reason and "400 No required SSL certificate" in reason


def test_session_dropped_on_key_update_fails(test_pki) -> None:
    ctx = CONFIGS["tls13-only"][0](test_pki)
    with TlsTestServer(ctx, drop_on_any_record=True) as server:
        verdict, reason = _verdicts(server.port, test_pki)["TLS-KEYUPDATE-01"]
    assert verdict == Verdict.FAIL and "after our KeyUpdate" in reason


def _ocsp_response(leaf: pki.Issued, ca: pki.Issued, path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    response = (
        ocsp.OCSPResponseBuilder()
        .add_response(
            cert=leaf.certificate,
            issuer=ca.certificate,
            algorithm=hashes.SHA256(),
            cert_status=ocsp.OCSPCertStatus.GOOD,
            this_update=now - dt.timedelta(minutes=1),
            next_update=now + dt.timedelta(days=1),
            revocation_time=None,
            revocation_reason=None,
        )
        .responder_id(ocsp.OCSPResponderEncoding.HASH, ca.certificate)
        .sign(ca.key, hashes.SHA256())
    )
    path.write_bytes(response.public_bytes(serialization.Encoding.DER))


def test_ocsp_stapling_judged(external_server, test_pki, tmp_path) -> None:
    issued = pki.issue(
        "meter-ocsp", "server", issuer=test_pki.ca, ocsp_url="http://ocsp.metercert.invalid/"
    )
    leaf = test_pki.leaf("meter-ocsp", issued)
    staple = tmp_path / "ocsp.der"
    _ocsp_response(issued, test_pki.ca, staple)
    stapling = external_server(*s_server(leaf, "-status_file", str(staple)))
    plain = external_server(*s_server(leaf))
    assert _verdicts(stapling, test_pki)["TLS-OCSP-01"][0] == Verdict.PASS
    verdict, reason = _verdicts(plain, test_pki)["TLS-OCSP-01"]
    assert verdict == Verdict.FAIL and "no response is stapled" in reason


def test_groups_below_a_tightened_floor_fail(tls_server, test_pki, tmp_path) -> None:
    """OpenSSL 3 servers no longer accept sub-128-bit curves, so the check is shown to
    fail with a profile that asks for 192-bit groups (X25519 / P-256 are 128-bit)."""
    from metercert.tlsprobe import profile as profile_module

    shipped = Path(profile_module.__file__).parent / "profiles" / "iec62351-3.yaml"
    strict = tmp_path / "strict-groups.yaml"
    text = shipped.read_text()
    assert "min_group_security_bits:\n  value: 128" in text
    strict.write_text(
        text.replace(
            "min_group_security_bits:\n  value: 128", "min_group_security_bits:\n  value: 192"
        )
    )
    server = tls_server("good")
    target = TlsTarget(
        "127.0.0.1",
        server.port,
        test_pki.client.cert,
        test_pki.client.key,
        test_pki.ca_cert,
        profile=str(strict),
    )
    by_id = {r.spec.id: r for r in run_tls_checks(target, _tls_specs())}
    groups = by_id["TLS-GROUPS-01"]
    assert groups.verdict == Verdict.FAIL and "secp256r1" in groups.outcome.reason
    assert "secp384r1" not in groups.outcome.reason  # 192-bit: at the floor
