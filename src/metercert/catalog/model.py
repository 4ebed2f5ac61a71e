"""Value types of the cross-framework requirement catalog.

One requirement id (``DLMS:IC-REPLAY``, ``EN303645:5.1-1``) names one thing a
meter or its maker must do; checks cite these ids and every report, the gap
analysis and the OSCAL export are built from them. The values are frozen: the
catalog is loaded once from package data and shared.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from metercert.errors import UsageError

EVIDENCE_KINDS = ("live-meter", "tls-endpoint", "dossier", "document-review")
PRODUCT_KINDS = ("meter", "gateway", "headend")
STATUSES = ("mandatory", "recommended")
COVERAGE_STATUSES = ("covered", "partial", "referenced", "not-addressed")


@dataclass(frozen=True)
class Threat:
    id: str
    title: str
    description: str = ""


@dataclass(frozen=True)
class Framework:
    id: str
    name: str
    short: str
    #: Published versions the catalog holds (EN 303 645: 2.1.1, 3.1.3) and the one in use.
    versions: tuple[str, ...] = ()
    version: str = ""


@dataclass(frozen=True)
class Requirement:
    """One requirement of one framework, in metercert's own words.

    ``evidence`` says how it can be evidenced (``live-meter``, ``tls-endpoint``,
    ``dossier``, ``document-review``); ``verify`` marks facts recalled rather than
    read from the standard text.
    """

    id: str
    framework: str
    title: str
    status: str
    evidence: tuple[str, ...]
    threats: tuple[str, ...]
    verify: bool = False
    #: Kinds of product it applies to: ``meter``, ``gateway`` (smart meter gateway),
    #: ``headend``. A requirement that does not apply to a meter is not applicable to
    #: the product metercert certifies, rather than untested.
    applies_to: tuple[str, ...] = ("meter",)
    #: IEC 62443 security level from which it is required (None: not SL-graded).
    security_level: int | None = None
    #: Versions of its standard that have it (empty: every version the framework has).
    versions: tuple[str, ...] = ()
    #: Ids of another version that this one takes over (checks citing those evidence it).
    supersedes: tuple[str, ...] = ()
    #: For a conditional provision (EN 303 645 "M C"), when it applies.
    condition: str = ""

    @property
    def document_review_only(self) -> bool:
        """True when no automated evidence kind can show it (a person must read documents)."""
        return set(self.evidence) == {"document-review"}


@dataclass(frozen=True)
class CoverageCell:
    status: str
    text: str


@dataclass(frozen=True)
class CoverageColumn:
    id: str
    title: str
    frameworks: tuple[str, ...]


@dataclass(frozen=True)
class Coverage:
    """The seed article's framework x threat assessment, as the seed states it."""

    columns: tuple[CoverageColumn, ...]
    cells: Mapping[str, Mapping[str, CoverageCell]]

    def cell(self, threat_id: str, column_id: str) -> CoverageCell:
        return self.cells[threat_id][column_id]


@dataclass(frozen=True)
class Misstatement:
    """A claim of the seed that the standards contradict; the code follows the standards."""

    id: str
    topic: str
    seed_claim: str
    correction: str
    requirements: tuple[str, ...] = ()


@dataclass(frozen=True)
class Catalog:
    frameworks: tuple[Framework, ...]
    requirements: tuple[Requirement, ...]
    threats: tuple[Threat, ...]
    coverage: Coverage
    misstatements: tuple[Misstatement, ...]
    _index: Mapping[str, Requirement] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "_index", MappingProxyType({r.id: r for r in self.requirements})
        )

    def __contains__(self, requirement_id: object) -> bool:
        return requirement_id in self._index

    def resolve(self, requirement_id: str) -> tuple[str, ...]:
        """The catalog ids a cited id stands for: itself, or the requirements of the chosen
        version that supersede it (a check citing V2.1.1's 5.6-4 evidences V3.1.3's 5.6-4A)."""
        if requirement_id in self._index:
            return (requirement_id,)
        return tuple(r.id for r in self.requirements if requirement_id in r.supersedes)

    def get(self, requirement_id: str) -> Requirement:
        """The requirement ``requirement_id``; a :class:`UsageError` names an unknown id."""
        try:
            return self._index[requirement_id]
        except KeyError:
            raise UsageError(f"unknown requirement id {requirement_id!r}") from None

    def framework(self, framework_id: str) -> Framework:
        for fw in self.frameworks:
            if fw.id.lower() == framework_id.lower():
                return fw
        known = ", ".join(f.id for f in self.frameworks)
        raise UsageError(f"unknown framework {framework_id!r} (known: {known})")

    def in_framework(self, framework_id: str) -> tuple[Requirement, ...]:
        fw = self.framework(framework_id)
        return tuple(r for r in self.requirements if r.framework == fw.id)

    def for_threat(self, threat_id: str) -> tuple[Requirement, ...]:
        return tuple(r for r in self.requirements if threat_id in r.threats)

    def threat(self, threat_id: str) -> Threat:
        for t in self.threats:
            if t.id == threat_id:
                return t
        raise UsageError(f"unknown threat category {threat_id!r}")

    def unknown_ids(self, ids: Iterable[str]) -> list[str]:
        """The ids in ``ids`` that the catalog neither defines nor has superseded, in order."""
        return [i for i in ids if not self.resolve(i)]
