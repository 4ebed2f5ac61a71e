"""Match SBOM components against an offline OSV export.

Test labs work offline and must be able to say which advisory data a verdict
rests on, so the user supplies the OSV records (a JSON list, an object with a
``vulns`` list, or one record) and the dossier names the file. A component is
affected when an advisory names its package (by purl without version, or by
name) and either lists its version or has a SEMVER / ECOSYSTEM range holding it.
GIT ranges need commit history and are ignored.

Version order is a plain one: numeric runs compare as numbers, other runs as
text, and a pre-release tag (``1.2.0-rc1``) sorts before its release. It is
right for the dotted versions of embedded components; exotic schemes should
list ``versions`` explicitly in the export.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from packageurl import PackageURL

from metercert.dossier.model import (
    Advisory,
    AffectedPackage,
    AffectedRange,
    Sbom,
    SbomComponent,
)
from metercert.errors import InputFileError


def read_osv(path: Path) -> tuple[Advisory, ...]:
    """Parse an OSV export; a malformed file is bad tool input (:class:`InputFileError`)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputFileError(f"{path}: advisory file not found") from None
    except json.JSONDecodeError as exc:
        raise InputFileError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None
    except (OSError, UnicodeDecodeError, RecursionError) as exc:
        raise InputFileError(f"{path}: cannot read: {exc.__class__.__name__}") from None
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
    for aff in rec.get("affected") or []:
        pkg = aff.get("package") or {}
        ranges = []
        for rng in aff.get("ranges") or []:
            introduced, fixed, last = "0", "", ""
            for event in rng.get("events") or []:
                introduced = str(event.get("introduced", introduced))
                fixed = str(event.get("fixed", fixed))
                last = str(event.get("last_affected", last))
            ranges.append(AffectedRange(str(rng.get("type", "")).upper(), introduced, fixed, last))
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
    )


_RUN = re.compile(r"\d+|[A-Za-z]+")


def version_key(version: str) -> tuple[tuple[int, int, str], ...]:
    """Sort key for dotted versions; see the module docstring for the rules."""
    core, _, pre = version.lstrip("vV").partition("-")
    parts = [(1, int(r), "") if r.isdigit() else (0, 0, r.lower()) for r in _RUN.findall(core)]
    parts += [(1, 0, "")] * max(0, 12 - len(parts))  # pad so that 1.2 == 1.2.0
    # a release sorts after its pre-releases
    tail = [(0, 0, "~" + pre.lower())] if pre else [(2, 0, "")]
    return tuple(parts + tail)


def _in_range(version: str, rng: AffectedRange) -> bool:
    if rng.kind not in ("SEMVER", "ECOSYSTEM"):
        return False
    key = version_key(version)
    if rng.introduced not in ("", "0") and key < version_key(rng.introduced):
        return False
    if rng.fixed:
        return key < version_key(rng.fixed)
    if rng.last_affected:
        return key <= version_key(rng.last_affected)
    return True


def _same_package(comp: SbomComponent, pkg: AffectedPackage) -> bool:
    if comp.purl and pkg.purl:
        try:
            a, b = PackageURL.from_string(comp.purl), PackageURL.from_string(pkg.purl)
        except ValueError:
            return False
        return (a.type, a.namespace or "", a.name) == (b.type, b.namespace or "", b.name)
    return bool(pkg.name) and pkg.name.lower() == comp.name.lower()


def affected_components(
    sbom: Sbom, advisories: Iterable[Advisory]
) -> list[tuple[SbomComponent, Advisory]]:
    """Every (component, advisory) pair where the component's version is affected."""
    hits = []
    for adv in advisories:
        for comp in sbom.components:
            if not comp.version:
                continue
            for pkg in adv.affected:
                if not _same_package(comp, pkg):
                    continue
                if comp.version in pkg.versions or any(_in_range(comp.version, r) for r in pkg.ranges):
                    hits.append((comp, adv))
                    break
    return hits
