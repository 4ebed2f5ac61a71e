"""Load and validate the catalog data files.

Every file is checked against a JSON schema when it is read, and the files are
then checked against each other (threat ids exist, ids carry their framework's
prefix, no id is defined twice, the coverage table is complete). Any problem is
one :class:`InputFileError` naming the file and the line, so an edited catalog
that is wrong never half-loads.
"""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from metercert.catalog.model import (
    COVERAGE_STATUSES,
    EVIDENCE_KINDS,
    PRODUCT_KINDS,
    STATUSES,
    Catalog,
    Coverage,
    CoverageCell,
    CoverageColumn,
    Framework,
    Misstatement,
    Requirement,
    Threat,
)
from metercert.dossier.yamldoc import read_yaml, validate
from metercert.errors import InputFileError, UsageError

_ID = {"type": "string", "minLength": 1, "pattern": r"^\S+$"}
_TEXT = {"type": "string", "minLength": 1}

THREATS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["threats"],
    "additionalProperties": False,
    "properties": {
        "threats": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["id", "title"],
                "additionalProperties": False,
                "properties": {"id": _ID, "title": _TEXT, "description": {"type": "string"}},
            },
        }
    },
}

FRAMEWORK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["framework", "requirements"],
    "additionalProperties": False,
    "properties": {
        "framework": {
            "type": "object",
            "required": ["id", "name", "short"],
            "additionalProperties": False,
            "properties": {
                "id": _ID, "name": _TEXT, "short": _TEXT,
                "versions": {"type": "array", "minItems": 1, "items": _ID},
                "default_version": _ID,
                "version_env": _ID,
            },
        },
        "requirements": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["id", "title", "status", "evidence", "threats"],
                "additionalProperties": False,
                "properties": {
                    "id": _ID,
                    "title": _TEXT,
                    "status": {"enum": list(STATUSES)},
                    "evidence": {
                        "type": "array",
                        "minItems": 1,
                        "uniqueItems": True,
                        "items": {"enum": list(EVIDENCE_KINDS)},
                    },
                    "threats": {"type": "array", "items": _ID},
                    "verify": {"type": "boolean"},
                    "applies_to": {"type": "array", "minItems": 1, "items": {"enum": list(PRODUCT_KINDS)}},
                    "security_level": {"type": "integer", "minimum": 1, "maximum": 4},
                    "versions": {"type": "array", "minItems": 1, "items": _ID},
                    "supersedes": {"type": "array", "items": _ID},
                    "condition": _TEXT,
                },
            },
        },
    },
}

COVERAGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["columns", "cells"],
    "additionalProperties": False,
    "properties": {
        "columns": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["id", "title", "frameworks"],
                "additionalProperties": False,
                "properties": {
                    "id": _ID,
                    "title": _TEXT,
                    "frameworks": {"type": "array", "items": _ID},
                },
            },
        },
        "cells": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "additionalProperties": {
                    "type": "object",
                    "required": ["status", "text"],
                    "additionalProperties": False,
                    "properties": {"status": {"enum": list(COVERAGE_STATUSES)}, "text": _TEXT},
                },
            },
        },
    },
}

MISSTATEMENTS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["misstatements"],
    "additionalProperties": False,
    "properties": {
        "misstatements": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "topic", "seed_claim", "correction"],
                "additionalProperties": False,
                "properties": {
                    "id": _ID,
                    "topic": _TEXT,
                    "seed_claim": _TEXT,
                    "correction": _TEXT,
                    "requirements": {"type": "array", "items": _ID},
                },
            },
        }
    },
}


def default_data_dir() -> Path:
    return Path(str(resources.files("metercert.catalog") / "data"))


CATALOG_DIR_ENV = "METERCERT_CATALOG_DIR"


#: Target IEC 62443 security level: requirements graded above it are left out.
SECURITY_LEVEL_ENV = "METERCERT_IEC62443_SL"
DEFAULT_SECURITY_LEVEL = 2


def load_catalog(
    data_dir: str | Path | None = None,
    *,
    versions: dict[str, str] | None = None,
    security_level: int | None = None,
) -> Catalog:
    """Load the catalog from ``data_dir``, else ``$METERCERT_CATALOG_DIR``, else the
    packaged data. A lab can thus correct a recalled fact ([verify] items) in its
    own copy of the data without patching the package. Loaded once per folder.

    ``versions`` chooses a framework's version (``{"EN303645": "3.1.3"}``; else the
    framework's ``version_env`` variable, e.g. ``$METERCERT_EN303645_VERSION``, else its
    default); ``security_level`` the IEC 62443 target SL (else ``$METERCERT_IEC62443_SL``,
    else 2): only requirements of the chosen version and up to that SL are in the catalog.
    """
    if data_dir is None:
        data_dir = os.environ.get(CATALOG_DIR_ENV) or default_data_dir()
    if security_level is None:
        raw = os.environ.get(SECURITY_LEVEL_ENV, "").strip()
        if raw and not (raw.isdigit() and 1 <= int(raw) <= 4):
            raise UsageError(f"${SECURITY_LEVEL_ENV} must be a security level 1..4, got {raw!r}")
        security_level = int(raw) if raw else DEFAULT_SECURITY_LEVEL
    if not 1 <= security_level <= 4:
        raise UsageError(f"IEC 62443 security level must be 1..4, got {security_level}")
    chosen = tuple(sorted((versions or {}).items()))
    return _load_cached(Path(data_dir).resolve(), chosen, security_level, _version_env_snapshot())


def _version_env_snapshot() -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in os.environ.items()
                        if k.startswith("METERCERT_") and k.endswith("_VERSION")))


def catalog_digest(data_dir: str | Path | None = None) -> str:
    """SHA-256 over the catalog data files (relative names and bytes, in name order): the
    catalog version a report or evidence bundle names, so a verdict can be traced to the
    exact requirement texts and mappings it was judged with."""
    base = Path(data_dir or os.environ.get(CATALOG_DIR_ENV) or default_data_dir())
    digest = hashlib.sha256()
    for path in sorted(p for p in base.rglob("*.yaml") if p.is_file()):
        digest.update(path.relative_to(base).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


@lru_cache(maxsize=16)
def _load_cached(
    base: Path,
    chosen: tuple[tuple[str, str], ...] = (),
    security_level: int = DEFAULT_SECURITY_LEVEL,
    env: tuple[tuple[str, str], ...] = (),
) -> Catalog:
    wanted = dict(chosen)
    environment = dict(env)
    threats_doc = read_yaml(base / "threats.yaml")
    validate(threats_doc, THREATS_SCHEMA)
    threats = tuple(
        Threat(t["id"], t["title"], t.get("description", "")) for t in threats_doc.data["threats"]
    )
    threat_ids = {t.id for t in threats}

    frameworks: list[Framework] = []
    requirements: list[Requirement] = []
    seen: dict[str, str] = {}
    fw_files = sorted((base / "frameworks").glob("*.yaml"))
    if not fw_files:
        raise InputFileError(f"{base / 'frameworks'}: no framework files (*.yaml)")
    for path in fw_files:
        doc = read_yaml(path)
        validate(doc, FRAMEWORK_SCHEMA)
        fw_data = doc.data["framework"]
        fw_versions = tuple(fw_data.get("versions", ()))
        version = ""
        if fw_versions:
            version = (wanted.get(fw_data["id"]) or environment.get(fw_data.get("version_env", ""), "")
                       or fw_data.get("default_version", fw_versions[0]))
            if version not in fw_versions:
                raise UsageError(f"{fw_data['id']} version {version!r} is not in the catalog "
                                 f"(known: {', '.join(fw_versions)})")
        fw = Framework(fw_data["id"], fw_data["name"], fw_data["short"], fw_versions, version)
        if any(f.id == fw.id for f in frameworks):
            raise doc.error(["framework", "id"], f"framework {fw.id} is defined twice")
        frameworks.append(fw)
        for i, item in enumerate(doc.data["requirements"]):
            rid = item["id"]
            if not rid.startswith(fw.id + ":"):
                raise doc.error(["requirements", i, "id"], f"id {rid} must start with '{fw.id}:'")
            if rid in seen:
                raise doc.error(["requirements", i, "id"], f"id {rid} already defined in {seen[rid]}")
            seen[rid] = str(path)
            for j, threat in enumerate(item["threats"]):
                if threat not in threat_ids:
                    raise doc.error(["requirements", i, "threats", j], f"unknown threat {threat!r}")
            for j, ver in enumerate(item.get("versions", [])):
                if ver not in fw_versions:
                    raise doc.error(["requirements", i, "versions", j], f"unknown {fw.id} version {ver!r}")
            if version and item.get("versions") and version not in item["versions"]:
                continue  # a provision of another version of the standard
            level = item.get("security_level")
            if level is not None and level > security_level:
                continue  # above the chosen target security level
            requirements.append(
                Requirement(
                    id=rid,
                    framework=fw.id,
                    title=item["title"],
                    status=item["status"],
                    evidence=tuple(item["evidence"]),
                    threats=tuple(item["threats"]),
                    verify=bool(item.get("verify", False)),
                    applies_to=tuple(item.get("applies_to", ("meter",))),
                    security_level=level,
                    versions=tuple(item.get("versions", ())),
                    supersedes=tuple(item.get("supersedes", ())),
                    condition=str(item.get("condition", "")),
                )
            )

    coverage = _load_coverage(base / "coverage.yaml", threat_ids, {f.id for f in frameworks})
    misstatements = _load_misstatements(base / "misstatements.yaml", set(seen))
    return Catalog(
        frameworks=tuple(frameworks),
        requirements=tuple(requirements),
        threats=threats,
        coverage=coverage,
        misstatements=misstatements,
    )


def _load_coverage(path: Path, threat_ids: set[str], framework_ids: set[str]) -> Coverage:
    doc = read_yaml(path)
    validate(doc, COVERAGE_SCHEMA)
    columns = []
    for i, col in enumerate(doc.data["columns"]):
        for j, fid in enumerate(col["frameworks"]):
            if fid not in framework_ids:
                raise doc.error(["columns", i, "frameworks", j], f"unknown framework {fid!r}")
        columns.append(CoverageColumn(col["id"], col["title"], tuple(col["frameworks"])))
    column_ids = [c.id for c in columns]
    cells: dict[str, dict[str, CoverageCell]] = {}
    for threat, row in doc.data["cells"].items():
        if threat not in threat_ids:
            raise doc.error(["cells", threat], f"unknown threat {threat!r}")
        if set(row) != set(column_ids):
            missing = sorted(set(column_ids) - set(row)) or sorted(set(row) - set(column_ids))
            raise doc.error(["cells", threat], f"row must have exactly the columns {column_ids} ({missing[0]!r})")
        cells[threat] = {c: CoverageCell(row[c]["status"], row[c]["text"]) for c in column_ids}
    missing_rows = sorted(threat_ids - set(cells))
    if missing_rows:
        raise doc.error(["cells"], f"no coverage row for threat {missing_rows[0]!r}")
    return Coverage(columns=tuple(columns), cells=cells)


def _load_misstatements(path: Path, requirement_ids: set[str]) -> tuple[Misstatement, ...]:
    doc = read_yaml(path)
    validate(doc, MISSTATEMENTS_SCHEMA)
    out = []
    for i, m in enumerate(doc.data["misstatements"]):
        for j, rid in enumerate(m.get("requirements", [])):
            if rid not in requirement_ids:
                raise doc.error(["misstatements", i, "requirements", j], f"unknown requirement {rid!r}")
        out.append(
            Misstatement(m["id"], m["topic"], m["seed_claim"], m["correction"], tuple(m.get("requirements", [])))
        )
    return tuple(out)
