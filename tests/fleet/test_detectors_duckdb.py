"""The SQL detectors on DuckDB: planted anomalies found exactly, nothing else."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from metercert.fleet.detectors import KINDS, render_sql
from metercert.fleet.engines import DuckDbEngine, run_detectors
from metercert.fleet.schema import APDU_SCHEMA, table_from_rows, write_dataset
from metercert.fleet.simulate import simulate

from .conftest import PLANTED, finding_keys, truth_keys


def scan(path: Path, **params: int):  # type: ignore[no-untyped-def]
    engine = DuckDbEngine(memory_limit="1GB")
    try:
        return run_detectors(engine, path, params=params or None)
    finally:
        engine.close()


def test_planted_anomalies_are_found_exactly(planted_fleet) -> None:  # type: ignore[no-untyped-def]
    result = scan(planted_fleet.out_dir)
    assert result.rows == planted_fleet.rows
    assert finding_keys(result.findings) == truth_keys(planted_fleet)
    assert {k: sum(f.kind == k for f in result.findings) for k in KINDS} == {
        k: PLANTED.get(k, 0) for k in KINDS}


def test_findings_carry_catalog_requirements_and_threat(planted_fleet) -> None:  # type: ignore[no-untyped-def]
    result = scan(planted_fleet.out_dir)
    by_kind = {f.kind: f for f in result.findings}
    assert by_kind["ic-reuse"].severity == "critical"
    assert by_kind["ic-reuse"].requirements == ("DLMS:IC-UNIQUE",)
    assert "DLMS:IC-PERSIST" in by_kind["ic-regression"].requirements
    assert by_kind["replay"].requirements == ("DLMS:IC-REPLAY",)
    assert by_kind["suite-downgrade"].requirements == ("DLMS:SUITE-DOWNGRADE",)
    assert by_kind["plaintext"].requirements == ("DLMS:POLICY-ENFORCED",)
    assert all(f.threat == "replay" for f in result.findings)
    assert by_kind["ic-regression"].value < by_kind["ic-regression"].ref_value
    assert by_kind["suite-downgrade"].value == 0 and by_kind["suite-downgrade"].ref_value == 1


def test_clean_fleet_has_no_findings(tmp_path: Path) -> None:
    sim = simulate(tmp_path / "clean", meters=150, days=2, seed=3)
    assert scan(sim.out_dir).findings == ()


def test_simulated_files_have_the_ingest_schema(planted_fleet) -> None:  # type: ignore[no-untyped-def]
    dataset = ds.dataset(planted_fleet.out_dir, format="parquet", partitioning="hive")
    schema = dataset.schema
    for field in APDU_SCHEMA:
        assert schema.field(field.name).type == field.type, field.name
    assert "day" in schema.names


def _row(i: int, meter: str, ic: int, ct: bytes, *, key_set: str = "unicast",
         title: str = "48454E4400000001", direction: str = "c2s", minutes: int = 0,
         authenticated: bool = True, tag: int = 0xC8) -> dict:
    return {"id": i, "ts": datetime(2026, 3, 1, tzinfo=UTC) + timedelta(minutes=minutes),
            "direction": direction, "meter_id": meter, "assoc_id": f"{meter}#1",
            "system_title": title, "sc": 0x30 | (0x40 if key_set == "broadcast" else 0),
            "suite": 0, "key_set": key_set, "ic": ic, "apdu_tag": tag, "length": 30,
            "ct_sha256": ct, "ciphered": True, "authenticated": authenticated}


def test_unicast_counters_are_per_meter_but_broadcast_counters_are_fleet_wide(
        tmp_path: Path) -> None:
    h = [bytes([i]) * 32 for i in range(8)]
    rows = [
        # the head-end uses counter 5 towards two meters under their own unicast keys: fine
        _row(0, "m1", 5, h[0]), _row(1, "m2", 5, h[1], minutes=1),
        # the same broadcast counter with two ciphertexts on two meters: nonce reuse
        _row(2, "m1", 900, h[2], key_set="broadcast", minutes=2),
        _row(3, "m2", 900, h[3], key_set="broadcast", minutes=3),
        # one broadcast APDU reaching two meters is not a replay
        _row(4, "m1", 901, h[4], key_set="broadcast", minutes=4),
        _row(5, "m2", 901, h[4], key_set="broadcast", minutes=4),
    ]
    write_dataset(table_from_rows(rows), tmp_path / "d")
    found = scan(tmp_path / "d").findings
    assert [(f.kind, f.evidence_ids) for f in found] == [("ic-reuse", (2, 3))]


def test_equal_timestamps_do_not_hide_a_regression(tmp_path: Path) -> None:
    # same ts: the pruning pass cannot order them by time, the exact pass orders by id
    rows = [_row(0, "m1", 10, b"\x01" * 32), _row(1, "m1", 11, b"\x02" * 32, minutes=1),
            _row(2, "m1", 3, b"\x03" * 32, minutes=1), _row(3, "m1", 4, b"\x04" * 32, minutes=2)]
    write_dataset(table_from_rows(rows), tmp_path / "d")
    found = scan(tmp_path / "d").findings
    assert [(f.kind, f.value, f.ref_value) for f in found] == [("ic-regression", 3, 11)]


def test_parameters_change_what_is_reported(tmp_path: Path) -> None:
    rows = [_row(0, "m1", 10, b"\x01" * 32), _row(1, "m1", 510, b"\x02" * 32, minutes=1)]
    write_dataset(table_from_rows(rows), tmp_path / "d")
    assert scan(tmp_path / "d").findings == ()
    gaps = scan(tmp_path / "d", gap_threshold=100).findings
    assert [(f.kind, f.value, f.ref_value) for f in gaps] == [("ic-gap", 510, 10)]
    near = scan(tmp_path / "d", exhaustion_margin=(1 << 32) - 100).findings
    assert [f.kind for f in near] == ["ic-exhaustion"]


def test_unauthenticated_apdu_only_flagged_in_protected_association(tmp_path: Path) -> None:
    rows = [_row(0, "m1", 10, b"\x01" * 32),
            {**_row(1, "m1", 0, None, authenticated=False, tag=0xC0, minutes=1),
             "ic": None, "sc": None, "suite": None, "key_set": None, "ciphered": False,
             "system_title": None},
            # an all-plaintext association elsewhere is a policy choice, not this finding
            {**_row(2, "m2", 0, None, authenticated=False, tag=0xC0), "ic": None, "sc": None,
             "suite": None, "key_set": None, "ciphered": False, "system_title": None}]
    write_dataset(table_from_rows(rows), tmp_path / "d")
    found = scan(tmp_path / "d").findings
    assert [(f.kind, f.meter_id, f.evidence_ids) for f in found] == [("plaintext", "m1", (1,))]


def test_unknown_parameter_is_a_usage_error() -> None:
    from metercert.errors import UsageError

    with pytest.raises(UsageError):
        render_sql("ic_exhaustion", {"exhaustion_margin": -1})


def test_simulator_and_ingest_agree_on_meter_key(planted_fleet) -> None:  # type: ignore[no-untyped-def]
    from metercert.fleet.schema import meter_key

    table = ds.dataset(planted_fleet.out_dir, format="parquet", partitioning="hive").to_table(
        columns=["meter_id", "meter_key"])
    pairs = set(zip(table["meter_id"].to_pylist(), table["meter_key"].to_pylist(), strict=True))
    assert len(pairs) == 200
    assert all(meter_key(mid) == key for mid, key in pairs)


def test_interleaved_senders_are_checked_one_by_one(tmp_path: Path) -> None:
    # merged in time the counters rise gently; sender A on its own jumps by 1999990
    a, b = "48454E4400000001", "48454E4400000002"
    rows = [_row(0, "m1", 10, b"\x01" * 32, title=a),
            _row(1, "m1", 500_000, b"\x02" * 32, title=b, minutes=1),
            _row(2, "m1", 1_500_000, b"\x03" * 32, title=b, minutes=2),
            _row(3, "m1", 2_000_000, b"\x04" * 32, title=a, minutes=3)]
    write_dataset(table_from_rows(rows), tmp_path / "d")
    found = scan(tmp_path / "d").findings
    assert [(f.kind, f.system_title, f.evidence_ids) for f in found] == [("ic-gap", a, (0, 3))]


def test_findings_become_check_outcomes(planted_fleet, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from metercert.checks.base import Verdict
    from metercert.fleet.verdicts import TrafficStore, outcome_for

    store = TrafficStore(planted_fleet.out_dir)
    failed = outcome_for(store.scan(), ("ic-reuse",))
    assert failed.verdict is Verdict.FAIL and len(failed.evidence) == 3
    assert "ic-reuse" in failed.evidence[0].label
    clean = TrafficStore(simulate(tmp_path / "c", meters=10, days=1).out_dir)
    assert outcome_for(clean.scan(), ("ic-reuse", "replay")).verdict is Verdict.PASS
