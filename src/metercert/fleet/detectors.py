"""Detector metadata, SQL loading and the finding value type.

The detection logic lives in ``sql/*.sql`` and is the same text for every
engine; this module only says what each finding kind means (severity, catalog
requirements), renders the ``${name}`` parameters and turns engine rows into
:class:`Finding` values that compare equal across engines.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from metercert.errors import UsageError

THREAT = "replay"
EVIDENCE_CAP = 200  # ids kept per finding; ``n`` keeps the full count


@dataclass(frozen=True)
class KindInfo:
    kind: str
    severity: str
    title: str
    requirements: tuple[str, ...]


KIND_INFO: dict[str, KindInfo] = {k.kind: k for k in (
    KindInfo("ic-reuse", "critical", "Invocation counter reused under one key",
             ("DLMS:IC-UNIQUE",)),
    KindInfo("ic-regression", "high", "Invocation counter went backwards",
             ("DLMS:IC-PERSIST", "DLMS:IC-REPLAY")),
    KindInfo("replay", "high", "Ciphered APDU seen twice (replay)", ("DLMS:IC-REPLAY",)),
    KindInfo("plaintext", "high", "Unauthenticated APDU in a protected association",
             ("DLMS:POLICY-ENFORCED",)),
    KindInfo("suite-downgrade", "high", "Lower security suite than the meter's usual",
             ("DLMS:SUITE-DOWNGRADE",)),
    KindInfo("ic-exhaustion", "medium", "Invocation counter close to its 32-bit limit",
             ("DLMS:IC-UNIQUE",)),
    KindInfo("ic-gap", "low", "Invocation counter jumped", ("DLMS:IC-PERSIST",)),
    KindInfo("sc-downgrade", "high", "Less protection than before under the same suite",
             ("DLMS:SUITE-DOWNGRADE", "DLMS:POLICY-ENFORCED")),
    KindInfo("encryption-only", "high", "Ciphered APDUs without authentication",
             ("DLMS:POLICY-ENFORCED",)),
    KindInfo("tag-failure", "high", "Authentication tag fails with the key file's keys",
             ("DLMS:POLICY-ENFORCED",)),
    KindInfo("shared-space", "critical", "Client and meter share one title and key",
             ("DLMS:IC-UNIQUE",)),
    KindInfo("duplicate-title", "high", "One system title used by two devices at once",
             ("DLMS:IC-UNIQUE",)),
)}
KINDS: tuple[str, ...] = tuple(KIND_INFO)

DEFAULT_PARAMS: dict[str, int] = {
    "gap_threshold": 1_000_000,
    "exhaustion_margin": 1 << 24,
}

STAGES: tuple[str, ...] = ("pairs", "suspects", "seq_rows", "replayed", "copies", "titles")
DETECTORS: tuple[str, ...] = ("ic_reuse", "replay", "counter_sequence", "plaintext",
                              "suite_downgrade", "ic_exhaustion", "encryption_only",
                              "tag_failure", "shared_space", "duplicate_title")

FINDING_COLUMNS = ("kind", "severity", "meter_id", "system_title", "direction", "key_set",
                   "key_id", "ts", "ref_ts", "value", "ref_value", "n", "assoc_id", "ref_assoc_id",
                   "evidence_ids", "detail", "requirements", "threat")


def load_sql(name: str) -> str:
    return resources.files("metercert.fleet").joinpath("sql", f"{name}.sql").read_text("utf-8")


def render_sql(name: str, params: Mapping[str, int] | None = None) -> str:
    """The SQL of one detector or stage with its ``${name}`` parameters filled in."""
    values = {**DEFAULT_PARAMS, **(params or {})}
    for key, val in values.items():
        if not isinstance(val, int) or isinstance(val, bool) or val < 0:
            raise UsageError(f"detector parameter {key} must be a non-negative integer")
    try:
        return string.Template(load_sql(name)).substitute({k: str(v) for k, v in values.items()})
    except KeyError as exc:
        raise UsageError(f"detector {name}: unknown parameter {exc.args[0]}") from None


_EVIDENCE_AGG = re.compile(r"array_agg\((DISTINCT )?([^()]*)\) AS evidence_ids")
_CAPPED = {
    # the EVIDENCE_CAP smallest ids, which is what finding_from_row keeps: a finding over
    # millions of rows hands back 200 ids, not millions (n keeps the full count). A
    # detector whose groups can hold one id twice says array_agg(DISTINCT id).
    "duckdb": (f"min(\\2, {EVIDENCE_CAP}) AS evidence_ids",
               f"min(DISTINCT \\2, {EVIDENCE_CAP}) AS evidence_ids"),
    "spark": (f"slice(array_sort(collect_list(\\2)), 1, {EVIDENCE_CAP}) AS evidence_ids",
              f"slice(array_sort(collect_set(\\2)), 1, {EVIDENCE_CAP}) AS evidence_ids"),
}


def for_engine(sql: str, engine: str) -> str:
    """One detector text in one engine's dialect: the only rewrite is the evidence cap.

    ``array_agg([DISTINCT] x) AS evidence_ids`` becomes that engine's spelling of "the
    EVIDENCE_CAP smallest x" (DuckDB's top-n ``min(x, n)``, Spark's sorted slice); the
    detector logic stays the one text that both engines run.
    """
    if engine not in _CAPPED:
        return sql
    plain, distinct = _CAPPED[engine]
    return _EVIDENCE_AGG.sub(lambda m: m.expand(distinct if m.group(1) else plain), sql)


@dataclass(frozen=True)
class Finding:
    """One detector hit: what, where, when, and the row ids that prove it."""

    kind: str
    severity: str
    meter_id: str
    system_title: str | None
    direction: str | None
    key_set: str | None
    ts: datetime
    ref_ts: datetime | None
    value: int | None
    ref_value: int | None
    n: int
    assoc_id: str | None
    ref_assoc_id: str | None
    evidence_ids: tuple[int, ...]
    detail: str
    requirements: tuple[str, ...]
    threat: str = THREAT
    key_id: str | None = None

    @property
    def space(self) -> str | None:
        """The counter space: sender system title and key identity."""
        if self.key_id is None:
            return None
        return f"{self.system_title or '?'} under {self.key_id}"

    def key(self) -> tuple[Any, ...]:
        """Identity used to compare engines and ground truth (no free text)."""
        return (self.kind, self.meter_id, self.system_title, self.direction, self.key_set,
                self.key_id, self.ts, self.value, self.ref_value, self.n, self.evidence_ids)

    def to_record(self) -> dict[str, Any]:
        rec = asdict(self)
        rec["evidence_ids"] = list(self.evidence_ids)
        rec["requirements"] = list(self.requirements)
        return rec


def _utc(value: Any) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise TypeError(f"expected a timestamp, got {type(value).__name__}")
    # Spark hands back naive local times; DuckDB aware ones.
    return value.astimezone(UTC) if value.tzinfo else value.astimezone().astimezone(UTC)


def _detail(kind: str, r: Mapping[str, Any]) -> str:
    """What was seen, where (counter space, identity) and why it matters."""
    v, rv, n = r.get("value"), r.get("ref_value"), r.get("n")
    d = r.get("direction") or "?"
    space = f"space {r.get('system_title') or '?'} under {r.get('key_id') or '-'}"
    who = f"meter {r.get('meter_id')}"
    if kind == "ic-reuse":
        how = ("the same ciphertext re-sent after the sender restarted its counters"
               if rv == 1 else f"{n} different ciphertexts")
        return (f"counter {v} used twice ({how}, {d}) in {space}, {who}: the GCM nonce "
                "repeated under one key, so confidentiality and integrity of these APDUs "
                "are lost")
    if kind == "ic-regression":
        step = ("across associations " f"{r.get('ref_assoc_id')} -> {r.get('assoc_id')}"
                if r.get("assoc_id") != r.get("ref_assoc_id") else
                f"within association {r.get('assoc_id')}")
        return (f"{d} counter fell from {rv} to {v} {step} in {space}, {who}: counters "
                "not kept (reboot, restore or a clone) lead to nonce reuse and accepted replays")
    if kind == "ic-gap":
        return f"{d} counter jumped from {rv} to {v} (+{(v or 0) - (rv or 0)}) in {space}, {who}"
    if kind == "replay":
        where = (f"on {rv} meters ({r.get('meter_id')} and {r.get('other_meter_id')}): "
                 "an APDU for one meter injected to another" if (rv or 0) > 1 else who)
        return (f"same ciphered {d} APDU (counter {v}) seen {n} times, {where}, in {space}: "
                "the path lets old APDUs be injected; a receiver without a counter check "
                "would act on them")
    if kind == "plaintext":
        return (f"{n} unauthenticated APDU(s) in protected association {r.get('assoc_id')}, "
                f"{who}: the security policy is not enforced for every request")
    if kind == "suite-downgrade":
        return (f"{n} APDU(s) under suite {v} after suite {rv} in {space}, {who}: a weaker "
                "suite than the one already in use (downgrade)")
    if kind == "sc-downgrade":
        return (f"{n} APDU(s) with security control protection 0x{v or 0:02X} after 0x"
                f"{rv or 0:02X} in {space}, {who}: authentication or encryption dropped")
    if kind == "ic-exhaustion":
        return (f"{d} counter reached {v}, above the re-key threshold {rv}, in {space}, {who}: "
                "it will wrap and repeat nonces unless re-keyed")
    if kind == "encryption-only":
        return (f"{n} APDU(s) encrypted without authentication (SC 0x{v or 0:02X}) in "
                f"association {r.get('assoc_id')}, {who}: GCM without its tag is malleable")
    if kind == "tag-failure":
        return (f"{n} APDU(s) whose tag fails with the key file's keys in {space}, {who}: "
                "tampering, or a key file that does not match the meter")
    if kind == "shared-space":
        return (f"{space} is used by both client and meter ({n} APDUs), {who}: one system "
                "title and one key for two senders, so their counters share one GCM nonce "
                "space and repeat each other's nonces")
    if kind == "duplicate-title":
        return (f"system title {r.get('system_title')} sent from {v} endpoints at once "
                f"({r.get('assoc_id')} and {r.get('ref_assoc_id')}): two devices share one "
                "identity (a clone, or a title assigned twice)")
    return ""


def finding_from_row(row: Mapping[str, Any]) -> Finding:
    kind = str(row["kind"])
    info = KIND_INFO[kind]
    ids = {int(i) for i in (row.get("evidence_ids") or ()) if i is not None}
    for extra in ("row_id", "ref_row_id"):
        if row.get(extra) is not None:
            ids.add(int(row[extra]))
    n = row.get("n")
    n = len(ids) if n is None else int(n)
    ts = _utc(row.get("ts"))
    assert ts is not None
    return Finding(
        kind=kind, severity=info.severity, meter_id=str(row["meter_id"]),
        system_title=row.get("system_title"), direction=row.get("direction"),
        key_set=row.get("key_set"), ts=ts, ref_ts=_utc(row.get("ref_ts")),
        value=None if row.get("value") is None else int(row["value"]),
        ref_value=None if row.get("ref_value") is None else int(row["ref_value"]),
        n=n, assoc_id=row.get("assoc_id"), ref_assoc_id=row.get("ref_assoc_id"),
        evidence_ids=tuple(sorted(ids)[:EVIDENCE_CAP]),
        detail=_detail(kind, {**row, "n": n}), requirements=info.requirements,
        key_id=row.get("key_id"),
    )


def sort_findings(findings: list[Finding]) -> list[Finding]:
    order = {k: i for i, k in enumerate(KINDS)}
    return sorted(findings, key=lambda f: (order[f.kind], f.ts, f.meter_id, f.evidence_ids))
