"""Load a device dossier YAML file and the artefacts it points at.

Structure errors (bad YAML, unknown or mistyped fields, a file reference that
leaves the dossier's folder) are the user's input problem and raise one
:class:`InputFileError` with file and line. Content problems of the artefacts
(the SBOM does not parse, the signature file is missing) are kept on the
returned :class:`Dossier` for the checks to judge, because they are findings
about the product.

File references are relative to the dossier's folder. A reference that is
absolute or escapes the folder (``../``) is refused unless the dossier sets
``allow_absolute_paths: true``: a dossier is often received from a vendor and
must not make the tool read arbitrary files of the lab's machine.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from metercert.dossier.audit import parse_lines
from metercert.dossier.model import (
    DEBUG_STATES,
    PASSWORD_POLICIES,
    Artifact,
    AuditRecord,
    Dossier,
    FirmwareEntry,
    ManualReview,
    Sbom,
)
from metercert.dossier.osv import read_osv
from metercert.dossier.sbom import SbomError, read_sbom
from metercert.dossier.yamldoc import YamlDocument, dotted_path, read_yaml, validate
from metercert.errors import InputFileError

DEFAULT_PATCH_LIMIT_DAYS = 90  # the seed's figure; a policy default, not a CRA number
DEFAULT_REQUIRED_KEYS = ("GUEK", "GBEK", "AK", "KEK")
#: An advisory export older than this is not evidence of "no known vulnerability" today.
DEFAULT_ADVISORY_MAX_AGE_DAYS = 30

_STR = {"type": "string"}
_FILE = {"type": "string", "minLength": 1}
_NUM = {"type": "number", "minimum": 0}

DOSSIER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["dossier_version", "meter"],
    "additionalProperties": False,
    "properties": {
        "dossier_version": {"const": 1},
        "allow_absolute_paths": {"type": "boolean"},
        "meter": {
            "type": "object",
            "required": ["manufacturer", "model"],
            "additionalProperties": False,
            "properties": {
                "manufacturer": _STR,
                "model": _STR,
                "hardware_version": _STR,
                "firmware_version": _STR,
            },
        },
        "sbom": _FILE,
        "advisories": _FILE,
        "advisories_retrieved": {},
        "advisories_max_age_days": {"type": "integer", "minimum": 1},
        "firmware_trust_anchor": _FILE,
        "reviews": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["requirement", "verdict", "reviewer", "date"],
                "additionalProperties": False,
                "properties": {
                    "requirement": {"type": "string", "pattern": r"^\S+:\S+$"},
                    "verdict": {"enum": ["pass", "fail", "not-applicable"]},
                    "reviewer": {"type": "string", "minLength": 1},
                    "date": {},
                    "note": _STR,
                    "documents": {"type": "array", "items": _STR},
                },
            },
        },
        "firmware": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["image"],
                "additionalProperties": False,
                "properties": {
                    "image": _FILE,
                    "signature": _FILE,
                    "certificate": _FILE,
                    "sbom_component": _STR,
                    "chain": {"type": "array", "items": _FILE},
                    "signed_at": {},
                },
            },
        },
        "debug_interfaces": {
            "type": "object",
            "additionalProperties": {"enum": list(DEBUG_STATES)},
        },
        "credentials": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "default_password": {"enum": list(PASSWORD_POLICIES)},
                "per_device_secrets": {"type": "boolean"},
            },
        },
        "patch_policy": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "days_disclosure_to_fix": {"type": "integer", "minimum": 0},
                "limit_days": {"type": "integer", "minimum": 1},
            },
        },
        "support_period": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"end_date": {}, "start_date": {}, "published_at": _STR,
                           "expected_use_years": {"type": "number", "exclusiveMinimum": 0}},
        },
        "cvd": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"policy_url": _STR, "contact": _STR},
        },
        "incident_notification": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "early_warning_hours": _NUM,
                "notification_hours": _NUM,
                "final_report_days": _NUM,
                "severe_incident_final_report_days": _NUM,
                "contact": _STR,
            },
        },
        "key_injection": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "audit_log": _FILE,
                "devices": {"type": "array", "items": {"type": ["string", "integer"]}},
                "required_keys": {"type": "array", "items": _STR, "minItems": 1},
            },
        },
        "end_of_life": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"key_destruction": _FILE},
        },
        "security_logging": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "events": {"type": "array", "items": _STR},
                "retention_days": {"type": "integer", "minimum": 0},
                "log_object": _STR,
            },
        },
    },
}


class _Resolver:
    def __init__(self, doc: YamlDocument, allow_absolute: bool) -> None:
        self.doc = doc
        self.folder = doc.path.parent.resolve()
        self.allow_absolute = allow_absolute

    def artifact(self, where: list[str | int], reference: str) -> Artifact:
        ref_path = Path(reference)
        target = (ref_path if ref_path.is_absolute() else self.folder / ref_path).resolve()
        inside = target == self.folder or self.folder in target.parents
        if not inside and not self.allow_absolute:
            raise self.doc.error(
                where,
                f"file reference {reference!r} leaves the dossier folder "
                "(set allow_absolute_paths: true to allow it)",
            )
        field = dotted_path(where)
        if not target.exists():
            return Artifact(field, reference, target, "file not found")
        if not target.is_file():
            return Artifact(field, reference, target, "not a regular file")
        return Artifact(field, reference, target)


def _as_date(doc: YamlDocument, where: list[str | int], value: Any) -> dt.date | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    raise doc.error(where, f"expected a date YYYY-MM-DD, found {value!r}")


def d_cite(doc: YamlDocument, where: list[str | int]) -> str:
    return f"{doc.path.name}:{doc.line_of(where)} {dotted_path(where)}"


def _as_moment(doc: YamlDocument, where: list[str | int], value: Any) -> dt.datetime | None:
    """A UTC moment from a YAML timestamp or date (a date means its midnight UTC)."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, str):
        try:
            moment = dt.datetime.fromisoformat(value)
        except ValueError:
            raise doc.error(where, f"expected a timestamp (2026-01-15T10:00:00Z), found {value!r}") from None
        return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    day = _as_date(doc, where, value)
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC) if day else None


def load_dossier(path: str | Path) -> Dossier:
    """Read ``path`` (a dossier YAML file, or a folder holding ``dossier.yaml``)."""
    p = Path(path)
    if p.is_dir():
        p = p / "dossier.yaml"
    doc = read_yaml(p, placeholders=True)  # a template's examples stay marked
    if not isinstance(doc.data, dict):
        raise InputFileError(f"{p}:1: a dossier must be a YAML mapping")
    validate(doc, DOSSIER_SCHEMA)
    data: dict[str, Any] = doc.data
    res = _Resolver(doc, bool(data.get("allow_absolute_paths", False)))

    sbom_file = res.artifact(["sbom"], data["sbom"]) if "sbom" in data else None
    sbom: Sbom | None = None
    if sbom_file is not None and sbom_file.usable:
        try:
            sbom = read_sbom(sbom_file.path)
        except SbomError as exc:
            sbom_file = Artifact(sbom_file.field, sbom_file.reference, sbom_file.path, str(exc))

    advisories_file = res.artifact(["advisories"], data["advisories"]) if "advisories" in data else None
    if advisories_file is not None and not advisories_file.usable:
        raise doc.error(["advisories"], f"advisory file {advisories_file.reference!r}: {advisories_file.problem}")
    advisories = read_osv(advisories_file.path) if advisories_file is not None else ()

    firmware = []
    for i, fw in enumerate(data.get("firmware", []) or []):
        base: list[str | int] = ["firmware", i]
        firmware.append(
            FirmwareEntry(
                image=res.artifact(base + ["image"], fw["image"]),
                signature=res.artifact(base + ["signature"], fw["signature"]) if "signature" in fw else None,
                certificate=res.artifact(base + ["certificate"], fw["certificate"]) if "certificate" in fw else None,
                sbom_component=str(fw.get("sbom_component", "")),
                index=i,
                chain=tuple(res.artifact(base + ["chain", j], ref) for j, ref in enumerate(fw.get("chain", []))),
                signed_at=_as_moment(doc, base + ["signed_at"], fw.get("signed_at")),
            )
        )

    creds = data.get("credentials", {}) or {}
    patch = data.get("patch_policy", {}) or {}
    support = data.get("support_period", {}) or {}
    cvd = data.get("cvd", {}) or {}
    incident = data.get("incident_notification", {}) or {}
    keys = data.get("key_injection", {}) or {}
    eol = data.get("end_of_life", {}) or {}
    logging = data.get("security_logging", {}) or {}

    audit_log = res.artifact(["key_injection", "audit_log"], keys["audit_log"]) if "audit_log" in keys else None
    audit_records: tuple[AuditRecord, ...] = ()
    if audit_log is not None and audit_log.usable:
        try:
            text = audit_log.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            audit_log = Artifact(audit_log.field, audit_log.reference, audit_log.path, f"cannot read: {exc.__class__.__name__}")
        else:
            parsed, bad = parse_lines(text)
            if bad:
                audit_log = Artifact(
                    audit_log.field, audit_log.reference, audit_log.path,
                    f"line {bad[0].line}: {bad[0].problem}",
                )
            audit_records = tuple(AuditRecord(n, r) for n, r in parsed)

    meter = data["meter"]
    return Dossier(
        doc=doc,
        folder=res.folder,
        manufacturer=str(meter.get("manufacturer", "")),
        model=str(meter.get("model", "")),
        firmware_version=str(meter.get("firmware_version", "")),
        sbom_file=sbom_file,
        sbom=sbom,
        advisories_file=advisories_file,
        advisories=advisories,
        firmware=tuple(firmware),
        debug_interfaces={str(k).lower(): str(v) for k, v in (data.get("debug_interfaces") or {}).items()},
        default_password=creds.get("default_password"),
        per_device_secrets=creds.get("per_device_secrets"),
        patch_days=patch.get("days_disclosure_to_fix"),
        patch_limit_days=int(patch.get("limit_days", DEFAULT_PATCH_LIMIT_DAYS)),
        support_end=_as_date(doc, ["support_period", "end_date"], support.get("end_date")),
        cvd_policy_url=str(cvd.get("policy_url", "")),
        cvd_contact=str(cvd.get("contact", "")),
        early_warning_hours=incident.get("early_warning_hours"),
        notification_hours=incident.get("notification_hours"),
        final_report_days=incident.get("final_report_days"),
        audit_log=audit_log,
        audit_records=audit_records,
        audit_devices=tuple(str(d) for d in keys.get("devices", []) or []),
        audit_required_keys=tuple(keys.get("required_keys", DEFAULT_REQUIRED_KEYS)),
        eol_procedure=res.artifact(["end_of_life", "key_destruction"], eol["key_destruction"]) if "key_destruction" in eol else None,
        logging_events=tuple(logging.get("events", []) or []),
        logging_retention_days=logging.get("retention_days"),
        severe_incident_final_report_days=incident.get("severe_incident_final_report_days"),
        support_start=_as_date(doc, ["support_period", "start_date"], support.get("start_date")),
        support_expected_use_years=support.get("expected_use_years"),
        advisories_retrieved=_as_date(doc, ["advisories_retrieved"], data.get("advisories_retrieved")),
        advisories_max_age_days=int(data.get("advisories_max_age_days", DEFAULT_ADVISORY_MAX_AGE_DAYS)),
        reviews=tuple(
            ManualReview(
                requirement=str(r["requirement"]), verdict=str(r["verdict"]), reviewer=str(r["reviewer"]),
                date=_as_date(doc, ["reviews", i, "date"], r["date"]), note=str(r.get("note", "")),
                documents=tuple(str(x) for x in r.get("documents", [])),
                source=d_cite(doc, ["reviews", i]),
            )
            for i, r in enumerate(data.get("reviews", []) or [])
        ),
        firmware_trust_anchor=(res.artifact(["firmware_trust_anchor"], data["firmware_trust_anchor"])
                               if "firmware_trust_anchor" in data else None),
    )
