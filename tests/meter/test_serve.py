"""``metercert meter serve`` as a process: mutual TLS, ``--count N``, and its usage errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from metercert.client.session import ClientSettings, DlmsClient
from metercert.client.target import DlmsTarget
from metercert.errors import ConnectionFailed
from metercert.lab.power import MeterProcess
from metercert.security import load_key_file, load_keyset
from metercert.tlsprobe.contexts import client_context
from metercert.tlsprobe.pki import write_pki

from ._support import CLOCK, SERIAL, run


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return write_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_meter(tmp_path_factory: pytest.TempPathFactory, pki):  # type: ignore[no-untyped-def]
    state = tmp_path_factory.mktemp("tls-meter")
    meter = MeterProcess(state, port=0, extra_args=(
        "--tls", "--cert", str(pki.meter_cert), "--key", str(pki.meter_key),
        "--ca", str(pki.ca_cert)))
    meter.start()
    yield meter
    meter.stop()


def test_mutual_tls_client_reads_the_clock(tls_meter: MeterProcess, pki, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ctx = client_context(pki.ca_cert, pki.headend_cert, pki.headend_key)
    target = DlmsTarget(tls_meter.host, tls_meter.port, load_keyset(tls_meter.keys_out),
                        ssl=ctx, counter_dir=tmp_path / "client")

    async def scenario() -> tuple[bytes, str, object]:
        client = await target.management()
        clock = await client.get(8, CLOCK, 2)
        assert client.stream is not None
        version = client.stream.get_extra_info("ssl_object").version()
        peer = client.stream.get_extra_info("peercert")
        await client.__aexit__(None, None, None)
        return clock.value, version, peer

    clock, version, peer = run(scenario)
    assert len(clock) == 12
    assert version in ("TLSv1.2", "TLSv1.3")
    assert peer and ("commonName", "meter-0001") in [n for rdn in peer["subject"] for n in rdn]


def test_client_without_certificate_is_refused(tls_meter: MeterProcess, pki) -> None:  # type: ignore[no-untyped-def]
    ctx = client_context(pki.ca_cert)  # trusts the meter, presents nothing

    async def scenario() -> None:
        client = DlmsClient(tls_meter.host, tls_meter.port, ClientSettings(ssl=ctx, timeout=5.0))
        try:
            async with client:
                await client.get(8, CLOCK, 2)
        finally:
            await client.close()

    with pytest.raises(ConnectionFailed):
        run(scenario)


def test_client_with_a_foreign_certificate_is_refused(tls_meter: MeterProcess, pki,  # type: ignore[no-untyped-def]
                                                      tmp_path: Path) -> None:
    other = write_pki(tmp_path / "other")
    ctx = client_context(pki.ca_cert, other.headend_cert, other.headend_key)

    async def scenario() -> None:
        async with DlmsClient(tls_meter.host, tls_meter.port,
                              ClientSettings(ssl=ctx, timeout=5.0)) as client:
            await client.get(8, CLOCK, 2)

    with pytest.raises(ConnectionFailed):
        run(scenario)


def test_plain_client_gets_nothing_from_a_tls_meter(tls_meter: MeterProcess) -> None:
    async def scenario() -> None:
        async with DlmsClient(tls_meter.host, tls_meter.port,
                              ClientSettings(timeout=3.0)) as client:
            await client.get(8, CLOCK, 2)

    with pytest.raises(ConnectionFailed):
        run(scenario)


def test_twenty_meters_one_key_file(tmp_path: Path) -> None:
    meter = MeterProcess(tmp_path / "state", port=0, count=20)
    meter.start()
    try:
        keysets = load_key_file(meter.keys_out)
        text = meter.keys_out.read_text()

        async def scenario() -> list[tuple[int, str, bytes]]:
            out = []
            for i, keys in enumerate(keysets):
                target = DlmsTarget(str(keys.extra["host"]), int(keys.extra["port"]), keys,
                                    counter_dir=tmp_path / "client")
                client = await target.management()
                serial = await client.get(1, SERIAL, 2)
                await client.__aexit__(None, None, None)
                out.append((int(keys.extra["port"]), serial.value, client.server_title))
            return out

        seen = run(scenario)
    finally:
        meter.stop()
    assert list(yaml.safe_load(text)) == ["meters"]
    assert len(keysets) == 20
    assert [s for _, s, _ in seen] == [f"MCT{i:08d}" for i in range(1, 21)]
    assert len({p for p, _, _ in seen}) == 20
    assert len({t for _, _, t in seen}) == 20
    assert len({k.guek.secret for k in keysets}) == 20  # no key shared between meters
    assert oct(meter.keys_out.stat().st_mode & 0o777) == "0o600"


def test_count_gives_consecutive_ports(tmp_path: Path) -> None:
    import socket

    base = _free_port_run(5)
    meter = MeterProcess(tmp_path / "state", port=base, count=5)
    meter.start()
    try:
        ports = [int(k.extra["port"]) for k in load_key_file(meter.keys_out)]
        with socket.create_connection(("127.0.0.1", base + 4), timeout=2):
            pass
    finally:
        meter.stop()
    assert ports == list(range(base, base + 5))


def _free_port_run(n: int) -> int:
    """A base port with ``n`` free consecutive ports on 127.0.0.1 (best effort)."""
    import socket

    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        if base + n >= 65000:
            continue
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    pytest.skip("no run of free consecutive ports on 127.0.0.1")


@pytest.mark.parametrize("args, message", [
    (["--tls"], "--tls needs --cert, --key and --ca"),
    (["--count", "0"], "--count must be between 1 and 20000"),
    (["--profile", "no-such-profile"], "unknown meter profile"),
    (["--tls", "--cert", "missing.pem", "--key", "missing.key", "--ca", "missing-ca.pem"],
     "missing.pem"),
])
def test_usage_errors_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "metercert", "meter", "serve", "--port", "0",
                           "--state-dir", str(tmp_path), *args],
                          check=False, capture_output=True, text=True, timeout=30,
                          cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("metercert: error: ")
    assert message in lines[0]
    assert "Traceback" not in proc.stderr
