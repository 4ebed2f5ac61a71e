"""The declaration side of controls as code: verdicts, evidence and the ``@check``
decorator.

A check function takes the target object of its kind (a DLMS target, a TLS
endpoint, a loaded dossier, a traffic store) and returns a :class:`CheckOutcome`.
It may be a plain function or a coroutine function; the runner awaits the latter.
Raising or timing out is not a verdict: the runner records it as INCONCLUSIVE
with the reason, so a check should only return FAIL when it has seen the flaw.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


class Verdict(str, enum.Enum):
    """TS 103 701 style verdicts."""

    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"
    NOT_APPLICABLE = "not-applicable"


class Severity(str, enum.Enum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    INFO = "info"


class TargetKind(str, enum.Enum):
    DLMS = "dlms"
    TLS = "tls"
    DOSSIER = "dossier"
    TRAFFIC = "traffic"
    HEADEND = "headend"  # a client under test, driven by the hostile reference meter


@dataclass(frozen=True)
class Evidence:
    """One piece of evidence: an APDU trace excerpt, a value seen, a file excerpt.

    ``kind`` is one of ``text``, ``apdu-trace``, ``value``, ``file``; ``source``
    names where it came from (a file and field, an endpoint, an association).
    Evidence must never contain key material.
    """

    label: str
    content: str
    kind: str = "text"
    source: str = ""


@dataclass(frozen=True)
class CheckOutcome:
    verdict: Verdict
    reason: str
    evidence: tuple[Evidence, ...] = ()
    #: Cited requirements this check judged differently from ``verdict`` (a check that
    #: fails one requirement need not fail every one it cites); results.json records them
    #: as ``requirement_verdicts`` and the gap analysis, HTML and OSCAL use them.
    requirement_verdicts: Mapping[str, Verdict] = field(default_factory=dict, hash=False)

    def with_requirement_verdicts(self, verdicts: Mapping[str, Verdict]) -> CheckOutcome:
        """This outcome with per-requirement verdicts, e.g. a replay check that failed
        ``DLMS:IC-REPLAY`` but saw the meter's own counters rise
        (``{"DLMS:IC-UNIQUE": Verdict.PASS}``)."""
        return CheckOutcome(self.verdict, self.reason, self.evidence, dict(verdicts))


def _outcome(verdict: Verdict, reason: str, evidence: tuple[Evidence | str, ...]) -> CheckOutcome:
    items = tuple(e if isinstance(e, Evidence) else Evidence("note", str(e)) for e in evidence)
    return CheckOutcome(verdict, reason, items)


def passed(reason: str, *evidence: Evidence | str) -> CheckOutcome:
    return _outcome(Verdict.PASS, reason, evidence)


def fail(reason: str, *evidence: Evidence | str) -> CheckOutcome:
    return _outcome(Verdict.FAIL, reason, evidence)


def inconclusive(reason: str, *evidence: Evidence | str) -> CheckOutcome:
    return _outcome(Verdict.INCONCLUSIVE, reason, evidence)


def not_applicable(reason: str, *evidence: Evidence | str) -> CheckOutcome:
    return _outcome(Verdict.NOT_APPLICABLE, reason, evidence)


@dataclass(frozen=True)
class CheckSpec:
    """Metadata of one check plus the function that performs it."""

    id: str
    title: str
    severity: Severity
    target: TargetKind
    requirements: tuple[str, ...]
    func: Callable[..., Any]
    tags: tuple[str, ...] = ()
    destructive: bool = False
    timeout: float = 30.0
    description: str = ""


@dataclass(frozen=True)
class CheckResult:
    """A check's outcome as the runner recorded it."""

    spec: CheckSpec
    outcome: CheckOutcome
    duration_s: float = 0.0
    started_at: str = ""

    @property
    def verdict(self) -> Verdict:
        return self.outcome.verdict


_REGISTRY: dict[str, CheckSpec] = {}


def check(
    id: str,
    title: str,
    *,
    severity: Severity,
    target: TargetKind,
    requirements: tuple[str, ...] | list[str],
    tags: tuple[str, ...] | list[str] = (),
    destructive: bool = False,
    timeout: float = 30.0,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register the decorated function as check ``id``.

    ``requirements`` are catalog requirement ids (e.g. ``DLMS:IC-REPLAY``,
    ``EN303645:5.1-1``); the catalog tests verify each one exists.
    """
    if not requirements:
        raise ValueError(f"check {id} must evidence at least one requirement")

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        if id in _REGISTRY and _REGISTRY[id].func is not func:
            raise ValueError(f"check id {id} registered twice")
        _REGISTRY[id] = CheckSpec(
            id=id,
            title=title,
            severity=severity,
            target=target,
            requirements=tuple(requirements),
            func=func,
            tags=tuple(tags),
            destructive=destructive,
            timeout=timeout,
            description=(func.__doc__ or "").strip(),
        )
        return func

    return decorate


def registered() -> dict[str, CheckSpec]:
    return dict(_REGISTRY)
