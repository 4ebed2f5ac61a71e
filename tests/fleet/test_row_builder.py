"""The ingest's row builder against the one it replaced (tests/fleet/legacy_recorder.py):
the same rows, value for value, on every generated edge case (with its keys and ports),
every public capture (the Gurux ones also with the Gurux example keys) and the sample
capture with its keys, through the product path (``iter_pcap_tables``) and through the
dict API the push listener uses. Then the two verdicts that changed on purpose: a key of
the wrong size for the APDU's suite leaves the tag unverified (not a tag failure), and an
authenticated APDU too short for the 12-byte GCM tag is counted and named."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metercert.fleet.capture import write_sample_capture
from metercert.fleet.engines import DuckDbEngine, run_detectors
from metercert.fleet.ingest import (
    ApduRecorder,
    KeyRing,
    _split_ciphered,
    ingest,
    iter_pcap_tables,
)
from metercert.fleet.pcap import CaptureReader
from metercert.fleet.schema import table_from_rows
from metercert.security import ApduFormatError, SecurityError, parse_ciphered
from metercert.security.protection import CIPHERED_TAGS

from .cases import CASES, HEAD, MT, meter
from .gen import AK, EK, HE, T0, Pcap, Session, cipher, key_file
from .legacy_recorder import LegacyRecorder
from .test_public_captures import CAPTURES, FILES, GURUX_KEYS, NOT_DLMS


def _recorded_table(recorder: type[LegacyRecorder | ApduRecorder], files: list[Path],
                    keys: KeyRing | None, ports: list[int] | None) -> pa.Table:
    """The table of the rows ``recorder``'s dict API gives for ``files``."""
    reader = CaptureReader(ports)
    rec = recorder(keys=keys)
    rows = []
    for f in files:
        for w in reader.read(f, str(f)):
            rows += rec.record(w)
    for w in reader.finish():
        rows += rec.record(w)
    rows += rec.flush()
    return table_from_rows(rows)


def _same_rows(files: list[Path], keys_path: Path | None, ports: list[int] | None) -> int:
    keys = KeyRing.load(keys_path) if keys_path else None
    old = _recorded_table(LegacyRecorder, files, keys, ports).to_pylist()
    tables = list(iter_pcap_tables(files, port=ports, keys=keys, chunk_rows=7))
    new = pa.concat_tables(tables).to_pylist() if tables else []
    assert len(new) == len(old)
    for a, b in zip(new, old, strict=True):
        assert a == b
    assert _recorded_table(ApduRecorder, files, keys, ports).to_pylist() == old
    return len(old)


@pytest.mark.parametrize("name", sorted(CASES))
def test_edge_case_rows_are_the_old_builders(name: str, tmp_path: Path) -> None:
    case = CASES[name](tmp_path)
    assert _same_rows(case.files, case.keys, case.ports) > 0


@pytest.mark.parametrize("name", [f for f in FILES if f not in NOT_DLMS])
def test_public_capture_rows_are_the_old_builders(name: str, tmp_path: Path) -> None:
    keys = None
    if name.startswith("wd-Output-Ciphered"):
        keys = tmp_path / "gurux.yaml"
        keys.write_text(GURUX_KEYS)
    assert _same_rows([CAPTURES / name], keys, None) > 0


def test_sample_capture_rows_with_keys_are_the_old_builders(tmp_path: Path) -> None:
    sample = write_sample_capture(tmp_path / "s.pcap", meters=12, requests=5)
    assert _same_rows([sample.pcap], sample.keys, None) == sample.apdus


def _session_capture(tmp: Path, extra: bytes | None = None) -> Path:
    cap = Pcap(tmp / "c.pcap")
    s = Session(cap, HEAD, meter(120), meter_title=MT)
    s.open(T0)
    s.reads(T0 + 1, (1, 1), 3)
    if extra is not None:
        s.resp(T0 + 9, extra)
    s.close(T0 + 10)
    cap.close()
    return cap.path


def _findings(data: Path) -> set[str]:
    engine = DuckDbEngine(memory_limit="1GB", threads=1)
    try:
        return {f.kind for f in run_detectors(engine, data).findings}
    finally:
        engine.close()


def test_a_key_of_the_wrong_size_leaves_tags_unverified_not_failed(tmp_path: Path) -> None:
    path = _session_capture(tmp_path)
    # suite 0 needs 128-bit keys: 256-bit ones cannot serve it, whatever their bytes
    wrong = key_file(tmp_path / "wrong.yaml", [
        {"client_system_title": HE.hex(), "server_system_title": MT.hex(),
         "guek": (EK * 2).hex(), "ak": (AK * 2).hex()}])
    res = ingest([path], tmp_path / "d", keys=wrong)
    rows = pq.read_table(tmp_path / "d").to_pylist()
    ciphered = [r for r in rows if r["ciphered"]]
    assert len(ciphered) == 6
    assert all(r["tag_ok"] is None and r["plain_tag"] is None for r in ciphered)
    assert res.stats["key_size_mismatch"] == 6
    assert "tag-failure" not in _findings(tmp_path / "d")
    proc = subprocess.run([sys.executable, "-m", "metercert", "fleet", "ingest", str(path),
                           "--out", str(tmp_path / "d2"), "--keys", str(wrong)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "6 APDU(s) not verified" in proc.stdout + proc.stderr
    assert "size their security suite needs" in proc.stdout + proc.stderr
    # the right keys verify the same capture, and count no mismatch
    right = key_file(tmp_path / "right.yaml", [
        {"client_system_title": HE.hex(), "server_system_title": MT.hex(),
         "guek": EK.hex(), "ak": AK.hex()}])
    res = ingest([path], tmp_path / "d3", keys=right)
    rows = pq.read_table(tmp_path / "d3").to_pylist()
    assert all(r["tag_ok"] is True for r in rows if r["ciphered"])
    assert res.stats["key_size_mismatch"] == 0


def test_an_authenticated_apdu_shorter_than_the_tag_is_named(tmp_path: Path) -> None:
    full = cipher(0xCC, 0x30, MT, 9, bytes.fromhex("C401C100060000"))
    # the same response with its tag cut to 4 bytes: 7 + 4 payload bytes, not 7 + 12
    short = bytes([0xCC, len(full) - 2 - 8]) + full[2:-8]
    assert len(short) - 7 < 12
    path = _session_capture(tmp_path, short)
    res = ingest([path], tmp_path / "d")
    assert res.stats["short_tags"] == 1
    row = next(r for r in pq.read_table(tmp_path / "d").to_pylist() if r["ic"] == 9)
    assert row["ciphered"] and row["authenticated"] and row["length"] == len(short)
    proc = subprocess.run([sys.executable, "-m", "metercert", "fleet", "ingest", str(path),
                           "--out", str(tmp_path / "d2")],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout + proc.stderr
    assert "1 authenticated APDU(s) too short for the 12-byte GCM tag" in out
    assert "non-standard tag length" in out
    # with the keys it cannot verify: a tag failure, and still named short
    keys = key_file(tmp_path / "k.yaml", [
        {"client_system_title": HE.hex(), "server_system_title": MT.hex(),
         "guek": EK.hex(), "ak": AK.hex()}])
    res = ingest([path], tmp_path / "d3", keys=keys)
    rows = pq.read_table(tmp_path / "d3").to_pylist()
    assert [r["tag_ok"] for r in rows if r["ic"] == 9] == [False]
    assert res.stats["short_tags"] == 1


def _wire(files: list[Path], ports: list[int] | None, fast: bool) -> tuple[list, dict]:
    reader = CaptureReader(ports)
    reader.fast_path = fast
    out = [w for f in files for w in reader.read(f, str(f))]
    out += list(reader.finish())
    assert fast or not reader._fast
    return out, dict(vars(reader.stats)) | {"fast_halves": bool(reader._fast)}


def _same_wire(files: list[Path], ports: list[int] | None) -> bool:
    fast, fast_stats = _wire(files, ports, True)
    slow, slow_stats = _wire(files, ports, False)
    assert fast == slow
    used = fast_stats.pop("fast_halves")
    slow_stats.pop("fast_halves")
    assert fast_stats == slow_stats
    return used


@pytest.mark.parametrize("name", sorted(CASES))
def test_edge_case_reader_fast_path_reads_what_the_general_path_reads(
        name: str, tmp_path: Path) -> None:
    case = CASES[name](tmp_path)
    used = _same_wire(case.files, case.ports)
    assert used or name in ("udp-push", "hdlc-ui", "gateway"), name  # HDLC, UDP: general


def test_public_captures_reader_fast_path_reads_what_the_general_path_reads() -> None:
    used = [_same_wire([CAPTURES / name], None) for name in FILES]
    assert sum(used) >= 10  # most TCP captures have streams the fast path serves


def test_sample_capture_reader_fast_path_reads_what_the_general_path_reads(
        tmp_path: Path) -> None:
    sample = write_sample_capture(tmp_path / "s.pcap", meters=12, requests=5)
    _same_wire([sample.pcap, sample.pcap], None)  # twice: the second copy is all duplicates


@settings(max_examples=400, deadline=None)
@given(tag=st.sampled_from(sorted(CIPHERED_TAGS) + [0x00, 0xC0, 0x60]),
       body=st.binary(max_size=300), form=st.integers(0, 4))
def test_split_in_place_reads_what_parse_ciphered_reads(tag: int, body: bytes,
                                                         form: int) -> None:
    """The row builder reads service-specific framing in place; whatever the bytes, it
    must say what parse_ciphered says (SC, counter, payload, form, title) or refuse alike."""
    n = len(body)
    length = [bytes([n & 0x7F]), b"\x81" + bytes([n & 0xFF]), b"\x82" + n.to_bytes(2, "big"),
              b"\x83\x00" + n.to_bytes(2, "big"), b""][form]
    apdu = bytes([tag]) + length + body
    try:
        parsed = parse_ciphered(apdu)
    except (ApduFormatError, SecurityError):
        parsed = None
    split = _split_ciphered(apdu)
    if parsed is None:
        assert split is None
        return
    assert split is not None
    cipher, ic, payload = split
    assert (ic, payload) == (parsed.invocation_counter, parsed.payload)
    assert cipher[1][5] == parsed.security_control and cipher[1][0] == parsed.security_control.byte
    assert cipher[2] == parsed.form.dedicated and cipher[3] == parsed.system_title
    assert cipher[4] == (parsed.security_control.authenticated and len(parsed.payload) < 12)
