"""Turn captures and head-end logs into the fleet dataset.

For each APDU the ingest records the protection facts the detectors need (see
:mod:`metercert.fleet.schema`). System titles of service-specific ciphering are
not in the APDU: they come from the association, so each TCP stream keeps the
calling-AP-title of its last AARQ (the client's title, for c2s APDUs) and the
responding-AP-title of its AARE (the meter's, for s2c APDUs). A ciphered
initiate-request/response inside the AARQ/AARE uses a counter too, so the
ACSE row carries its SC and counter.

With a key file the GCM tag of every authenticated APDU is verified
(``tag_ok``) and the tag of the decrypted service is recorded (``plain_tag``).
Keys are matched to a meter by its server system title or by a ``meter_id``
entry in the key file. Key bytes never leave :mod:`metercert.security`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pyarrow as pa

from metercert.cosem.acse import AARE, AARQ
from metercert.errors import InputFileError, MetercertError, UsageError
from metercert.fleet.pcap import CaptureReader, CaptureStats, WireApdu
from metercert.fleet.schema import space_key, table_from_rows, write_dataset
from metercert.security import (
    ApduFormatError,
    AuthenticationFailed,
    Key,
    KeySet,
    SecurityError,
    load_key_file,
    parse_ciphered,
    select_encryption_key,
    unprotect_parsed,
)
from metercert.security.protection import CIPHERED_TAGS, CipheredApdu

AARQ_TAG, AARE_TAG = 0x60, 0x61


class KeyRing:
    """Key sets of a key file, found by meter system title or meter id.

    Several key sets may name one meter: a role's own keys, or the keys before and
    after a key_transfer. They are tried in file order; the one whose tag verifies
    names the key (its position is the key generation of the counter space).
    """

    def __init__(self, keysets: Iterable[KeySet]) -> None:
        self._all: list[KeySet] = []
        for ks in keysets:
            self._all.append(ks)
            self._all += _role_keysets(ks)
        self._by_title: dict[bytes, list[KeySet]] = {}
        self._by_meter: dict[str, list[KeySet]] = {}
        for ks in self._all:
            if ks.server_system_title:
                self._by_title.setdefault(ks.server_system_title, []).append(ks)
            meter = ks.extra.get("meter_id") if ks.extra else None
            if meter:
                self._by_meter.setdefault(str(meter), []).append(ks)
        self._generic = [k for k in self._all if not k.server_system_title
                         and not (k.extra and k.extra.get("meter_id"))]

    @classmethod
    def load(cls, path: str | Path) -> KeyRing:
        return cls(load_key_file(path))

    def candidates(self, endpoint: str, server_title: bytes | None,
                   client_title: bytes | None = None,
                   client_sap: int | None = None) -> list[KeySet]:
        """Key sets that may protect this meter's traffic, most specific first.

        With the meter's title unknown (an AARQ before its AARE), every key set whose
        client title matches is a candidate: the tag tells which one is right. Key sets
        of the association's client role (its client SAP) come before the others.
        """
        if server_title is not None and server_title in self._by_title:
            found = self._by_title[server_title]
        elif endpoint in self._by_meter:
            found = self._by_meter[endpoint]
        elif server_title is None:
            found = [k for k in self._all if client_title is None
                     or k.client_system_title in (None, client_title)][:64]
        else:
            found = self._generic  # key sets that name no meter fit any meter
        if client_sap is not None:
            own = [k for k in found if _sap_of(k) == client_sap]
            if own:
                return own
        return found

    def find(self, meter_id: str, server_title: bytes | None) -> KeySet | None:
        found = self.candidates(meter_id, server_title)
        return found[0] if found and (server_title in self._by_title
                                      or meter_id in self._by_meter) else None

    def __repr__(self) -> str:
        return f"KeyRing({len(self._all)} key sets, <redacted>)"


def _sap_of(ks: KeySet) -> int | None:
    sap = ks.extra.get("client_sap") if ks.extra else None
    try:
        return int(sap) if sap is not None else None
    except (TypeError, ValueError):
        return None


def _role_keysets(ks: KeySet) -> list[KeySet]:
    """The per-role key sets a key file lists under ``roles`` (a role's own keys)."""
    out = []
    for role in (ks.extra.get("roles") or []) if ks.extra else []:
        if not isinstance(role, Mapping) or not (role.get("guek") and role.get("ak")):
            continue
        try:
            out.append(replace(ks, guek=Key.from_hex(str(role["guek"]), "GUEK"),
                               ak=Key.from_hex(str(role["ak"]), "AK"),
                               extra={"client_sap": role.get("client_sap"),
                                      "meter_id": ks.extra.get("meter_id")}))
        except (SecurityError, ValueError, MetercertError):
            continue  # a role entry without usable keys verifies nothing
    return out


def _ap_title(apdu: bytes, tag: int) -> tuple[bytes | None, bytes | None]:
    """(AP-title, user-information) of an AARQ or AARE; ``(None, None)`` if it won't parse."""
    try:
        if tag == AARQ_TAG:
            q = AARQ.from_bytes(apdu)
            return q.calling_ap_title, q.user_information
        a = AARE.from_bytes(apdu)
        return a.responding_ap_title, a.user_information
    except (MetercertError, ValueError, IndexError):
        return None, None


@dataclass
class _Held:
    """A row whose identity waits for the meter's system title (and its parsed APDU)."""

    row: dict[str, Any]
    parsed: CipheredApdu | None
    explicit_title: bytes | None


@dataclass
class _Association:
    """What one stream has told us so far about its current association."""

    stream: str
    number: int = 0
    client_title: bytes | None = None
    meter_title: bytes | None = None
    resolved: bool = False
    held: list[_Held] = field(default_factory=list)


_HOLD_LIMIT = 10_000  # rows held for a title before the endpoint's last title is used


def meter_identity(meter_title: bytes | None, endpoint: str) -> str:
    """A meter is its system title when known, else its network path (``endpoint``)."""
    return f"st:{meter_title.hex().upper()}" if meter_title else endpoint


@dataclass
class ApduRecorder:
    """Builds schema rows from wire APDUs, tracking associations per stream.

    Rows of an association are held until the meter's system title is known (its
    AARE, or a general-glo APDU it sends), so that every row of the association
    gets the meter's identity and the AARQ's ciphered initiate-request can be
    verified with the meter's keys. Held rows are released in stream order.
    ``flush`` releases what is still held at the end of the ingest.
    """

    keys: KeyRing | None = None
    source: str = ""
    first_id: int = 0
    malformed: int = 0
    unattributed: int = 0
    _assocs: dict[str, _Association] = field(default_factory=dict)
    _endpoint_title: dict[str, bytes] = field(default_factory=dict)
    _last_key: dict[str, int] = field(default_factory=dict)
    _next: int = 0
    _spaces: dict[tuple[str, str], int] = field(default_factory=dict)  # memo: digests
    _ids: dict[tuple[bytes | None, str], str] = field(default_factory=dict)
    _hex: dict[bytes, str] = field(default_factory=dict)

    def record(self, w: WireApdu) -> list[dict[str, Any]]:
        """The rows that are complete after ``w`` (held rows are released in order)."""
        apdu = w.apdu
        tag = apdu[0]
        # one association per client and server address pair on a connection: the
        # wrapper multiplexes by wPort, an HDLC gateway by the meters' addresses
        where = w.endpoint[len(w.server_addr) + 1:] or "-"
        akey = f"{w.stream} {w.client_sap}>{where}"
        assoc = self._assocs.get(akey)
        out: list[dict[str, Any]] = []
        if assoc is None:
            assoc = self._assocs[akey] = _Association(akey)
        protected: bytes | None = None
        if tag == AARQ_TAG:
            out += self._resolve(assoc, w.endpoint)
            title, info = _ap_title(apdu, tag)
            assoc.number += 1
            assoc.client_title, assoc.meter_title, assoc.resolved = title, None, False
            protected = info if info and info[0] in CIPHERED_TAGS else None
        elif tag == AARE_TAG:
            title, info = _ap_title(apdu, tag)
            if title:
                assoc.meter_title = title
            protected = info if info and info[0] in CIPHERED_TAGS else None
        elif tag in CIPHERED_TAGS:
            protected = apdu
        row: dict[str, Any] = {
            "ts": w.ts, "direction": w.direction,
            "client_addr": w.client_addr, "server_addr": w.server_addr,
            "client_sap": w.client_sap, "server_sap": w.server_sap, "link": w.link,
            "endpoint": w.endpoint, "assoc_id": f"{akey}/{assoc.number}",
            "apdu_tag": tag, "length": len(apdu), "ciphered": False, "authenticated": False,
            "source": w.source or self.source,
        }
        parsed: CipheredApdu | None = None
        explicit: bytes | None = None
        if protected is not None:
            row["ciphered"] = True
            try:
                parsed = parse_ciphered(protected)
            except (ApduFormatError, SecurityError):
                self.malformed += 1  # ciphered, but a form we cannot split: no SC claimed
            if parsed is not None:
                sc = parsed.security_control
                explicit = parsed.system_title
                if w.direction == "s2c" and explicit and assoc.meter_title is None:
                    assoc.meter_title = explicit
                row.update({
                    "sc": sc.byte, "suite": sc.suite,
                    "key_set": "broadcast" if sc.broadcast else "unicast",
                    "ic": parsed.invocation_counter,
                    "ct_sha256": hashlib.sha256(parsed.payload).digest(),
                    "authenticated": sc.authenticated,
                })
        if assoc.meter_title is not None and not assoc.held and not out:
            return [self._finish_row(_Held(row, parsed, explicit), assoc, assoc.meter_title)]
        assoc.held.append(_Held(row, parsed, explicit))
        if assoc.meter_title is not None or tag == 0x63 or len(assoc.held) > _HOLD_LIMIT:
            out += self._resolve(assoc, w.endpoint)
        return out

    def _resolve(self, assoc: _Association, endpoint: str) -> list[dict[str, Any]]:
        """Give held rows their identity, counter space and tag verdict, in order."""
        if not assoc.held:
            return []
        if assoc.meter_title is not None:
            self._endpoint_title[endpoint] = assoc.meter_title
        meter_title = assoc.meter_title or self._endpoint_title.get(endpoint)
        out = []
        for h in assoc.held:
            out.append(self._finish_row(h, assoc, meter_title))
        assoc.held.clear()
        return out

    def _finish_row(self, h: _Held, assoc: _Association,
                    meter_title: bytes | None) -> dict[str, Any]:
        row = h.row
        row["id"] = self.first_id + self._next
        self._next += 1
        endpoint = row["endpoint"]
        meter = self._ids.get((meter_title, endpoint))
        if meter is None:
            meter = self._ids[(meter_title, endpoint)] = meter_identity(meter_title, endpoint)
        row["meter_id"] = meter
        parsed = h.parsed
        if parsed is None:
            return row
        c2s = row["direction"] == "c2s"
        sender = h.explicit_title or (assoc.client_title if c2s else meter_title)
        if sender:
            hexed = self._hex.get(sender)
            if hexed is None:
                hexed = self._hex[sender] = sender.hex().upper()
            row["system_title"] = hexed
        else:
            row["system_title"] = None
        if sender is None:
            self.unattributed += 1
        generation = ""
        if self.keys is not None and sender is not None and not parsed.form.dedicated:
            generation = self._verify(row, parsed, sender, endpoint, meter_title,
                                      assoc.client_title)
        sc = parsed.security_control
        if parsed.form.dedicated:
            key_id = f"ded {row['assoc_id']}"
        elif sc.broadcast:
            key_id = f"gbk{generation}"
        else:
            key_id = f"guk {meter}/{row['client_sap']}{generation}"
        who = row["system_title"] or f"?{row['direction']}"
        row["key_id"] = key_id
        sk = self._spaces.get((who, key_id))
        if sk is None:
            sk = self._spaces[(who, key_id)] = space_key(who, key_id)
        row["space_key"] = sk
        return row

    def _verify(self, row: dict[str, Any], parsed: CipheredApdu, sender: bytes, endpoint: str,
                meter_title: bytes | None, client_title: bytes | None) -> str:
        """Check the tag with each candidate key set; return the key generation label."""
        assert self.keys is not None
        cands = self.keys.candidates(endpoint, meter_title, client_title, row["client_sap"])
        if not cands:
            return ""
        memo = f"{endpoint}/{row['client_sap']}"
        first = self._last_key.get(memo, 0)
        order = [first, *(i for i in range(len(cands)) if i != first)] if first < len(
            cands) else list(range(len(cands)))
        sc = parsed.security_control
        failed = False
        for i in order:
            ks = cands[i]
            try:
                plain = unprotect_parsed(
                    parsed, encryption_key=select_encryption_key(ks, parsed),
                    authentication_key=ks.ak, system_title=sender)
            except AuthenticationFailed:
                failed = True
                continue
            except SecurityError:
                continue  # a key is missing or the wrong size: nothing verified
            self._last_key[memo] = i
            row["tag_ok"] = True if sc.authenticated else None
            row["plain_tag"] = plain.plaintext[0] if plain.plaintext else None
            return f"#k{i}" if len(cands) > 1 else ""
        if failed and sc.authenticated:
            row["tag_ok"] = False
        return ""

    def flush(self) -> list[dict[str, Any]]:
        """Release every held row (end of the ingest)."""
        out: list[dict[str, Any]] = []
        for assoc in self._assocs.values():
            if assoc.held:
                out += self._resolve(assoc, assoc.held[0].row["endpoint"])
        return out


@dataclass(frozen=True)
class IngestResult:
    rows: int
    files: tuple[Path, ...]
    stats: Mapping[str, int]
    skipped: tuple[Path, ...] = ()


def _tables(rows_iter: Iterator[list[dict[str, Any]]], chunk_rows: int) -> Iterator[pa.Table]:
    rows: list[dict[str, Any]] = []
    for batch in rows_iter:
        rows += batch
        if len(rows) >= chunk_rows:
            yield table_from_rows(rows)
            rows = []
    if rows:
        yield table_from_rows(rows)


def iter_pcap_tables(path: str | Path | Iterable[str | Path], *,
                     port: int | Iterable[int] | None = None,
                     keys: KeyRing | str | Path | None = None, first_id: int = 0,
                     stats: CaptureStats | None = None, recorder: ApduRecorder | None = None,
                     chunk_rows: int = 250_000) -> Iterator[pa.Table]:
    """The APDUs of one capture (or several, read as one ingest) as schema tables of at
    most ``chunk_rows`` rows (bounded memory)."""
    ring = KeyRing.load(keys) if isinstance(keys, (str, Path)) else keys
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    ports = [port] if isinstance(port, int) else port
    reader = CaptureReader(ports, stats)
    rec = recorder if recorder is not None else ApduRecorder(keys=ring, first_id=first_id)

    def rows() -> Iterator[list[dict[str, Any]]]:
        for p in paths:
            for w in reader.read(p, str(p)):
                yield rec.record(w)
        for w in reader.finish():
            yield rec.record(w)
        yield rec.flush()

    yield from _tables(rows(), chunk_rows)


def ingest_pcap(path: str | Path, *, port: int | Iterable[int] | None = None,
                keys: KeyRing | str | Path | None = None, first_id: int = 0,
                stats: CaptureStats | None = None) -> pa.Table:
    """All APDUs of one capture as one table in the fleet schema (nothing written).

    ``keys`` is a key file path or a :class:`KeyRing`; row ids start at ``first_id``.
    """
    tables = list(iter_pcap_tables(path, port=port, keys=keys, first_id=first_id, stats=stats))
    return pa.concat_tables(tables) if tables else table_from_rows([])


def sniff_kind(path: Path) -> str:
    """``pcap``, ``csv`` or ``parquet`` from the file's first bytes (and name)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except FileNotFoundError:
        raise InputFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputFileError(f"{path}: is a directory, give capture or log files") from None
    except OSError as exc:
        raise InputFileError(f"{path}: {exc.strerror}") from None
    if head == b"PAR1":
        return "parquet"
    if path.suffix.lower() in (".csv", ".tsv", ".txt"):
        return "csv"
    return "pcap"


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


MANIFEST = "_ingested.txt"
ID_STRIDE = 1 << 40  # row ids per file when files are read in parallel


def _ingest_one(path: str, out: str, ports: list[int] | None, keys: str | None,
                first_id: int) -> tuple[int, list[str], dict[str, int]]:
    """One capture read on its own (a worker of a parallel ingest)."""
    stats = CaptureStats()
    ring = KeyRing.load(keys) if keys else None
    rec = ApduRecorder(keys=ring, first_id=first_id)
    reader = CaptureReader(ports, stats)

    def batches() -> Iterator[list[dict[str, Any]]]:
        for w in reader.read(path, path):
            yield rec.record(w)
        for w in reader.finish():
            yield rec.record(w)
        yield rec.flush()

    rows, written = 0, []
    for table in _tables(batches(), 250_000):
        written += [str(p) for p in write_dataset(table, out)]
        rows += table.num_rows
    agg = dict(vars(stats))
    agg["unattributed"] = rec.unattributed
    agg["undecoded_ciphered"] = rec.malformed
    return rows, written, agg


def ingest(paths: Iterable[str | Path], out_dir: str | Path, *,
           port: int | Iterable[int] | None = None,
           keys: str | Path | None = None, mapping: str | Path | None = None,
           map_options: Iterable[str] = (),
           on_file: Callable[[Path, int], None] | None = None,
           jobs: int = 1) -> IngestResult:
    """Ingest captures and logs into ``out_dir`` (appending to a dataset there).

    All captures are read as one ingest (shared stream and association state, so
    rotated files continue each other and packets present in two files count once).
    A file whose content was ingested into ``out_dir`` before is skipped. The
    dataset is locked for the whole ingest, so concurrent ingests into one
    directory take turns and never hand out the same row ids.

    ``jobs`` > 1 reads the captures in that many worker processes, each file on its
    own (row ids in blocks of ``ID_STRIDE`` per file): faster, but a connection that
    continues from one file into the next, or the same packets in two files, are then
    not joined up. Use it for captures of separate links.
    """
    import fcntl

    from metercert.fleet.logs import ColumnMapping, read_log
    from metercert.fleet.schema import next_id

    files = [Path(p) for p in paths]
    if not files:
        raise UsageError("give at least one capture or log file")
    kinds = [(f, sniff_kind(f)) for f in files]
    ring = KeyRing.load(keys) if keys else None
    col_map = ColumnMapping.load(mapping, map_options) if (
        mapping or any(k != "pcap" for _, k in kinds) or map_options) else None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".ingest.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        manifest = out / MANIFEST
        done = set(manifest.read_text("utf-8").split()) if manifest.exists() else set()
        fresh: list[tuple[Path, str, str]] = []
        skipped: list[Path] = []
        for f, kind in kinds:
            digest = _file_digest(f)
            if digest in done:
                skipped.append(f)
                continue
            done.add(digest)
            fresh.append((f, kind, digest))
        first = next_id(out)
        total = 0
        written: list[Path] = []
        agg: dict[str, int] = {}
        pcaps = [f for f, k, _ in fresh if k == "pcap"]
        if pcaps and jobs > 1 and len(pcaps) > 1:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            ports = [port] if isinstance(port, int) else (list(port) if port else None)
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
                futures = [pool.submit(_ingest_one, str(f), str(out), ports,
                                       str(keys) if keys else None, first + i * ID_STRIDE)
                           for i, f in enumerate(pcaps)]
                for f, fut in zip(pcaps, futures, strict=True):
                    n, files_written, st = fut.result()
                    written += [Path(p) for p in files_written]
                    total += n
                    for k, v in st.items():
                        agg[k] = agg.get(k, 0) + v
                    if on_file:
                        on_file(f, n)
            first = next_id(out)
        elif pcaps:
            stats = CaptureStats()
            rec = ApduRecorder(keys=ring, first_id=first)
            ports = [port] if isinstance(port, int) else port
            reader = CaptureReader(ports, stats)
            rows = 0

            def batches() -> Iterator[list[dict[str, Any]]]:
                nonlocal rows
                for f in pcaps:
                    before = rec._next
                    for w in reader.read(f, str(f)):
                        yield rec.record(w)
                    if on_file:
                        on_file(f, rec._next - before)
                for w in reader.finish():
                    yield rec.record(w)
                yield rec.flush()

            for table in _tables(batches(), 250_000):
                written += write_dataset(table, out)
                rows += table.num_rows
            first += rows
            total += rows
            agg.update(vars(stats))
            agg["unattributed"] = rec.unattributed
            agg["undecoded_ciphered"] = rec.malformed
        for f, kind, _ in fresh:
            if kind == "pcap":
                continue
            assert col_map is not None
            table = read_log(f, col_map, kind=kind, first_id=first)
            written += write_dataset(table, out)
            first += table.num_rows
            total += table.num_rows
            if on_file:
                on_file(f, table.num_rows)
        if fresh:
            with open(manifest, "a", encoding="utf-8") as fh:
                fh.writelines(f"{d}\n" for _, _, d in fresh)
    return IngestResult(total, tuple(written), agg, tuple(skipped))


def _spark_partition(items: Iterable[Any], out: str, ports: list[int] | None,
                     keys: str | None, first: int) -> Iterator[tuple[str, int, int]]:
    """One Spark partition of a binary-files ingest: each capture's bytes through the
    same reader and recorder as a local ingest, written into the same dataset."""
    import os
    import tempfile

    for index, path, content in items:
        fd, tmp = tempfile.mkstemp(suffix=".pcap")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(content)
            local = path.removeprefix("file:")
            stats = CaptureStats()
            rec = ApduRecorder(keys=KeyRing.load(keys) if keys else None,
                               first_id=first + index * ID_STRIDE)
            reader = CaptureReader(ports, stats)

            def batches(tmp: str = tmp, local: str = local, rec: ApduRecorder = rec,
                        reader: CaptureReader = reader) -> Iterator[list[dict[str, Any]]]:
                for w in reader.read(tmp, local):
                    yield rec.record(w)
                for w in reader.finish():
                    yield rec.record(w)
                yield rec.flush()

            rows = 0
            for table in _tables(batches(), 250_000):
                write_dataset(table, out)
                rows += table.num_rows
            yield local, rows, stats.bad_frames
        finally:
            os.unlink(tmp)


def ingest_spark(paths: Iterable[str | Path], out_dir: str | Path, *, spark: Any,
                 port: int | Iterable[int] | None = None,
                 keys: str | Path | None = None) -> IngestResult:
    """Ingest captures on Spark: the binary-files source hands each file to an
    executor, which runs the same parser as a local ingest and writes into the same
    day-partitioned dataset (``out_dir`` must be reachable from every executor, e.g. a
    shared file system). Files are read on their own, as with ``jobs`` > 1; row ids
    come in blocks of ``ID_STRIDE`` per file. The dataset is locked meanwhile."""
    import fcntl

    from metercert.fleet.schema import next_id

    files = [Path(p).resolve() for p in paths]
    if not files:
        raise UsageError("give at least one capture file")
    for f in files:
        if sniff_kind(f) != "pcap":
            raise UsageError(f"{f}: the Spark ingest reads captures only (pcap, pcapng)")
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    ports = [port] if isinstance(port, int) else (list(port) if port else None)
    with open(out / ".ingest.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        first = next_id(out)
        df = spark.read.format("binaryFile").load([str(f) for f in files])
        order = {f"file:{f}": i for i, f in enumerate(files)}
        rdd = df.select("path", "content").rdd.map(
            lambda r: (order.get(r.path, order.get(r.path.replace("file:///", "file:/"), 0)),
                       r.path, bytes(r.content)))
        out_s, keys_s = str(out), str(keys) if keys else None
        done = rdd.mapPartitions(
            lambda items: _spark_partition(items, out_s, ports, keys_s, first)).collect()
    total = sum(n for _, n, _ in done)
    return IngestResult(total, tuple(out.glob("day=*/*.parquet")),
                        {"bad_frames": sum(b for _, _, b in done)})
