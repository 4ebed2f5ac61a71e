"""``metercert tls-audit``: exit codes, table, JSON, one-line errors, and the shared probe cache."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from metercert.cli import main
from metercert.errors import ConnectionFailed
from metercert.tlsprobe import audit
from metercert.tlsprobe.audit import TlsTarget


def _creds(p) -> list[str]:
    return ["--client-cert", p.client.cert, "--client-key", p.client.key, "--ca", p.ca_cert]


def _negative(p) -> list[str]:
    return [
        "--expired-client", p.expired_client.cert, p.expired_client.key,
        "--revoked-client", p.revoked_client.cert, p.revoked_client.key,
    ]  # fmt: skip


def test_good_endpoint_exits_0_with_table(tls_server, test_pki, capsys) -> None:
    server = tls_server("good")
    argv = ["tls-audit", f"127.0.0.1:{server.port}", *_creds(test_pki), *_negative(test_pki)]
    assert main([*argv, "--evidence"]) == 0
    out = capsys.readouterr().out
    assert "TLS-MUTUAL-01" in out and "19 pass, 0 fail, 0 inconclusive, 1 n/a" in out
    assert "sslyze" in out
    assert "handshake without a client certificate: rejected" in out  # --evidence


def test_flawed_endpoint_exits_1_and_json_has_the_results_shape(
    tls_server, test_pki, capsys
) -> None:
    server = tls_server("no-client-auth")
    argv = ["tls-audit", f"127.0.0.1:{server.port}", *_creds(test_pki), *_negative(test_pki)]
    assert main([*argv, "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "metercert-results" and doc["schema_version"] == 1
    assert doc["summary"] == {"pass": 17, "fail": 2, "inconclusive": 0, "not-applicable": 1}
    failed = {c["id"] for c in doc["checks"] if c["verdict"] == "fail"}
    assert failed == {"TLS-MUTUAL-01", "TLS-CLIENTVAL-01"}
    by_id = {c["id"]: c for c in doc["checks"]}
    mutual = by_id["TLS-MUTUAL-01"]
    assert (
        mutual["verdict"] == "fail"
        and "without a client certificate was accepted" in mutual["reason"]
    )
    assert "IEC62351-3:MUTUAL-AUTH" in mutual["requirements"] and mutual["target"] == "tls"
    assert any(
        "handshake without a client certificate: accepted" in e["content"]
        for e in mutual["evidence"]
    )
    # no private key material anywhere in the report
    key_body = "".join(Path(test_pki.client.key).read_text().splitlines()[1:-1])
    assert key_body[:40] not in json.dumps(doc)


def test_tightened_profile_turns_tls12_into_a_failure(
    tls_server, test_pki, tmp_path, capsys
) -> None:
    from metercert.tlsprobe import profile as profile_module

    shipped = Path(profile_module.__file__).parent / "profiles" / "iec62351-3.yaml"
    strict = tmp_path / "strict.yaml"
    strict.write_text(shipped.read_text().replace('value: "1.2"', 'value: "1.3"'))
    server = tls_server("good")
    code = main(
        [
            "tls-audit",
            f"127.0.0.1:{server.port}",
            *_creds(test_pki),
            "--profile",
            str(strict),
            "--json",
        ]
    )
    doc = json.loads(capsys.readouterr().out)
    assert code == 1
    assert [c["id"] for c in doc["checks"] if c["verdict"] == "fail"] == ["TLS-VERSION-01"]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_closed_port_is_one_line_exit_2() -> None:
    port = _closed_port()
    proc = subprocess.run(
        [sys.executable, "-m", "metercert", "tls-audit", f"127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert (
        proc.stderr == f"metercert: error: cannot connect to 127.0.0.1:{port}: connection refused\n"
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["tls-audit", "127.0.0.1"], "not HOST:PORT"),
        (
            ["tls-audit", "127.0.0.1:1", "--client-cert", "x.pem"],
            "both --client-cert and --client-key",
        ),
        (
            ["tls-audit", "127.0.0.1:1", "--ca", "/nonexistent/ca.pem"],
            "/nonexistent/ca.pem: CA certificate not found",
        ),
        (["tls-audit", "127.0.0.1:1", "--profile", "/nonexistent/p.yaml"], "TLS profile not found"),
    ],
)
def test_usage_errors_are_one_line(argv: list[str], message: str, capsys) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("metercert: error:") and message in err and err.count("\n") == 1


def test_non_tls_port_is_a_connection_error(capsys) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def answer_garbage() -> None:
        for _ in range(8):  # bounded: sslyze retries a few connections
            try:
                listener.settimeout(10)
                conn, _ = listener.accept()
            except OSError:
                return
            conn.sendall(b"HTTP/1.0 400 nope\r\n\r\n")
            conn.close()

    threading.Thread(target=answer_garbage, daemon=True).start()
    try:
        assert main(["tls-audit", f"127.0.0.1:{port}", "--timeout", "1"]) == 2
    finally:
        listener.close()
    err = capsys.readouterr().err
    assert (
        err.startswith(f"metercert: error: TLS handshake with 127.0.0.1:{port} failed")
        and err.count("\n") == 1
    )


def test_concurrent_checks_share_one_probe(tls_server, test_pki, monkeypatch) -> None:
    calls = []
    real = audit.scan_endpoint

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(audit, "scan_endpoint", counting)
    server = tls_server("good")
    target = TlsTarget(
        "127.0.0.1", server.port, test_pki.client.cert, test_pki.client.key, test_pki.ca_cert
    )
    seen = []
    threads = [threading.Thread(target=lambda: seen.append(target.scan())) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(calls) == 1 and len(seen) == 6 and all(s is seen[0] for s in seen)


def test_connection_failure_is_cached_too(monkeypatch) -> None:
    calls = []
    real = audit.scan_endpoint
    monkeypatch.setattr(audit, "scan_endpoint", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    target = TlsTarget("127.0.0.1", _closed_port())
    for _ in range(3):
        with pytest.raises(ConnectionFailed, match="connection refused"):
            target.scan()
    assert len(calls) == 1
    assert "key" not in repr(TlsTarget("127.0.0.1", 1)).replace("client_key=None", "")


def test_campaign_runner_probes_at_open_and_runs_the_tls_checks(tls_server, test_pki) -> None:
    """The TLS target plugs into the shared campaign runner (probe in its open() hook)."""
    from metercert.campaign import runner
    from metercert.checks import all_checks
    from metercert.checks.base import TargetKind, Verdict

    server = tls_server("static-rsa")
    target = TlsTarget(
        "127.0.0.1", server.port, test_pki.client.cert, test_pki.client.key, test_pki.ca_cert
    )
    specs = [s for s in all_checks().values() if s.target == TargetKind.TLS]
    run = runner.run_campaign({TargetKind.TLS: target}, specs, progress=False)
    verdicts = {r.spec.id: r.verdict for r in run.results}
    assert {cid for cid, v in verdicts.items() if v == Verdict.FAIL} == {"TLS-FS-01"}
    assert run.exit_code == 1

    closed = TlsTarget("127.0.0.1", _closed_port())
    run = runner.run_campaign({TargetKind.TLS: closed}, specs, progress=False)
    assert all(r.verdict == Verdict.INCONCLUSIVE for r in run.results)
    assert "connection refused" in run.results[0].outcome.reason
