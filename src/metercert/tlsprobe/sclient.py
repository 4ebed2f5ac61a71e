"""Facts only the ``openssl s_client`` tool exposes: extended master secret, the
signature algorithms a server accepts, and TLS 1.3 KeyUpdate.

The ``ssl`` module has no API to restrict signature algorithms, send a KeyUpdate
or read whether RFC 7627's extended master secret was negotiated; the OpenSSL
command-line client (Debian ``openssl``, which the ``ssl`` module links) does all
three. Every run has a hard timeout; a missing tool or a timeout is "unknown".
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import time
from dataclasses import dataclass

from metercert.tlsprobe.handshake import Timing


@dataclass(frozen=True)
class SClientFacts:
    """None = could not be determined (``detail`` says why)."""

    extended_master_secret: bool | None
    ems_detail: str
    sha1_signatures_accepted: bool | None
    sigalg_detail: str
    key_update: str | None  # "kept" / "dropped" / None
    key_update_detail: str
    ocsp_stapled: bool | None = None
    secure_renegotiation: bool | None = None  # RFC 5746 extension in the ServerHello
    client_renegotiation: bool | None = None  # a client-initiated renegotiation completed
    renegotiation_detail: str = ""
    ticket_lifetime_s: int | None = None  # the session ticket's lifetime hint, if any
    resumed: bool | None = None  # a second connection with the saved session resumed it
    resumption_detail: str = ""


def _base(ip: str, port: int, sni: str | None, cert: str | None, key: str | None) -> list[str]:
    argv = ["openssl", "s_client", "-connect", f"{ip}:{port}"]
    if ":" in ip:
        argv[-1] = f"[{ip}]:{port}"
    argv += ["-servername", sni] if sni else ["-noservername"]
    if cert and key:
        argv += ["-cert", cert, "-key", key]
    return argv


def _run(argv: list[str], timeout: float) -> str | None:
    try:
        proc = subprocess.run(argv, input=b"", capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return None
    return (proc.stdout + proc.stderr).decode("latin-1")


def _ems(base: list[str], timing: Timing, v12: str) -> tuple[bool | None, str, bool | None]:
    """(extended master secret, detail, RFC 5746 secure renegotiation) of one session."""
    out = _run([*base, v12, "-cipher", "ALL:@SECLEVEL=0"], timing.handshake_s + 2)
    if out is None:
        return None, "openssl s_client timed out", None
    secure = (
        True
        if "Secure Renegotiation IS supported" in out
        else (False if "Secure Renegotiation IS NOT supported" in out else None)
    )
    if "Cipher is (NONE)" in out or "Extended master secret" not in out:
        return None, "no TLS 1.2 handshake completed", secure
    ems = "Extended master secret: yes" in out
    return ems, f"TLS 1.2 session: Extended master secret: {'yes' if ems else 'no'}", secure


def _resumption(base: list[str], timing: Timing, v12: str) -> tuple[int | None, bool | None, str]:
    """Save the session of one connection, offer it on a second: ticket lifetime, reuse."""
    import re
    import tempfile

    with tempfile.TemporaryDirectory(prefix="metercert-sess-") as tmp:
        sess = f"{tmp}/session.pem"
        first = _run(
            [*base, v12, "-sess_out", sess, "-cipher", "ALL:@SECLEVEL=0"], timing.handshake_s + 2
        )
        if first is None or "Cipher is (NONE)" in first or not os.path.exists(sess):
            return None, None, "no session to resume"
        hint = re.search(r"ticket lifetime hint: (\d+)", first)
        lifetime = int(hint.group(1)) if hint else None
        second = _run(
            [*base, v12, "-sess_in", sess, "-cipher", "ALL:@SECLEVEL=0"], timing.handshake_s + 2
        )
    resumed = None if second is None else ("Reused," in second)
    return (
        lifetime,
        resumed,
        (
            f"ticket: {'yes, lifetime hint ' + str(lifetime) + ' s' if lifetime is not None else 'none'}"
            f"; second connection with the saved session: resumed={resumed}"
        ),
    )


def _stapling(base: list[str], timing: Timing, dtls: bool) -> bool | None:
    """Ask for an OCSP staple (status_request) at whatever version the server picks."""
    argv = [*base, *(["-dtls"] if dtls else []), "-status", "-cipher", "ALL:@SECLEVEL=0"]
    out = _run(argv, timing.handshake_s + 2)
    if out is None:
        return None
    if "OCSP Response Status: successful" in out:
        return True
    if "OCSP response: no response sent" in out:
        return False
    return None


def _sha1_sigalgs(base: list[str], timing: Timing, v12: str) -> tuple[bool | None, str]:
    """Offer only SHA-1 signature algorithms in TLS 1.2: a conformant server refuses.

    Only (EC)DHE suites are offered, so the server must sign its ServerKeyExchange;
    receiving one means it signed with SHA-1, whatever happens to the handshake later.
    """
    argv = [
        *base, v12, "-msg", "-cipher", "ECDHE:DHE:!aNULL:@SECLEVEL=0",
        "-sigalgs", "ECDSA+SHA1:RSA+SHA1",
    ]  # fmt: skip
    out = _run(argv, timing.handshake_s + 2)
    if out is None:
        return None, "openssl s_client timed out"
    got_ske = any(ln.startswith("<<<") and "ServerKeyExchange" in ln for ln in out.splitlines())
    if got_ske:
        return True, "offered only SHA-1 signature algorithms: the server signed its key exchange"
    got_hello = any(ln.startswith("<<<") and "ServerHello" in ln for ln in out.splitlines())
    if not got_hello and "alert" in out.lower():
        return False, "offered only SHA-1 signature algorithms: refused at the ClientHello"
    return None, "the SHA-1-only handshake ended without a clear answer"


def _client_renegotiation(base: list[str], timing: Timing, v12: str) -> tuple[bool | None, str]:
    """Ask for a renegotiation from the client side ("R"): a conformant server refuses."""
    proc = subprocess.Popen(
        [*base, v12, "-msg", "-cipher", "ALL:@SECLEVEL=0"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    out = b""
    try:
        deadline = time.monotonic() + timing.handshake_s
        while b"Verify return code" not in out and time.monotonic() < deadline:
            assert proc.stdout is not None
            r, _, _ = select.select([proc.stdout], [], [], 0.05)
            if r:
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                out += chunk
        if b"Verify return code" not in out:
            return None, "no TLS 1.2 session to renegotiate"
        assert proc.stdin is not None
        try:
            proc.stdin.write(b"R\n")
            proc.stdin.flush()
        except OSError:
            pass
        time.sleep(timing.settle_s)
    finally:
        proc.kill()
        rest, _ = proc.communicate(timeout=5)
        out += rest
    text = out.decode("latin-1")
    hellos = [ln for ln in text.splitlines() if ln.startswith("<<<") and "ServerHello," in ln]
    hellos += [
        ln for ln in text.splitlines() if ln.startswith("<<<") and ln.endswith("ServerHello")
    ]
    if "RENEGOTIATING" not in text:
        return None, "openssl s_client did not start the renegotiation"
    if len(hellos) >= 2:
        return True, "a client-initiated renegotiation completed (second ServerHello)"
    return False, "client-initiated renegotiation refused (no second ServerHello)"


def _key_update(base: list[str], timing: Timing) -> tuple[str | None, str]:
    """Send a TLS 1.3 KeyUpdate (update requested) and see whether the session survives.

    A control session opened at the same time, without the KeyUpdate, must survive
    the same wait, so a server that simply closes idle sessions is not blamed.
    """
    wait = timing.settle_s
    procs = [
        subprocess.Popen(
            [*base, "-tls1_3", "-msg"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for _ in range(2)
    ]
    outputs = [b"", b""]
    try:
        deadline = time.monotonic() + timing.handshake_s
        ready = [False, False]
        while not all(ready) and time.monotonic() < deadline:
            for i, proc in enumerate(procs):
                if ready[i] or proc.stdout is None:
                    continue
                r, _, _ = select.select([proc.stdout], [], [], 0.05)
                if r:
                    chunk = os.read(proc.stdout.fileno(), 65536)
                    outputs[i] += chunk
                    ready[i] = b"Verify return code" in outputs[i] or not chunk
        if not all(ready):
            return None, "no TLS 1.3 handshake completed in time"
        probe_proc = procs[0]
        assert probe_proc.stdin is not None
        try:
            probe_proc.stdin.write(b"K\n")
            probe_proc.stdin.flush()
        except OSError:
            pass
        time.sleep(wait)
        alive = [p.poll() is None for p in procs]
    finally:
        for i, proc in enumerate(procs):
            proc.kill()
            out, _ = proc.communicate(timeout=5)
            outputs[i] += out
    texts = [o.decode("latin-1") for o in outputs]
    if any("Protocol  : TLSv1.3" not in t for t in texts):
        return None, "no TLS 1.3 session was established"
    if not alive[1]:
        return None, "the session without KeyUpdate did not stay open either"
    if ">>> TLS 1.3, Handshake [length 0005], KeyUpdate" not in texts[0]:
        return None, "openssl s_client did not send the KeyUpdate"
    if alive[0]:
        return "kept", f"session still open {wait:.1f} s after our KeyUpdate (update requested)"
    return "dropped", "the server ended the session after our KeyUpdate (control session kept)"


def probe(
    ip: str,
    port: int,
    sni: str | None,
    timing: Timing,
    *,
    cert: str | None,
    key: str | None,
    tls12: bool,
    tls13: bool,
    dtls: bool = False,
) -> SClientFacts:
    """All s_client facts; ``dtls`` probes over UDP (DTLS 1.2 in place of TLS 1.2)."""
    if shutil.which("openssl") is None:
        why = "the openssl command is not installed"
        return SClientFacts(None, why, None, why, None, why)
    base = _base(ip, port, sni, cert, key)
    v12 = "-dtls1_2" if dtls else "-tls1_2"
    ems, ems_detail, secure = _ems(base, timing, v12) if tls12 else (None, "no TLS 1.2", None)
    client_reneg, reneg_detail = (
        _client_renegotiation(base, timing, v12) if tls12 and dtls else (None, "not probed")
    )
    sha1, sig_detail = _sha1_sigalgs(base, timing, v12) if tls12 else (None, "TLS 1.2 not offered")
    ku, ku_detail = _key_update(base, timing) if tls13 else (None, "TLS 1.3 not offered")
    stapled = _stapling(base, timing, dtls)
    lifetime, resumed, resumption_detail = (
        _resumption(base, timing, v12) if tls12 and dtls else (None, None, "not probed")
    )
    return SClientFacts(
        ems, ems_detail, sha1, sig_detail, ku, ku_detail, stapled, secure, client_reneg,
        reneg_detail, lifetime, resumed, resumption_detail,
    )  # fmt: skip
