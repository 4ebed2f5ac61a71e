"""DTLS 1.2 handshakes (IEC 62351-3's UDP alternative) through pyOpenSSL.

No scanner speaks DTLS, so every fact comes from own handshakes: pyOpenSSL's
``DTLS_CLIENT_METHOD`` (OpenSSL inside the ``cryptography`` wheel) driven over
memory BIOs and a connected UDP socket. Datagrams are pumped by hand with one
deadline for the whole attempt; OpenSSL's DTLS retransmission timer is honoured
(``DTLSv1_get_timeout`` / ``DTLSv1_handle_timeout``), so a lost datagram is resent
rather than read as a refusal. The attempt outcomes match :mod:`.handshake`.
"""

from __future__ import annotations

import select
import socket
import time
from dataclasses import dataclass, field

from cryptography import x509
from OpenSSL import SSL

from metercert.tlsprobe.handshake import Outcome

# OpenSSL's DTLS version numbers (pyOpenSSL names only the TLS ones)
_DTLS1_VERSION = 0xFEFF
_DTLS1_2_VERSION = 0xFEFD
# label used by the checks -> (OpenSSL version constant, wire name)
DTLS_VERSIONS = {
    "TLS 1.1": (_DTLS1_VERSION, "DTLS 1.0"),  # DTLS 1.0 is TLS 1.1 over datagrams
    "TLS 1.2": (_DTLS1_2_VERSION, "DTLS 1.2"),
}


@dataclass(frozen=True)
class DtlsAttempt:
    outcome: Outcome
    detail: str
    version: str | None = None
    cipher: str | None = None
    chain: tuple[x509.Certificate, ...] = field(default=(), repr=False)
    reply_s: float | None = None


def context(
    cert: str | None = None,
    key: str | None = None,
    *,
    version: str | None = None,
    ciphers: str = "ALL:COMPLEMENTOFALL:@SECLEVEL=0",
) -> SSL.Context:
    """A permissive DTLS client that reaches the server's own decisions."""
    ctx = SSL.Context(SSL.DTLS_CLIENT_METHOD)
    ctx.set_verify(SSL.VERIFY_NONE, lambda *a: True)
    ctx.set_cipher_list(ciphers.encode())
    if version is not None:
        v = DTLS_VERSIONS[version][0]
        ctx.set_min_proto_version(v)
        ctx.set_max_proto_version(v)
    else:
        ctx.set_min_proto_version(_DTLS1_VERSION)
        ctx.set_max_proto_version(_DTLS1_2_VERSION)
    if cert and key:
        ctx.use_certificate_chain_file(cert)
        ctx.use_privatekey_file(key)
    return ctx


def offerable_suites(version: str) -> frozenset[str]:
    """OpenSSL names of the suites this client can offer over DTLS at ``version``."""
    conn = SSL.Connection(context(version=version), None)
    names = {n for n in conn.get_cipher_list() if "PSK" not in n and "SRP" not in n}
    if version != "TLS 1.2":
        names = {n for n in names if "GCM" not in n and "SHA256" not in n and "SHA384" not in n}
        names = {n for n in names if "CHACHA" not in n and "CCM" not in n}
    return frozenset(n for n in names if not n.startswith("TLS_"))  # TLS 1.3 suites


def _alert(exc: SSL.Error) -> str:
    parts = [str(x) for arg in exc.args for x in (arg if isinstance(arg, list) else [arg])]
    return "; ".join(parts)[:200] or exc.__class__.__name__


def handshake(
    ip: str,
    port: int,
    ctx: SSL.Context,
    *,
    deadline_s: float,
    sni: str | None = None,
) -> DtlsAttempt:
    """One DTLS handshake over UDP that ends by ``deadline_s`` whatever the server does."""
    end = time.monotonic() + deadline_s
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect((ip, port))
        except OSError as exc:
            return DtlsAttempt("error", f"connection failed: {exc.strerror or exc}")
        conn = SSL.Connection(ctx, None)
        if sni:
            conn.set_tlsext_host_name(sni.encode())
        conn.set_connect_state()
        sent_at: float | None = None
        reply: float | None = None
        received = 0

        def flush() -> None:
            nonlocal sent_at
            while True:
                try:
                    data = conn.bio_read(65536)
                except SSL.WantReadError:
                    return
                sock.send(data)
                if sent_at is None:
                    sent_at = time.monotonic()

        def chosen() -> dict:
            return {"cipher": conn.get_cipher_name() if received else None, "reply_s": reply}

        while True:
            try:
                conn.do_handshake()
                flush()
                break
            except SSL.WantReadError:
                flush()
            except SSL.Error as exc:
                try:
                    flush()
                except OSError:
                    pass
                text = _alert(exc)
                if "alert" in text.lower():
                    return DtlsAttempt("rejected", f"server alert: {text}", **chosen())
                return DtlsAttempt("error", f"our client stopped the handshake: {text}", **chosen())
            except OSError as exc:
                # ICMP port unreachable surfaces as ECONNREFUSED on a connected UDP socket
                return DtlsAttempt("error", f"connection failed: {exc.strerror or exc}")
            left = end - time.monotonic()
            if left <= 0:
                return DtlsAttempt(
                    "unknown",
                    f"DTLS handshake not finished within {deadline_s:.1f} s "
                    f"({received} bytes received)",
                    **chosen(),
                )
            retransmit = conn.DTLSv1_get_timeout()
            wait = min(left, retransmit if retransmit is not None else left)
            try:
                ready, _, _ = select.select([sock], [], [], max(0.01, wait))
                if not ready:
                    conn.DTLSv1_handle_timeout()  # OpenSSL resends its last flight
                    continue
                data = sock.recv(65536)
            except ConnectionRefusedError:
                return DtlsAttempt("error", "connection failed: port unreachable (nothing on UDP)")
            except OSError as exc:
                return DtlsAttempt("error", f"connection failed: {exc.strerror or exc}")
            if reply is None and sent_at is not None:
                reply = time.monotonic() - sent_at
            received += len(data)
            conn.bio_write(data)
        chain = tuple(c for c in (conn.get_peer_cert_chain(as_cryptography=True) or ()))
        try:  # close_notify: a server serving one peer at a time is free for the next
            conn.shutdown()
            flush()
        except (SSL.Error, OSError):
            pass
        return DtlsAttempt(
            "accepted",
            "handshake completed",
            conn.get_protocol_version_name(),
            conn.get_cipher_name(),
            chain,
            reply,
        )
