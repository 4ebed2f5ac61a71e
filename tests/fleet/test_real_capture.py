"""A capture of a real session between metercert's client and the reference meter
(profile ic-reset-on-power-cycle, power-cycled mid-way) is ingested by the fleet audit,
which finds the meter's counter regression and counter reuse."""

import asyncio
import json
import subprocess
import sys

import pytest

from metercert.client.target import DlmsTarget
from metercert.lab.power import BuiltinPowerController, MeterProcess
from metercert.security import load_keyset


async def _sessions(target: DlmsTarget, power: BuiltinPowerController) -> None:
    for cycle in range(2):
        client = await target.management()
        for _ in range(4):
            await client.get(8, "0.0.1.0.0.255", 2)
        await client.release()
        await client.close()
        if cycle == 0:
            await power.power_cycle()
            await asyncio.sleep(1.1)  # the clock moves on: same counters, new ciphertexts


@pytest.mark.parametrize("profile,expect_reuse", [("ic-reset-on-power-cycle", True),
                                                  ("conformant", False)])
def test_power_cycled_meter_capture_shows_counter_reuse(tmp_path, profile, expect_reuse):
    captures = tmp_path / "captures"
    meter = MeterProcess(tmp_path / "state", profile=profile, port=0,
                         extra_args=("--capture", str(captures)))
    meter.start()
    try:
        target = DlmsTarget(meter.host, meter.port, load_keyset(meter.keys_out))
        asyncio.run(_sessions(target, BuiltinPowerController(meter)))
    finally:
        meter.stop()
    pcaps = sorted(captures.glob("*.pcap"))
    assert len(pcaps) == 2  # one per process start
    data, report = tmp_path / "data", tmp_path / "report"
    ingest = subprocess.run([sys.executable, "-m", "metercert", "fleet", "ingest", *map(str, pcaps),
                             "--out", str(data), "--port", str(meter.port)],
                            capture_output=True, text=True, timeout=120, check=False)
    assert ingest.returncode == 0, ingest.stderr
    scan = subprocess.run([sys.executable, "-m", "metercert", "fleet", "scan", str(data),
                           "--report", str(report)],
                          capture_output=True, text=True, timeout=300, check=False)
    findings = json.loads((report / "findings.json").read_text())
    items = findings["findings"] if isinstance(findings, dict) else findings
    kinds = {f["kind"] for f in items}
    if expect_reuse:
        assert scan.returncode == 1, scan.stderr
        assert {"ic-reuse", "ic-regression"} <= kinds, items
    else:
        assert scan.returncode == 0, scan.stderr
        assert not kinds & {"ic-reuse", "ic-regression", "replay"}, items
