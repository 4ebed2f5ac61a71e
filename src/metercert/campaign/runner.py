"""The campaign runner: every selected check, once, under its own time limit.

What the runner guarantees, and why:

* One event loop for the whole run. A DLMS target keeps asyncio connections (and
  the in-process reference meter may live in the same loop), so async checks are
  awaited in that loop and targets are opened and closed in it
  (``await target.open()`` / ``await target.close()`` when they exist).
* A check can never stop the campaign. An exception or an overrun becomes an
  INCONCLUSIVE verdict whose reason names the exception class and message; the
  traceback goes to the ``metercert.campaign`` debug log only, never to a report.
  Only a verdict the check returns itself can be PASS or FAIL.
* Sync checks run in their own daemon thread. Python cannot stop a thread, so a
  hung sync check is abandoned after its limit; a daemon thread (unlike the
  default executor that ``asyncio.to_thread`` uses) neither blocks the end of the
  run nor the exit of the process.
* Async checks are cancelled at their limit and given a short grace period to
  close what they opened; one that ignores cancellation is abandoned rather than
  waited for (``asyncio.wait_for`` would wait for it indefinitely).
* A check whose target kind has no target is NOT-APPLICABLE, so the report
  still lists it and the gap analysis can tell "not tested" from "passed".
* Evidence survives an error. A target may offer ``evidence_mark()`` and
  ``evidence_since(mark)``: what it recorded during a check that raised or timed
  out (the APDU traces of a DLMS target) is kept with the INCONCLUSIVE verdict.
* A device that stops answering costs one check, not the campaign. After each
  check the runner calls the target's ``after_check(check_id)`` when it has one:
  the DLMS target power-cycles a meter that went deaf (when it has a power
  controller) and the note goes with that check's result; a target that reports
  itself ``unavailable`` ends its remaining checks INCONCLUSIVE at once, with the
  reason, instead of each waiting out its time limits.

Exit codes (:attr:`CampaignRun.exit_code`): 0 every critical and high check reached
a verdict and none failed; 1 a check failed; 4 no check failed but a critical or
high check reached no verdict (INCONCLUSIVE), or no check reached any verdict at
all. 2 (usage, connection) and 3 (internal error) come from the command line.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import groupby
from typing import Any, Self

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from metercert import __version__
from metercert.campaign.selection import Deselected, select_checks
from metercert.checks.base import (
    CheckOutcome,
    CheckResult,
    CheckSpec,
    Evidence,
    Severity,
    TargetKind,
    Verdict,
)
from metercert.errors import MetercertError, UsageError

log = logging.getLogger("metercert.campaign")

#: How long a cancelled async check may take to clean up before it is abandoned.
CANCEL_GRACE_S = 2.0
#: Time limit for a target's ``open()`` / ``close()``, before ``time_limit_scale``.
TARGET_SETUP_TIMEOUT_S = 60.0
_REASON_MAX = 600
#: exit code of a run in which no check failed but critical or high checks reached no verdict
EXIT_NO_VERDICT = 4


class CheckTimeout(Exception):
    """A check or a target set-up step overran its time limit."""


@dataclass(frozen=True)
class CampaignRun:
    """Everything a report needs about one run; no target configuration or keys."""

    results: tuple[CheckResult, ...]
    started_at: datetime
    finished_at: datetime
    targets: Mapping[str, str] = field(default_factory=dict)
    meter_profile: str | None = None
    deselected: tuple[Deselected, ...] = ()
    notes: tuple[str, ...] = ()
    tool_version: str = __version__
    #: per target kind, what the target says of the device (identity, suite; no secrets)
    target_details: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return max(0.0, (self.finished_at - self.started_at).total_seconds())

    @property
    def summary(self) -> dict[str, int]:
        """Count per verdict; every verdict is present, zero or not."""
        counts = {v.value: 0 for v in Verdict}
        for result in self.results:
            counts[result.verdict.value] += 1
        return counts

    @property
    def failed(self) -> tuple[CheckResult, ...]:
        return tuple(r for r in self.results if r.verdict is Verdict.FAIL)

    @property
    def device_identity(self) -> dict[str, str]:
        """What the DLMS target read of the meter (serial, logical device name, firmware
        identifiers, system title, suite): the report header and the evidence bundle."""
        return dict(self.target_details.get("dlms", {}))

    @property
    def unresolved(self) -> tuple[CheckResult, ...]:
        """Critical and high checks that reached no verdict."""
        return tuple(r for r in self.results if r.verdict is Verdict.INCONCLUSIVE
                     and r.spec.severity in (Severity.CRITICAL, Severity.HIGH))

    @property
    def inconclusive(self) -> tuple[CheckResult, ...]:
        return tuple(r for r in self.results if r.verdict is Verdict.INCONCLUSIVE)

    @property
    def exit_code(self) -> int:
        """1 when a check failed; else 4 when a critical/high check, or every check that
        ran, reached no verdict; else 0 (CI gates on this)."""
        if self.failed:
            return 1
        decided = [r for r in self.results if r.verdict in (Verdict.PASS, Verdict.FAIL)]
        if self.unresolved or (self.inconclusive and not decided):
            return EXIT_NO_VERDICT
        return 0


def _now() -> datetime:
    return datetime.now(UTC)


def iso(ts: datetime) -> str:
    """UTC timestamp as the reports print it (``2026-11-25T12:31:30.123Z``)."""
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def describe_target(target: object) -> str:
    """A target's safe one-line description.

    Targets may provide ``describe() -> str`` (or a ``description`` string); it
    must not contain secrets. Without one only the type name is shown: a raw
    ``repr`` could carry configuration the report must not print.
    """
    describe = getattr(target, "describe", None)
    if callable(describe):
        try:
            return " ".join(str(describe()).split())
        except Exception as exc:  # a broken describe() must not stop a run
            log.debug("describe() of %s failed", type(target).__name__, exc_info=exc)
    text = getattr(target, "description", None)
    if isinstance(text, str) and text.strip():
        return " ".join(text.split())
    return type(target).__name__


def _details(target: object) -> dict[str, str]:
    details = getattr(target, "details", None)
    if not callable(details):
        return {}
    try:
        return {str(k): str(v) for k, v in dict(details()).items()}
    except Exception as exc:
        log.debug("details() of %s failed", type(target).__name__, exc_info=exc)
        return {}


def _exception_reason(prefix: str, exc: BaseException) -> str:
    message = " ".join(str(exc).split())
    text = f"{prefix} {type(exc).__name__}: {message}" if message else f"{prefix} {type(exc).__name__}"
    return text if len(text) <= _REASON_MAX else text[: _REASON_MAX - 1] + "\u2026"


def _retrieve_later(fut: asyncio.Future[Any]) -> None:
    """Mark an abandoned future's exception as seen (no 'never retrieved' noise)."""

    def _swallow(f: asyncio.Future[Any]) -> None:
        if not f.cancelled():
            f.exception()

    fut.add_done_callback(_swallow)


async def _await_with_limit(awaitable: Awaitable[Any], limit: float) -> Any:
    """Await ``awaitable`` for at most ``limit`` seconds, then cancel and move on."""
    fut = asyncio.ensure_future(awaitable)
    try:
        done, _ = await asyncio.wait({fut}, timeout=limit)
    except asyncio.CancelledError:
        fut.cancel()
        raise
    if fut in done:
        return fut.result()
    fut.cancel()
    await asyncio.wait({fut}, timeout=CANCEL_GRACE_S)
    _retrieve_later(fut)
    raise CheckTimeout(f"no verdict within {limit:g} s")


def _in_daemon_thread(func: Callable[[Any], Any], arg: Any, name: str) -> asyncio.Future[Any]:
    """Run ``func(arg)`` in a daemon thread; the returned future carries its result."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[Any] = loop.create_future()
    ctx = contextvars.copy_context()

    def settle(value: Any, exc: BaseException | None) -> None:
        if fut.done():  # abandoned after a timeout
            return
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(value)

    def work() -> None:
        try:
            value, exc = ctx.run(func, arg), None
        except BaseException as caught:  # noqa: BLE001 - handed to the loop, which records it
            value, exc = None, caught
        try:
            loop.call_soon_threadsafe(settle, value, exc)
        except RuntimeError:  # the run is over and its loop closed
            log.debug("abandoned check thread %s finished after the run", name)

    threading.Thread(target=work, name=name, daemon=True).start()
    return fut


async def run_check(spec: CheckSpec, target: object, *, time_limit_scale: float = 1.0) -> CheckResult:
    """Run one check against ``target`` and always return a result."""
    started_at = iso(_now())
    t0 = time.perf_counter()
    limit = spec.timeout * time_limit_scale
    unavailable = getattr(target, "unavailable", None)
    if isinstance(unavailable, str) and unavailable:
        return CheckResult(spec, CheckOutcome(Verdict.INCONCLUSIVE, unavailable), 0.0, started_at)
    mark_of = getattr(target, "evidence_mark", None)
    mark = mark_of() if callable(mark_of) else None
    try:
        if inspect.iscoroutinefunction(spec.func):
            value = await _await_with_limit(spec.func(target), limit)
        else:
            value = await _await_with_limit(
                _in_daemon_thread(spec.func, target, f"check {spec.id}"), limit
            )
            if inspect.isawaitable(value):  # a sync wrapper that handed back a coroutine
                remaining = max(0.001, limit - (time.perf_counter() - t0))
                value = await _await_with_limit(value, remaining)
        if isinstance(value, CheckOutcome):
            outcome = value
        else:
            outcome = CheckOutcome(
                Verdict.INCONCLUSIVE,
                f"check returned {type(value).__name__}, not a CheckOutcome (defect in the check)",
            )
    except CheckTimeout:
        outcome = CheckOutcome(
            Verdict.INCONCLUSIVE, f"timed out: no verdict within the check's limit of {limit:g} s"
        )
    except asyncio.CancelledError as exc:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise  # the run itself is being cancelled
        log.debug("check %s was cancelled from inside", spec.id, exc_info=exc)
        outcome = CheckOutcome(Verdict.INCONCLUSIVE, "check was cancelled before it reached a verdict")
    except Exception as exc:
        log.debug("check %s raised", spec.id, exc_info=exc)
        outcome = CheckOutcome(Verdict.INCONCLUSIVE, _exception_reason("check raised", exc))
    if outcome.verdict is Verdict.INCONCLUSIVE and not outcome.evidence and mark is not None:
        outcome = CheckOutcome(outcome.verdict, outcome.reason,
                               tuple(_kept_evidence(target, mark)))
    note = await _after_check(target, spec.id, limit)
    if note:
        outcome = CheckOutcome(outcome.verdict, outcome.reason,
                               (*outcome.evidence, Evidence("device after the check", note)))
    return CheckResult(spec, outcome, time.perf_counter() - t0, started_at)


def _kept_evidence(target: object, mark: int) -> list[Evidence]:
    try:
        return [e for e in target.evidence_since(mark) if isinstance(e, Evidence)]  # type: ignore[attr-defined]
    except Exception as exc:
        log.debug("evidence_since() failed", exc_info=exc)
        return []


async def _after_check(target: object, check_id: str, limit: float) -> str | None:
    hook = getattr(target, "after_check", None)
    if not callable(hook):
        return None
    try:
        note = await _await_with_limit(hook(check_id), max(limit, 30.0))
    except Exception as exc:
        log.debug("after_check failed", exc_info=exc)
        return _exception_reason("could not check the device after this check:", exc)
    return note if isinstance(note, str) else None


async def _call_hook(target: object, name: str, limit: float) -> BaseException | None:
    """Call ``target.open``/``close`` if present; return the error instead of raising."""
    hook = getattr(target, name, None)
    if not callable(hook):
        return None
    try:
        if inspect.iscoroutinefunction(hook):
            await _await_with_limit(hook(), limit)
        else:
            value = hook()
            if inspect.isawaitable(value):
                await _await_with_limit(value, limit)
    except Exception as exc:
        log.debug("%s() of %s failed", name, type(target).__name__, exc_info=exc)
        return exc
    return None


class _Display:
    """Progress bar plus the id of the running check; silent when disabled."""

    def __init__(self, console: Console | None, total: int) -> None:
        self._progress: Progress | None = None
        if console is not None and total:
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("[bold]campaign"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[current]}"),
                console=console,
                transient=True,
            )
            self._task = self._progress.add_task("campaign", total=total, current="")

    def __enter__(self) -> Self:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def current(self, check_id: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, current=check_id)

    def advance(self) -> None:
        if self._progress is not None:
            self._progress.advance(self._task)


def _console(progress: bool | Console) -> Console | None:
    if isinstance(progress, Console):
        return progress
    return Console(stderr=True) if progress else None


def _normalise_targets(targets: Mapping[TargetKind | str, object]) -> dict[TargetKind, object]:
    out: dict[TargetKind, object] = {}
    for key, value in targets.items():
        try:
            kind = key if isinstance(key, TargetKind) else TargetKind(str(key))
        except ValueError:
            kinds = ", ".join(k.value for k in TargetKind)
            raise UsageError(f"unknown target kind {key!r} (expected one of {kinds})") from None
        if value is not None:
            out[kind] = value
    return out


async def _run_groups(selected: list[CheckSpec], by_kind: dict[TargetKind, object],
                      opening: dict[TargetKind, asyncio.Future[BaseException | None]], *,
                      display_console: Console | None, results: list[CheckResult],
                      notes: list[str], strict_targets: bool, setup_limit: float,
                      time_limit_scale: float) -> None:
    """Each target kind's checks in order, once its target has opened."""
    with _Display(display_console, len(selected)) as display:
        for kind, group_iter in groupby(selected, key=lambda s: s.target):
            group = list(group_iter)
            target = by_kind.get(kind)
            if target is None:
                for spec in group:
                    display.current(spec.id)
                    outcome = CheckOutcome(
                        Verdict.NOT_APPLICABLE, f"no {kind.value} target configured"
                    )
                    results.append(CheckResult(spec, outcome, 0.0, iso(_now())))
                    display.advance()
                continue

            display.current(f"opening {kind.value} target")
            error = await opening.pop(kind)
            if error is not None:
                if strict_targets and isinstance(error, MetercertError):
                    raise error
                reason = _exception_reason(f"{kind.value} target could not be opened:", error)
                notes.append(reason)
                for spec in group:
                    results.append(
                        CheckResult(spec, CheckOutcome(Verdict.INCONCLUSIVE, reason), 0.0, iso(_now()))
                    )
                    display.advance()
                continue
            notes.extend(str(n) for n in getattr(target, "notes", ()) or ())
            try:
                for spec in group:
                    display.current(spec.id)
                    results.append(await run_check(spec, target, time_limit_scale=time_limit_scale))
                    display.advance()
            finally:
                error = await _call_hook(target, "close", setup_limit)
                if error is not None:
                    notes.append(_exception_reason(f"{kind.value} target did not close cleanly:", error))



async def run_campaign_async(
    targets: Mapping[TargetKind | str, object],
    checks: Iterable[CheckSpec],
    *,
    only: Sequence[str] = (),
    skip: Sequence[str] = (),
    include_destructive: bool = True,
    progress: bool | Console = True,
    time_limit_scale: float = 1.0,
    meter_profile: str | None = None,
    strict_targets: bool = False,
) -> CampaignRun:
    """:func:`run_campaign` for callers already inside an event loop.

    With ``strict_targets`` a target whose ``open()`` raises a
    :class:`MetercertError` (e.g. ``ConnectionFailed``) aborts the run with that
    error; otherwise its checks become INCONCLUSIVE and the other kinds still run.
    """
    if not time_limit_scale > 0:
        raise UsageError(f"time limit scale must be > 0, got {time_limit_scale!r}")
    by_kind = _normalise_targets(targets)
    selected, dropped = select_checks(
        checks, only=only, skip=skip, include_destructive=include_destructive
    )
    console = _console(progress)
    setup_limit = TARGET_SETUP_TIMEOUT_S * time_limit_scale
    started = _now()
    results: list[CheckResult] = []
    notes: list[str] = []

    # Every target is opened at once, concurrently: a TLS scan or a dossier load takes
    # seconds that need not wait for the DLMS checks (each group still runs in order).
    wanted = [k for k in dict.fromkeys(s.target for s in selected) if k in by_kind]
    opening = {kind: asyncio.ensure_future(_call_hook(by_kind[kind], "open", setup_limit))
               for kind in wanted}
    try:
        await _run_groups(selected, by_kind, opening, display_console=console, results=results,
                          notes=notes, strict_targets=strict_targets, setup_limit=setup_limit,
                          time_limit_scale=time_limit_scale)
    finally:
        for kind, task in opening.items():  # targets whose group never started (an abort)
            if not task.done():
                task.cancel()
                _retrieve_later(task)
            elif not task.cancelled() and task.result() is None:
                await _call_hook(by_kind[kind], "close", setup_limit)

    run = CampaignRun(
        results=tuple(results),
        started_at=started,
        finished_at=_now(),
        targets={kind.value: describe_target(t) for kind, t in by_kind.items()},
        target_details={kind.value: d for kind, t in by_kind.items() if (d := _details(t))},
        meter_profile=meter_profile,
        deselected=tuple(dropped),
        notes=tuple(notes),
    )
    if console is not None:
        from metercert.report.terminal import print_run_summary

        # The bar lives on stderr; the summary is the run's output, so stdout.
        print_run_summary(run, console if isinstance(progress, Console) else Console())
    return run


def run_campaign(
    targets: Mapping[TargetKind | str, object],
    checks: Iterable[CheckSpec],
    *,
    only: Sequence[str] = (),
    skip: Sequence[str] = (),
    include_destructive: bool = True,
    progress: bool | Console = True,
    time_limit_scale: float = 1.0,
    meter_profile: str | None = None,
    strict_targets: bool = False,
) -> CampaignRun:
    """Run ``checks`` against ``targets`` (one per target kind) in one event loop.

    ``only``/``skip`` take check ids, id globs (``dlms.ic-*``) or tags;
    ``include_destructive=False`` leaves out checks that change the meter (they
    are listed as deselected). ``time_limit_scale`` multiplies every check's own
    limit (slow links, loaded CI machines). The run's ``exit_code`` is 1 when a
    check failed.
    """
    return asyncio.run(
        run_campaign_async(
            targets,
            checks,
            only=only,
            skip=skip,
            include_destructive=include_destructive,
            progress=progress,
            time_limit_scale=time_limit_scale,
            meter_profile=meter_profile,
            strict_targets=strict_targets,
        )
    )
