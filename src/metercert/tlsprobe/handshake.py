"""Own TLS handshakes with a hard deadline, for the facts a scanner cannot give.

The ``ssl`` module's socket timeout applies to each ``recv``, so a server that
sends its ServerHello one byte per second never times out. These handshakes run
``ssl.SSLObject`` over memory BIOs instead and pump the socket themselves, so the
whole attempt (connect, handshake, wait for the server's verdict) ends by one
deadline whatever the server does.

Each attempt ends in one of four outcomes, and only two of them are answers:

* ``accepted``: the handshake completed and the server did not refuse it.
* ``rejected``: the server refused: an alert, a reset or a close in the handshake
  (or, in TLS 1.3, right after our Finished).
* ``app-refused``: the handshake completed, then the server sent data and closed,
  i.e. it refused above TLS (nginx's "400 No required SSL certificate").
* ``error`` / ``unknown``: our own client refused, the connection failed, or no
  answer came before the deadline. Neither says anything about the server's policy.
"""

from __future__ import annotations

import socket
import ssl
import statistics
import time
import warnings
from dataclasses import dataclass, field
from typing import Literal

Outcome = Literal["accepted", "rejected", "app-refused", "error", "unknown"]

# OpenSSL 3 refuses servers without RFC 5746 unless this is set. The probe must
# reach the server's own decisions, so it connects anyway (the ssl module names
# the flag only from Python 3.12: SSL_OP_LEGACY_SERVER_CONNECT).
OP_LEGACY_SERVER_CONNECT = getattr(ssl, "OP_LEGACY_SERVER_CONNECT", 1 << 2)

_TLS_VERSIONS = {
    "TLS 1.0": ssl.TLSVersion.TLSv1,
    "TLS 1.1": ssl.TLSVersion.TLSv1_1,
    "TLS 1.2": ssl.TLSVersion.TLSv1_2,
    "TLS 1.3": ssl.TLSVersion.TLSv1_3,
}


@dataclass(frozen=True)
class Timing:
    """Timeouts derived from the user's timeout and the measured round-trip time.

    A fixed wait is wrong on slow links (cellular backhaul adds seconds): every
    wait here grows with the RTT, and none is shorter than the user's timeout.
    """

    rtt_s: float
    timeout_s: float

    @property
    def handshake_s(self) -> float:
        """Deadline of one connect + handshake (about four round trips)."""
        return self.timeout_s + 4 * self.rtt_s

    @property
    def settle_s(self) -> float:
        """How long to wait after our Finished for the server's verdict (TLS 1.3)."""
        return 1.0 + 2 * self.rtt_s

    @property
    def scanner_budget_s(self) -> float:
        """Wall-clock budget of one sslyze run (hundreds of suite attempts, 5 in parallel)."""
        return 60.0 + 12 * self.timeout_s + 250 * self.rtt_s

    @property
    def scanner_timeout_s(self) -> int:
        """Per-operation timeout handed to sslyze (whole seconds)."""
        return max(1, int(self.timeout_s + 2 * self.rtt_s + 0.999))


def measure_rtt(ip: str, port: int, timeout: float, samples: int = 2) -> float:
    """Median TCP connect time: one round trip (SYN, SYN-ACK) per sample.

    A TCP proxy in the path answers the connect itself; :attr:`Attempt.reply_s` of a
    handshake measures the whole way, so callers take the larger of the two.
    """
    times = []
    for _ in range(samples):
        t0 = time.perf_counter()
        with socket.create_connection((ip, port), timeout=timeout):
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


@dataclass(frozen=True)
class Attempt:
    """What one own handshake saw."""

    outcome: Outcome
    detail: str
    version: str | None = None  # "TLSv1.2"
    cipher: str | None = None  # OpenSSL name of the negotiated suite
    peer_cert_der: bytes | None = field(default=None, repr=False)
    session: ssl.SSLSession | None = field(default=None, repr=False)
    resumed: bool = False
    # seconds from our ClientHello to the server's first bytes: one round trip as the
    # TLS endpoint sees it, also behind TCP proxies that answer the connect themselves
    reply_s: float | None = None


def permissive_context(
    cert: str | None = None,
    key: str | None = None,
    *,
    version: str | None = None,
    max_version: str | None = None,
    ciphers: str = "ALL:COMPLEMENTOFALL:@SECLEVEL=0",
) -> ssl.SSLContext:
    """A client that accepts anything, so it reaches the server's own decisions.

    Raises ``ssl.SSLError`` when the credentials cannot be loaded.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.options |= OP_LEGACY_SERVER_CONNECT
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.set_ciphers(ciphers)
        if version is not None:
            ctx.minimum_version = ctx.maximum_version = _TLS_VERSIONS[version]
        else:
            ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
            if max_version is not None:
                ctx.maximum_version = _TLS_VERSIONS[max_version]
    if cert and key:
        ctx.load_cert_chain(cert, key)
    return ctx


def _alert_from_peer(exc: ssl.SSLError) -> bool:
    """OpenSSL names an alert received from the peer ``..._ALERT_...``."""
    return "ALERT" in str(exc.reason or exc)


class _Deadline:
    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds
        self.seconds = seconds

    def left(self) -> float:
        return self.end - time.monotonic()


def handshake(
    ip: str,
    port: int,
    ctx: ssl.SSLContext,
    *,
    deadline_s: float,
    sni: str | None = None,
    settle_s: float = 0.0,
    session: ssl.SSLSession | None = None,
) -> Attempt:
    """One handshake that ends by ``deadline_s`` + ``settle_s`` whatever the server does.

    ``settle_s`` > 0 waits that long after the handshake for the server's verdict
    (an alert, a close, data); silence for the whole wait counts as accepted.
    """
    deadline = _Deadline(deadline_s)
    try:
        sock = socket.create_connection((ip, port), timeout=max(0.05, deadline.left()))
    except TimeoutError:
        return Attempt("unknown", f"TCP connect timed out after {deadline_s:.1f} s")
    except OSError as exc:
        return Attempt("error", f"connection failed: {exc.strerror or exc}")
    with sock:
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = ctx.wrap_bio(incoming, outgoing, server_hostname=sni, session=session)
        received = 0
        sent_at: float | None = None
        reply: list[float] = []

        def flush() -> None:
            nonlocal sent_at
            data = outgoing.read()
            if data:
                sock.settimeout(max(0.05, deadline.left()))
                sock.sendall(data)
                if sent_at is None:
                    sent_at = time.monotonic()

        def pump() -> bool:
            """Read more from the server; False on EOF."""
            nonlocal received
            left = deadline.left()
            if left <= 0:
                raise TimeoutError
            sock.settimeout(left)
            data = sock.recv(65536)
            if not data:
                incoming.write_eof()
                return False
            if not received and sent_at is not None:
                reply.append(time.monotonic() - sent_at)
            received += len(data)
            incoming.write(data)
            return True

        def chosen() -> dict:
            # the suite named in the ServerHello, known even when the handshake then fails
            return {
                "cipher": (obj.cipher() or (None,))[0] if received else None,
                "reply_s": reply[0] if reply else None,
            }

        try:
            while True:
                try:
                    obj.do_handshake()
                    flush()
                    break
                except ssl.SSLWantReadError:
                    flush()
                    if not pump():
                        return Attempt(
                            "rejected",
                            "server closed the connection in the handshake",
                            **chosen(),
                        )
        except TimeoutError:
            return Attempt(
                "unknown",
                f"handshake not finished within {deadline_s:.1f} s "
                f"({received} bytes received from the server)",
                reply_s=reply[0] if reply else None,
            )
        except ssl.SSLEOFError:
            return Attempt("rejected", "server closed the connection in the handshake", **chosen())
        except ssl.SSLError as exc:
            try:
                flush()  # our own alert, so the server does not wait for us
            except OSError:
                pass
            if _alert_from_peer(exc):
                return Attempt("rejected", f"server alert: {exc.reason}", **chosen())
            return Attempt(
                "error", f"our client stopped the handshake: {exc.reason or exc}", **chosen()
            )
        except (ConnectionResetError, BrokenPipeError):
            return Attempt("rejected", "server reset the connection in the handshake", **chosen())
        except OSError as exc:
            return Attempt("error", f"connection failed: {exc.strerror or exc}")

        version, cipher = obj.version(), (obj.cipher() or (None,))[0]
        done = {
            "version": version,
            "cipher": cipher,
            "peer_cert_der": obj.getpeercert(binary_form=True),
            "resumed": obj.session_reused,
            "reply_s": reply[0] if reply else None,
        }
        if settle_s <= 0:
            return Attempt("accepted", "handshake completed", session=obj.session, **done)
        return _settle(obj, pump, flush, settle_s, deadline, done)


def _settle(obj, pump, flush, settle_s: float, deadline: _Deadline, done: dict) -> Attempt:
    """Wait for the server's verdict after the handshake (alert, close, data or silence)."""
    deadline.end = time.monotonic() + settle_s
    app_data = b""
    while True:
        try:
            chunk = obj.read(4096)
            if chunk:
                app_data += chunk
                if len(app_data) >= 512:
                    break
                continue
            # clean close_notify
            break
        except ssl.SSLWantReadError:
            try:
                flush()
                if not pump():
                    break
            except TimeoutError:
                if app_data:
                    return Attempt(
                        "accepted",
                        f"handshake completed; server sent {_printable(app_data)}",
                        session=obj.session,
                        **done,
                    )
                return Attempt(
                    "accepted",
                    f"handshake completed, connection still open after {settle_s:.1f} s",
                    session=obj.session,
                    **done,
                )
            except (ConnectionResetError, BrokenPipeError):
                break
            except OSError as exc:
                return Attempt("error", f"connection failed: {exc.strerror or exc}", **done)
        except ssl.SSLZeroReturnError:
            break
        except ssl.SSLEOFError:
            break
        except ssl.SSLError as exc:
            if _alert_from_peer(exc):
                return Attempt(
                    "rejected", f"server alert after the handshake: {exc.reason}", **done
                )
            return Attempt("error", f"our client failed after the handshake: {exc.reason}", **done)
    session = obj.session
    if app_data:
        return Attempt(
            "app-refused",
            f"handshake completed, then the server sent {_printable(app_data)} and closed "
            "(refused at the application layer)",
            session=session,
            **done,
        )
    return Attempt(
        "rejected",
        "server closed the connection right after the handshake",
        session=session,
        **done,
    )


def _printable(data: bytes) -> str:
    """The first line of what the server sent, safe to print."""
    first = data[:80].decode("latin-1").split("\n", 1)[0]
    clean = "".join(c if c.isprintable() else "." for c in first)
    return repr(clean) if clean.strip(".") else f"{len(data)} bytes"
