"""The 62351-3 SSLContexts, exercised by real handshakes on 127.0.0.1."""

from __future__ import annotations

import socket
import ssl
import threading
import warnings

import pytest

from metercert.errors import InputFileError
from metercert.tlsprobe import contexts


def _handshake(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> tuple[str | None, str | None]:
    """Run one handshake; return (client result, server result) as version or error text."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    outcome: dict[str, str] = {}

    def serve() -> None:
        conn, _ = listener.accept()
        conn.settimeout(5)
        try:
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                outcome["server"] = str(tls.version())
                tls.recv(1)
        except (ssl.SSLError, OSError) as exc:
            outcome["server"] = f"error: {exc}"

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            client_ctx.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            tls.sendall(b"x")
            client = str(tls.version())
    except (ssl.SSLError, OSError) as exc:
        client = f"error: {exc}"
    thread.join(5)
    listener.close()
    return client, outcome.get("server")


@pytest.fixture
def server_ctx(test_pki) -> ssl.SSLContext:
    return contexts.server_context(test_pki.meter.cert, test_pki.meter.key, test_pki.ca_cert)


def test_mutual_tls13_between_our_contexts(server_ctx, test_pki) -> None:
    client_ctx = contexts.client_context(
        test_pki.ca_cert, test_pki.client.cert, test_pki.client.key
    )
    assert _handshake(server_ctx, client_ctx) == ("TLSv1.3", "TLSv1.3")


def test_contexts_set_the_62351_3_options(server_ctx, test_pki) -> None:
    client_ctx = contexts.client_context(test_pki.ca_cert)
    for ctx in (server_ctx, client_ctx):
        assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
        assert ctx.options & ssl.OP_NO_COMPRESSION and ctx.options & ssl.OP_NO_RENEGOTIATION
        tls12 = [c for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.2"]
        assert tls12 and all(c["aead"] and c["kea"] in ("kx-ecdhe", "kx-dhe") for c in tls12)
    assert server_ctx.verify_mode == ssl.CERT_REQUIRED
    assert client_ctx.verify_mode == ssl.CERT_REQUIRED and client_ctx.check_hostname


def test_server_refuses_client_without_certificate(server_ctx, test_pki) -> None:
    client_ctx = contexts.client_context(test_pki.ca_cert)
    client_ctx.maximum_version = ssl.TLSVersion.TLSv1_2  # refusal inside the handshake
    client, server = _handshake(server_ctx, client_ctx)
    assert client.startswith("error") and server is not None and server.startswith("error")


def test_server_refuses_tls11_and_static_rsa(server_ctx, test_pki) -> None:
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname, old.verify_mode = False, ssl.CERT_NONE
    old.set_ciphers("ALL:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old.minimum_version = ssl.TLSVersion.TLSv1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    assert _handshake(server_ctx, old)[0].startswith("error")
    static = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    static.check_hostname, static.verify_mode = False, ssl.CERT_NONE
    static.maximum_version = ssl.TLSVersion.TLSv1_2
    static.set_ciphers("AES128-GCM-SHA256")
    assert _handshake(server_ctx, static)[0].startswith("error")


def test_client_rejects_a_meter_from_another_ca(tmp_path, test_pki) -> None:
    from metercert.tlsprobe import pki

    other = pki.write_pki(tmp_path / "other")
    server_ctx = contexts.server_context(other.meter_cert, other.meter_key, test_pki.ca_cert)
    client_ctx = contexts.client_context(
        test_pki.ca_cert, test_pki.client.cert, test_pki.client.key
    )
    client, _ = _handshake(server_ctx, client_ctx)
    assert "certificate verify failed" in client


def test_missing_or_bad_files_are_input_errors(tmp_path, test_pki) -> None:
    with pytest.raises(InputFileError, match="not found"):
        contexts.server_context(tmp_path / "none.pem", test_pki.meter.key, test_pki.ca_cert)
    with pytest.raises(InputFileError, match="cannot load certificate and key"):
        contexts.server_context(test_pki.meter.cert, test_pki.client.key, test_pki.ca_cert)
    junk = tmp_path / "junk.pem"
    junk.write_text("not pem")
    with pytest.raises(InputFileError, match="not a PEM CA"):
        contexts.client_context(junk)
    with pytest.raises(InputFileError, match="both"):
        contexts.client_context(test_pki.ca_cert, cert=test_pki.client.cert)
    with pytest.raises(InputFileError, match="--ca"):
        contexts.server_context(test_pki.meter.cert, test_pki.meter.key, None)
