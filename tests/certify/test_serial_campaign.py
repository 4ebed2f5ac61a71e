"""The DLMS campaign over a serial link (a pseudo-terminal) gives the verdicts it gives over TCP.

The reference meter runs as its own process on a pty (``meter serve --pty LINK``); the
power cycles of the persistence checks SIGKILL it and start it again, on a new pty
behind the same symlink, so the client reopens the same path as it would a real
meter's RS-485 adapter after a power cut.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from metercert.campaign.runner import run_campaign
from metercert.checks import all_checks
from metercert.checks.base import TargetKind
from metercert.client.target import DlmsTarget
from metercert.lab.power import BuiltinPowerController, MeterProcess
from metercert.security import load_keyset

pytestmark = pytest.mark.timeout(300)


def _verdicts(tmp_path: Path, profile: str, transport: str) -> dict[str, tuple[str, str]]:
    extra: tuple[str, ...] = ("--framing", "hdlc")  # TCP carries the same HDLC frames
    if transport != "tcp":
        extra = ("--pty", str(tmp_path / "meter.tty"))
        if transport == "optical":
            extra += ("--optical",)
    meter = MeterProcess(tmp_path / "state", profile=profile, port=0, extra_args=extra)
    host, port = meter.start()
    try:
        target = DlmsTarget(host, port, load_keyset(meter.keys_out), framing="hdlc",
                            transport=transport, power=BuiltinPowerController(meter))
        checks = [c for c in all_checks().values() if c.target is TargetKind.DLMS]
        run = run_campaign({TargetKind.DLMS: target}, checks, progress=False,
                           meter_profile=profile)
    finally:
        meter.stop()
    if transport != "tcp":
        assert meter.kills >= 1  # the power cycles really happened over the serial link
        assert host == str(tmp_path / "meter.tty")
    return {r.spec.id: (r.verdict.value, r.outcome.reason) for r in run.results}


@pytest.mark.parametrize(("profile", "transport"), [
    ("conformant", "serial"),
    ("conformant", "optical"),
    ("ic-reset-on-power-cycle", "serial"),
])
def test_serial_campaign_matches_tcp(tmp_path: Path, profile: str, transport: str) -> None:
    tcp_run = _verdicts(tmp_path / "tcp", profile, "tcp")
    serial_run = _verdicts(tmp_path / transport, profile, transport)
    over_tcp = {k: v for k, (v, _) in tcp_run.items()}
    over_serial = {k: v for k, (v, _) in serial_run.items()}
    assert len(over_serial) >= 20
    assert over_serial == over_tcp, {k: (tcp_run[k], serial_run.get(k)) for k in tcp_run
                                     if over_tcp[k] != over_serial.get(k)}
    if profile == "conformant":  # (checks for other meter kinds say not-applicable)
        assert {k: v for k, v in over_serial.items() if v in ("fail", "inconclusive")} == {}
        assert "pass" in over_serial.values()
    else:
        assert "fail" in over_serial.values()
    assert {k: v for k, v in over_serial.items() if k.startswith("DLMS-HDLC-")} == {
        k: ("fail" if profile == "hdlc-" + {"FCS": "bad-fcs-accepted",
                                             "SEQ": "sequence-unchecked",
                                             "INFO": "info-length-unchecked",
                                             "ADDR": "any-address"}[k.split("-")[2]]
            else "pass") for k in ("DLMS-HDLC-FCS-01", "DLMS-HDLC-SEQ-01", "DLMS-HDLC-INFO-01",
                                   "DLMS-HDLC-ADDR-01")}


def test_metercert_test_takes_a_serial_target(tmp_path: Path) -> None:
    link = tmp_path / "probe.tty"
    meter = MeterProcess(tmp_path / "m", profile="default-lls-password", port=0,
                         extra_args=("--pty", str(link), "--optical", "--baud", "19200"))
    host, baud = meter.start()
    assert (host, baud) == (str(link), 19200)
    url = f"serial://{link}?baud=19200&optical=1&address=17"  # the meter's physical address
    try:
        out = tmp_path / "out"
        proc = subprocess.run(
            [sys.executable, "-m", "metercert", "test", url, "--keys", str(meter.keys_out),
             "--out", str(out), "--quiet", "--only", "DLMS-AUTH-DEFAULT-01", "--only",
             "DLMS-REPLAY-01", "--only", "DLMS-HDLC-*"], capture_output=True, text=True,
            timeout=180, check=False)
        plain = subprocess.run(  # an optical port answers nothing before the sign-on
            [sys.executable, "-m", "metercert", "test", f"serial://{link}?baud=19200",
             "--keys", str(meter.keys_out), "--out", str(tmp_path / "o2"), "--quiet"],
            capture_output=True, text=True, timeout=60, check=False)
    finally:
        meter.stop()
    assert proc.returncode == 1, proc.stderr  # the factory password works: a failure
    results = json.loads((out / "results.json").read_text())
    assert {c["id"]: c["verdict"] for c in results["checks"]} == {
        "DLMS-AUTH-DEFAULT-01": "fail", "DLMS-REPLAY-01": "pass", "DLMS-HDLC-FCS-01": "pass",
        "DLMS-HDLC-SEQ-01": "pass", "DLMS-HDLC-INFO-01": "pass", "DLMS-HDLC-ADDR-01": "pass"}
    assert plain.returncode == 2
    assert len(plain.stderr.strip().splitlines()) == 1 and "SNRM" in plain.stderr


@pytest.mark.parametrize("argv", [
    ["meter", "serve", "--pty", "m.tty", "--udp"],
    ["meter", "serve", "--pty", "m.tty", "--count", "2"],
    ["meter", "serve", "--optical"],
    ["meter", "serve", "--pty", "nofolder/m.tty", "--port", "0"],
    ["meter", "serve", "--serial", "/dev/nonexistent-tty", "--port", "0"],
    ["meter", "serve", "--pty", "m.tty", "--optical", "--baud", "115200", "--port", "0"],
    ["test", "serial://dev/ttyUSB0", "--keys", "k.yaml"],
    ["test", "serial:///dev/ttyUSB0?baud=9600", "--framing", "wrapper", "--keys", "k.yaml"],
])
def test_bad_serial_usage_is_one_line(tmp_path: Path, argv: list[str]) -> None:
    (tmp_path / "k.yaml").write_text("guek: " + "00" * 16 + "\n")
    proc = subprocess.run([sys.executable, "-m", "metercert", *argv], capture_output=True,
                          text=True, timeout=60, cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
