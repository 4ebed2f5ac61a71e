"""A damaged capture is said to be damaged: nothing readable is exit 1 with a warning, a cut
one is ingested as far as it goes and the cut is reported (it used to be "0 APDU records",
exit 0). The capture comes from ../shared/captures (its README names the source)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CAPTURE = Path(__file__).resolve().parents[2].parent / "shared" / "captures" / \
    "wd-Output-Ciphered.pcap"


def _ingest(capture: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "metercert", "fleet", "ingest", str(capture),
                           "--out", str(out)], capture_output=True, text=True, timeout=120,
                          check=False)


def test_garbage_after_a_pcap_header_is_not_a_clean_empty_audit(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(bytes.fromhex("d4c3b2a1") + b"garbage" * 5)
    proc = _ingest(bad, tmp_path / "ds")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "not a readable capture" in " ".join((proc.stdout + proc.stderr).split())


def test_a_cut_capture_is_ingested_as_far_as_it_goes_and_the_cut_reported(tmp_path: Path) -> None:
    cut = tmp_path / "cut.pcap"
    data = CAPTURE.read_bytes()
    cut.write_bytes(data[: len(data) // 2 + 1])
    proc = _ingest(cut, tmp_path / "ds")
    text = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode == 0, text
    assert "could not be decoded" in text and "damaged or cut capture" in text
    rows = int(text.split(" APDU records")[0].split()[-1])
    assert rows > 0
