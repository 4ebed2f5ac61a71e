"""The runner: verdicts, time limits, errors, selection, order, exit code, one event loop."""

from __future__ import annotations

import asyncio
import io
import logging
import time
from typing import Any

import pytest
from rich.console import Console

from metercert.campaign import CampaignRun, run_campaign, run_campaign_async
from metercert.checks.base import TargetKind, Verdict
from metercert.errors import ConnectionFailed, UsageError

SampleChecks = Any  # fixtures from conftest.py
EchoTarget = Any


def verdicts(run: CampaignRun) -> dict[str, Verdict]:
    return {r.spec.id: r.verdict for r in run.results}


def reasons(run: CampaignRun) -> dict[str, str]:
    return {r.spec.id: r.outcome.reason for r in run.results}


def test_full_run_records_every_verdict_kind(samples: SampleChecks, echo_target: EchoTarget) -> None:
    run = run_campaign({TargetKind.DLMS: echo_target}, samples.all(), progress=False,
                       meter_profile="replay-accepting")
    v = verdicts(run)
    assert v == {
        "test.pass-sync": Verdict.PASS,
        "test.fail-async": Verdict.FAIL,
        "test.raises": Verdict.INCONCLUSIVE,
        "test.hangs-async": Verdict.INCONCLUSIVE,
        "test.hangs-sync": Verdict.INCONCLUSIVE,
        "test.wrong-return": Verdict.INCONCLUSIVE,
        "test.destructive-power-cycle": Verdict.PASS,
        "test.tls-version": Verdict.NOT_APPLICABLE,
    }
    assert run.summary == {"pass": 2, "fail": 1, "inconclusive": 4, "not-applicable": 1}
    assert run.exit_code == 1
    assert run.meter_profile == "replay-accepting"
    assert run.targets == {"dlms": f"echo meter tcp://127.0.0.1:{echo_target.port}"}
    assert echo_target.events == ["open", "close"]
    assert run.finished_at >= run.started_at


def test_exception_becomes_inconclusive_with_class_and_message(samples: SampleChecks,
                                                               echo_target: EchoTarget) -> None:
    run = run_campaign({"dlms": echo_target}, [samples.specs["test.raises"]], progress=False)
    (result,) = run.results
    assert result.verdict is Verdict.INCONCLUSIVE
    assert result.outcome.reason == "check raised ValueError: unexpected tag 0x7E in response"
    assert "Traceback" not in result.outcome.reason
    # not a failure, but a run in which no check reached a verdict never exits 0
    assert run.exit_code == 4


def test_traceback_goes_to_the_debug_log_only(samples: SampleChecks, echo_target: EchoTarget,
                                              caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="metercert.campaign"):
        run_campaign({"dlms": echo_target}, [samples.specs["test.raises"]], progress=False)
    records = [r for r in caplog.records if r.exc_info]
    assert records and "test.raises" in records[0].getMessage()


def test_timeouts_become_inconclusive_and_do_not_block_the_run(samples: SampleChecks,
                                                               echo_target: EchoTarget) -> None:
    specs = [samples.specs["test.hangs-async"], samples.specs["test.hangs-sync"],
             samples.specs["test.pass-sync"]]
    t0 = time.perf_counter()
    run = run_campaign({"dlms": echo_target}, specs, progress=False)
    elapsed = time.perf_counter() - t0
    r = reasons(run)
    assert "timed out" in r["test.hangs-async"] and "0.3 s" in r["test.hangs-async"]
    assert "timed out" in r["test.hangs-sync"]
    assert verdicts(run)["test.pass-sync"] is Verdict.PASS  # the run went on after the hangs
    # The sync check is still blocked in its thread (5 s); the run did not wait for it.
    assert elapsed < 4.5
    samples.released.set()


def test_time_limit_scale_extends_limits(samples: SampleChecks, echo_target: EchoTarget) -> None:
    run = run_campaign({"dlms": echo_target}, [samples.specs["test.hangs-async"]], progress=False,
                       time_limit_scale=2.0)
    assert "0.6 s" in run.results[0].outcome.reason
    with pytest.raises(UsageError):
        run_campaign({"dlms": echo_target}, [samples.specs["test.hangs-async"]], progress=False,
                     time_limit_scale=0)


def test_order_is_by_kind_then_declaration_with_destructive_last(samples: SampleChecks,
                                                                 echo_target: EchoTarget) -> None:
    # The TLS check is declared last but given first here; the destructive one is declared first.
    specs = [samples.specs["test.tls-version"], *[s for s in samples.all()
                                                  if s.id != "test.tls-version"]]
    run = run_campaign({"dlms": echo_target, "tls": object()}, specs, progress=False)
    ids = [r.spec.id for r in run.results]
    assert ids == [
        "test.pass-sync", "test.fail-async", "test.raises", "test.hangs-async", "test.hangs-sync",
        "test.wrong-return", "test.destructive-power-cycle", "test.tls-version",
    ]
    assert samples.order[-2:] == ["test.destructive-power-cycle", "test.tls-version"]


def test_only_and_skip_by_id_glob_and_tag(samples: SampleChecks, echo_target: EchoTarget) -> None:
    t = {"dlms": echo_target}
    run = run_campaign(t, samples.all(), only=["smoke"], progress=False)
    assert set(verdicts(run)) == {"test.pass-sync", "test.fail-async"}
    run = run_campaign(t, samples.all(), only=["test.hangs-*"], skip=["test.hangs-sync"],
                       progress=False)
    assert list(verdicts(run)) == ["test.hangs-async"]
    assert {d.id: d.reason for d in run.deselected}["test.hangs-sync"] == "excluded by --skip"
    run = run_campaign(t, samples.all(), only=["TEST.PASS-SYNC", "tag:replay"], progress=False)
    assert set(verdicts(run)) == {"test.pass-sync", "test.fail-async"}
    with pytest.raises(UsageError, match="matches no registered check"):
        run_campaign(t, samples.all(), only=["test.typo"], progress=False)


def test_no_destructive_leaves_destructive_checks_out(samples: SampleChecks,
                                                       echo_target: EchoTarget) -> None:
    run = run_campaign({"dlms": echo_target}, samples.all(), only=["test.pass-sync", "power"],
                       include_destructive=False, progress=False)
    assert list(verdicts(run)) == ["test.pass-sync"]
    assert "test.destructive-power-cycle" not in samples.order
    assert any(d.id == "test.destructive-power-cycle" and "destructive" in d.reason
               for d in run.deselected)


def test_exit_code_zero_when_nothing_failed(samples: SampleChecks, echo_target: EchoTarget) -> None:
    run = run_campaign({"dlms": echo_target}, samples.all(),
                       only=["test.pass-sync", "test.destructive-power-cycle", "test.raises"],
                       progress=False)
    # a medium check without a verdict does not hold the run back
    assert run.summary["fail"] == 0 and run.exit_code == 0
    # high checks that time out do (exit 4: nothing failed, the campaign is not complete)
    run = run_campaign({"dlms": echo_target}, samples.all(), skip=["test.fail-async"],
                       progress=False)
    assert run.summary["fail"] == 0 and run.exit_code == 4
    run = run_campaign({"dlms": echo_target}, samples.all(), only=["test.fail-async"],
                       progress=False)
    assert run.exit_code == 1 and [r.spec.id for r in run.failed] == ["test.fail-async"]


def test_missing_target_kind_is_not_applicable(samples: SampleChecks) -> None:
    run = run_campaign({}, samples.all(), only=["test.tls-version", "test.pass-sync"],
                       progress=False)
    assert reasons(run) == {"test.pass-sync": "no dlms target configured",
                            "test.tls-version": "no tls target configured"}
    assert set(verdicts(run).values()) == {Verdict.NOT_APPLICABLE}
    assert samples.order == []


def test_unopenable_target_makes_its_checks_inconclusive(samples: SampleChecks,
                                                          broken_target: Any) -> None:
    run = run_campaign({"dlms": broken_target, "tls": object()}, samples.all(),
                       only=["smoke", "test.tls-version"], progress=False)
    v = verdicts(run)
    assert v["test.pass-sync"] is Verdict.INCONCLUSIVE and v["test.fail-async"] is Verdict.INCONCLUSIVE
    assert v["test.tls-version"] is Verdict.PASS
    assert "dlms target could not be opened: ConnectionFailed" in reasons(run)["test.pass-sync"]
    assert run.notes and "connection refused" in run.notes[0]
    with pytest.raises(ConnectionFailed):
        run_campaign({"dlms": broken_target}, samples.all(), only=["smoke"], progress=False,
                     strict_targets=True)


def test_unknown_target_kind_is_a_usage_error(samples: SampleChecks) -> None:
    with pytest.raises(UsageError, match="unknown target kind 'modbus'"):
        run_campaign({"modbus": object()}, samples.all(), progress=False)


def test_async_variant_runs_inside_the_callers_loop(samples: SampleChecks,
                                                    echo_target: EchoTarget) -> None:
    async def main() -> CampaignRun:
        return await run_campaign_async({"dlms": echo_target}, samples.all(), only=["smoke"],
                                        progress=False)

    run = asyncio.run(main())
    assert verdicts(run) == {"test.pass-sync": Verdict.PASS, "test.fail-async": Verdict.FAIL}


def test_progress_and_summary_table_on_a_console(samples: SampleChecks,
                                                 echo_target: EchoTarget) -> None:
    out = io.StringIO()
    console = Console(file=out, width=120, force_terminal=False, color_system=None)
    run_campaign({"dlms": echo_target}, samples.all(), only=["smoke", "test.raises"],
                 progress=console)
    text = out.getvalue()
    for needle in ("PASS", "FAIL", "INCONCLUSIVE", "test.fail-async",
                   "meter accepted a replayed invocation counter", "total", "time"):
        assert needle in text, needle


class _TargetWithSecret:
    """A target without describe(): its repr holds key material that must not be printed."""

    def __init__(self) -> None:
        self.key = bytes.fromhex("000102030405060708090A0B0C0D0E0F")

    def __repr__(self) -> str:
        return f"_TargetWithSecret(key={self.key.hex()})"


def test_target_description_never_falls_back_to_repr(samples: SampleChecks) -> None:
    from metercert.report.json import results_document

    run = run_campaign({"dlms": _TargetWithSecret()}, samples.all(), only=["test.pass-sync"],
                       progress=False)
    assert run.targets == {"dlms": "_TargetWithSecret"}
    text = str(results_document(run, with_gaps=False))
    assert "000102030405060708090a0b0c0d0e0f" not in text.lower()


def test_an_async_check_that_ignores_cancellation_is_abandoned(
        monkeypatch: pytest.MonkeyPatch, echo_target: EchoTarget) -> None:
    from metercert.campaign import runner
    from metercert.checks.base import CheckSpec, Severity, passed

    monkeypatch.setattr(runner, "CANCEL_GRACE_S", 0.1)
    marks: dict[str, float] = {}

    async def stubborn(target: object):  # type: ignore[no-untyped-def]
        for _ in range(2):  # swallows the first cancellation, bounded
            try:
                await asyncio.sleep(0.8)
            except asyncio.CancelledError:
                continue
        marks["stubborn_done"] = time.perf_counter()
        return passed("too late")

    def after(target: object):  # type: ignore[no-untyped-def]
        marks["after"] = time.perf_counter()
        return passed("ran")

    specs = [CheckSpec("t.stubborn", "stubborn", Severity.LOW, TargetKind.DLMS, ("DLMS:ROBUSTNESS",),
                       stubborn, timeout=0.2),
             CheckSpec("t.after", "after", Severity.LOW, TargetKind.DLMS, ("DLMS:ROBUSTNESS",), after)]
    run = run_campaign({"dlms": echo_target}, specs, progress=False)
    assert verdicts(run) == {"t.stubborn": Verdict.INCONCLUSIVE, "t.after": Verdict.PASS}
    assert "timed out" in reasons(run)["t.stubborn"]
    # The next check started while the stubborn one was still running.
    assert marks["after"] < marks.get("stubborn_done", float("inf"))
