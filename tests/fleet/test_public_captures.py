"""Ingest and scan of the public DLMS captures in ../shared/captures (README there names
each source). Every file decodes to the APDU count an independent decoder finds
(tests/fleet/independent.py), plaintext sessions give no finding, the Gurux
"Simple-Key" session (client and meter share system title 4142434445464748 and the
key) and the encryption-only session (SC 0x20) are flagged, and the Gurux example
keys (README) verify every authenticated APDU, including the AARQ's ciphered
initiate-request."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from metercert.fleet.engines import DuckDbEngine, run_detectors
from metercert.fleet.ingest import ingest

from .independent import count_apdus

CAPTURES = Path(__file__).resolve().parents[2].parent / "shared" / "captures"
FILES = sorted(p.name for p in CAPTURES.glob("*.pcap*")) if CAPTURES.is_dir() else []
NOT_DLMS = {"brno-PRIME.pcap", "brno-PRIME_1.4.pcap"}  # PRIME PLC frames (README)
# findings expected per file; every other DLMS file is clean
EXPECTED = {
    "wd-Output-Ciphered-Simple-Key.pcap": {"shared-space"},
    "wd-Output-Ciphered.pcap": {"encryption-only"},
}
GURUX_KEYS = ("guek: 000102030405060708090A0B0C0D0E0F\n"
              "ak: D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF\n")


def test_the_shared_captures_are_there() -> None:
    assert len(FILES) >= 20, f"expected the public captures in {CAPTURES}"


@pytest.mark.parametrize("name", [f for f in FILES if f not in NOT_DLMS])
def test_capture_decodes_like_an_independent_decoder_with_the_right_findings(
        name: str, tmp_path: Path) -> None:
    path = CAPTURES / name
    result = ingest([path], tmp_path / "d")
    assert result.rows == count_apdus(path) > 0
    engine = DuckDbEngine(memory_limit="1GB", threads=1)
    try:
        scan = run_detectors(engine, tmp_path / "d")
    finally:
        engine.close()
    kinds = {f.kind for f in scan.findings}
    assert kinds == EXPECTED.get(name, set()), [f.detail for f in scan.findings]
    for f in scan.findings:
        assert f.evidence_ids and f.meter_id == "st:4142434445464748"


@pytest.mark.parametrize("name", ["wd-Output-Ciphered-HLS.pcap",
                                  "wd-Output-Ciphered-HLS-AuthEnc.pcap",
                                  "wd-Output-Ciphered-Director.pcap"])
def test_gurux_example_keys_verify_every_tag(name: str, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    keys = tmp_path / "gurux.yaml"
    keys.write_text(GURUX_KEYS)
    ingest([CAPTURES / name], tmp_path / "d", keys=keys)
    rows = pq.read_table(tmp_path / "d").to_pylist()
    protected = [r for r in rows if r["ciphered"]]
    assert protected and all(r["tag_ok"] is True for r in protected)
    aarq = [r for r in protected if r["apdu_tag"] == 0x60]
    assert len(aarq) == 1 and aarq[0]["plain_tag"] == 0x01  # the initiate-request inside


def test_a_capture_with_no_dlms_warns_and_fails(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "metercert", "fleet", "ingest",
                           str(CAPTURES / "brno-PRIME_1.4.pcap"), "--out", str(tmp_path / "d")],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 1
    assert "no DLMS APDU decoded" in proc.stderr and "Traceback" not in proc.stderr
