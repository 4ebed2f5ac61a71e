"""Shared fleet fixtures: one small simulated fleet with every anomaly planted."""

from __future__ import annotations

from pathlib import Path

import pytest

from metercert.fleet.simulate import INJECTABLE, SimulationResult, simulate

PLANTED = {kind: 3 for kind in INJECTABLE}


@pytest.fixture(scope="session")
def planted_fleet(tmp_path_factory: pytest.TempPathFactory) -> SimulationResult:
    out = tmp_path_factory.mktemp("fleet") / "data"
    return simulate(out, meters=200, days=3, inject=PLANTED, seed=7)


def truth_keys(result: SimulationResult) -> list[tuple[str, str, str, tuple[int, ...]]]:
    return sorted((p.kind, p.meter_id, p.direction, tuple(sorted(p.evidence_ids)))
                  for p in result.plants)


def finding_keys(findings) -> list[tuple[str, str, str, tuple[int, ...]]]:  # type: ignore[no-untyped-def]
    return sorted((f.kind, f.meter_id, f.direction, f.evidence_ids) for f in findings)


def data_dir(result: SimulationResult) -> Path:
    return result.out_dir
