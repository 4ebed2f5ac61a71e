"""DLMS over DTLS 1.2 (IEC 62351-3's UDP profile): the wrapper inside DTLS records.

The standard library's ``ssl`` has no DTLS, so OpenSSL's is driven through pyOpenSSL
over memory BIOs, and the datagrams are moved by asyncio datagram endpoints. What the
sockets would normally do for OpenSSL is done here:

* **cookie exchange** (RFC 6347 4.2.1): a server answers a first ClientHello with a
  HelloVerifyRequest carrying an HMAC of the peer's address and keeps *no* state for
  it (``DTLSv1_listen`` on a throw-away connection), so a spoofed source address cannot
  make the meter hold sessions or send it a certificate flight;
* **retransmission**: while a handshake runs, OpenSSL's DTLS timer
  (``DTLSv1_get_timeout``) is armed on the loop and its flight resent when it fires;
  a handshake still unfinished after its deadline is abandoned;
* **per-peer sessions**: one DTLS session per source address; a new epoch-0
  ClientHello from an address with a session is a restarted client (RFC 6347 4.2.8),
  which ends the old session and starts over with the cookie exchange;
* **records**: OpenSSL's output is split into its records and packed into datagrams
  no larger than the path MTU guess; every wrapper frame is sent as DTLS records of at
  most 16 KiB (the DTLS plaintext limit) and re-assembled on the other side, so a
  frame that spans records whose middle was lost is dropped whole, never spliced.

The meter requires a client certificate from the operator CA (mutual authentication,
62351-3); the client verifies the meter's chain against the CA and its host name or
address against the certificate's subjectAltName.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import secrets
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, hmac, serialization
from OpenSSL import SSL, crypto

from metercert.errors import ConnectionFailed, InputFileError
from metercert.transport.datagram import _DatagramReader, _UdpListener
from metercert.transport.hdlc import Role
from metercert.transport.stream import (
    DEFAULT_IDLE_TIMEOUT,
    ApduStream,
    DlmsServer,
    Handler,
    _WrapperLink,
    run_handler,
)
from metercert.transport.wrapper import DEFAULT_MAX_PAYLOAD, HEADER_LENGTH, MAX_PAYLOAD_FIELD

__all__ = ["DtlsContext", "client_context", "open_dlms_dtls", "serve_dlms_dtls",
           "server_context"]

log = logging.getLogger("metercert.transport")

_DTLS1_2_VERSION = 0xFEFD
#: 62351-3 suites for (D)TLS 1.2: ECDHE/DHE with AEAD only (same list as the TLS contexts)
DTLS12_CIPHERS = (
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES256-GCM-SHA384:DHE-RSA-AES128-GCM-SHA256"
)
_OPTIONS = (SSL.OP_NO_COMPRESSION | SSL.OP_NO_RENEGOTIATION | SSL.OP_NO_TICKET
            | SSL.OP_CIPHER_SERVER_PREFERENCE | SSL.OP_SINGLE_ECDH_USE | SSL.OP_NO_QUERY_MTU)
#: datagram payload we aim for: below IPv6's 1280-byte minimum MTU minus headers
MTU = 1200
#: the largest plaintext a DTLS record may carry (RFC 6347 via RFC 5246 6.2.1)
RECORD_PLAINTEXT = 16384
_RECORD_HEADER = 13  # type, version, epoch, sequence number (48 bits), length
_HANDSHAKE, _APPLICATION = 22, 23
_CLIENT_HELLO = 1
#: a handshake that has not completed this long after its cookie came back is dropped
HANDSHAKE_DEADLINE = 30.0
_READ = 65536


# --- contexts ---------------------------------------------------------------------------

@dataclass(frozen=True)
class DtlsContext:
    """A pyOpenSSL DTLS 1.2 context and how to use it. ``dtls`` marks it for
    :mod:`~metercert.transport.stream`, whose ``ssl=`` otherwise takes a stdlib context."""

    context: SSL.Context = field(repr=False)
    server_side: bool
    check_hostname: bool = True
    dtls: bool = True


def _file(label: str, path: str | os.PathLike[str]) -> bytes:
    text = os.fspath(path)
    try:
        with open(text, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        raise InputFileError(f"{text}: {label} file not found") from None
    except OSError as exc:
        raise InputFileError(f"{text}: cannot read the {label} file ({exc.strerror})") from None
    if not data.strip():
        raise InputFileError(f"{text}: the {label} file is empty")
    return data


def _certs(label: str, path: str | os.PathLike[str]) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(_file(label, path))
    except ValueError:
        certs = []
    if not certs:
        raise InputFileError(f"{os.fspath(path)}: not a PEM {label} file")
    return certs


def _load_chain(ctx: SSL.Context, cert: str | os.PathLike[str],
                key: str | os.PathLike[str]) -> None:
    """Certificate chain and private key, each checked with a one-line reason (the key's
    bytes never appear in a message)."""
    chain = _certs("certificate", cert)
    try:
        private = serialization.load_pem_private_key(_file("private key", key), password=None)
    except TypeError:
        raise InputFileError(f"{os.fspath(key)}: the private key is encrypted; give an "
                             "unencrypted PEM key") from None
    except (ValueError, crypto.Error):
        raise InputFileError(f"{os.fspath(key)}: not a PEM private key") from None
    try:
        ctx.use_certificate(chain[0])  # type: ignore[arg-type]
        for extra in chain[1:]:
            ctx.add_extra_chain_cert(extra)  # type: ignore[arg-type]
        ctx.use_privatekey(private)  # type: ignore[arg-type]
        ctx.check_privatekey()
    except (SSL.Error, TypeError, ValueError):
        raise InputFileError(f"{os.fspath(cert)} / {os.fspath(key)}: the private key does not "
                             "belong to the certificate (or OpenSSL cannot use it)") from None


def _load_ca(ctx: SSL.Context, ca: str | os.PathLike[str]) -> None:
    _certs("CA certificate", ca)
    try:
        ctx.load_verify_locations(os.fspath(ca))
    except SSL.Error:
        raise InputFileError(f"{os.fspath(ca)}: OpenSSL cannot use it as a CA file") from None


def _base(method: int) -> SSL.Context:
    ctx = SSL.Context(method)
    ctx.set_min_proto_version(_DTLS1_2_VERSION)
    ctx.set_max_proto_version(_DTLS1_2_VERSION)
    ctx.set_cipher_list(DTLS12_CIPHERS.encode())
    ctx.set_options(_OPTIONS)
    return ctx


def server_context(cert: str | os.PathLike[str], key: str | os.PathLike[str],
                   ca: str | os.PathLike[str], *,
                   crl: str | os.PathLike[str] | None = None) -> DtlsContext:
    """The meter's side: DTLS 1.2 only, 62351-3 suites, a client certificate from ``ca``
    required (with ``crl``: and not revoked), stateless cookies."""
    ctx = _base(SSL.DTLS_SERVER_METHOD)
    _load_chain(ctx, cert, key)
    _load_ca(ctx, ca)
    ctx.set_client_ca_list([crypto.X509.from_cryptography(c).get_subject()
                            for c in _certs("CA certificate", ca)])
    if crl is not None:
        try:
            revocations = x509.load_pem_x509_crl(_file("CRL", crl))
        except ValueError:
            raise InputFileError(f"{os.fspath(crl)}: not a PEM CRL") from None
        store = ctx.get_cert_store()
        assert store is not None
        store.add_crl(revocations)
        store.set_flags(crypto.X509StoreFlags.CRL_CHECK)  # the leaf, like the TLS meter
    ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT)  # OpenSSL's own result
    ctx.set_session_id(b"metercert-meter-dtls")  # resumption needs it once peers are verified
    ctx.set_timeout(300)  # bounded resumption: the session cache forgets after 5 minutes
    secret = secrets.token_bytes(32)  # per process: a restart invalidates pending cookies

    def cookie(conn: SSL.Connection) -> bytes:
        mac = hmac.HMAC(secret, hashes.SHA256())
        mac.update(repr(conn.get_app_data()).encode())
        return mac.finalize()[:16]

    ctx.set_cookie_generate_callback(cookie)
    ctx.set_cookie_verify_callback(lambda conn, got: secrets.compare_digest(cookie(conn), got))
    return DtlsContext(ctx, server_side=True)


def client_context(ca: str | os.PathLike[str], cert: str | os.PathLike[str] | None = None,
                   key: str | os.PathLike[str] | None = None, *,
                   check_hostname: bool = True) -> DtlsContext:
    """The head-end's side: verifies the meter against ``ca``, presents ``cert``."""
    if (cert is None) != (key is None):
        raise InputFileError("give both the client certificate and its private key, or neither")
    ctx = _base(SSL.DTLS_CLIENT_METHOD)
    _load_ca(ctx, ca)
    ctx.set_verify(SSL.VERIFY_PEER)  # OpenSSL's own chain verdict
    if cert is not None and key is not None:
        _load_chain(ctx, cert, key)
    return DtlsContext(ctx, server_side=False, check_hostname=check_hostname)


def _names_host(cert: x509.Certificate, host: str) -> bool:
    """Whether the certificate's subjectAltName names ``host`` (an address or a DNS name,
    one leftmost wildcard label allowed), as RFC 6125 asks; no CN fallback."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None:
        return address in san.get_values_for_type(x509.IPAddress)
    wanted = host.lower().rstrip(".").split(".")
    for name in san.get_values_for_type(x509.DNSName):
        labels = name.lower().rstrip(".").split(".")
        if len(labels) == len(wanted) and all(
                a == b or (i == 0 and a == "*") for i, (a, b) in enumerate(zip(labels, wanted))):
            return True
    return False


# --- records ----------------------------------------------------------------------------

def _records(data: bytes) -> list[bytes]:
    """Split OpenSSL's output into DTLS records (a memory BIO concatenates them)."""
    out, at = [], 0
    while at + _RECORD_HEADER <= len(data):
        (length,) = struct.unpack_from(">H", data, at + 11)
        out.append(data[at:at + _RECORD_HEADER + length])
        at += _RECORD_HEADER + length
    if at < len(data):
        out.append(data[at:])
    return out


def _datagrams(data: bytes) -> list[bytes]:
    """Records packed into datagrams of at most :data:`MTU` bytes (a bigger record alone)."""
    grams: list[bytes] = []
    current = b""
    for record in _records(data):
        if current and len(current) + len(record) > MTU:
            grams.append(current)
            current = b""
        current += record
    if current:
        grams.append(current)
    return grams


def _is_client_hello(datagram: bytes) -> bool:
    """An epoch-0 handshake record holding a ClientHello (what starts a session)."""
    return (len(datagram) > _RECORD_HEADER and datagram[0] == _HANDSHAKE
            and datagram[3:5] == b"\0\0" and datagram[_RECORD_HEADER] == _CLIENT_HELLO)


def _client_random(datagram: bytes) -> bytes:
    """The ClientHello's random (after the record and handshake headers and the version):
    a retransmitted hello repeats it, a restarted client draws a new one."""
    return datagram[_RECORD_HEADER + 14:_RECORD_HEADER + 46]


def _reason(exc: BaseException) -> str:
    """OpenSSL's reason strings, short, for a one-line message."""
    if isinstance(exc, SSL.Error) and exc.args and isinstance(exc.args[0], list):
        parts = [str(e[2]) for e in exc.args[0] if isinstance(e, tuple) and len(e) >= 3]
        if parts:
            return "; ".join(dict.fromkeys(parts))[:160]
    return exc.__class__.__name__


class _Assembler:
    """Wrapper frames out of decrypted records: a frame may span several records."""

    def __init__(self) -> None:
        self._buf = b""
        self._need = 0
        self.dropped = 0

    def push(self, record: bytes) -> bytes | None:
        if not self._buf:
            if len(record) < HEADER_LENGTH:
                self.dropped += 1
                return None
            self._need = HEADER_LENGTH + struct.unpack_from(">H", record, 6)[0]
        self._buf += record
        if len(self._buf) < self._need:
            return None
        frame, self._buf = self._buf, b""
        if len(frame) != self._need:  # a record of another frame ran in: drop, resync
            self.dropped += 1
            return None
        return frame


class _Session:
    """One DTLS association with one peer, moved by the owner's ``send`` callable."""

    def __init__(self, conn: SSL.Connection, peer: Any, send: Callable[[bytes], None],
                 max_frame: int) -> None:
        self.conn = conn
        self.peer = peer
        self._send = send
        self.established = False
        self.closed = False
        self.reader = _DatagramReader(max_frame)
        self._assembler = _Assembler()
        self._timer: asyncio.TimerHandle | None = None
        self.on_failure: Callable[[str], None] | None = None
        self.hello_random = b""  # of the ClientHello that opened the session (server side)

    # flushing and timers
    def flush(self) -> None:
        out = b""
        while True:
            try:
                out += self.conn.bio_read(_READ)
            except SSL.WantReadError:
                break
        for gram in _datagrams(out):
            self._send(gram)

    def arm_timer(self) -> None:
        """Keep OpenSSL's retransmission timer armed while the handshake runs."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.established or self.closed:
            return
        delay = self.conn.DTLSv1_get_timeout()
        if delay is not None:
            self._timer = asyncio.get_running_loop().call_later(max(delay, 0.01), self._expired)

    def _expired(self) -> None:
        self._timer = None
        if self.established or self.closed:
            return
        try:
            self.conn.DTLSv1_handle_timeout()  # resends the last flight
            self.flush()
        except SSL.Error as exc:
            self._fail(f"handshake abandoned: {_reason(exc)}")
            return
        self.arm_timer()

    def _fail(self, why: str) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
        self.reader.feed_eof()
        if self.on_failure is not None:
            self.on_failure(why)

    # handshake and records
    def step(self) -> bool:
        """Advance the handshake; True once it completed (raises SSL.Error on failure)."""
        try:
            self.conn.do_handshake()
        except SSL.WantReadError:
            self.flush()
            self.arm_timer()
            return False
        except SSL.Error:
            try:
                self.flush()  # the alert the peer should see
            except OSError:
                pass
            raise
        self.flush()
        self.established = True
        self.arm_timer()  # cancels it
        return True

    def receive(self, datagram: bytes) -> None:
        """A datagram from the peer of an established session: frames to the reader."""
        self.conn.bio_write(datagram)
        while not self.closed:
            try:
                record = self.conn.recv(_READ)
            except SSL.WantReadError:
                break
            except SSL.ZeroReturnError:  # close_notify
                self.closed = True
                self.reader.feed_eof()
                break
            except SSL.Error as exc:
                self.flush()
                self._fail(f"DTLS session failed: {_reason(exc)}")
                break
            frame = self._assembler.push(record)
            if frame is not None:
                self.reader.feed(frame)
            if self._assembler.dropped:
                self.reader.dropped += self._assembler.dropped
                self.reader.last_drop = "a wrapper frame split over DTLS records lost a part"
                self._assembler.dropped = 0
        self.flush()  # a retransmitted final flight, an alert

    def send_frame(self, frame: bytes) -> None:
        if self.closed:
            raise ConnectionResetError("DTLS session closed")
        for at in range(0, len(frame), RECORD_PLAINTEXT):
            try:
                self.conn.send(frame[at:at + RECORD_PLAINTEXT])
            except SSL.Error as exc:
                raise ConnectionResetError(f"DTLS send failed: {_reason(exc)}") from None
            self.flush()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
        if self.established:
            try:
                self.conn.shutdown()  # close_notify
                self.flush()
            except (SSL.Error, OSError):
                pass
        self.reader.feed_eof()


class _SessionWriter:
    """What :class:`ApduStream` writes to: each frame as DTLS records of its session."""

    def __init__(self, session: _Session, transport: asyncio.DatagramTransport,
                 on_close: Callable[[], None]) -> None:
        self._session = session
        self._transport = transport
        self._on_close = on_close

    def write(self, data: bytes) -> None:
        self._session.send_frame(data)

    async def drain(self) -> None:
        return None

    def close(self) -> None:
        if not self._session.closed:
            self._session.close()
        self._on_close()

    async def wait_closed(self) -> None:
        return None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return self._session.peer or self._transport.get_extra_info("peername", default)
        if name == "peercert":
            cert = self._session.conn.get_peer_certificate(as_cryptography=True)
            return cert if cert is not None else default
        if name == "cipher":
            return self._session.conn.get_cipher_name() or default
        return self._transport.get_extra_info(name, default)


# --- client -----------------------------------------------------------------------------

class _ClientProtocol(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.incoming: asyncio.Queue[bytes | BaseException] = asyncio.Queue()
        self.session: _Session | None = None  # set once the handshake completed

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self.session is not None:
            self.session.receive(data)
        else:
            self.incoming.put_nowait(data)

    def error_received(self, exc: Exception) -> None:
        if self.session is not None:
            self.session.reader.feed_error(exc)
        else:
            self.incoming.put_nowait(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.session is not None:
            self.session.reader.feed_eof()


async def open_dlms_dtls(host: str, port: int, ctx: DtlsContext, *, client_address: int,
                         server_address: int, timeout: float,
                         server_hostname: str | None = None,
                         max_frame: int = DEFAULT_MAX_PAYLOAD) -> ApduStream:
    """An :class:`ApduStream` to a meter that speaks the wrapper inside DTLS 1.2."""
    where = f"dtls://{host}:{port}"
    loop = asyncio.get_running_loop()
    protocol = _ClientProtocol()
    try:
        transport, _ = await asyncio.wait_for(
            loop.create_datagram_endpoint(lambda: protocol, remote_addr=(host, port)), timeout)
    except (OSError, TimeoutError) as exc:
        reason = getattr(exc, "strerror", None) or exc.__class__.__name__
        raise ConnectionFailed(f"cannot reach {where}: {reason}") from None
    conn = SSL.Connection(ctx.context, None)
    name = server_hostname if server_hostname is not None else host
    try:
        ipaddress.ip_address(name)
    except ValueError:
        conn.set_tlsext_host_name(name.encode("idna"))
    conn.set_ciphertext_mtu(MTU)  # a memory BIO cannot tell OpenSSL the path MTU
    conn.set_connect_state()
    session = _Session(conn, None, transport.sendto, max_frame)
    end = loop.time() + timeout
    try:
        while not session.step():
            left = end - loop.time()
            if left <= 0:
                raise ConnectionFailed(f"cannot connect to {where}: no DTLS handshake within "
                                       f"{timeout:g} s (nothing answers, or not DTLS 1.2)")
            try:
                item = await asyncio.wait_for(protocol.incoming.get(), left)
            except TimeoutError:
                continue  # the deadline check above ends it; OpenSSL's timer resends meanwhile
            if isinstance(item, BaseException):
                reason = ("port unreachable (nothing listens on UDP)"
                          if isinstance(item, ConnectionRefusedError)
                          else getattr(item, "strerror", None) or item.__class__.__name__)
                raise ConnectionFailed(f"cannot connect to {where}: {reason}")
            conn.bio_write(item)
    except SSL.Error as exc:
        session.close()
        transport.close()
        raise ConnectionFailed(f"cannot connect to {where}: DTLS handshake failed "
                               f"({_reason(exc)})") from None
    except BaseException:
        session.close()
        transport.close()
        raise
    cert = conn.get_peer_certificate(as_cryptography=True)
    if ctx.check_hostname and (cert is None or not _names_host(cert, name)):
        session.close()
        transport.close()
        raise ConnectionFailed(f"cannot connect to {where}: the meter's certificate does not "
                               f"name {name} in its subjectAltName")
    protocol.session = session
    while not protocol.incoming.empty():  # anything that came with the last flight
        item = protocol.incoming.get_nowait()
        if isinstance(item, bytes):
            session.receive(item)
    writer = _SessionWriter(session, transport, transport.close)
    link = _WrapperLink(Role.CLIENT, client_address, server_address, max_frame)
    return ApduStream(session.reader, writer, link,  # type: ignore[arg-type]
                      framing="wrapper", timeout=timeout)


# --- server -----------------------------------------------------------------------------

class _ServerProtocol(asyncio.DatagramProtocol):
    """Cookie exchange for new peers, then one :class:`_Session` per peer address."""

    def __init__(self, handler: Handler, ctx: DtlsContext, *, max_frame: int,
                 idle_timeout: float, max_connections: int | None) -> None:
        self.handler = handler
        self.ctx = ctx
        self.max_frame = max_frame
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.server: DlmsServer | None = None
        self.listener: _UdpListener | None = None
        self.sessions: dict[Any, _Session] = {}
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def _drop(self, addr: Any, why: str) -> None:
        if self.server is not None:
            self.server.drops.append(f"{addr[0]}:{addr[1]}: {why}")

    def _sender(self, addr: Any) -> Callable[[bytes], None]:
        transport = self.transport
        assert transport is not None
        return lambda data: transport.sendto(data, addr)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self.server is None or self.transport is None:
            return
        session = self.sessions.get(addr)
        if session is not None and _is_client_hello(data):
            if _client_random(data) == session.hello_random:
                if session.established:
                    return  # a late retransmission of the hello that opened this session
            else:
                # a new hello from a served address: a restarted client (RFC 6347 4.2.8);
                # the old session ends only once the new one has proved the address
                self._listen(data, addr, replacing=session)
                return
        if session is None:
            self._listen(data, addr)
            return
        if session.established:
            session.receive(data)
            return
        session.conn.bio_write(data)
        self._advance(session)

    def _listen(self, data: bytes, addr: Any, replacing: _Session | None = None) -> None:
        """A datagram from a peer without a session: only a ClientHello with a valid cookie
        opens one; without a cookie it gets a HelloVerifyRequest and nothing is kept (nor
        is ``replacing``, the address's current session, touched)."""
        if not _is_client_hello(data):
            self._drop(addr, "datagram dropped: not a DTLS ClientHello (this meter speaks "
                             "DLMS inside DTLS 1.2)")
            return
        conn = SSL.Connection(self.ctx.context, None)
        conn.set_app_data(addr)
        conn.set_ciphertext_mtu(MTU)
        conn.set_accept_state()
        conn.bio_write(data)
        send = self._sender(addr)
        try:
            conn.DTLSv1_listen()
        except SSL.WantReadError:  # HelloVerifyRequest written (or the datagram ignored)
            try:
                out = conn.bio_read(_READ)
            except SSL.WantReadError:
                return
            send(out)
            return
        except SSL.Error as exc:
            self._drop(addr, f"ClientHello refused: {_reason(exc)}")
            return
        if replacing is not None:
            replacing.close()
            self.sessions.pop(addr, None)
            self._drop(addr, "new DTLS handshake from a served address: old session ended")
        if self.max_connections is not None and len(self.sessions) >= self.max_connections:
            self._drop(addr, f"refused, {self.max_connections} peer(s) already served")
            return
        session = _Session(conn, addr, send, self.max_frame)
        session.hello_random = _client_random(data)
        session.on_failure = lambda why, a=addr: self._lost(a, why)
        self.sessions[addr] = session
        loop = asyncio.get_running_loop()
        loop.call_later(min(HANDSHAKE_DEADLINE, self.idle_timeout), self._deadline, addr,
                        session)
        self._advance(session)

    def _deadline(self, addr: Any, session: _Session) -> None:
        if not session.established and self.sessions.get(addr) is session:
            session.close()
            self.sessions.pop(addr, None)
            self._drop(addr, "DTLS handshake not completed in time, session dropped")

    def _lost(self, addr: Any, why: str) -> None:
        if self.sessions.pop(addr, None) is not None:
            self._drop(addr, why)

    def _advance(self, session: _Session) -> None:
        addr = session.peer
        try:
            done = session.step()
        except SSL.Error as exc:
            session.close()
            self.sessions.pop(addr, None)
            self._drop(addr, f"DTLS handshake failed: {_reason(exc)}")
            return
        if not done:
            return
        assert self.server is not None and self.transport is not None
        def forget() -> None:
            if self.sessions.get(addr) is session:
                del self.sessions[addr]

        writer = _SessionWriter(session, self.transport, forget)
        link = _WrapperLink(Role.SERVER, None, None, self.max_frame)
        stream = ApduStream(session.reader, writer, link,  # type: ignore[arg-type]
                            framing="wrapper", timeout=self.idle_timeout,
                            idle_timeout=self.idle_timeout)
        asyncio.get_running_loop().create_task(run_handler(self.server, self.handler, stream))

    def connection_lost(self, exc: Exception | None) -> None:
        for session in list(self.sessions.values()):
            session.close()
        self.sessions.clear()
        if self.listener is not None:
            self.listener.lost()


async def serve_dlms_dtls(handler: Handler, host: str, port: int, ctx: DtlsContext, *,
                          max_frame: int = DEFAULT_MAX_PAYLOAD,
                          idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
                          max_connections: int | None = None) -> DlmsServer:
    """Listen for DTLS 1.2 on UDP ``host:port`` and run ``handler`` per peer session."""
    if not ctx.server_side:
        raise InputFileError("serving DTLS needs a server context (dtls.server_context)")
    if not 1 <= max_frame <= MAX_PAYLOAD_FIELD:
        raise InputFileError(f"max_frame must be 1..{MAX_PAYLOAD_FIELD}")
    loop = asyncio.get_running_loop()
    protocol = _ServerProtocol(handler, ctx, max_frame=max_frame, idle_timeout=idle_timeout,
                               max_connections=max_connections)
    try:
        transport, _ = await loop.create_datagram_endpoint(lambda: protocol,
                                                           local_addr=(host, port))
    except OSError as exc:
        raise ConnectionFailed(f"cannot listen on udp {host}:{port}: "
                               f"{exc.strerror or exc.__class__.__name__}") from None
    listener = _UdpListener(transport)
    protocol.listener = listener
    server = DlmsServer(listener, "wrapper")
    protocol.server = server
    return server
