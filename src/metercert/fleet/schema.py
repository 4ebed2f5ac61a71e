"""The one table every fleet ingest writes and every detector reads.

One row per APDU seen on the wire (or logged by a head-end). The dataset is a
directory of Parquet files partitioned by UTC day (``day=YYYY-MM-DD/``) so that a
scan can prune days and both DuckDB and Spark discover the partition column.

Columns (nullable unless said otherwise):

=============  ================  ==================================================
column         type              meaning
=============  ================  ==================================================
id             int64, not null   unique row id within the dataset (evidence refers to it)
ts             timestamp[us,UTC] when the APDU was complete on the wire
direction      string, not null  ``c2s`` (client to meter) or ``s2c``
client_addr    string            client ``ip:port`` (or head-end name)
server_addr    string            meter side ``ip:port``
client_sap     int32             client wPort (wrapper) or HDLC client address
server_sap     int32             server wPort (wrapper) or HDLC server address
link           string            ``wrapper``, ``hdlc`` or ``log``
meter_id       string, not null  the meter's identity: ``st:<system title>`` once its title is
                                 known, else its network path (``endpoint``) or a log's meter id
meter_key      int64, not null   first 60 bits of SHA-256(meter_id): a fast join/sort key
endpoint       string            meter side network path: ``ip:port/wport`` or
                                 ``ip:port/hdlc upper/lower`` (gateway meters differ here)
assoc_id       string            one application association (TCP stream + AARQ number)
system_title   string            sender's system title, 16 upper-case hex digits
sc             int16             security control byte
suite          int16             security suite (bits 0-3 of SC)
key_set        string            ``unicast`` or ``broadcast`` (SC bit 0x40)
key_id         string            which key protects it: ``guk <meter>/<client sap>`` (the
                                 global unicast key of that client role at that meter),
                                 ``gbk`` (broadcast), ``ded <assoc_id>`` (dedicated key of one
                                 association); ``#kN`` = the key file's N-th key set verified it
                                 (a new key generation after a key transfer)
space_key      int64             digest of the counter space (system_title or ``?<direction>``,
                                 key_id): one GCM nonce space, where a counter must never repeat
ic             int64             invocation counter
apdu_tag       int16, not null   first byte of the APDU
length         int32, not null   APDU length in bytes
ct_sha256      binary(32)        SHA-256 of the ciphered payload (ciphertext || tag)
ciphered       bool, not null    a ciphered form (glo/ded/general-glo/general-ded)
authenticated  bool, not null    SC has the authentication bit
tag_ok         bool              GCM tag verified (only with a key file)
plain_tag      int16             tag of the decrypted service APDU (only with keys)
source         string            capture or log file the row came from, as given (with its path)
=============  ================  ==================================================
"""

from __future__ import annotations

import hashlib
import operator
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

APDU_SCHEMA = pa.schema([
    pa.field("id", pa.int64(), nullable=False),
    pa.field("ts", pa.timestamp("us", tz="UTC"), nullable=False),
    pa.field("direction", pa.string(), nullable=False),
    pa.field("client_addr", pa.string()),
    pa.field("server_addr", pa.string()),
    pa.field("client_sap", pa.int32()),
    pa.field("server_sap", pa.int32()),
    pa.field("link", pa.string()),
    pa.field("meter_id", pa.string(), nullable=False),
    pa.field("meter_key", pa.int64(), nullable=False),
    pa.field("endpoint", pa.string()),
    pa.field("assoc_id", pa.string()),
    pa.field("system_title", pa.string()),
    pa.field("sc", pa.int16()),
    pa.field("suite", pa.int16()),
    pa.field("key_set", pa.string()),
    pa.field("key_id", pa.string()),
    pa.field("space_key", pa.int64()),
    pa.field("ic", pa.int64()),
    pa.field("apdu_tag", pa.int16(), nullable=False),
    pa.field("length", pa.int32(), nullable=False),
    pa.field("ct_sha256", pa.binary()),
    pa.field("ciphered", pa.bool_(), nullable=False),
    pa.field("authenticated", pa.bool_(), nullable=False),
    pa.field("tag_ok", pa.bool_()),
    pa.field("plain_tag", pa.int16()),
    pa.field("source", pa.string()),
])

COLUMNS: tuple[str, ...] = tuple(APDU_SCHEMA.names)
DIRECTIONS = ("c2s", "s2c")
PARTITION = "day"


def meter_key(meter_id: str) -> int:
    """The first 15 hex digits of SHA-256(meter_id) as an integer (always positive).

    Sorting and partitioning by an integer is several times faster than by a
    string; the simulator computes the same value in SQL.
    """
    return int(hashlib.sha256(meter_id.encode("utf-8")).hexdigest()[:15], 16)


def space_key(sender: str, key_id: str) -> int:
    """Integer digest of a counter space (sender system title, key identity).

    The simulator computes the same value in SQL; both are 60-bit positive integers.
    """
    return int(hashlib.sha256(f"{sender}|{key_id}".encode()).hexdigest()[:15], 16)


def default_key_id(meter_id: str, key_set: str | None, client_sap: int | None) -> str:
    """The key identity of a row that says nothing more (logs, rows built in tests)."""
    return "gbk" if key_set == "broadcast" else f"guk {meter_id}/{client_sap}"


def table_from_rows(rows: Iterable[Mapping[str, Any]]) -> pa.Table:
    """Build a schema-conformant table from dict rows (missing keys become null)."""
    rows = rows if isinstance(rows, list) else list(rows)
    cols: dict[str, list[Any]] = {name: [r.get(name) for r in rows] for name in COLUMNS}
    keys: dict[str, int] = {}
    mids, mkeys, skeys = cols["meter_id"], cols["meter_key"], cols["space_key"]
    for i, row in enumerate(rows):
        mid = mids[i]
        if mkeys[i] is None and mid is not None:
            k = keys.get(mid)
            if k is None:
                k = keys[mid] = meter_key(str(mid))
            mkeys[i] = k
        if skeys[i] is None and row.get("ciphered") and mid:
            kid = row.get("key_id") or default_key_id(str(mid), row.get("key_set"),
                                                      row.get("client_sap"))
            cols["key_id"][i] = kid
            skeys[i] = space_key(row.get("system_title") or f"?{row.get('direction')}", kid)
    return pa.table(cols, schema=APDU_SCHEMA)


_GETTERS = [operator.itemgetter(i) for i in range(len(COLUMNS))]
# columns that repeat along a stream (addresses, identity, association, counter space,
# protection, service): converted once per distinct combination and spread over the rows
# by index. (Each position holds one type, so 1 and True never meet in a comparison.)
_CONTEXT = tuple(COLUMNS.index(c) for c in (
    "direction", "client_addr", "server_addr", "client_sap", "server_sap", "link",
    "meter_id", "meter_key", "endpoint", "assoc_id", "system_title", "sc", "suite",
    "key_set", "key_id", "space_key", "apdu_tag", "ciphered", "authenticated", "tag_ok",
    "plain_tag", "source"))
_CONTEXT_OF = operator.itemgetter(*_CONTEXT)


def table_from_lists(rows: list[list[Any]]) -> pa.Table:
    """Build a schema table from complete rows: lists in :data:`COLUMNS` order with every
    value filled in (the ingest's rows; ``meter_key`` and ``space_key`` computed)."""
    contexts: dict[tuple[Any, ...], int] = {}
    index = [contexts.setdefault(c, len(contexts)) for c in map(_CONTEXT_OF, rows)]
    take = pa.array(index, type=pa.int32())
    distinct = list(zip(*contexts, strict=True)) if contexts else [()] * len(_CONTEXT)
    arrays: list[pa.Array] = [None] * len(COLUMNS)  # type: ignore[list-item]
    for pos, values in zip(_CONTEXT, distinct, strict=True):
        arrays[pos] = pa.array(values, type=APDU_SCHEMA.field(pos).type).take(take)
    for pos, (get, f) in enumerate(zip(_GETTERS, APDU_SCHEMA, strict=True)):
        if arrays[pos] is None:
            arrays[pos] = pa.array(list(map(get, rows)), type=f.type)
    return pa.Table.from_arrays(arrays, schema=APDU_SCHEMA)


# dictionary pages pay for the repeating columns only: ids, times, counters and payload
# digests are (nearly) unique, and trying a dictionary on them costs write time for nothing
_DICTIONARY_COLUMNS = [c for c in COLUMNS if c not in ("id", "ts", "ic", "ct_sha256")]


def write_dataset(table: pa.Table, out_dir: str | Path) -> list[Path]:
    """Append ``table`` to the day-partitioned dataset under ``out_dir``.

    One file per day present in ``table``, under ``day=YYYY-MM-DD/``; files get a
    fresh name per call so that several ingests can share a directory. Each file is
    written synchronously with ``pq.write_table``: Arrow's dataset writer would call
    back into Python from its own threads, and a callback released there while the
    interpreter exits aborts the process (seen as exit 134 after a successful ingest).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if table.num_rows == 0:
        return []
    if not table.schema.equals(APDU_SCHEMA):
        table = table.cast(APDU_SCHEMA)
    days = table.column("ts").cast(pa.date32())  # the UTC day (the column is UTC)
    present = sorted(pc.unique(days).to_pylist())
    stem = f"part-{uuid.uuid4().hex}"
    written: list[Path] = []
    for day in present:
        folder = out / f"{PARTITION}={day.isoformat()}"
        folder.mkdir(exist_ok=True)
        path = folder / f"{stem}.parquet"
        part = table if len(present) == 1 else table.filter(pc.equal(days, day))
        pq.write_table(part, path, use_dictionary=_DICTIONARY_COLUMNS)
        written.append(path)
    return written


def dataset_files(root: str | Path) -> list[Path]:
    """Every Parquet file of a dataset directory (sorted, for stable scans)."""
    return sorted(Path(root).glob(f"{PARTITION}=*/*.parquet"))


def next_id(root: str | Path) -> int:
    """The first free row id in an existing dataset (0 for a new one)."""
    files = dataset_files(root)
    if not files:
        return 0
    best = -1
    for f in files:
        meta = pq.ParquetFile(f).metadata
        idx = meta.schema.to_arrow_schema().get_field_index("id")
        for g in range(meta.num_row_groups):
            stats = meta.row_group(g).column(idx).statistics
            if stats is not None and stats.has_min_max:
                best = max(best, int(stats.max))
    return best + 1
