"""The key-injection audit trail: a hash-chained JSON-lines log.

Each line records one key injected into one meter at the factory:
``serial``, ``key_id`` (GUEK, GBEK, AK, KEK ...), ``hsm_attestation`` (the HSM's
attestation reference for the operation), ``timestamp`` (ISO 8601), ``prev_hash``
(the previous line's ``hash``; 64 zeros on the first line) and ``hash``.

``hash`` is the SHA-256 hex digest of the record without its ``hash`` field,
serialised as JSON with sorted keys, separators ``,`` and ``:`` and UTF-8. A line
that was edited, removed or reordered breaks the chain at that point, which is
what lets an auditor trust that every meter got its keys under HSM control.
The log never holds key values, only key ids.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

GENESIS = "0" * 64
FIELDS = ("serial", "key_id", "hsm_attestation", "timestamp", "prev_hash", "hash")


def record_hash(record: Mapping[str, Any]) -> str:
    body = {k: v for k, v in record.items() if k != "hash"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def chain(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Fill in ``prev_hash`` and ``hash`` for records in order (used to write logs)."""
    out = []
    prev = GENESIS
    for rec in records:
        item = {k: v for k, v in rec.items() if k not in ("prev_hash", "hash")}
        item["prev_hash"] = prev
        item["hash"] = record_hash(item)
        prev = item["hash"]
        out.append(item)
    return out


@dataclass(frozen=True)
class ChainFinding:
    line: int
    problem: str


@dataclass(frozen=True)
class AuditVerdict:
    findings: tuple[ChainFinding, ...]
    records: int
    devices_covered: tuple[str, ...]
    missing: tuple[str, ...]  # "SERIAL:KEY" pairs without a record

    @property
    def ok(self) -> bool:
        return not self.findings and not self.missing


def parse_lines(text: str) -> tuple[list[tuple[int, dict[str, Any]]], list[ChainFinding]]:
    """Records with their 1-based line numbers, and lines that are not JSON objects."""
    records, problems = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(ChainFinding(number, f"not JSON ({exc.msg})"))
            continue
        if not isinstance(value, dict):
            problems.append(ChainFinding(number, "not a JSON object"))
            continue
        records.append((number, value))
    return records, problems


def verify_chain(
    records: Sequence[tuple[int, Mapping[str, Any]]],
    devices: Sequence[str],
    required_keys: Sequence[str],
) -> AuditVerdict:
    """Check every link and that each listed device has each required key recorded."""
    findings: list[ChainFinding] = []
    prev = GENESIS
    last_time: dt.datetime | None = None
    seen: set[tuple[str, str]] = set()
    for number, rec in records:
        missing_fields = [f for f in FIELDS if f not in rec or rec[f] in ("", None)]
        if missing_fields:
            findings.append(ChainFinding(number, f"missing {', '.join(missing_fields)}"))
        if rec.get("prev_hash") != prev:
            findings.append(ChainFinding(number, "prev_hash does not match the previous line's hash"))
        if rec.get("hash") != record_hash(rec):
            findings.append(ChainFinding(number, "hash does not match the line's content"))
        prev = str(rec.get("hash", ""))
        try:
            moment = dt.datetime.fromisoformat(str(rec.get("timestamp", "")))
        except ValueError:
            findings.append(ChainFinding(number, "timestamp is not ISO 8601"))
        else:
            if moment.tzinfo is None:
                findings.append(ChainFinding(number, "timestamp has no time zone"))
            elif last_time is not None and moment < last_time:
                findings.append(ChainFinding(number, "timestamp earlier than the previous line"))
            else:
                last_time = moment
        seen.add((str(rec.get("serial", "")), str(rec.get("key_id", ""))))
    missing = tuple(f"{d}:{k}" for d in devices for k in required_keys if (d, k) not in seen)
    covered = tuple(d for d in devices if all((d, k) in seen for k in required_keys))
    return AuditVerdict(tuple(findings), len(records), covered, missing)
