"""Generated edge cases (tests/fleet/cases.py) ingested and scanned on DuckDB: no false
alarm in normal operation, no miss of real reuse, robust streams, order and duplicate
handling, the new detectors and capture handling. test_edge_cases_spark.py runs the same
datasets on Spark and compares finding for finding."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from metercert.fleet.engines import DuckDbEngine, run_detectors
from metercert.fleet.ingest import ingest

from .cases import CASES, MT, MT2, Case


def build(name: str, tmp: Path) -> tuple[Case, Path, dict[str, int]]:
    case = CASES[name](tmp)
    result = ingest(case.files, tmp / "data", keys=case.keys, port=case.ports)
    return case, tmp / "data", dict(result.stats)


def scan(data: Path):  # type: ignore[no-untyped-def]
    engine = DuckDbEngine(memory_limit="1GB", threads=1)
    try:
        return run_detectors(engine, data).findings
    finally:
        engine.close()


@pytest.mark.parametrize("name", sorted(CASES))
def test_case_gives_exactly_its_findings(name: str, tmp_path: Path) -> None:
    case, data, _ = build(name, tmp_path)
    findings = scan(data)
    assert {f.kind for f in findings} == case.kinds, [f.detail for f in findings]
    per_kind = Counter(f.kind for f in findings)
    for kind, n in case.counts.items():
        assert per_kind[kind] == n, [f.detail for f in findings if f.kind == kind]
    for f in findings:  # every finding names its identity, space and evidence
        assert f.evidence_ids and f.meter_id and f.detail
        if f.kind not in ("plaintext", "duplicate-title", "encryption-only"):
            assert f.key_id and f.space and f.space in f.detail, f


def rows(data: Path) -> list[dict]:  # type: ignore[type-arg]
    return sorted(pq.read_table(data).to_pylist(), key=lambda r: r["id"])


def test_identity_is_the_title_not_the_socket(tmp_path: Path) -> None:
    _, data, _ = build("new-ip", tmp_path)
    got = rows(data)
    assert {r["meter_id"] for r in got} == {f"st:{MT.hex().upper()}"}
    assert {r["endpoint"] for r in got} == {"10.1.0.21:4059/1", "10.1.0.22:4059/1"}


def test_gateway_meters_keep_their_hdlc_address(tmp_path: Path) -> None:
    _, data, _ = build("gateway", tmp_path)
    got = rows(data)
    assert {r["endpoint"] for r in got} == {"10.1.0.9:4059/hdlc 1/17", "10.1.0.9:4059/hdlc 1/18"}
    assert {r["meter_id"] for r in got} == {f"st:{MT.hex().upper()}", f"st:{MT2.hex().upper()}"}


def test_injected_apdu_names_both_meters(tmp_path: Path) -> None:
    _, data, _ = build("injected", tmp_path)
    (f,) = scan(data)
    assert f.kind == "replay" and f.ref_value == 2 and "injected" in f.detail
    assert MT.hex().upper() in f.detail and MT2.hex().upper() in f.detail


def test_rotation_spaces_carry_the_key_generation(tmp_path: Path) -> None:
    _, data, _ = build("rotation", tmp_path)
    got = [r for r in rows(data) if r["ciphered"]]
    assert all(r["tag_ok"] for r in got)
    assert {r["key_id"].rsplit("#", 1)[-1] for r in got} == {"k0", "k1"}


def test_missing_segment_loses_one_apdu_only(tmp_path: Path) -> None:
    _, data, stats = build("missing-segment", tmp_path)
    got = rows(data)
    assert len(got) == 2 + 12 - 1 + 2 and stats["gaps"] == 1


def test_capture_started_mid_frame_resynchronises(tmp_path: Path) -> None:
    _, data, stats = build("mid-frame", tmp_path)
    got = rows(data)
    assert [r["ic"] for r in got if r["direction"] == "s2c"] == [10, 11, 12]
    assert stats["unattributed"] == 6  # no AARQ/AARE seen: the senders' titles are unknown


def test_rotated_files_keep_the_association(tmp_path: Path) -> None:
    _, data, _ = build("rotated", tmp_path)
    got = [r for r in rows(data) if r["ciphered"]]
    assert len(got) == 6 + 4 + 1
    assert all(r["system_title"] and r["meter_id"] == f"st:{MT.hex().upper()}" for r in got)
    assert {r["source"].rsplit("/", 1)[-1] for r in got} == {"rot-1.pcap", "rot-2.pcap"}


def test_two_probes_count_each_packet_once(tmp_path: Path) -> None:
    _, data, stats = build("two-probes", tmp_path)
    assert len(rows(data)) == 2 + 8 + 2 and stats["duplicate_packets"] == 0


def test_the_same_file_ingested_twice_is_skipped(tmp_path: Path) -> None:
    case, data, _ = build("two-probes", tmp_path)
    again = ingest(case.files[:1], data)
    assert again.rows == 0 and again.skipped == (case.files[0],)
    assert len(rows(data)) == 12 and not scan(data)


def test_ciphered_aarq_is_verified(tmp_path: Path) -> None:
    _, data, _ = build("ciphered-aarq", tmp_path)
    (q,) = [r for r in rows(data) if r["apdu_tag"] == 0x60]
    assert q["ciphered"] and q["ic"] == 7 and q["tag_ok"] is True and q["plain_tag"] == 0x01


def test_pushes_are_credited_to_the_meter(tmp_path: Path) -> None:
    for name, title, endpoint in (("tcp-push", MT, "10.1.0.95:51000/1"),
                                  ("udp-push", MT2, "10.1.0.96:4059/1")):
        _, data, _ = build(name, tmp_path / name)
        got = rows(data)
        assert len(got) == 3
        assert {(r["direction"], r["meter_id"], r["endpoint"]) for r in got} == {
            ("s2c", f"st:{title.hex().upper()}", endpoint)}


def test_hdlc_ui_frames_are_read(tmp_path: Path) -> None:
    _, data, _ = build("hdlc-ui", tmp_path)
    got = rows(data)
    assert [(r["apdu_tag"], r["direction"], r["link"]) for r in got] == [(0x0F, "s2c", "hdlc")] * 3


def test_dlms_on_other_ports_with_and_without_port(tmp_path: Path) -> None:
    case, data, _ = build("other-ports", tmp_path)
    assert len(rows(data)) == 2 * (2 + 4)
    assert ingest(case.files, tmp_path / "one", port=[4063]).rows == 6
    assert ingest(case.files, tmp_path / "two", port=[4063, 4064]).rows == 12


def test_general_ciphering_is_recorded_as_ciphered(tmp_path: Path) -> None:
    _, data, stats = build("general-ciphering", tmp_path)
    (g,) = [r for r in rows(data) if r["apdu_tag"] == 0xDD]
    assert g["ciphered"] and g["sc"] is None and stats["undecoded_ciphered"] == 1


def test_source_keeps_the_path(tmp_path: Path) -> None:
    files = []
    for site, name in (("site-a", "encryption-only"), ("site-b", "sc-downgrade")):
        case = CASES[name](tmp_path / site)
        target = tmp_path / site / "capture.pcap"
        case.files[0].rename(target)
        files.append(target)
    ingest(files, tmp_path / "d")
    assert {r["source"] for r in rows(tmp_path / "d")} == {str(f) for f in files}


def test_concurrent_ingests_never_share_row_ids(tmp_path: Path) -> None:
    paths = []
    for n in range(4):
        paths.append(CASES["two-probes"](tmp_path / f"c{n}").files[0])
    procs = [subprocess.Popen([sys.executable, "-m", "metercert", "fleet", "ingest", str(p),
                               "--out", str(tmp_path / "d")], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE) for p in paths]
    for p in procs:
        assert p.wait(timeout=120) == 0
    ids = [r["id"] for r in rows(tmp_path / "d")]
    assert len(ids) == 4 * 12 - 3 * 12 or len(ids) == len(set(ids))
    assert len(ids) == len(set(ids))


def test_threads_in_one_process_never_share_row_ids(tmp_path: Path) -> None:
    files = [CASES["encryption-only"](tmp_path / f"t{n}").files[0] for n in range(3)]
    errors: list[BaseException] = []

    def run(f: Path) -> None:
        try:
            ingest([f], tmp_path / "d")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(f,)) for f in files]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    ids = [r["id"] for r in rows(tmp_path / "d")]
    assert len(ids) == len(set(ids)) > 0


def test_parallel_ingest_matches_the_serial_one(tmp_path: Path) -> None:
    files = [CASES[n](tmp_path / n).files[0] for n in ("encryption-only", "sc-downgrade",
                                                         "clones")]
    serial = ingest(files, tmp_path / "s")
    parallel = ingest(files, tmp_path / "p", jobs=2)
    assert parallel.rows == serial.rows
    ids = [r["id"] for r in rows(tmp_path / "p")]
    assert len(ids) == len(set(ids)) == serial.rows
    assert {f.key()[0] for f in scan(tmp_path / "p")} == {f.key()[0] for f in scan(
        tmp_path / "s")}
