"""Fleet findings as check outcomes, for controls-as-code checks on ``traffic`` targets.

A check module can declare, for example::

    @check("traffic.ic-unique", "No invocation counter reuse in captured traffic",
           severity=Severity.CRITICAL, target=TargetKind.TRAFFIC,
           requirements=["DLMS:IC-UNIQUE"], tags=["replay"])
    def ic_unique(store: TrafficStore) -> CheckOutcome:
        return outcome_for(store.scan(), ("ic-reuse", "ic-exhaustion"))

The scan runs once per store and is shared by every check that asks.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from metercert.checks.base import CheckOutcome, Evidence, fail, not_applicable, passed
from metercert.fleet.detectors import KIND_INFO
from metercert.fleet.engines import DuckDbEngine, ScanResult, run_detectors

EVIDENCE_LIMIT = 10


@dataclass
class TrafficStore:
    """A fleet dataset as a check target; the detector scan is run lazily, once."""

    dataset: Path
    memory_limit: str = "2GB"
    _result: ScanResult | None = field(default=None, repr=False)

    def scan(self) -> ScanResult:
        if self._result is None:
            engine = DuckDbEngine(memory_limit=self.memory_limit)
            try:
                self._result = run_detectors(engine, self.dataset)
            finally:
                engine.close()
        return self._result


def outcome_for(result: ScanResult, kinds: Iterable[str]) -> CheckOutcome:
    """FAIL with the first findings as evidence if any of ``kinds`` was found, else PASS."""
    wanted = tuple(kinds)
    unknown = [k for k in wanted if k not in KIND_INFO]
    if unknown:
        raise ValueError(f"unknown finding kind(s): {', '.join(unknown)}")
    if result.rows == 0:
        return not_applicable("the traffic dataset holds no APDU records")
    hits = [f for f in result.findings if f.kind in wanted]
    if not hits:
        return passed(f"no {', '.join(wanted)} in {result.rows} APDU records "
                      f"({result.engine} scan of {result.dataset})")
    evidence = [Evidence(label=f"{f.kind} on {f.meter_id} at {f.ts.isoformat()}",
                         content=f"{f.detail}; evidence row ids {list(f.evidence_ids[:20])}",
                         kind="value", source=str(result.dataset))
                for f in hits[:EVIDENCE_LIMIT]]
    meters = len({f.meter_id for f in hits})
    return fail(f"{len(hits)} finding(s) of {', '.join(sorted({f.kind for f in hits}))} "
                f"on {meters} meter(s)", *evidence)
