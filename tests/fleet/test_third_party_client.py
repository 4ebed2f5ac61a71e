"""Fleet audit of real traffic from a third-party client: gurux-dlms as the READER role
(its own keys, client SAP 32) beside metercert's HLS management session, interleaved on
the reference meter (captured by the meter itself, --capture). On the conformant meter
the roles' counters are separate counter spaces: no finding. The ic-reset-on-power-cycle
meter, power-cycled between two such rounds, still gives its counter reuse."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

pytest.importorskip("gurux_dlms")

from gurux_dlms import GXByteBuffer, GXReplyData
from gurux_dlms.enums import Authentication, InterfaceType, Security
from gurux_dlms.objects import GXDLMSClock
from gurux_dlms.objects.enums.SecuritySuite import SecuritySuite
from gurux_dlms.secure import GXDLMSSecureClient

from metercert.client.target import DlmsTarget
from metercert.lab.power import BuiltinPowerController, MeterProcess
from metercert.security import load_keyset

CLOCK = "0.0.1.0.0.255"


class GuruxReader:
    """gurux's client frames sent over our own socket, replies fed back to it."""

    def __init__(self, host: str, port: int, keys: dict[str, Any]) -> None:
        role = next(r for r in keys["roles"] if r["role"] == "READER")
        self.client = GXDLMSSecureClient(True, int(role["client_sap"]), 1,
                                         Authentication.HIGH_GMAC, None, InterfaceType.WRAPPER)
        c = self.client.ciphering
        c.security = Security.AUTHENTICATION_ENCRYPTION
        c.securitySuite = SecuritySuite(int(keys.get("security_suite", 0)))
        c.systemTitle = bytearray(bytes.fromhex(keys["client_system_title"]))
        c.blockCipherKey = bytearray(bytes.fromhex(role["guek"]))
        c.authenticationKey = bytearray(bytes.fromhex(role["ak"]))
        self.sock = socket.create_connection((host, port), timeout=5)

    def _call(self, method: str, *args: Any) -> Any:
        with contextlib.redirect_stdout(io.StringIO()):
            return getattr(self.client, method)(*args)

    def _recv(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise EOFError("meter closed the connection")
            data += chunk
        return data

    def _transfer(self, frames: list[Any]) -> GXReplyData:
        reply = GXReplyData()
        for frame in frames:
            self.sock.sendall(bytes(frame))
            while True:
                header = self._recv(8)
                body = self._recv(int.from_bytes(header[6:8], "big"))
                with contextlib.redirect_stdout(io.StringIO()):
                    if self.client.getData(GXByteBuffer(bytearray(header + body)), reply):
                        break
        return reply

    def associate(self) -> None:
        self._call("parseAareResponse", self._transfer(self._call("aarqRequest")).data)
        if self.client.getIsAuthenticationRequired():
            reply = self._transfer(self._call("getApplicationAssociationRequest"))
            self._call("parseApplicationAssociationResponse", reply.data)

    def read_clock(self) -> None:
        clock = GXDLMSClock(CLOCK)
        reply = self._transfer(self._call("read", clock, 2))
        self._call("updateValue", clock, 2, reply.value)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._transfer(self._call("releaseRequest"))
        self.sock.close()


async def _round(target: DlmsTarget, keys: dict[str, Any], host: str, port: int) -> None:
    mgmt = await target.management()
    reader = GuruxReader(host, port, keys)
    try:
        await asyncio.to_thread(reader.associate)
        for _ in range(4):
            await mgmt.get(8, CLOCK, 2)
            await asyncio.to_thread(reader.read_clock)
    finally:
        await asyncio.to_thread(reader.close)
        await mgmt.release()
        await mgmt.close()


@pytest.mark.parametrize("profile", ["conformant", "ic-reset-on-power-cycle"])
def test_gurux_reader_beside_hls_management(tmp_path: Path, profile: str) -> None:
    captures = tmp_path / "captures"
    meter = MeterProcess(tmp_path / "state", profile=profile, port=0,
                         extra_args=("--capture", str(captures)))
    meter.start()
    try:
        keys = yaml.safe_load(Path(meter.keys_out).read_text("utf-8"))
        target = DlmsTarget(meter.host, meter.port, load_keyset(meter.keys_out))
        power = BuiltinPowerController(meter)

        async def run() -> None:
            await _round(target, keys, meter.host, meter.port)
            if profile != "conformant":
                await power.power_cycle()
                await asyncio.sleep(1.1)  # the clock moves on: same counters, new ciphertexts
                await _round(target, keys, meter.host, meter.port)

        asyncio.run(run())
    finally:
        meter.stop()
    pcaps = sorted(captures.glob("*.pcap"))
    data, report = tmp_path / "data", tmp_path / "report"
    ingest = subprocess.run([sys.executable, "-m", "metercert", "fleet", "ingest",
                             *map(str, pcaps), "--out", str(data), "--keys", str(meter.keys_out)],
                            capture_output=True, text=True, timeout=120, check=False)
    assert ingest.returncode == 0, ingest.stderr
    scan = subprocess.run([sys.executable, "-m", "metercert", "fleet", "scan", str(data),
                           "--report", str(report)],
                          capture_output=True, text=True, timeout=300, check=False)
    items = json.loads((report / "findings.json").read_text())["findings"]
    import pyarrow.parquet as pq

    rows = pq.read_table(data).to_pylist()
    saps = {r["client_sap"] for r in rows if r["ciphered"] and r["direction"] == "c2s"}
    assert {1, 32} <= saps  # both roles' ciphered traffic is there
    # the conformant meter's tags all verify with the key file (the READER's own keys too)
    if profile == "conformant":
        assert scan.returncode == 0, [f["detail"] for f in items]
        assert items == []
        assert all(r["tag_ok"] is not False for r in rows)
    else:
        assert scan.returncode == 1, scan.stderr
        kinds = {f["kind"] for f in items}
        assert "ic-reuse" in kinds, items
        assert all(f["meter_id"] == f"st:{keys['server_system_title']}" for f in items)
