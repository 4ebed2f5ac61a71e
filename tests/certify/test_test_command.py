"""`metercert test tcp://HOST:PORT --keys FILE` against a separately started meter."""

import json
import socket
import subprocess
import sys

import pytest

from metercert.lab.power import MeterProcess


@pytest.fixture
def meter(tmp_path, request):
    profile = getattr(request, "param", "conformant")
    proc = MeterProcess(tmp_path / "state", profile=profile, port=0)
    proc.start()
    yield proc
    proc.stop()


def _test(meter, tmp_path, *extra):
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "metercert", "test", f"tcp://{meter.host}:{meter.port}", "--keys",
         str(meter.keys_out), "--out", str(out), "--quiet", *extra],
        capture_output=True, text=True, timeout=180, check=False)
    return proc, out


def test_non_destructive_campaign_against_a_running_meter(meter, tmp_path):
    proc, out = _test(meter, tmp_path, "--no-destructive")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr
    results = json.loads((out / "results.json").read_text())
    ids = {c["id"]: c["verdict"] for c in results["checks"]}
    assert ids["DLMS-REPLAY-01"] == "pass"
    assert "DLMS-IC-PERSIST-01" not in ids  # destructive: deselected
    assert any(d.get("id") == "DLMS-IC-PERSIST-01" for d in results["run"]["deselected"])


@pytest.mark.parametrize("meter", ["secret-readable"], indirect=True)
def test_flawed_meter_gives_exit_1(meter, tmp_path):
    proc, out = _test(meter, tmp_path, "--only", "DLMS-SECRET-01", "--only", "DLMS-SUITE-01")
    assert proc.returncode == 1
    results = json.loads((out / "results.json").read_text())
    assert {c["id"]: c["verdict"] for c in results["checks"]} == {
        "DLMS-SECRET-01": "fail", "DLMS-SUITE-01": "pass"}


def test_campaign_file_names_target_and_keys(meter, tmp_path):
    campaign = tmp_path / "campaign.yaml"
    campaign.write_text(f"target: tcp://{meter.host}:{meter.port}\nkeys: {meter.keys_out}\n"
                        "only: [DLMS-POLICY-01]\n")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "metercert", "test", "--campaign", str(campaign),
                           "--out", str(out), "--quiet"], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    results = json.loads((out / "results.json").read_text())
    assert [c["id"] for c in results["checks"]] == ["DLMS-POLICY-01"]


def test_closed_port_is_one_line_exit_2(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    keys = tmp_path / "k.yaml"
    keys.write_text("guek: " + "00" * 16 + "\n")
    proc = subprocess.run([sys.executable, "-m", "metercert", "test", f"tcp://127.0.0.1:{port}",
                           "--keys", str(keys), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    assert f"cannot connect to 127.0.0.1:{port}" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
