"""The reference meter pushes through a power cycle; the listener flags what is wrong,
and ``fleet scan`` over the listener's records finds the same.

Between two scheduled pushes a management association uses some of the meter's own
counters, so the pushes before the power cycle leave a gap. A conformant meter goes on
above its highest counter after the cycle; a meter whose counter restarts at boot
(``own-ic-reset-at-boot``) pushes with counters it used before (reuse) and with counters
from the gap (regression). In both runs the test replays one early push byte for byte.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from metercert.client.target import DlmsTarget
from metercert.fleet.ingest import KeyRing
from metercert.lab.power import MeterProcess
from metercert.push.listener import PushListener
from metercert.security import load_keyset
from metercert.transport.wrapper import encode_wrapper

pytestmark = pytest.mark.timeout(120)


async def _wait_for(listener: PushListener, count: int, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while len(listener.records) < count:
        assert loop.time() < deadline, f"only {len(listener.records)} of {count} pushes arrived"
        await asyncio.sleep(0.05)


def _run(tmp_path: Path, profile: str) -> tuple[list[str], list[str], dict[str, int]]:
    out = tmp_path / "pushes"

    async def main() -> tuple[list[str], list[str]]:
        # the key file exists once the meter made its keys: start it once without pushes
        first = MeterProcess(tmp_path / "state", profile=profile, port=0)
        await asyncio.to_thread(first.start)
        first.stop()
        keys = KeyRing.load(first.keys_out)
        listener = PushListener(keys, out_dir=out)
        host, port = await listener.start_tcp("127.0.0.1", 0)
        meter = MeterProcess(tmp_path / "state", profile=profile, port=0, extra_args=(
            "--push-to", f"tcp://{host}:{port}", "--push-interval", "0.15"))
        try:
            mhost, mport = await asyncio.to_thread(meter.start)
            await _wait_for(listener, 2)
            target = DlmsTarget(mhost, mport, load_keyset(meter.keys_out),
                                discover_on_open=False, counter_dir=tmp_path / "client")
            for _ in range(2):  # responses use the meter's counters between two pushes
                client = await target.management()
                await client.get(8, client.clock_obis, 2)
                await client.release()
                await client.close()
            before = len(listener.records) + 2
            await _wait_for(listener, before)
            meter.kill()  # the power cut
            await asyncio.to_thread(meter.start)  # back on the same state: a power-up push
            await _wait_for(listener, before + 10)
        finally:
            meter.stop()
        cycle = len(listener.records) - 10
        # an attacker replays the first push byte for byte
        _, writer = await asyncio.open_connection(host, port)
        writer.write(encode_wrapper(1, 1, listener.records[0].raw))
        await writer.drain()
        writer.close()
        await _wait_for(listener, cycle + 11)
        await listener.close()
        listener.flush()
        verdicts = [r.verdict for r in listener.records]
        return verdicts[:cycle], verdicts[cycle:]

    before, after = asyncio.run(asyncio.wait_for(main(), 90))
    report = tmp_path / "scan"
    scan = subprocess.run([sys.executable, "-m", "metercert", "fleet", "scan", str(out),
                           "--report", str(report)], capture_output=True, text=True,
                          timeout=120, check=False)
    assert scan.returncode in (0, 1), scan.stderr
    summary = json.loads((report / "findings.json").read_text())["summary"]
    return before, after, summary


def test_conformant_meter_pushes_through_a_power_cycle(tmp_path: Path) -> None:
    before, after, summary = _run(tmp_path, "conformant")
    assert set(before) == {"ok"}
    assert after[-1] == "replay" and set(after[:-1]) == {"ok"}  # no regression, no reuse
    assert summary["replay"] >= 1
    assert summary["ic-reuse"] == summary["ic-regression"] == summary["tag-failure"] == 0


def test_counter_reset_at_boot_is_flagged_by_listener_and_fleet_scan(tmp_path: Path) -> None:
    before, after, summary = _run(tmp_path, "own-ic-reset-at-boot")
    assert set(before) == {"ok"}
    assert after[-1] == "replay"
    assert after[0] == "counter-reuse"  # the power-up push reuses counter 0
    assert "regression" in after        # counters from the gap the association left
    assert summary["replay"] >= 1 and summary["ic-reuse"] >= 1
