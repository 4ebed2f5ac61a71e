"""The runner keeps evidence of a check that raised, recovers (or gives up on) a device
that stopped answering, and never exits 0 without the verdicts that matter."""

from __future__ import annotations

from typing import Any

from metercert.campaign import run_campaign
from metercert.checks import base
from metercert.checks.base import Evidence, Severity, TargetKind, Verdict, check, passed


class RecordingTarget:
    """A target with the optional hooks: evidence marks, after_check, unavailable."""

    def __init__(self, wedge_after: str | None = None, recover: bool = True) -> None:
        self.log: list[str] = []
        self.unavailable: str | None = None
        self.wedge_after, self.recover = wedge_after, recover
        self.after: list[str] = []

    def evidence_mark(self) -> int:
        return len(self.log)

    def evidence_since(self, mark: int) -> list[Evidence]:
        return [Evidence("trace", "\n".join(self.log[mark:]), "apdu-trace")]

    async def after_check(self, check_id: str) -> str | None:
        self.after.append(check_id)
        if check_id != self.wedge_after:
            return None
        if self.recover:
            return f"the meter stopped answering after {check_id}; recovered by a power cycle"
        self.unavailable = f"the meter stopped answering after {check_id}"
        return self.unavailable


def _register(specs: dict[str, Any]) -> None:
    @check("t.first", "first", severity=Severity.CRITICAL, target=TargetKind.DLMS,
           requirements=["DLMS:IC-REPLAY"])
    async def first(target: RecordingTarget) -> Any:
        target.log.append("-> glo-get counter 7")
        target.log.append("<- glo-get-response counter 9")
        raise ConnectionResetError("peer went away")

    @check("t.second", "second", severity=Severity.CRITICAL, target=TargetKind.DLMS,
           requirements=["DLMS:IC-REPLAY"])
    async def second(target: RecordingTarget) -> Any:
        target.log.append("second ran")
        return passed("fine")

    @check("t.medium", "medium", severity=Severity.MEDIUM, target=TargetKind.DLMS,
           requirements=["DLMS:IC-REPLAY"])
    async def medium(target: RecordingTarget) -> Any:
        raise RuntimeError("no verdict")

    reg = base.registered()
    specs.update({k: reg[k] for k in ("t.first", "t.second", "t.medium")})


def _specs() -> dict[str, Any]:
    specs: dict[str, Any] = {}
    _register(specs)
    return specs


def _cleanup(specs: dict[str, Any]) -> None:
    for key in specs:
        base._REGISTRY.pop(key, None)


def test_a_check_that_raises_keeps_the_trace_it_recorded() -> None:
    specs = _specs()
    try:
        target = RecordingTarget()
        run = run_campaign({"dlms": target}, [specs["t.first"], specs["t.second"]], progress=False)
        first = run.results[0]
        assert first.verdict is Verdict.INCONCLUSIVE
        assert "ConnectionResetError" in first.outcome.reason
        assert "counter 9" in first.outcome.evidence[0].content
        assert target.after == ["t.first", "t.second"]
        # a critical check without a verdict: nothing failed, but the run is not complete
        assert run.exit_code == 4
    finally:
        _cleanup(specs)


def test_a_recovered_device_is_reported_with_the_check_and_the_campaign_goes_on() -> None:
    specs = _specs()
    try:
        target = RecordingTarget(wedge_after="t.first", recover=True)
        run = run_campaign({"dlms": target}, [specs["t.first"], specs["t.second"]], progress=False)
        notes = [e.content for e in run.results[0].outcome.evidence]
        assert any("recovered by a power cycle" in n for n in notes)
        assert run.results[1].verdict is Verdict.PASS
    finally:
        _cleanup(specs)


def test_an_unrecovered_device_ends_the_remaining_checks_at_once_with_the_reason() -> None:
    specs = _specs()
    try:
        target = RecordingTarget(wedge_after="t.first", recover=False)
        run = run_campaign({"dlms": target}, [specs["t.first"], specs["t.second"]], progress=False)
        second = run.results[1]
        assert second.verdict is Verdict.INCONCLUSIVE
        assert second.outcome.reason == "the meter stopped answering after t.first"
        assert "second ran" not in target.log   # it was not even started
        assert run.exit_code == 4
    finally:
        _cleanup(specs)


def test_only_critical_and_high_checks_without_a_verdict_block_exit_zero() -> None:
    specs = _specs()
    try:
        run = run_campaign({"dlms": RecordingTarget()}, [specs["t.second"], specs["t.medium"]],
                           progress=False)
        assert [r.verdict for r in run.results] == [Verdict.PASS, Verdict.INCONCLUSIVE]
        assert run.exit_code == 0
    finally:
        _cleanup(specs)
