"""A campaign never exits 0 without verdicts, and a meter that does not answer costs
seconds: `metercert test` against a silent port, the wrong framing, another meter's keys."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time

import pytest

from metercert.lab.power import MeterProcess


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "metercert", *args], capture_output=True,
                          text=True, timeout=timeout, check=False)


@pytest.fixture
def silent_port():
    """A TCP port that accepts connections and never sends a byte."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                held.append(conn)
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(2)
    for conn in held:
        conn.close()
    server.close()


@pytest.fixture
def meter(tmp_path):
    proc = MeterProcess(tmp_path / "state", profile="conformant", port=0)
    proc.start()
    yield proc
    proc.stop()


def test_a_port_that_never_answers_ends_in_seconds_with_one_line(silent_port, meter, tmp_path):
    start = time.monotonic()
    proc = _run("test", f"tcp://127.0.0.1:{silent_port}", "--keys", str(meter.keys_out),
                "--out", str(tmp_path / "out"), "--quiet")
    took = time.monotonic() - start
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "did not answer an AARQ" in lines[0], proc.stderr
    assert took < 30


def test_hdlc_framing_on_a_wrapper_meter_is_an_error_not_a_clean_run(meter, tmp_path):
    proc = _run("test", f"tcp://{meter.host}:{meter.port}", "--keys", str(meter.keys_out),
                "--framing", "hdlc", "--out", str(tmp_path / "out"), "--quiet")
    assert proc.returncode == 2, proc.stdout[-2000:]
    assert len(proc.stderr.strip().splitlines()) == 1


def test_another_meters_key_file_is_refused_up_front(meter, tmp_path):
    other = MeterProcess(tmp_path / "other", profile="conformant", port=0)
    other.start()
    try:
        proc = _run("test", f"tcp://{meter.host}:{meter.port}", "--keys", str(other.keys_out),
                    "--out", str(tmp_path / "out"), "--quiet", "--no-destructive")
    finally:
        other.stop()
    assert proc.returncode == 2, proc.stdout[-2000:]
    assert "management association" in proc.stderr and "refused" in proc.stderr


def test_discovery_reads_the_meter_and_the_report_names_its_identity(meter, tmp_path):
    out = tmp_path / "out"
    proc = _run("test", f"tcp://{meter.host}:{meter.port}", "--keys", str(meter.keys_out),
                "--out", str(out), "--quiet", "--only", "DLMS-SUITE-01")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr
    results = json.loads((out / "results.json").read_text())
    text = json.dumps(results)
    assert "MCT00000001" in text   # the serial number read from 0.0.96.1.0.255
