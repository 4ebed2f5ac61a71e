"""Value types of a loaded device dossier.

A dossier is what a manufacturer hands a test lab besides the meter: a YAML
file stating policies (patch window, support period, disclosure contact,
incident reporting) plus the artefacts that back them (SBOM, signed firmware,
key-injection audit log, end-of-life procedure). Loading checks the structure;
judging the content is the job of ``metercert.checks.dossier``, so a defect in an
artefact (an SBOM that does not parse, a missing signature) is kept as a
:class:`Artifact` problem rather than raised.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metercert.dossier.yamldoc import YamlDocument, dotted_path

DEBUG_STATES = ("present", "disabled", "authentication-gated", "absent")
DEBUG_INTERFACES = ("uart", "jtag", "optical")
PASSWORD_POLICIES = ("none", "unique-per-device", "universal")


@dataclass(frozen=True)
class Artifact:
    """A file the dossier points at: where it is, and why it could not be used if so."""

    field: str
    reference: str
    path: Path
    problem: str = ""

    @property
    def usable(self) -> bool:
        return not self.problem


@dataclass(frozen=True)
class SbomComponent:
    name: str
    version: str
    purl: str = ""
    cpe: str = ""
    ref: str = ""
    sha256: str = ""
    type: str = ""


@dataclass(frozen=True)
class Sbom:
    format: str  # "CycloneDX JSON", "CycloneDX XML", "SPDX JSON"
    components: tuple[SbomComponent, ...]

    def find(self, key: str) -> SbomComponent | None:
        """The component whose bom-ref, SPDX id or name is ``key``."""
        for comp in self.components:
            if key and key in (comp.ref, comp.name):
                return comp
        return None


@dataclass(frozen=True)
class AffectedRange:
    """One OSV range: its type and its events in file order, e.g.
    ``(("introduced", "0"), ("fixed", "0.2.0"), ("introduced", "0.2.7-0"), ("fixed", "0.2.23"))``."""

    kind: str  # SEMVER / ECOSYSTEM / GIT
    events: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class AffectedPackage:
    name: str
    ecosystem: str = ""
    purl: str = ""
    versions: tuple[str, ...] = ()
    ranges: tuple[AffectedRange, ...] = ()


@dataclass(frozen=True)
class Advisory:
    """One OSV record, reduced to what matching needs."""

    id: str
    summary: str
    affected: tuple[AffectedPackage, ...]
    aliases: tuple[str, ...] = ()
    modified: dt.date | None = None


@dataclass(frozen=True)
class FirmwareEntry:
    image: Artifact
    signature: Artifact | None
    certificate: Artifact | None
    sbom_component: str
    index: int
    #: Intermediate CA certificates between the signing certificate and the trust anchor.
    chain: tuple[Artifact, ...] = ()
    #: When the image was signed, as the dossier states it (validity is judged at that moment).
    signed_at: dt.datetime | None = None


@dataclass(frozen=True)
class ManualReview:
    """A reviewer's verdict on a requirement no automated check covers (the dossier's
    ``reviews``), so that a report can be complete without pretending a tool showed it."""

    requirement: str
    verdict: str  # pass | fail
    reviewer: str
    date: dt.date | None
    note: str = ""
    documents: tuple[str, ...] = ()
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"requirement": self.requirement, "verdict": self.verdict, "reviewer": self.reviewer,
                "date": self.date.isoformat() if self.date else "", "note": self.note,
                "documents": list(self.documents), "source": self.source}


@dataclass(frozen=True)
class AuditRecord:
    line: int
    data: Mapping[str, Any]


@dataclass(frozen=True)
class Dossier:
    """A device dossier with its artefacts parsed (or their problems recorded)."""

    def describe(self) -> str:
        return (f"device dossier: {self.manufacturer} {self.model}, firmware "
                f"{self.firmware_version} ({self.folder.name}/)")

    doc: YamlDocument
    folder: Path
    manufacturer: str
    model: str
    firmware_version: str
    sbom_file: Artifact | None
    sbom: Sbom | None
    advisories_file: Artifact | None
    advisories: tuple[Advisory, ...]
    firmware: tuple[FirmwareEntry, ...]
    debug_interfaces: Mapping[str, str]
    default_password: str | None
    per_device_secrets: bool | None
    patch_days: int | None
    patch_limit_days: int
    support_end: dt.date | None
    cvd_policy_url: str
    cvd_contact: str
    early_warning_hours: float | None
    notification_hours: float | None
    final_report_days: float | None
    audit_log: Artifact | None
    audit_records: tuple[AuditRecord, ...]
    audit_devices: tuple[str, ...]
    audit_required_keys: tuple[str, ...]
    eol_procedure: Artifact | None
    logging_events: tuple[str, ...]
    logging_retention_days: int | None
    #: Days from a severe incident's notification to the final report (CRA: one month).
    severe_incident_final_report_days: float | None = None
    #: Placing on the market (start of the support period), as stated (else None).
    support_start: dt.date | None = None
    #: Expected use time in years when shorter than five (the CRA Art. 13(8) exception).
    support_expected_use_years: float | None = None
    #: When the advisory export was retrieved, as the dossier states it (else None).
    advisories_retrieved: dt.date | None = None
    #: How old the advisory set may be before DOSSIER-VULN-01 refuses it.
    advisories_max_age_days: int = 30
    #: Manual review outcomes on requirements no check covers.
    reviews: tuple[ManualReview, ...] = ()
    #: The manufacturer's code-signing CA certificate(s): the trust anchor of firmware signatures.
    firmware_trust_anchor: Artifact | None = None

    @property
    def path(self) -> Path:
        return self.doc.path

    @property
    def name(self) -> str:
        return f"{self.manufacturer} {self.model}".strip()

    @property
    def placeholders(self) -> tuple[str, ...]:
        """Fields still holding the ``dossier init`` template's example (``!placeholder``)."""
        return self.doc.placeholders

    def placeholders_in(self, *fields: str) -> list[str]:
        """The placeholder paths at, under or above any of ``fields`` (top-level names or
        dotted paths): a check reading one of them has nothing of the product to judge."""
        def related(a: str, b: str) -> bool:
            return a == b or a.startswith((b + ".", b + "[")) or b.startswith((a + ".", a + "["))
        return [p for p in self.placeholders if any(related(p, f) for f in fields)]

    def cite(self, *where: str | int) -> str:
        """``dossier.yaml:LINE field.path`` for evidence ``source``."""
        return f"{self.doc.path.name}:{self.doc.line_of(where)} {dotted_path(where)}".strip()

    def __repr__(self) -> str:  # keep reprs short; a dossier may be large
        return f"Dossier({self.name!r}, {str(self.doc.path)!r})"
