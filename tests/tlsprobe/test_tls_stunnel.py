"""stunnel4 (OpenSSL inside, configured the way sites deploy it) as a third-party server:
session-ticket lifetime and a TLS 1.3 front end that closes every session."""

from __future__ import annotations

from pathlib import Path

from metercert.checks.base import Verdict
from metercert.cli.tls import _tls_specs, run_tls_checks
from metercert.tlsprobe.audit import TlsTarget

from .conftest import free_port


def _stunnel(tmp_path: Path, external_server, p, **options: str) -> int:
    """stunnel4 in the foreground with an echo backend (/bin/cat) unless ``connect`` is given."""
    lines = ["foreground = yes", "pid =", "debug = 3", "[meter]", "accept = 127.0.0.1:{port}"]
    if "connect" not in options:
        lines.append("exec = /bin/cat")
    lines += [f"cert = {p.meter.cert}", f"key = {p.meter.key}"]
    lines += [f"{k} = {v}" for k, v in options.items()]
    config = tmp_path / "stunnel-{port}.conf"
    return external_server(
        "sh",
        "-c",
        f"cat > {config} <<'EOF'\n" + "\n".join(lines) + f"\nEOF\nexec stunnel4 {config}",
    )


def _verdicts(port: int, p) -> dict[str, tuple[Verdict, str]]:
    target = TlsTarget("127.0.0.1", port, p.client.cert, p.client.key, p.ca_cert)
    return {r.spec.id: (r.verdict, r.outcome.reason) for r in run_tls_checks(target, _tls_specs())}


def test_seven_day_session_tickets_fail_resumption(tmp_path, external_server, test_pki) -> None:
    port = _stunnel(tmp_path, external_server, test_pki, sessionCacheTimeout="604800")
    verdict, reason = _verdicts(port, test_pki)["TLS-RESUME-01"]
    assert verdict == Verdict.FAIL and "604800 s" in reason and "7.0 days" in reason


def test_default_ticket_lifetime_passes(tmp_path, external_server, test_pki) -> None:
    port = _stunnel(tmp_path, external_server, test_pki)
    verdict, reason = _verdicts(port, test_pki)["TLS-RESUME-01"]
    assert verdict == Verdict.PASS, reason


def test_tls13_stunnel_closing_every_session_is_not_a_mutual_pass(
    tmp_path, external_server, test_pki
) -> None:
    """The backend is down, so stunnel closes every session, the operator's too."""
    port = _stunnel(
        tmp_path,
        external_server,
        test_pki,
        connect=f"127.0.0.1:{free_port()}",
        sslVersionMin="TLSv1.3",
        verifyChain="yes",
        CAfile=test_pki.ca_cert,
        requireCert="yes",
    )
    verdict, reason = _verdicts(port, test_pki)["TLS-MUTUAL-01"]
    assert verdict == Verdict.INCONCLUSIVE and "not accepted either" in reason
