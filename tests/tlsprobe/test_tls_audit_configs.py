"""The TLS audit against real servers on 127.0.0.1: each flawed configuration must
fail exactly the checks for its flaw, and the conformant server must pass all."""

from __future__ import annotations

import time

import pytest

from metercert.checks.base import Verdict
from metercert.checks.tls import tls_check_ids
from metercert.cli.tls import _tls_specs, run_tls_checks
from metercert.tlsprobe.audit import TlsTarget


def _audit(port: int, p) -> dict[str, tuple[Verdict, str]]:
    target = TlsTarget(
        "127.0.0.1",
        port,
        p.client.cert,
        p.client.key,
        p.ca_cert,
        expired_client=(p.expired_client.cert, p.expired_client.key),
        revoked_client=(p.revoked_client.cert, p.revoked_client.key),
    )
    results = run_tls_checks(target, _tls_specs())
    return {r.spec.id: (r.verdict, r.outcome.reason) for r in results}


def test_exactly_the_matching_checks_fail(
    tls_config: str, tls_server, test_pki, expected_failures
) -> None:
    server = tls_server(tls_config)
    verdicts = _audit(server.port, test_pki)
    expected = expected_failures(tls_config)
    failed = {cid for cid, (v, _) in verdicts.items() if v == Verdict.FAIL}
    assert failed == expected, {cid: verdicts[cid] for cid in failed ^ expected}
    others = {cid: vr for cid, vr in verdicts.items() if cid not in expected}
    # not applicable only where the server lacks what the check is about
    assert all(v in (Verdict.PASS, Verdict.NOT_APPLICABLE) for v, _ in others.values()), {
        cid: vr for cid, vr in others.items() if vr[0] != Verdict.PASS
    }
    assert len(verdicts) == len(tls_check_ids())


def test_audit_of_one_endpoint_is_fast_and_probes_once(tls_server, test_pki) -> None:
    server = tls_server("good")
    target = TlsTarget(
        "127.0.0.1", server.port, test_pki.client.cert, test_pki.client.key, test_pki.ca_cert
    )
    t0 = time.perf_counter()
    run_tls_checks(target, _tls_specs())
    elapsed = time.perf_counter() - t0
    print(f"\nTLS audit of one endpoint (12 checks, one probe): {elapsed:.2f} s")
    first = target.scan()
    assert target.scan() is first  # cached: later checks read the same facts


def test_evidence_names_versions_suites_and_certificate(tls_server, test_pki) -> None:
    server = tls_server("static-rsa")
    target = TlsTarget(
        "127.0.0.1", server.port, test_pki.client.cert, test_pki.client.key, test_pki.ca_cert
    )
    by_id = {r.spec.id: r for r in run_tls_checks(target, _tls_specs())}
    fs = by_id["TLS-FS-01"]
    text = "\n".join(e.content for e in fs.outcome.evidence)
    assert "TLS_RSA_WITH_AES_128_GCM_SHA256" in text
    assert "TLS 1.2" in fs.outcome.reason
    version_text = "\n".join(e.content for e in by_id["TLS-VERSION-01"].outcome.evidence)
    assert "TLS 1.0: rejected" in version_text and "TLS 1.3: accepted" in version_text
    cert_text = "\n".join(e.content for e in by_id["TLS-KEY-01"].outcome.evidence)
    assert "RSA 2048" in cert_text
    # requirement mapping carried by the declaration
    assert "IEC62351-3:CIPHER-FS" in fs.spec.requirements and "CRA:I.2e" in fs.spec.requirements


def test_without_client_credentials_mutual_auth_still_judged(tls_server, test_pki) -> None:
    """Without the operator certificate a refusal proves nothing (INCONCLUSIVE); an
    acceptance without any certificate is still a flaw seen (FAIL)."""
    good = tls_server("good")
    open_server = tls_server("no-client-auth")
    for port, expected in ((good.port, Verdict.INCONCLUSIVE), (open_server.port, Verdict.FAIL)):
        target = TlsTarget("127.0.0.1", port, ca=test_pki.ca_cert)
        by_id = {r.spec.id: r for r in run_tls_checks(target, _tls_specs())}
        assert by_id["TLS-MUTUAL-01"].verdict == expected
    # renegotiation cannot be tested against a server that demands a certificate we lack
    target = TlsTarget("127.0.0.1", good.port, ca=test_pki.ca_cert)
    reneg = {r.spec.id: r for r in run_tls_checks(target, _tls_specs())}["TLS-RENEG-01"]
    assert reneg.verdict == Verdict.INCONCLUSIVE and "--client-cert" in reneg.outcome.reason


def test_near_expiry_passes_with_a_warning(tls_server, test_pki) -> None:
    server = tls_server("near-expiry")
    verdicts = _audit(server.port, test_pki)
    verdict, reason = verdicts["TLS-VALID-01"]
    assert verdict == Verdict.PASS and "WARNING: leaf expires in" in reason


def test_without_ca_the_chain_is_not_validated_but_dates_are(tls_server, test_pki) -> None:
    server = tls_server("expired")
    target = TlsTarget("127.0.0.1", server.port, test_pki.client.cert, test_pki.client.key)
    valid = {r.spec.id: r for r in run_tls_checks(target, _tls_specs())}["TLS-VALID-01"]
    assert valid.verdict == Verdict.FAIL and "expired on" in valid.outcome.reason
    assert target.scan().chain_validated_with_ca is None


def test_parse_endpoint_forms() -> None:
    from metercert.errors import UsageError
    from metercert.tlsprobe.audit import parse_endpoint

    assert parse_endpoint("127.0.0.1:4059") == ("127.0.0.1", 4059)
    assert parse_endpoint("[::1]:4059") == ("::1", 4059)
    assert parse_endpoint("meter-7.example:443") == ("meter-7.example", 443)
    for bad in ("127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000", ":443", "[::1]4059"):
        with pytest.raises(UsageError):
            parse_endpoint(bad)
