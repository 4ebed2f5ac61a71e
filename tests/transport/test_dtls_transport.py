"""DLMS wrapper frames inside DTLS 1.2 (transport/dtls.py) over real UDP sockets on
127.0.0.1: cookie exchange, retransmission through a lossy relay, mutual authentication
(refusals included), frames larger than one DTLS record, and openssl s_client (a
third-party DTLS 1.2 client) against the meter's listener."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL

from metercert.errors import ConnectionFailed, InputFileError
from metercert.tlsprobe import pki
from metercert.transport import dtls
from metercert.transport.stream import ApduStream, open_dlms_connection, serve_dlms

pytestmark = pytest.mark.timeout(120)

_HELLO_VERIFY_REQUEST = 3  # handshake message type (RFC 6347 4.3.2)


class Bench:
    def __init__(self, root: Path) -> None:
        self.paths = pki.write_pki(root / "pki")
        ca = pki.Issued(x509.load_pem_x509_certificate(self.paths.ca_cert.read_bytes()),
                        serialization.load_pem_private_key(self.paths.ca_key.read_bytes(),
                                                           None))  # type: ignore[arg-type]
        revoked = pki.issue("head-end-revoked", "client", issuer=ca)
        self.revoked = pki.write_issued(root / "pki", "revoked", revoked)
        self.expired = pki.write_issued(root / "pki", "expired",
                                        pki.expired("head-end-expired", ca, role="client"))
        self.crl = root / "pki" / "revoking.crl"
        self.crl.write_bytes(pki.crl_revoking(ca, [revoked.certificate]).public_bytes(
            serialization.Encoding.PEM))
        foreign = pki.issue("foreign root", "ca", crl_url=None)
        self.foreign_client = pki.write_issued(
            root / "pki", "foreign", pki.issue("intruder", "client", issuer=foreign))
        self.foreign_ca = pki.write_issued(root / "pki", "foreign-ca", foreign)[0]

    def server_ctx(self) -> dtls.DtlsContext:
        p = self.paths
        return dtls.server_context(p.meter_cert, p.meter_key, p.ca_cert, crl=self.crl)

    def client_ctx(self, cert: Path | None = None, key: Path | None = None,
                   ca: Path | None = None) -> dtls.DtlsContext:
        p = self.paths
        if cert is None:
            cert, key = p.headend_cert, p.headend_key
        return dtls.client_context(ca or p.ca_cert, cert, key)


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Bench:
    return Bench(tmp_path_factory.mktemp("dtls"))


async def _reverse(stream: ApduStream) -> None:
    while True:
        apdu = await stream.recv()
        await stream.send(apdu[::-1])


class Relay(asyncio.DatagramProtocol):
    """A UDP relay between one client and the server that drops the datagrams ``drop``
    names ((direction, index) -> True) and records everything the server sends."""

    def __init__(self, server: tuple[str, int], drop: Callable[[str, int], bool]) -> None:
        self.server, self.drop = server, drop
        self.client: tuple[str, int] | None = None
        self.counts = {"c2s": 0, "s2c": 0}
        self.from_server: list[bytes] = []
        self.transport: asyncio.DatagramTransport | None = None
        self.upstream: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.client = addr
        n = self.counts["c2s"]
        self.counts["c2s"] += 1
        if not self.drop("c2s", n) and self.upstream is not None:
            self.upstream.sendto(data)

    def back(self, data: bytes) -> None:
        n = self.counts["s2c"]
        self.counts["s2c"] += 1
        self.from_server.append(data)
        if not self.drop("s2c", n) and self.transport is not None and self.client:
            self.transport.sendto(data, self.client)


async def _relay(server_port: int, drop: Callable[[str, int], bool]) -> tuple[Relay, int]:
    loop = asyncio.get_running_loop()
    relay = Relay(("127.0.0.1", server_port), drop)
    front, _ = await loop.create_datagram_endpoint(lambda: relay, local_addr=("127.0.0.1", 0))

    class Up(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: object) -> None:
            relay.back(data)

    relay.upstream, _ = await loop.create_datagram_endpoint(
        Up, remote_addr=("127.0.0.1", server_port))
    return relay, front.get_extra_info("sockname")[1]


def test_round_trip_with_frames_larger_than_a_record(bench: Bench) -> None:
    async def main() -> None:
        async with await serve_dlms(_reverse, "127.0.0.1", 0, transport="udp",
                                    ssl=bench.server_ctx()) as server:
            stream = await open_dlms_connection("127.0.0.1", server.port, transport="udp",
                                                ssl=bench.client_ctx(), timeout=5)
            async with stream:
                await stream.send(b"\xc0\x01\x81")
                assert await stream.recv() == b"\x81\x01\xc0"
                big = bytes(range(256)) * 200  # 51200 bytes: four DTLS records
                await stream.send(big)
                assert await stream.recv() == big[::-1]
                assert stream.get_extra_info("cipher").startswith("ECDHE-ECDSA-AES")
            assert not server.drops

    asyncio.run(main())


def test_cookie_exchange_keeps_no_state_for_a_hello_without_cookie(bench: Bench) -> None:
    """A first ClientHello gets a HelloVerifyRequest and leaves no session behind; the
    handshake through a relay starts with that HelloVerifyRequest."""

    async def main() -> None:
        async with await serve_dlms(_reverse, "127.0.0.1", 0, transport="udp",
                                    ssl=bench.server_ctx()) as server:
            protocol = server._server.transport.get_protocol()
            loop = asyncio.get_running_loop()
            got: asyncio.Queue[bytes] = asyncio.Queue()

            class Catch(asyncio.DatagramProtocol):
                def datagram_received(self, data: bytes, addr: object) -> None:
                    got.put_nowait(data)

            raw, _ = await loop.create_datagram_endpoint(
                Catch, remote_addr=("127.0.0.1", server.port))
            conn = SSL.Connection(bench.client_ctx().context, None)
            conn.set_ciphertext_mtu(dtls.MTU)
            conn.set_connect_state()
            with pytest.raises(SSL.WantReadError):
                conn.do_handshake()
            raw.sendto(conn.bio_read(65536))
            answer = await asyncio.wait_for(got.get(), 5)
            raw.close()
            assert answer[0] == 22 and answer[13] == _HELLO_VERIFY_REQUEST
            assert protocol.sessions == {}
            # a datagram that is no ClientHello opens nothing and is noted
            junk, _ = await loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, remote_addr=("127.0.0.1", server.port))
            junk.sendto(b"\x00\x01\x00\x10\x00\x01\x00\x01\xc0")  # a plain wrapper frame
            await asyncio.sleep(0.2)
            junk.close()
            assert protocol.sessions == {}
            assert any("not a DTLS ClientHello" in d for d in server.drops)

            relay, port = await _relay(server.port, lambda d, n: False)
            async with await open_dlms_connection("127.0.0.1", port, transport="udp",
                                                  ssl=bench.client_ctx(), timeout=5,
                                                  server_hostname="127.0.0.1") as stream:
                await stream.send(b"\x01\x02")
                assert await stream.recv() == b"\x02\x01"
            assert relay.from_server[0][13] == _HELLO_VERIFY_REQUEST

    asyncio.run(main())


class _RawPeer(asyncio.DatagramProtocol):
    """A UDP socket whose datagrams the test reads itself."""

    def __init__(self) -> None:
        self.got: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.got.put_nowait(data)


async def _raw_peer(port: int) -> tuple[asyncio.DatagramTransport, _RawPeer]:
    peer = _RawPeer()
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: peer, remote_addr=("127.0.0.1", port))
    return transport, peer


def _hello(bench: Bench) -> tuple[SSL.Connection, bytes]:
    conn = SSL.Connection(bench.client_ctx().context, None)
    conn.set_ciphertext_mtu(dtls.MTU)
    conn.set_connect_state()
    with pytest.raises(SSL.WantReadError):
        conn.do_handshake()
    return conn, conn.bio_read(65536)


def test_a_cookie_is_bound_to_the_address_it_was_sent_to(bench: Bench) -> None:
    """The ClientHello that carries A's cookie, sent from B, gets a fresh
    HelloVerifyRequest and no session (a spoofer cannot reuse a cookie it saw); from A
    it gets the ServerHello flight. The HelloVerifyRequest is smaller than the hello."""

    async def main() -> None:
        async with await serve_dlms(_reverse, "127.0.0.1", 0, transport="udp",
                                    ssl=bench.server_ctx()) as server:
            protocol = server._server.transport.get_protocol()
            a, peer_a = await _raw_peer(server.port)
            b, peer_b = await _raw_peer(server.port)
            conn, hello = _hello(bench)
            a.sendto(hello)
            verify = await asyncio.wait_for(peer_a.got.get(), 5)
            assert verify[13] == _HELLO_VERIFY_REQUEST and len(verify) < len(hello)
            conn.bio_write(verify)
            with pytest.raises(SSL.WantReadError):
                conn.do_handshake()
            with_cookie = conn.bio_read(65536)
            b.sendto(with_cookie)
            again = await asyncio.wait_for(peer_b.got.get(), 5)
            assert again[13] == _HELLO_VERIFY_REQUEST and protocol.sessions == {}
            a.sendto(with_cookie)
            flight = await asyncio.wait_for(peer_a.got.get(), 5)
            assert flight[13] == 2  # ServerHello
            assert list(protocol.sessions) == [a.get_extra_info("sockname")]
            a.close()
            b.close()

    asyncio.run(main())


def test_a_handshake_left_unfinished_is_dropped(bench: Bench) -> None:
    """A client that proves its address and then goes quiet holds its session only until
    the handshake deadline (here the 1 s idle time-out)."""

    async def main() -> None:
        async with await serve_dlms(_reverse, "127.0.0.1", 0, transport="udp",
                                    ssl=bench.server_ctx(), idle_timeout=1.0) as server:
            protocol = server._server.transport.get_protocol()
            a, peer = await _raw_peer(server.port)
            conn, hello = _hello(bench)
            a.sendto(hello)
            conn.bio_write(await asyncio.wait_for(peer.got.get(), 5))
            with pytest.raises(SSL.WantReadError):
                conn.do_handshake()
            a.sendto(conn.bio_read(65536))
            await asyncio.wait_for(peer.got.get(), 5)  # the meter's flight; never answered
            assert len(protocol.sessions) == 1
            await asyncio.sleep(1.5)
            assert protocol.sessions == {}
            assert any("not completed in time" in d for d in server.drops), server.drops
            a.close()

    asyncio.run(main())


def test_lost_flights_are_retransmitted(bench: Bench) -> None:
    """Drop the first datagram of the meter's certificate flight (the client's timer
    resends its ClientHello, the meter its flight) and the first datagram of the client's
    certificate flight (the meter's timer resends its flight, the client then its own)."""
    dropped = {("s2c", 1), ("c2s", 2)}

    async def exchange(drop: set[tuple[str, int]]) -> dict[str, int]:
        async with await serve_dlms(_reverse, "127.0.0.1", 0, transport="udp",
                                    ssl=bench.server_ctx()) as server:
            relay, port = await _relay(server.port, lambda d, n: (d, n) in drop)
            async with await open_dlms_connection("127.0.0.1", port, transport="udp",
                                                  ssl=bench.client_ctx(),
                                                  timeout=15) as stream:
                await stream.send(b"\xaa\xbb")
                assert await stream.recv() == b"\xbb\xaa"
            return relay.counts

    lossless = asyncio.run(exchange(set()))
    lossy = asyncio.run(exchange(dropped))
    # both sides sent again what was lost: more datagrams each way than without loss
    assert lossy["s2c"] > lossless["s2c"] and lossy["c2s"] > lossless["c2s"], (lossless, lossy)


def test_a_new_client_hello_from_a_served_address_starts_a_new_session(bench: Bench) -> None:
    """RFC 6347 4.2.8: a client that restarted on the same address and port sends an
    epoch-0 ClientHello; once it has come back with a valid cookie the meter ends the old
    session and handshakes again, while a hello without cookie changes nothing (here
    both clients reach the meter from the relay's one upstream address)."""

    async def main() -> None:
        async with await serve_dlms(_reverse, "127.0.0.1", 0, transport="udp",
                                    ssl=bench.server_ctx()) as server:
            protocol = server._server.transport.get_protocol()
            relay, port = await _relay(server.port, lambda d, n: False)
            first = await open_dlms_connection("127.0.0.1", port, transport="udp",
                                               ssl=bench.client_ctx(), timeout=5)
            await first.send(b"\x01")
            assert await first.recv() == b"\x01"
            old = next(iter(protocol.sessions.values()))
            # a hello without cookie from that address (a spoofer could send it) ends nothing
            assert relay.upstream is not None
            relay.upstream.sendto(_hello(bench)[1])
            await asyncio.sleep(0.2)
            assert not old.closed and list(protocol.sessions.values()) == [old]
            await first.send(b"\x04\x05")
            assert await first.recv() == b"\x05\x04"
            second = await open_dlms_connection("127.0.0.1", port, transport="udp",
                                                ssl=bench.client_ctx(), timeout=5)
            await second.send(b"\x02\x03")
            assert await second.recv() == b"\x03\x02"
            assert old.closed and len(protocol.sessions) == 1
            assert next(iter(protocol.sessions.values())) is not old
            await second.aclose()
            await first.aclose()

    asyncio.run(main())


@pytest.mark.parametrize("who", ["no certificate", "foreign CA", "revoked", "expired"])
def test_the_meter_refuses_clients_the_operator_ca_does_not_vouch_for(bench: Bench,
                                                                    who: str) -> None:
    async def main() -> None:
        async with await serve_dlms(_reverse, "127.0.0.1", 0, transport="udp",
                                    ssl=bench.server_ctx()) as server:
            if who == "no certificate":
                ctx = dtls.client_context(bench.paths.ca_cert)
            else:
                cert, key = {"foreign CA": bench.foreign_client, "revoked": bench.revoked,
                             "expired": bench.expired}[who]
                ctx = bench.client_ctx(cert, key)
            with pytest.raises(ConnectionFailed) as exc:
                await open_dlms_connection("127.0.0.1", server.port, transport="udp",
                                           ssl=ctx, timeout=5)
            assert "DTLS handshake failed" in str(exc.value) and "\n" not in str(exc.value)
            await asyncio.sleep(0.1)
            assert any("DTLS handshake failed" in d for d in server.drops), server.drops

    asyncio.run(main())


def test_the_client_refuses_a_meter_it_cannot_verify(bench: Bench) -> None:
    async def main() -> None:
        async with await serve_dlms(_reverse, "127.0.0.1", 0, transport="udp",
                                    ssl=bench.server_ctx()) as server:
            with pytest.raises(ConnectionFailed, match="certificate verify failed"):
                await open_dlms_connection("127.0.0.1", server.port, transport="udp",
                                           ssl=bench.client_ctx(ca=bench.foreign_ca),
                                           timeout=5)
            with pytest.raises(ConnectionFailed, match="does not name other.example"):
                await open_dlms_connection("127.0.0.1", server.port, transport="udp",
                                           ssl=bench.client_ctx(), timeout=5,
                                           server_hostname="other.example")

    asyncio.run(main())


def test_a_peer_that_never_answers_ends_in_one_line_within_the_timeout(bench: Bench) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        silent, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol,
                                                        local_addr=("127.0.0.1", 0))
        port = silent.get_extra_info("sockname")[1]
        started = loop.time()
        with pytest.raises(ConnectionFailed, match="no DTLS handshake within 2 s"):
            await open_dlms_connection("127.0.0.1", port, transport="udp",
                                       ssl=bench.client_ctx(), timeout=2)
        assert loop.time() - started < 10  # bounded, whatever OpenSSL's timer does
        silent.close()

    asyncio.run(main())


def test_bad_credentials_are_one_line_input_errors(bench: Bench, tmp_path: Path) -> None:
    p = bench.paths
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    empty = tmp_path / "empty.pem"
    empty.write_text("")
    encrypted = tmp_path / "encrypted.key"
    key = serialization.load_pem_private_key(p.headend_key.read_bytes(), None)
    encrypted.write_bytes(key.private_bytes(  # type: ignore[union-attr]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret")))
    cases = {
        "not a PEM CA certificate": lambda: dtls.client_context(garbage),
        "is empty": lambda: dtls.server_context(p.meter_cert, p.meter_key, empty),
        "not found": lambda: dtls.client_context(tmp_path / "missing.pem"),
        "not a PEM private key": lambda: dtls.client_context(p.ca_cert, p.headend_cert,
                                                             garbage),
        "is encrypted": lambda: dtls.client_context(p.ca_cert, p.headend_cert, encrypted),
        "does not belong": lambda: dtls.server_context(p.meter_cert, p.headend_key,
                                                       p.ca_cert),
        "not a PEM CRL": lambda: dtls.server_context(p.meter_cert, p.meter_key, p.ca_cert,
                                                     crl=garbage),
        "give both": lambda: dtls.client_context(p.ca_cert, p.headend_cert, None),
    }
    for expected, make in cases.items():
        with pytest.raises(InputFileError) as exc:
            make()
        text = str(exc.value)
        assert expected in text and "\n" not in text, text
        assert "BEGIN" not in text  # no key material in messages


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed")
def test_openssl_s_client_completes_mutual_dtls12_with_the_meter_listener(bench: Bench) -> None:
    """A third-party DTLS 1.2 client (OpenSSL's s_client) verifies the listener and is
    verified by it; without a certificate it is refused."""
    p = bench.paths

    async def s_client(port: int, *cred: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            "openssl", "s_client", "-dtls1_2", "-connect", f"127.0.0.1:{port}", "-CAfile",
            str(p.ca_cert), "-verify_return_error", "-brief", *cred,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
        return out.decode(errors="replace")

    async def main() -> None:
        async with await serve_dlms(_reverse, "127.0.0.1", 0, transport="udp",
                                    ssl=bench.server_ctx()) as server:
            good = await s_client(server.port, "-cert", str(p.headend_cert), "-key",
                                  str(p.headend_key))
            assert "DTLSv1.2" in good and "Verification: OK" in good, good
            bare = await s_client(server.port)
            assert "alert handshake failure" in bare and "Verification: OK" not in bare, bare
            assert any("did not return a certificate" in d for d in server.drops), server.drops

    asyncio.run(main())


@pytest.mark.skipif(shutil.which("gnutls-serv") is None, reason="gnutls-bin not installed")
def test_our_client_exchanges_records_with_gnutls_serv(bench: Bench, tmp_path: Path) -> None:
    """GnuTLS (another DTLS stack) as the server, requiring our client certificate: its
    --echo sends our wrapper frame back, so records go both ways through both stacks
    (client and server wPort are both 1, so the echoed frame is the answer we expect)."""
    import socket

    p = bench.paths
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with (tmp_path / "gnutls.log").open("wb") as log:
        proc = subprocess.Popen(
            ["gnutls-serv", "--udp", "-p", str(port), "--echo", "--x509certfile",
             str(p.meter_cert), "--x509keyfile", str(p.meter_key), "--x509cafile",
             str(p.ca_cert), "--require-client-cert", "--verify-client-cert"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + 20
        while True:  # until gnutls-serv listens
            try:
                stream = await open_dlms_connection("127.0.0.1", port, transport="udp",
                                                    ssl=bench.client_ctx(), timeout=2,
                                                    client_address=1, server_address=1)
                break
            except ConnectionFailed:
                if loop.time() > end:
                    raise
                await asyncio.sleep(0.2)
        async with stream:
            await stream.send(b"\xc0\x01\xc1\x00\x08")
            assert await stream.recv(timeout=5) == b"\xc0\x01\xc1\x00\x08"
            assert stream.get_extra_info("cipher").startswith("ECDHE-ECDSA-AES")

    try:
        asyncio.run(main())
    finally:
        proc.kill()
        proc.wait(5)
