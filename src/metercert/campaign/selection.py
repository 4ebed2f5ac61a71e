"""Which checks a campaign runs, and in what order.

``--only`` and ``--skip`` take the same patterns: an exact check id, a glob over
check ids (``dlms.ic-*``), or a tag (``replay``, or explicitly ``tag:replay``).
Matching ignores case because ids and tags are typed by hand on a command line.

Order is part of the evidence: two runs of one campaign must list checks the same
way so that reports can be compared line by line. Checks run grouped by target
kind (in :class:`TargetKind` order), in declaration order within a kind, with
destructive checks (power cycles, key changes) last so that they cannot spoil
the state the other checks observe.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from metercert.checks.base import CheckSpec, TargetKind
from metercert.errors import UsageError


@dataclass(frozen=True)
class Deselected:
    """A check left out of a run, and why (shown in the report so gaps are explained)."""

    id: str
    reason: str


def _matches(spec: CheckSpec, pattern: str) -> bool:
    pat = pattern.strip().casefold()
    if not pat:
        return False
    if pat.startswith("tag:"):
        tag_pat = pat[4:]
        return any(fnmatch.fnmatchcase(t.casefold(), tag_pat) for t in spec.tags)
    if fnmatch.fnmatchcase(spec.id.casefold(), pat):
        return True
    return any(t.casefold() == pat for t in spec.tags)


def matches_any(spec: CheckSpec, patterns: Iterable[str]) -> bool:
    """True when ``spec`` is named by one of ``patterns`` (id, id glob or tag)."""
    return any(_matches(spec, p) for p in patterns)


def _kind_rank(kind: TargetKind) -> int:
    return list(TargetKind).index(kind)


def order_checks(checks: Iterable[CheckSpec]) -> list[CheckSpec]:
    """Stable campaign order: by target kind, destructive last, else as declared."""
    indexed = list(enumerate(checks))
    indexed.sort(key=lambda item: (_kind_rank(item[1].target), item[1].destructive, item[0]))
    return [spec for _, spec in indexed]


def select_checks(
    checks: Iterable[CheckSpec],
    *,
    only: Sequence[str] = (),
    skip: Sequence[str] = (),
    include_destructive: bool = True,
) -> tuple[list[CheckSpec], list[Deselected]]:
    """Split ``checks`` into the ordered run list and the ones left out.

    An ``only`` pattern that names no check at all is a usage error: a typo there
    would otherwise silently produce an empty, all-green report.
    """
    all_specs = list(checks)
    seen: set[str] = set()
    unique: list[CheckSpec] = []
    for spec in all_specs:
        if spec.id in seen:
            raise UsageError(f"check id {spec.id} is listed twice in the campaign")
        seen.add(spec.id)
        unique.append(spec)

    for pattern in only:
        if not any(_matches(spec, pattern) for spec in unique):
            raise UsageError(f"--only pattern {pattern!r} matches no registered check")

    selected: list[CheckSpec] = []
    dropped: list[Deselected] = []
    for spec in order_checks(unique):
        if only and not matches_any(spec, only):
            dropped.append(Deselected(spec.id, "not selected by --only"))
        elif matches_any(spec, skip):
            dropped.append(Deselected(spec.id, "excluded by --skip"))
        elif spec.destructive and not include_destructive:
            dropped.append(Deselected(spec.id, "destructive check; run with destructive checks disabled"))
        else:
            selected.append(spec)
    return selected, dropped
