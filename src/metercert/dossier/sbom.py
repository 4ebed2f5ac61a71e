"""Read a software bill of materials (CycloneDX JSON/XML via cyclonedx-python-lib,
or SPDX 2.x JSON) into the few facts the checks need.

Parsing is delegated to cyclonedx-python-lib so that what we accept is what the
CycloneDX tooling accepts; XML goes through defusedxml first. A document that
does not parse raises :class:`SbomError`; the loader keeps its message as the
artefact's problem because an unreadable SBOM is a finding, not a tool error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import defusedxml.ElementTree as SafeET

from metercert import safeload
from metercert.dossier.model import Sbom, SbomComponent
from metercert.errors import InputFileError


class SbomError(Exception):
    """The SBOM file is not a CycloneDX or SPDX document we can read."""


def read_sbom(path: Path) -> Sbom:
    try:
        raw = safeload.read_bytes(path, what="SBOM", max_bytes=safeload.MAX_DOCUMENT_BYTES)
    except OSError as exc:
        raise SbomError(f"cannot read: {exc.strerror or exc.__class__.__name__}") from None
    except InputFileError as exc:  # a pipe, a device, too large
        raise SbomError(str(exc).rpartition(": ")[2]) from None
    text = raw.lstrip()
    if text.startswith(b"<"):
        return _cyclonedx_xml(path)
    try:
        data = json.loads(raw, object_pairs_hook=safeload.no_duplicate_keys)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SbomError(f"not JSON or XML: {exc}") from None
    except ValueError as exc:  # a key twice in one object
        raise SbomError(f"not usable JSON: {exc}") from None
    except RecursionError:
        raise SbomError("JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise SbomError("top level must be a JSON object")
    if data.get("bomFormat") == "CycloneDX":
        return _cyclonedx_json(data)
    if "spdxVersion" in data:
        return _spdx_json(data)
    raise SbomError("neither CycloneDX (bomFormat) nor SPDX (spdxVersion)")


def _cyclonedx_json(data: dict[str, Any]) -> Sbom:
    from cyclonedx.model.bom import Bom

    try:
        bom = Bom.from_json(data)  # type: ignore[attr-defined]
    except Exception as exc:  # noqa: BLE001 - the library raises many types for bad input
        raise SbomError(f"CycloneDX JSON does not parse: {exc.__class__.__name__}: {exc}") from None
    return Sbom("CycloneDX JSON", _from_bom(bom))


def _cyclonedx_xml(path: Path) -> Sbom:
    from cyclonedx.model.bom import Bom

    try:
        root = SafeET.parse(str(path)).getroot()
    except Exception as exc:  # noqa: BLE001 - defusedxml and expat raise several types
        raise SbomError(f"XML does not parse: {exc.__class__.__name__}: {exc}") from None
    namespace = root.tag[1:].split("}")[0] if root.tag.startswith("{") else None
    try:
        bom = Bom.from_xml(root, default_namespace=namespace)  # type: ignore[attr-defined]
    except Exception as exc:  # noqa: BLE001 - the library raises many types for bad input
        raise SbomError(f"CycloneDX XML does not parse: {exc.__class__.__name__}: {exc}") from None
    return Sbom("CycloneDX XML", _from_bom(bom))


def _from_bom(bom: Any) -> tuple[SbomComponent, ...]:
    out = []
    components = list(bom.components)
    if bom.metadata is not None and bom.metadata.component is not None:
        components.insert(0, bom.metadata.component)
    seen: set[int] = set()
    stack = list(components)
    while stack:
        comp = stack.pop(0)
        if id(comp) in seen:
            continue
        seen.add(id(comp))
        stack.extend(comp.components or [])
        sha256 = ""
        for h in comp.hashes or []:
            if str(getattr(h.alg, "value", h.alg)).upper().replace("-", "") == "SHA256":
                sha256 = str(h.content).lower()
        out.append(
            SbomComponent(
                name=comp.name or "",
                version=comp.version or "",
                purl=comp.purl.to_string() if comp.purl is not None else "",
                cpe=comp.cpe or "",
                ref=str(comp.bom_ref.value) if comp.bom_ref and comp.bom_ref.value else "",
                sha256=sha256,
                type=str(getattr(comp.type, "value", comp.type) or ""),
            )
        )
    return tuple(out)


def _spdx_json(data: dict[str, Any]) -> Sbom:
    packages = data.get("packages")
    if not isinstance(packages, list):
        raise SbomError("SPDX document has no 'packages' list")
    out = []
    for i, pkg in enumerate(packages):
        if not isinstance(pkg, dict):
            raise SbomError(f"SPDX packages[{i}] is not an object")
        purl = cpe = sha256 = ""
        for ref in pkg.get("externalRefs") or []:
            kind = str(ref.get("referenceType", "")).lower()
            if kind == "purl":
                purl = str(ref.get("referenceLocator", ""))
            elif kind.startswith("cpe"):
                cpe = str(ref.get("referenceLocator", ""))
        for checksum in pkg.get("checksums") or []:
            if str(checksum.get("algorithm", "")).upper().replace("-", "") == "SHA256":
                sha256 = str(checksum.get("checksumValue", "")).lower()
        out.append(
            SbomComponent(
                name=str(pkg.get("name", "")),
                version=str(pkg.get("versionInfo", "")),
                purl=purl,
                cpe=cpe,
                ref=str(pkg.get("SPDXID", "")),
                sha256=sha256,
                type=str(pkg.get("primaryPackagePurpose", "")).lower(),
            )
        )
    return Sbom("SPDX JSON", tuple(out))
