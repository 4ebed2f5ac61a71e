"""Real TLS servers on 127.0.0.1 in good and deliberately flawed configurations.

Each server is a plain threaded ``ssl`` server: it accepts, completes the
handshake, then reads until the peer closes (so renegotiation requests are
processed). Flawed servers start from the conformant context and change one
thing, so a test can assert that exactly the matching checks fail.
"""

from __future__ import annotations

import select
import socket
import ssl
import subprocess
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import pytest

from metercert.tlsprobe import contexts, pki


class TlsTestServer:
    """A threaded TLS server on 127.0.0.1 (ephemeral port) for one SSLContext."""

    def __init__(
        self,
        ctx: ssl.SSLContext,
        *,
        close_after_handshake: bool = False,
        refuse_without_cert: bytes | None = None,
        drop_on_any_record: bool = False,
    ) -> None:
        self.ctx = ctx
        self.close_after_handshake = close_after_handshake
        # like nginx's "400 No required SSL certificate was sent": TLS completes, HTTP refuses
        self.refuse_without_cert = refuse_without_cert
        # a TLS 1.3 stack that ends the session on any post-handshake record (KeyUpdate)
        self.drop_on_any_record = drop_on_any_record
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.settimeout(0.2)
        self.port: int = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.handshakes = 0

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        try:
            with self.ctx.wrap_socket(conn, server_side=True) as tls:
                self.handshakes += 1
                if self.close_after_handshake:
                    return
                if self.refuse_without_cert is not None and not tls.getpeercert(binary_form=True):
                    tls.sendall(self.refuse_without_cert)
                    return
                if self.drop_on_any_record:
                    select.select([tls], [], [], 5)
                    return
                while tls.recv(1024):
                    pass
        except (OSError, ssl.SSLError):
            pass
        finally:
            conn.close()


@dataclass(frozen=True)
class Credentials:
    """File paths of one issued certificate + key."""

    cert: str
    key: str


@dataclass(frozen=True)
class TestPki:
    directory: Path
    ca: pki.Issued
    ca_cert: str
    client: Credentials
    meter: Credentials
    expired_client: Credentials
    revoked_client: Credentials
    crl: str  # lists revoked_client; conformant test servers check it

    def leaf(self, stem: str, issued: pki.Issued) -> Credentials:
        cert, key = pki.write_issued(self.directory, stem, issued)
        return Credentials(str(cert), str(key))


@pytest.fixture(scope="session")
def test_pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    directory = tmp_path_factory.mktemp("tls-pki")
    paths = pki.write_pki(directory)
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    ca = pki.Issued(
        x509.load_pem_x509_certificate(paths.ca_cert.read_bytes()),
        serialization.load_pem_private_key(paths.ca_key.read_bytes(), None),  # type: ignore[arg-type]
    )
    expired = pki.expired("head-end-expired", ca, role="client")
    revoked = pki.issue("head-end-revoked", "client", issuer=ca)
    crl = directory / "revoking.crl"
    crl.write_bytes(
        pki.crl_revoking(ca, [revoked.certificate]).public_bytes(serialization.Encoding.PEM)
    )

    def write(stem: str, issued: pki.Issued) -> Credentials:
        cert, key = pki.write_issued(directory, stem, issued)
        return Credentials(str(cert), str(key))

    return TestPki(
        directory,
        ca,
        str(paths.ca_cert),
        Credentials(str(paths.headend_cert), str(paths.headend_key)),
        Credentials(str(paths.meter_cert), str(paths.meter_key)),
        write("headend-expired", expired),
        write("headend-revoked", revoked),
        str(crl),
    )


def _weak(ctx: ssl.SSLContext, ciphers: str = contexts.TLS12_CIPHERS) -> ssl.SSLContext:
    """Let OpenSSL load/offer weak material (SHA-1, RSA-1024, TLS 1.0) for a flawed server."""
    ctx.set_ciphers(f"{ciphers}:@SECLEVEL=0")
    return ctx


def _checks_crl(p: TestPki, ctx: ssl.SSLContext) -> ssl.SSLContext:
    """Validate client certificates against the operator CRL too (62351-3 revocation)."""
    ctx.load_verify_locations(p.crl)
    ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    return ctx


def _conformant(p: TestPki, leaf: Credentials, **kw: bool) -> ssl.SSLContext:
    return _checks_crl(p, contexts.server_context(leaf.cert, leaf.key, p.ca_cert, **kw))


def _tls10(p: TestPki) -> ssl.SSLContext:
    ctx = _weak(_conformant(p, p.meter), "ECDHE+AESGCM:ECDHE+AES")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.TLSv1
    return ctx


def _static_rsa(p: TestPki) -> ssl.SSLContext:
    leaf = p.leaf("rsa2048", pki.issue("meter-rsa", "server", issuer=p.ca, key_spec="RSA-2048"))
    ctx = _conformant(p, leaf)
    ctx.set_ciphers("ECDHE-RSA-AES128-GCM-SHA256:AES128-GCM-SHA256")
    return ctx


# OpenSSL 3.0 refuses client-initiated renegotiation unless this option is set;
# the ssl module has no name for it (SSL_OP_ALLOW_CLIENT_RENEGOTIATION, bit 8).
_OP_ALLOW_CLIENT_RENEGOTIATION = 1 << 8


def _reneg(p: TestPki) -> ssl.SSLContext:
    ctx = _conformant(p, p.meter)
    ctx.options = (ctx.options & ~ssl.OP_NO_RENEGOTIATION) | _OP_ALLOW_CLIENT_RENEGOTIATION
    return ctx


def _tls12_only(p: TestPki) -> ssl.SSLContext:
    ctx = _conformant(p, p.meter)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def _tls13_only(p: TestPki, require_client_cert: bool = True) -> ssl.SSLContext:
    # TLS 1.3 judges the client certificate after the client's Finished: this
    # exercises the probe's wait-for-alert path instead of an in-handshake refusal.
    ctx = _conformant(p, p.meter, require_client_cert=require_client_cert)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    return ctx


def _with_leaf(
    make: Callable[[TestPki], pki.Issued], stem: str, weak: bool = False
) -> Callable[[TestPki], ssl.SSLContext]:
    def build(p: TestPki) -> ssl.SSLContext:
        leaf = p.leaf(stem, make(p))
        if weak:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            _weak(ctx)
            ctx.load_cert_chain(leaf.cert, leaf.key)  # needs level 0 before loading
            ctx.load_verify_locations(p.ca_cert)
            _checks_crl(p, ctx)
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
            return ctx
        return _conformant(p, leaf)

    return build


def _no_revocation_check(p: TestPki) -> ssl.SSLContext:
    return contexts.server_context(p.meter.cert, p.meter.key, p.ca_cert)


# OpenSSL 3 option the ssl module does not name (SSL_OP_NO_EXTENDED_MASTER_SECRET, bit 0)
_OP_NO_EXTENDED_MASTER_SECRET = 1 << 0


def _no_ems(p: TestPki) -> ssl.SSLContext:
    ctx = _tls12_only(p)
    ctx.options |= _OP_NO_EXTENDED_MASTER_SECRET
    return ctx


# name -> (context builder, the checks that must fail against it)
CONFIGS: dict[str, tuple[Callable[[TestPki], ssl.SSLContext], set[str]]] = {
    "good": (lambda p: _conformant(p, p.meter), set()),
    # SECLEVEL=0 servers also sign their key exchange with SHA-1 when asked: TLS-SIGALG-01
    "tls10": (_tls10, {"TLS-VERSION-01", "TLS-CIPHER-01", "TLS-SIGALG-01"}),
    "static-rsa": (_static_rsa, {"TLS-FS-01"}),
    "no-client-auth": (
        lambda p: _conformant(p, p.meter, require_client_cert=False),
        {"TLS-MUTUAL-01", "TLS-CLIENTVAL-01"},
    ),
    "sha1-signed": (
        _with_leaf(lambda p: pki.sha1_signed("meter-sha1", p.ca), "sha1", weak=True),
        {"TLS-SIG-01", "TLS-SIGALG-01"},
    ),
    "rsa-1024": (
        _with_leaf(lambda p: pki.weak_rsa("meter-rsa1024", p.ca), "rsa1024", weak=True),
        {"TLS-KEY-01", "TLS-SIGALG-01"},
    ),
    "expired": (
        _with_leaf(lambda p: pki.expired("meter-expired", p.ca), "expired"),
        {"TLS-VALID-01"},
    ),
    "tls12-only": (_tls12_only, {"TLS-13-01"}),
    "near-expiry": (
        _with_leaf(lambda p: pki.issue("meter-soon", "server", issuer=p.ca, days=10), "soon"),
        set(),
    ),
    "tls13-only": (_tls13_only, set()),
    "tls13-only-no-client-auth": (
        lambda p: _tls13_only(p, False),
        {"TLS-MUTUAL-01", "TLS-CLIENTVAL-01"},
    ),
    "client-renegotiation": (_reneg, {"TLS-RENEG-01"}),
    "no-revocation-info": (
        _with_leaf(
            lambda p: pki.issue("meter-nocrl", "server", issuer=p.ca, crl_url=None), "nocrl"
        ),
        {"TLS-REVOC-01"},
    ),
    "x509-v1": (
        _with_leaf(lambda p: pki.version1("meter-v1", p.ca), "v1"),
        {"TLS-CERT-01", "TLS-REVOC-01", "TLS-SAN-01"},
    ),
    "other-device-san": (
        _with_leaf(
            lambda p: pki.issue(
                "meter-0002",
                "server",
                issuer=p.ca,
                san_dns=("meter-0002.example",),
                san_ip=("10.0.0.2",),
            ),
            "meter0002",
        ),
        {"TLS-SAN-01"},
    ),
    "no-client-revocation-check": (_no_revocation_check, {"TLS-CLIENTVAL-01"}),
    "no-extended-master-secret": (_no_ems, {"TLS-EMS-01", "TLS-13-01"}),
}


@pytest.fixture
def tls_server(test_pki: TestPki) -> Iterator[Callable[[str], TlsTestServer]]:
    """Start the named configuration; servers stop at the end of the test."""
    started: list[TlsTestServer] = []

    def start(name: str, **kw: bool) -> TlsTestServer:
        server = TlsTestServer(CONFIGS[name][0](test_pki), **kw)
        started.append(server.__enter__())
        return server

    yield start
    for server in started:
        server.__exit__(None, None, None)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``tls_config`` parametrizes a test over every server configuration."""
    if "tls_config" in metafunc.fixturenames:
        metafunc.parametrize("tls_config", sorted(CONFIGS))


@pytest.fixture
def expected_failures() -> Callable[[str], set[str]]:
    return lambda name: set(CONFIGS[name][1])


# --- third-party servers (openssl s_server, gnutls-serv) and hostile listeners -------


def free_port(udp: bool = False) -> int:
    with socket.socket(type=socket.SOCK_DGRAM if udp else socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_dtls(port: int, proc: subprocess.Popen[bytes], seconds: float = 10.0) -> None:
    """A UDP server is up once a DTLS ClientHello gets any answer."""
    from metercert.tlsprobe import dtls

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        got = dtls.handshake("127.0.0.1", port, dtls.context(), deadline_s=0.5)
        if got.outcome in ("accepted", "rejected"):
            return
        time.sleep(0.05)
    raise RuntimeError(f"no DTLS answer on udp 127.0.0.1:{port}")


def wait_listening(port: int, proc: subprocess.Popen[bytes], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


@pytest.fixture
def external_server(tmp_path: Path) -> Iterator[Callable[..., int]]:
    """Start a server command (``{port}`` is substituted) and stop it after the test.

    stdin stays open (openssl s_server ends a connection when its stdin is at EOF);
    output goes to a file, since a full pipe would block the server mid-handshake.
    """
    procs: list[subprocess.Popen[bytes]] = []

    def start(*argv: str, udp: bool = False) -> int:
        for _ in range(3):  # the free port may be taken before the server binds it
            port = free_port(udp)
            log = (tmp_path / f"server-{port}.log").open("wb")
            proc = subprocess.Popen(
                [a.format(port=port) for a in argv],
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            procs.append(proc)
            try:
                (wait_dtls if udp else wait_listening)(port, proc)
            except RuntimeError:
                continue
            return port
        raise RuntimeError(f"{argv[0]} did not start: see {tmp_path}")

    yield start
    for proc in procs:
        proc.kill()
        proc.wait(5)


@pytest.fixture(scope="session")
def rsa_meter(test_pki: TestPki) -> Credentials:
    return test_pki.leaf(
        "meter-rsa-ext",
        pki.issue("meter-rsa-ext", "server", issuer=test_pki.ca, key_spec="RSA-2048"),
    )


def s_server(leaf: Credentials, *extra: str) -> list[str]:
    return [
        "openssl", "s_server", "-accept", "127.0.0.1:{port}", "-cert", leaf.cert, "-key",
        leaf.key, "-quiet", *extra,
    ]  # fmt: skip


def gnutls_serv(leaf: Credentials, *extra: str) -> list[str]:
    # gnutls-serv has no bind-address option; the tests only ever connect to 127.0.0.1
    return [
        "gnutls-serv", "-p", "{port}", "--x509certfile", leaf.cert, "--x509keyfile", leaf.key,
        "--echo", *extra,
    ]  # fmt: skip


class DelayRelay:
    """A TCP relay on 127.0.0.1 that delays every byte by ``delay_s`` each way.

    Order is kept per direction, as on a slow link (cellular backhaul): a segment
    read at t is written at t + delay_s, an EOF likewise.
    """

    def __init__(self, upstream_port: int, delay_s: float) -> None:
        self.upstream_port = upstream_port
        self.delay_s = delay_s
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
            except OSError:
                client.close()
                continue
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        import queue

        q: queue.Queue[tuple[float, bytes]] = queue.Queue()

        def deliver() -> None:
            while True:
                due, data = q.get()
                time.sleep(max(0.0, due - time.monotonic()))
                try:
                    if not data:
                        dst.shutdown(socket.SHUT_WR)
                        return
                    dst.sendall(data)
                except OSError:
                    return

        threading.Thread(target=deliver, daemon=True).start()
        src.settimeout(None)
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            q.put((time.monotonic() + self.delay_s, data))
            if not data:
                return
