"""Head-end logs (CSV or Parquet) into the fleet schema, through a column mapping.

A head-end exports one row per APDU with its own column names and conventions.
The mapping says which source column feeds which schema column, how directions
are spelled and how times are given. It comes from a YAML file
(``--mapping FILE``) and/or ``--map COLUMN=SOURCE`` options (the options win)::

    columns:                 # schema column: source column
      ts: event_time
      meter_id: meter_serial
      direction: dir
      system_title: sys_title      # 16 hex digits
      sc: security_control         # integer or hex ("0x30", "30h")
      ic: frame_counter
      apdu_tag: apdu_tag
      length: apdu_len
      ct_sha256: payload_sha256    # 64 hex digits
      assoc_id: session
    values:
      direction: {REQ: c2s, RSP: s2c}
    ts_unit: iso                   # iso (default), s, ms or us since 1970 UTC
    delimiter: ","                 # CSV only

Required: ``ts``, ``meter_id``, ``direction``. Derived when not mapped: ``suite``,
``key_set`` and ``authenticated`` from ``sc``; ``ciphered`` is true when ``sc`` is
present. Without a mapping file the schema's own column names are used.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from metercert.errors import InputFileError, UsageError
from metercert.fleet.schema import COLUMNS, table_from_rows

REQUIRED = ("ts", "meter_id", "direction")
MAPPABLE = tuple(c for c in COLUMNS if c not in ("id", "source", "space_key"))
_INT_COLUMNS = {"client_sap", "server_sap", "sc", "suite", "ic", "apdu_tag", "length",
                "plain_tag"}
_BOOL_COLUMNS = {"ciphered", "authenticated", "tag_ok"}
_TS_UNITS = {"iso": None, "s": 1, "ms": 1_000, "us": 1_000_000}


@dataclass(frozen=True)
class ColumnMapping:
    """Schema column -> source column, plus value spellings and the time unit."""

    columns: Mapping[str, str]
    values: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    ts_unit: str = "iso"
    delimiter: str = ","
    identity: bool = False  # no mapping given: the log uses the schema's column names

    @classmethod
    def load(cls, path: str | Path | None, options: Iterable[str] = ()) -> ColumnMapping:
        data: dict[str, Any] = {}
        where = "column mapping"
        if path is not None:
            p = Path(path)
            where = f"mapping {p}"
            try:
                text = p.read_text(encoding="utf-8")
            except FileNotFoundError:
                raise InputFileError(f"{where}: no such file") from None
            except OSError as exc:
                raise InputFileError(f"{where}: {exc.strerror}") from None
            except UnicodeDecodeError as exc:
                raise InputFileError(f"{where}: not UTF-8 text (byte {exc.start})") from None
            try:
                loaded = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                mark = getattr(exc, "problem_mark", None)
                line = f" at line {mark.line + 1}" if mark is not None else ""
                problem = getattr(exc, "problem", None) or "syntax error"
                raise InputFileError(f"{where}: invalid YAML{line}: {problem}") from None
            except (ValueError, TypeError, AttributeError, RecursionError) as exc:
                raise InputFileError(f"{where}: invalid YAML value ({exc.__class__.__name__})") from None
            if loaded is None:
                loaded = {}
            if not isinstance(loaded, dict):
                raise InputFileError(f"{where}: expected a mapping with a 'columns' section")
            data = loaded
        unknown = set(data) - {"columns", "values", "ts_unit", "delimiter"}
        if unknown:
            raise InputFileError(f"{where}: unknown section(s) {', '.join(sorted(unknown))}")
        cols = data.get("columns") or {}
        if not isinstance(cols, dict):
            raise InputFileError(f"{where}: 'columns' must map schema columns to source columns")
        columns = {str(k): str(v) for k, v in cols.items()}
        for opt in options:
            target, sep, source = opt.partition("=")
            if not sep or not target or not source:
                raise UsageError(f"--map {opt!r}: expected COLUMN=SOURCE")
            columns[target.strip()] = source.strip()
        bad = sorted(set(columns) - set(MAPPABLE))
        if bad:
            raise InputFileError(f"{where}: unknown schema column(s) {', '.join(bad)}; "
                                 f"known: {', '.join(MAPPABLE)}")
        identity = not columns
        if identity:
            columns = {c: c for c in MAPPABLE}
        values = data.get("values") or {}
        if not isinstance(values, dict) or not all(isinstance(v, dict) for v in values.values()):
            raise InputFileError(f"{where}: 'values' must map a column to {{source: value}}")
        unit = str(data.get("ts_unit", "iso"))
        if unit not in _TS_UNITS:
            raise InputFileError(f"{where}: ts_unit must be one of {', '.join(_TS_UNITS)}")
        delimiter = str(data.get("delimiter", ","))
        if len(delimiter) != 1:
            raise InputFileError(f"{where}: delimiter must be one character")
        return cls(columns, {str(k): {str(a): str(b) for a, b in v.items()}
                             for k, v in values.items()}, unit, delimiter, identity)


def _int(text: Any) -> int:
    if isinstance(text, bool):
        raise TypeError("a boolean is not a number")
    if isinstance(text, int):
        return text
    s = str(text).strip().lower()
    if s.startswith("0x"):
        return int(s, 16)
    if s.endswith("h"):
        return int(s[:-1], 16)
    return int(float(s)) if "." in s or "e" in s else int(s)


def _bool(text: Any) -> bool:
    if isinstance(text, bool):
        return text
    s = str(text).strip().lower()
    if s in ("1", "true", "t", "yes", "y"):
        return True
    if s in ("0", "false", "f", "no", "n"):
        return False
    raise ValueError("not a boolean")


def _ts(value: Any, unit: str) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    scale = _TS_UNITS[unit]
    if scale is None:
        text = str(value).strip().replace("Z", "+00:00")
        dt = datetime.fromisoformat(text)
        return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
    return datetime.fromtimestamp(_int(value) / scale, UTC)


def _convert(mapping: ColumnMapping, raw: Mapping[str, Any], where: str) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for target, source in mapping.columns.items():
        value = raw.get(source)
        if value is None or (isinstance(value, str) and value.strip() == ""):
            continue
        spelled = mapping.values.get(target)
        if spelled is not None:
            value = spelled.get(str(value), value)
        try:
            if target == "ts":
                value = _ts(value, mapping.ts_unit)
            elif target in _INT_COLUMNS:
                value = _int(value)
            elif target in _BOOL_COLUMNS:
                value = _bool(value)
            elif target == "ct_sha256":
                value = value if isinstance(value, bytes) else bytes.fromhex(str(value).strip())
                if len(value) != 32:
                    raise ValueError("not 32 bytes")
            elif target == "system_title":
                st = value if isinstance(value, bytes) else bytes.fromhex(str(value).strip())
                if len(st) != 8:
                    raise ValueError("not 8 bytes")
                value = st.hex().upper()
            elif target == "direction":
                value = str(value).strip().lower()
                if value not in ("c2s", "s2c"):
                    raise ValueError("must be c2s or s2c (map other spellings under 'values')")
            else:
                value = str(value)
        except (ValueError, TypeError, OverflowError) as exc:
            raise InputFileError(f"{where}: column {source!r} ({target}): bad value "
                                 f"{str(value)[:40]!r}: {exc}") from None
        row[target] = value
    for col in REQUIRED:
        if col not in row:
            raise InputFileError(f"{where}: no value for required column {col} "
                                 f"(source {mapping.columns.get(col, col)!r})")
    sc = row.get("sc")
    if sc is not None:
        row.setdefault("suite", sc & 0x0F)
        row.setdefault("key_set", "broadcast" if sc & 0x40 else "unicast")
        row.setdefault("authenticated", bool(sc & 0x10))
        row.setdefault("ciphered", True)
    row.setdefault("authenticated", False)
    row.setdefault("ciphered", False)
    row.setdefault("apdu_tag", 0)
    row.setdefault("length", 0)
    row.setdefault("link", "log")
    return row  # key_id and space_key: table_from_rows fills them for ciphered rows


def _needed(mapping: ColumnMapping, present: Iterable[str]) -> set[str]:
    """Source columns that must exist: all mapped ones, or the required ones by name."""
    if mapping.identity:
        return set(REQUIRED)
    return set(mapping.columns.values())


def _raw_rows(path: Path, kind: str, mapping: ColumnMapping) -> Iterator[tuple[int, dict[str, Any]]]:
    if kind == "parquet":
        try:
            pf = pq.ParquetFile(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputFileError(f"log {path}: not a readable Parquet file ({exc})") from None
        names = pf.schema_arrow.names
        needed = _needed(mapping, names)
        missing = sorted(needed - set(names))
        if missing:
            raise InputFileError(f"log {path}: no column(s) {', '.join(missing)} "
                                 f"(has {', '.join(pf.schema_arrow.names)})")
        n = 0
        wanted = sorted(set(mapping.columns.values()) & set(names))
        for batch in pf.iter_batches(columns=wanted):
            for rec in batch.to_pylist():
                n += 1
                yield n, rec
        return
    try:
        fh = open(path, newline="", encoding="utf-8")  # noqa: SIM115
    except OSError as exc:
        raise InputFileError(f"log {path}: {exc.strerror}") from None
    with fh:
        reader = csv.DictReader(fh, delimiter=mapping.delimiter)
        try:
            header = reader.fieldnames or []
        except (csv.Error, UnicodeDecodeError) as exc:
            raise InputFileError(f"log {path}: not a CSV file ({exc})") from None
        missing = sorted(_needed(mapping, header) - set(header))
        if missing:
            raise InputFileError(f"log {path}: no column(s) {', '.join(missing)} in the header "
                                 f"(has {', '.join(header) or 'nothing'})")
        try:
            for rec in reader:
                yield reader.line_num, rec
        except (csv.Error, UnicodeDecodeError) as exc:
            raise InputFileError(f"log {path} line {reader.line_num}: {exc}") from None


def read_log(path: str | Path, mapping: ColumnMapping, *, kind: str = "csv",
             first_id: int = 0) -> pa.Table:
    """One head-end log as a fleet-schema table."""
    p = Path(path)
    rows = []
    for i, (line, raw) in enumerate(_raw_rows(p, kind, mapping)):
        where = f"log {p} line {line}" if kind == "csv" else f"log {p} row {line}"
        row = _convert(mapping, raw, where)
        row["id"] = first_id + i
        row["source"] = p.name
        rows.append(row)
    return table_from_rows(rows)
