"""Bad inputs and hostile servers: one line, exit 2, in bounded time, no library names."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from metercert.cli import main
from metercert.tlsprobe import pki


def _audit(*argv: str) -> list[str]:
    return ["tls-audit", "127.0.0.1:1", *argv]


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("metercert: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and "sslyze.errors" not in err and "OpenSSLError" not in err
    return err


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("bad-inputs")
    good = pki.write_pki(d / "pki")
    other = pki.write_pki(d / "other")
    encrypted = d / "encrypted.key"
    key = serialization.load_pem_private_key(good.headend_key.read_bytes(), None)
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret-passphrase"),
        )
    )
    (d / "empty.key").write_bytes(b"")
    (d / "garbage.pem").write_text("this is not a certificate\n")
    return {
        "cert": str(good.headend_cert),
        "key": str(good.headend_key),
        "ca": str(good.ca_cert),
        "leaf-as-ca": str(good.meter_cert),
        "other-key": str(other.headend_key),
        "encrypted": str(encrypted),
        "empty": str(d / "empty.key"),
        "garbage": str(d / "garbage.pem"),
    }


@pytest.mark.parametrize(
    ("what", "args", "message"),
    [
        ("garbage --ca", lambda k: ["--ca", k["garbage"]], "is not a PEM or DER certificate"),
        ("leaf as --ca", lambda k: ["--ca", k["leaf-as-ca"]], "is not a CA"),
        (
            "empty key",
            lambda k: ["--client-cert", k["cert"], "--client-key", k["empty"]],
            "client private key is empty",
        ),
        (
            "mismatched key",
            lambda k: ["--client-cert", k["cert"], "--client-key", k["other-key"]],
            "does not match the certificate",
        ),
        (
            "encrypted key",
            lambda k: ["--client-cert", k["cert"], "--client-key", k["encrypted"]],
            "is encrypted",
        ),
        (
            "garbage key",
            lambda k: ["--client-cert", k["cert"], "--client-key", k["garbage"]],
            "not a PEM private key",
        ),
        (
            "garbage certificate",
            lambda k: ["--client-cert", k["garbage"], "--client-key", k["key"]],
            "client certificate is not a PEM or DER certificate",
        ),
    ],
)
def test_bad_credentials_are_one_line_exit_2(what, args, message, keys, capsys) -> None:
    assert main(_audit(*args(keys))) == 2, what
    err = _one_line_error(capsys)
    assert message in err, err
    assert "secret-passphrase" not in err


def test_directory_as_key_is_one_line(keys, tmp_path, capsys) -> None:
    assert main(_audit("--client-cert", keys["cert"], "--client-key", str(tmp_path))) == 2
    assert "client private key not found" in _one_line_error(capsys)


class _Hostile:
    """A listener that accepts and then misbehaves (silence, or one byte at a time)."""

    def __init__(self, drip: bytes | None) -> None:
        self.drip = drip
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.conns.append(conn)
            if self.drip is not None:
                threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        for b in self.drip or b"":
            if self.stop.is_set():
                return
            try:
                conn.sendall(bytes([b]))
            except OSError:
                return
            time.sleep(0.2)

    def close(self) -> None:
        self.stop.set()
        for c in self.conns:
            c.close()
        self.sock.close()


@pytest.fixture(params=["hangs-after-accept", "drips-server-hello"])
def hostile(request) -> Iterator[_Hostile]:
    # a TLS 1.2 handshake record header announcing 16 KiB, then bytes 5/s forever
    drip = (
        None if request.param == "hangs-after-accept" else b"\x16\x03\x03\x40\x00" + b"\x02" * 400
    )
    server = _Hostile(drip)
    yield server
    server.close()


def test_hostile_server_ends_in_bounded_time(hostile: _Hostile) -> None:
    """The subprocess limit is a liveness bound (the issue saw 58.6 s and 282.6 s)."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "metercert",
            "tls-audit",
            f"127.0.0.1:{hostile.port}",
            "--timeout",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"metercert: error: no TLS from 127.0.0.1:{hostile.port}")
    assert "handshake not finished within" in proc.stderr and proc.stderr.count("\n") == 1


def test_key_file_contents_never_in_repr(keys) -> None:
    from metercert.tlsprobe.audit import TlsTarget

    target = TlsTarget("127.0.0.1", 1, keys["cert"], keys["key"], keys["ca"])
    body = "".join(Path(keys["key"]).read_text().splitlines()[1:-1])
    assert body[:32] not in repr(target) and keys["key"] not in repr(target)
