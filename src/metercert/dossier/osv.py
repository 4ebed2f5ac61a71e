"""Match SBOM components against an offline OSV export.

Test labs work offline and must be able to say which advisory data a verdict
rests on, so the user supplies the OSV records (a JSON list, an object with a
``vulns`` list, or one record) and the dossier names the file. A component is
affected when an advisory names its package (by purl without version, or by
name) and either lists its version or has a SEMVER / ECOSYSTEM range holding it.
GIT ranges need commit history and are not evaluated.

Versions are compared in the scheme of their ecosystem, by the `univers`
library (AboutCode's maintained version-range implementation), not by a
comparator of our own: Cargo and npm are SemVer, PyPI is PEP 440, Alpine's
``1.36.1-r0`` is a release with a package revision (not a pre-release),
OpenSSL's ``1.1.1k`` sorts after ``1.1.1`` and before ``1.1.1l``, Debian and
RPM have epochs. The scheme comes from the OSV ecosystem, else from the
component's purl type; a version the scheme cannot parse is reported as
undecidable rather than guessed.

A range is evaluated the way the OSV schema defines it: its events are sorted
by version and walked in order, ``introduced`` opening an affected interval and
``fixed`` / ``last_affected`` closing it, so a range with several intervals
(RustSec's usual shape) is every one of its intervals, not the last.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packageurl import PackageURL
from univers.version_range import RANGE_CLASS_BY_SCHEMES
from univers.versions import InvalidVersion, PypiVersion, Version

from metercert import safeload
from metercert.dossier.model import (
    Advisory,
    AffectedPackage,
    AffectedRange,
    Sbom,
    SbomComponent,
)
from metercert.errors import InputFileError

#: OSV ecosystem (the part before ``:``) -> univers version scheme.
ECOSYSTEM_SCHEMES = {
    "crates.io": "cargo",
    "npm": "npm",
    "pypi": "pypi",
    "maven": "maven",
    "go": "golang",
    "rubygems": "gem",
    "nuget": "nuget",
    "packagist": "composer",
    "hex": "hex",
    "alpine": "apk",
    "debian": "deb",
    "ubuntu": "deb",
    "red hat": "rpm",
    "rocky linux": "rpm",
    "almalinux": "rpm",
    "opensuse": "rpm",
    "suse": "rpm",
}
#: purl type -> univers version scheme (purl spec type names).
PURL_SCHEMES = {
    "cargo": "cargo", "npm": "npm", "pypi": "pypi", "maven": "maven", "golang": "golang",
    "gem": "gem", "nuget": "nuget", "composer": "composer", "hex": "hex", "apk": "apk",
    "alpine": "apk", "deb": "deb", "rpm": "rpm", "github": "github",
}
#: Packages whose upstream numbering is their own, whatever the purl type says.
NAME_SCHEMES = {"openssl": "openssl"}

_DOTTED = re.compile(r"^\d+(\.\d+)*$")


class VersionUndecidable(Exception):
    """A version (the component's or an event's) does not parse in the chosen scheme."""


def read_osv(path: Path) -> tuple[Advisory, ...]:
    """Parse an OSV export; a malformed file is bad tool input (:class:`InputFileError`)."""
    try:
        data = json.loads(safeload.read_text(path, what="advisory file",
                                             max_bytes=safeload.MAX_DOCUMENT_BYTES),
                          object_pairs_hook=safeload.no_duplicate_keys)
    except FileNotFoundError:
        raise InputFileError(f"{path}: advisory file not found") from None
    except json.JSONDecodeError as exc:
        raise InputFileError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None
    except (OSError, UnicodeDecodeError, RecursionError) as exc:
        raise InputFileError(f"{path}: cannot read: {exc.__class__.__name__}") from None
    except ValueError as exc:  # a key twice in one object
        raise InputFileError(f"{path}: invalid JSON: {exc}") from None
    if isinstance(data, dict) and isinstance(data.get("vulns"), list):
        records = data["vulns"]
    elif isinstance(data, list):
        records = data
    elif isinstance(data, dict) and "id" in data:
        records = [data]
    else:
        raise InputFileError(f"{path}: expected OSV records (a list, or an object with 'vulns')")
    return tuple(_advisory(path, i, r) for i, r in enumerate(records))


def _advisory(path: Path, index: int, rec: Any) -> Advisory:
    if not isinstance(rec, dict) or not isinstance(rec.get("id"), str):
        raise InputFileError(f"{path}: OSV record {index} has no string 'id'")
    affected = []
    for j, aff in enumerate(rec.get("affected") or []):
        if not isinstance(aff, dict):
            raise InputFileError(f"{path}: OSV record {rec['id']} affected[{j}] is not an object")
        pkg = aff.get("package") or {}
        ranges = []
        for rng in aff.get("ranges") or []:
            events = []
            for event in rng.get("events") or []:
                for kind in ("introduced", "fixed", "last_affected", "limit"):
                    if isinstance(event, dict) and kind in event:
                        events.append((kind, str(event[kind])))
            ranges.append(AffectedRange(str(rng.get("type", "")).upper(), tuple(events)))
        affected.append(
            AffectedPackage(
                name=str(pkg.get("name", "")),
                ecosystem=str(pkg.get("ecosystem", "")),
                purl=str(pkg.get("purl", "")),
                versions=tuple(str(v) for v in aff.get("versions") or []),
                ranges=tuple(ranges),
            )
        )
    return Advisory(
        id=rec["id"],
        summary=str(rec.get("summary", "")),
        affected=tuple(affected),
        aliases=tuple(str(a) for a in rec.get("aliases") or []),
        modified=_date(rec.get("modified")),
    )


def _date(value: Any) -> dt.date | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return dt.datetime.fromisoformat(value).date()
    except ValueError:
        return None


def newest_record_date(advisories: Iterable[Advisory]) -> dt.date | None:
    """The newest ``modified`` date of the set: how current the export is at best."""
    dates = [a.modified for a in advisories if a.modified is not None]
    return max(dates) if dates else None


def scheme_for(comp: SbomComponent, pkg: AffectedPackage, range_kind: str = "") -> str:
    """The univers version scheme to compare ``comp`` with ``pkg``'s versions in."""
    eco = pkg.ecosystem.split(":", 1)[0].strip().lower()
    if eco in ECOSYSTEM_SCHEMES:
        return ECOSYSTEM_SCHEMES[eco]
    kinds = [_purl_type(purl) for purl in (comp.purl, pkg.purl)]
    for kind in kinds:  # a distribution's package revision scheme wraps any upstream numbering
        if kind in ("apk", "alpine", "deb", "rpm"):
            return PURL_SCHEMES[kind]
    name = (pkg.name or comp.name).lower()
    if name in NAME_SCHEMES:
        return NAME_SCHEMES[name]
    for kind in kinds:
        if kind in PURL_SCHEMES:
            return PURL_SCHEMES[kind]
    if range_kind == "SEMVER":
        return "generic"  # SemVer
    return "dotted" if _DOTTED.match(comp.version) else "generic"


def _purl_type(purl: str) -> str:
    if not purl:
        return ""
    try:
        return PackageURL.from_string(purl).type
    except ValueError:
        return ""


def parse_version(scheme: str, text: str) -> Version:
    """``text`` as a version of ``scheme``; :class:`VersionUndecidable` when it is not one."""
    # univers' own IntdotVersion compares "2" above "10"; dotted integers compare
    # correctly as PEP 440 release segments, so "dotted" uses that class.
    cls = PypiVersion if scheme == "dotted" else RANGE_CLASS_BY_SCHEMES[scheme].version_class
    if scheme in ("cargo", "npm", "generic", "github", "hex") and re.match(r"^\d+(\.\d+){3,}", text):
        # SemVer would read 1.2.3.4 as 1.2.3+4 and then ignore the 4 when comparing
        raise VersionUndecidable(f"{text!r} has more than three numeric parts, not SemVer")
    try:
        return cls(text)
    except (InvalidVersion, ValueError, TypeError, AttributeError) as exc:
        raise VersionUndecidable(f"{text!r} is not a {scheme} version ({exc})") from None


def in_range(version: Version, rng: AffectedRange, scheme: str) -> bool:
    """Whether ``version`` is in the OSV range (all of its intervals), per the OSV schema."""
    parsed: list[tuple[Version | None, int, str]] = []
    order = {"introduced": 0, "fixed": 1, "last_affected": 2, "limit": 3}
    for kind, value in rng.events:
        point = None if (kind == "introduced" and value == "0") else parse_version(scheme, value)
        parsed.append((point, order[kind], kind))
    limits = [p for p, _, kind in parsed if kind == "limit" and p is not None]
    if any(not version < lim for lim in limits):
        return False
    events = sorted((e for e in parsed if e[2] != "limit"), key=functools.cmp_to_key(_event_order))
    affected = False
    # Only ``<`` is used: univers 32's AlpineLinuxVersion answers 3.1.4-r10 >= 3.1.4-r2 with
    # False while its ``<`` and ``>`` are right.
    for point, _, kind in events:
        if kind == "introduced":
            if point is None or not version < point:
                affected = True
        elif point is not None and (point < version if kind == "last_affected" else not version < point):
            affected = False  # fixed at or before it, or past the last affected version
    return affected


def _event_order(a: tuple[Version | None, int, str], b: tuple[Version | None, int, str]) -> int:
    """Events by version ("introduced 0" first), and at one version in OSV's event order."""
    if a[0] is None or b[0] is None:
        first = (a[0] is not None) - (b[0] is not None)
        return first or (a[1] - b[1])
    if a[0] < b[0]:
        return -1
    if b[0] < a[0]:
        return 1
    return a[1] - b[1]


def _same_package(comp: SbomComponent, pkg: AffectedPackage) -> bool:
    if comp.purl and pkg.purl:
        try:
            a, b = PackageURL.from_string(comp.purl), PackageURL.from_string(pkg.purl)
        except ValueError:
            return False
        return (a.type, a.namespace or "", a.name) == (b.type, b.namespace or "", b.name)
    return bool(pkg.name) and pkg.name.lower() == comp.name.lower()


@dataclass(frozen=True)
class Match:
    """What matching one SBOM against one advisory set showed."""

    affected: tuple[tuple[SbomComponent, Advisory], ...]
    undecidable: tuple[tuple[SbomComponent, Advisory, str], ...]
    schemes: tuple[str, ...]


def match(sbom: Sbom, advisories: Iterable[Advisory]) -> Match:
    """Every affected (component, advisory) pair, and every pair that could not be decided."""
    hits: list[tuple[SbomComponent, Advisory]] = []
    unsure: list[tuple[SbomComponent, Advisory, str]] = []
    schemes: set[str] = set()
    for adv in advisories:
        for comp in sbom.components:
            if not comp.version:
                continue
            verdict, why = _component_verdict(comp, adv, schemes)
            if verdict:
                hits.append((comp, adv))
            elif why:
                unsure.append((comp, adv, why))
    return Match(tuple(hits), tuple(unsure), tuple(sorted(schemes)))


def _component_verdict(comp: SbomComponent, adv: Advisory, schemes: set[str]) -> tuple[bool, str]:
    why = ""
    for pkg in adv.affected:
        if not _same_package(comp, pkg):
            continue
        if comp.version in pkg.versions:
            return True, ""
        for rng in pkg.ranges:
            if rng.kind not in ("SEMVER", "ECOSYSTEM"):
                continue
            scheme = scheme_for(comp, pkg, rng.kind)
            schemes.add(scheme)
            try:
                version = parse_version(scheme, comp.version)
                if any(parse_version(scheme, v) == version for v in pkg.versions):
                    return True, ""
                if in_range(version, rng, scheme):
                    return True, ""
            except VersionUndecidable as exc:
                why = str(exc)
    return False, why


def affected_components(
    sbom: Sbom, advisories: Iterable[Advisory]
) -> list[tuple[SbomComponent, Advisory]]:
    """Every (component, advisory) pair where the component's version is affected."""
    return list(match(sbom, advisories).affected)
