"""DTLS 1.2 audits of UDP endpoints (``metercert tls-audit udp://HOST:PORT``) against
third-party DTLS servers: openssl s_server -dtls1_2 (conformant and flawed) and
gnutls-serv --udp."""

from __future__ import annotations

import json

from metercert.cli import main

from .conftest import gnutls_serv, s_server

STRICT = (
    "-dtls1_2", "-Verify", "1", "-verify_return_error",
    "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384",
)  # fmt: skip


def _audit(port: int, p, capsys, *extra: str) -> tuple[int, dict[str, dict]]:
    argv = [
        "tls-audit", f"udp://127.0.0.1:{port}", "--client-cert", p.client.cert,
        "--client-key", p.client.key, "--ca", p.ca_cert, "--json", *extra,
    ]  # fmt: skip
    code = main(argv)
    doc = json.loads(capsys.readouterr().out)
    assert doc["run"]["target"].startswith(f"udp://127.0.0.1:{port} (DTLS")
    return code, {c["id"]: c for c in doc["checks"]}


def test_conformant_dtls12_server(external_server, test_pki, capsys) -> None:
    port = external_server(
        *s_server(test_pki.meter, *STRICT, "-CAfile", test_pki.ca_cert), udp=True
    )
    code, by_id = _audit(port, test_pki, capsys)
    for cid in (
        "TLS-VERSION-01", "TLS-FS-01", "TLS-CIPHER-01", "TLS-MUTUAL-01", "TLS-CERT-01",
        "TLS-KEY-01", "TLS-VALID-01", "TLS-SAN-01", "TLS-RENEG-01", "TLS-EMS-01", "TLS-SIGALG-01", "TLS-RESUME-01",
    ):  # fmt: skip
        assert by_id[cid]["verdict"] == "pass", by_id[cid]
    assert "DTLS 1.2" in json.dumps(by_id["TLS-VERSION-01"]["evidence"])
    # what a DTLS probe cannot read stays INCONCLUSIVE, so the audit cannot exit 0
    assert by_id["TLS-COMP-01"]["verdict"] == "inconclusive"
    assert (
        by_id["TLS-13-01"]["verdict"] == "inconclusive"
        and "DTLS 1.3" in by_id["TLS-13-01"]["reason"]
    )
    assert code == 4


def test_flawed_dtls_server(external_server, test_pki, capsys) -> None:
    """DTLS 1.0 allowed, OpenSSL's default suites (CBC with SHA-1), client certificate
    requested but not verified (s_server without -verify_return_error)."""
    port = external_server(
        *s_server(test_pki.meter, "-dtls", "-verify", "1", "-CAfile", test_pki.ca_cert,
                  "-cipher", "ALL:@SECLEVEL=0"),
        udp=True,
    )  # fmt: skip
    code, by_id = _audit(port, test_pki, capsys)
    assert code == 1
    assert (
        by_id["TLS-VERSION-01"]["verdict"] == "fail"
        and "TLS 1.1" in by_id["TLS-VERSION-01"]["reason"]
    )
    assert by_id["TLS-CIPHER-01"]["verdict"] == "fail"
    mutual = by_id["TLS-MUTUAL-01"]
    assert mutual["verdict"] == "fail" and "was accepted" in mutual["reason"]


def test_gnutls_udp_without_client_auth(external_server, test_pki, capsys) -> None:
    """gnutls answers a ClientHello without a common suite with silence (after its
    cookie), so those attempts are "unknown": the suite list stays incomplete."""
    port = external_server(*gnutls_serv(test_pki.meter, "--udp"), udp=True)
    code, by_id = _audit(port, test_pki, capsys, "--timeout", "1")
    assert by_id["TLS-CIPHER-01"]["verdict"] == "fail"  # CBC-SHA1 seen even so
    assert code == 1
    assert by_id["TLS-MUTUAL-01"]["verdict"] == "fail"
    assert by_id["TLS-SAN-01"]["verdict"] == "pass"


def test_nothing_on_the_udp_port_is_one_line_exit_2(capsys) -> None:
    from .conftest import free_port

    port = free_port(udp=True)
    assert main(["tls-audit", f"udp://127.0.0.1:{port}", "--timeout", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("metercert: error: ") and err.count("\n") == 1
    assert f"udp://127.0.0.1:{port}" in err
