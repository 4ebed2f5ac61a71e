"""Verdicts on servers metercert did not build (openssl s_server, gnutls-serv) and on
scanner errors: a scanner that fails to answer never turns into a PASS."""

from __future__ import annotations

import dataclasses
import json
import traceback

from metercert.checks.base import Verdict
from metercert.cli import main
from metercert.cli.tls import _tls_specs, run_tls_checks
from metercert.tlsprobe import audit
from metercert.tlsprobe.audit import TlsTarget

from .conftest import gnutls_serv, s_server

# openssl and gnutls-serv come with Debian; scripts/test installs gnutls-bin (no silent skip).

# static RSA, anonymous DH and one good suite, TLS 1.2 only: the server of issue 18 item 1
WEAK_TLS12 = (
    "-tls1_2",
    "-cipher",
    "AES128-SHA:ADH-AES128-SHA:ECDHE-RSA-AES128-GCM-SHA256:@SECLEVEL=0",
)


def _verdicts(target: TlsTarget) -> dict[str, tuple[Verdict, str]]:
    return {r.spec.id: (r.verdict, r.outcome.reason) for r in run_tls_checks(target, _tls_specs())}


def _creds(p) -> list[str]:
    return ["--client-cert", p.client.cert, "--client-key", p.client.key, "--ca", p.ca_cert]


def _errored(name: str):
    """A scanner command attempt that failed the way sslyze reports its own bugs."""
    import sslyze

    try:
        raise RuntimeError(f"injected scanner failure in {name}")
    except RuntimeError as exc:
        trace = traceback.TracebackException.from_exception(exc)
    return sslyze.ScanCommandAttempt(
        status=sslyze.ScanCommandAttemptStatusEnum.ERROR,
        error_reason=sslyze.ScanCommandErrorReasonEnum.BUG_IN_SSLYZE,
        error_trace=trace,
        result=None,
    )


def _inject_scanner_error(monkeypatch, command: str = "tls_1_2_cipher_suites") -> None:
    """Every sslyze run (the first and the sequential retry) fails ``command``."""
    real = audit._run_sslyze

    def broken(*args, **kwargs):
        result = real(*args, **kwargs)
        if result.scan_result is None:
            return result
        scan = dataclasses.replace(result.scan_result, **{command: _errored(command)})
        return dataclasses.replace(result, scan_result=scan)

    monkeypatch.setattr(audit, "_run_sslyze", broken)


def test_s_server_with_static_rsa_and_anon_dh_fails(external_server, rsa_meter, test_pki, capsys):
    port = external_server(*s_server(rsa_meter, *WEAK_TLS12))
    code = main(["tls-audit", f"127.0.0.1:{port}", *_creds(test_pki), "--json"])
    doc = json.loads(capsys.readouterr().out)
    by_id = {c["id"]: c for c in doc["checks"]}
    assert code == 1
    assert by_id["TLS-FS-01"]["verdict"] == "fail"
    assert "TLS_RSA_WITH_AES_128_CBC_SHA" in json.dumps(by_id["TLS-FS-01"]["evidence"])
    assert by_id["TLS-CIPHER-01"]["verdict"] == "fail"
    assert "TLS_DH_anon_WITH_AES_128_CBC_SHA" in json.dumps(by_id["TLS-CIPHER-01"]["evidence"])


def test_scanner_error_is_confirmed_by_own_handshakes(
    external_server, rsa_meter, test_pki, monkeypatch
) -> None:
    """sslyze fails TLS 1.2 (as in the issue): own handshakes still see the weak suites."""
    _inject_scanner_error(monkeypatch)
    port = external_server(*s_server(rsa_meter, *WEAK_TLS12))
    target = TlsTarget(
        "127.0.0.1", port, test_pki.client.cert, test_pki.client.key, test_pki.ca_cert
    )
    verdicts = _verdicts(target)
    scan = target.scan()
    assert scan.suite_sources["TLS 1.2"] == "own handshakes"
    names = {s.openssl_name for s in scan.suites_for("TLS 1.2")}
    assert {"AES128-SHA", "ADH-AES128-SHA", "ECDHE-RSA-AES128-GCM-SHA256"} <= names
    assert verdicts["TLS-FS-01"][0] == Verdict.FAIL
    assert verdicts["TLS-CIPHER-01"][0] == Verdict.FAIL


def test_scanner_error_without_confirmation_is_inconclusive_and_exits_non_zero(
    tls_server, test_pki, monkeypatch, capsys
) -> None:
    """A conformant server whose TLS 1.2 enumeration fails and cannot be redone: no PASS."""
    _inject_scanner_error(monkeypatch)

    def no_answer(peer, version, candidates):
        return [], set(candidates), "injected: no answer"

    monkeypatch.setattr(audit, "_own_enumeration", no_answer)
    server = tls_server("good")
    code = main(["tls-audit", f"127.0.0.1:{server.port}", *_creds(test_pki), "--json"])
    doc = json.loads(capsys.readouterr().out)
    by_id = {c["id"]: c for c in doc["checks"]}
    assert code == 4
    for cid in ("TLS-FS-01", "TLS-CIPHER-01", "TLS-KEY-01"):
        assert by_id[cid]["verdict"] == "inconclusive", by_id[cid]
        assert "TLS 1.2" in by_id[cid]["reason"]
    assert "sslyze.errors" not in json.dumps(doc)


def test_good_server_with_a_client_certificate_it_rejects_is_not_a_pass(
    tls_server, test_pki, tmp_path
) -> None:
    """The issue's "only TLS 1.3 accepted": our certificate is from another CA."""
    from metercert.tlsprobe import pki

    other = pki.write_pki(tmp_path / "other")
    server = tls_server("good")
    target = TlsTarget(
        "127.0.0.1", server.port, str(other.headend_cert), str(other.headend_key), test_pki.ca_cert
    )
    verdicts = _verdicts(target)
    scan = target.scan()
    assert "TLS 1.2" in scan.versions_accepted  # found although the server refuses our cert
    assert verdicts["TLS-13-01"][0] == Verdict.PASS
    mutual = verdicts["TLS-MUTUAL-01"]
    assert mutual[0] == Verdict.INCONCLUSIVE and "operator client certificate" in mutual[1]


def test_gnutls_without_rfc5746_and_without_client_auth(external_server, test_pki) -> None:
    """Our client must not refuse the server and read that as the server refusing us."""
    port = external_server(
        *gnutls_serv(
            test_pki.meter, "--priority", "NORMAL:-VERS-TLS1.3:%DISABLE_SAFE_RENEGOTIATION"
        )
    )
    target = TlsTarget(
        "127.0.0.1", port, test_pki.client.cert, test_pki.client.key, test_pki.ca_cert
    )
    verdicts = _verdicts(target)
    assert verdicts["TLS-MUTUAL-01"][0] == Verdict.FAIL, verdicts["TLS-MUTUAL-01"]
    reneg = verdicts["TLS-RENEG-01"]
    assert reneg[0] == Verdict.FAIL and "RFC 5746" in reneg[1]


def test_gnutls_requiring_a_client_certificate_passes_mutual(external_server, test_pki) -> None:
    port = external_server(
        *gnutls_serv(
            test_pki.meter,
            "--require-client-cert",
            "--verify-client-cert",
            "--x509cafile",
            test_pki.ca_cert,
            "--priority",
            "SECURE256:+SECURE128:-VERS-ALL:+VERS-TLS1.2:+VERS-TLS1.3",
        )
    )
    target = TlsTarget(
        "127.0.0.1", port, test_pki.client.cert, test_pki.client.key, test_pki.ca_cert
    )
    verdicts = _verdicts(target)
    assert verdicts["TLS-MUTUAL-01"][0] == Verdict.PASS, verdicts["TLS-MUTUAL-01"]
    assert verdicts["TLS-VERSION-01"][0] == Verdict.PASS


def test_tls13_server_closing_after_every_handshake_is_inconclusive(tls_server, test_pki) -> None:
    """Every probe, the operator's too, is closed: the closes say nothing about client auth."""
    server = tls_server("tls13-only", close_after_handshake=True)
    target = TlsTarget(
        "127.0.0.1", server.port, test_pki.client.cert, test_pki.client.key, test_pki.ca_cert
    )
    verdict, reason = _verdicts(target)["TLS-MUTUAL-01"]
    assert verdict == Verdict.INCONCLUSIVE and "not accepted either" in reason


def test_brainpool_only_server_gets_a_hint_about_groups(external_server, test_pki, capsys) -> None:
    port = external_server(
        *s_server(
            test_pki.meter,
            "-tls1_2",
            "-groups",
            "brainpoolP256r1",
            "-cipher",
            "ECDHE-ECDSA-AES128-GCM-SHA256",
        )
    )
    assert main(["tls-audit", f"127.0.0.1:{port}", *_creds(test_pki)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "brainpool" in err and "--client-cert" not in err
    assert "sslyze" not in err and " -> " not in err


def test_a_scanner_that_never_returns_is_abandoned_at_its_budget(
    tls_server, test_pki, monkeypatch, capsys
) -> None:
    """sslyze blocked forever (as on a server that trickles answers): the audit goes on
    with own handshakes, and what they cannot test (SSL 2/3) is INCONCLUSIVE."""
    import threading

    from metercert.tlsprobe import handshake as hs

    never = threading.Event()
    monkeypatch.setattr(audit, "_run_sslyze", lambda *a, **k: never.wait())
    monkeypatch.setattr(hs.Timing, "scanner_budget_s", property(lambda self: 0.5))
    server = tls_server("tls10")
    code = main(["tls-audit", f"127.0.0.1:{server.port}", *_creds(test_pki), "--json"])
    never.set()
    by_id = {c["id"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
    assert code == 1  # the flaw is still seen by own handshakes
    version = by_id["TLS-VERSION-01"]
    assert version["verdict"] == "fail" and "TLS 1.0" in version["reason"]
    assert "budget" in json.dumps(by_id["TLS-COMP-01"])
    assert by_id["TLS-COMP-01"]["verdict"] == "inconclusive"
