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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from metercert.cosem.acse import AARE, AARQ
from metercert.errors import InputFileError, MetercertError, UsageError
from metercert.fleet.pcap import DEFAULT_PORT, CaptureStats, WireApdu, read_apdus
from metercert.fleet.schema import table_from_rows, write_dataset
from metercert.security import (
    ApduFormatError,
    AuthenticationFailed,
    KeySet,
    SecurityError,
    load_key_file,
    parse_ciphered,
    select_encryption_key,
    unprotect_parsed,
)
from metercert.security.protection import CIPHERED_TAGS

AARQ_TAG, AARE_TAG = 0x60, 0x61


class KeyRing:
    """Key sets of a key file, found by meter system title or meter id."""

    def __init__(self, keysets: Iterable[KeySet]) -> None:
        self._by_title: dict[bytes, KeySet] = {}
        self._by_meter: dict[str, KeySet] = {}
        for ks in keysets:
            if ks.server_system_title:
                self._by_title[ks.server_system_title] = ks
            meter = ks.extra.get("meter_id") if ks.extra else None
            if meter:
                self._by_meter[str(meter)] = ks

    @classmethod
    def load(cls, path: str | Path) -> KeyRing:
        return cls(load_key_file(path))

    def find(self, meter_id: str, server_title: bytes | None) -> KeySet | None:
        if server_title is not None and server_title in self._by_title:
            return self._by_title[server_title]
        return self._by_meter.get(meter_id)

    def __repr__(self) -> str:
        return f"KeyRing({len(self._by_title) + len(self._by_meter)} entries, <redacted>)"


@dataclass
class _Association:
    """What one stream has told us so far about its current association."""

    number: int = 0
    client_title: bytes | None = None
    server_title: bytes | None = None


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
class ApduRecorder:
    """Builds schema rows from wire APDUs, tracking associations per stream."""

    keys: KeyRing | None = None
    source: str = ""
    first_id: int = 0
    malformed: int = 0
    _assocs: dict[str, _Association] = field(default_factory=dict)
    _next: int = 0

    def record(self, w: WireApdu) -> dict[str, Any]:
        apdu = w.apdu
        tag = apdu[0]
        assoc = self._assocs.setdefault(w.stream, _Association())
        protected: bytes | None = None
        if tag == AARQ_TAG:
            assoc.number += 1
            title, info = _ap_title(apdu, tag)
            assoc.client_title, assoc.server_title = title, None
            protected = info if info and info[0] in CIPHERED_TAGS else None
        elif tag == AARE_TAG:
            title, info = _ap_title(apdu, tag)
            assoc.server_title = title
            protected = info if info and info[0] in CIPHERED_TAGS else None
        elif tag in CIPHERED_TAGS:
            protected = apdu
        meter_id = f"{w.server_addr}/{w.server_sap if w.server_sap is not None else '-'}"
        row: dict[str, Any] = {
            "id": self.first_id + self._next, "ts": w.ts, "direction": w.direction,
            "client_addr": w.client_addr, "server_addr": w.server_addr,
            "client_sap": w.client_sap, "server_sap": w.server_sap, "link": w.link,
            "meter_id": meter_id, "assoc_id": f"{w.stream}/{assoc.number}",
            "apdu_tag": tag, "length": len(apdu), "ciphered": False, "authenticated": False,
            "source": self.source,
        }
        self._next += 1
        if protected is None:
            return row
        try:
            parsed = parse_ciphered(protected)
        except (ApduFormatError, SecurityError):
            self.malformed += 1
            return row
        sc = parsed.security_control
        sender = assoc.client_title if w.direction == "c2s" else assoc.server_title
        title = parsed.system_title if parsed.system_title is not None else sender
        row.update({
            "system_title": title.hex().upper() if title else None,
            "sc": sc.byte, "suite": sc.suite,
            "key_set": "broadcast" if sc.broadcast else "unicast",
            "ic": parsed.invocation_counter,
            "ct_sha256": hashlib.sha256(parsed.payload).digest(),
            "ciphered": True, "authenticated": sc.authenticated,
        })
        if self.keys is not None and title is not None:
            ks = self.keys.find(meter_id, assoc.server_title)
            if ks is not None and not parsed.form.dedicated:
                try:
                    plain = unprotect_parsed(
                        parsed, encryption_key=select_encryption_key(ks, parsed),
                        authentication_key=ks.ak, system_title=title)
                    row["tag_ok"] = True if sc.authenticated else None
                    row["plain_tag"] = plain.plaintext[0] if plain.plaintext else None
                except AuthenticationFailed:
                    row["tag_ok"] = False
                except SecurityError:
                    pass  # a key is missing or the wrong size: nothing verified
        return row


@dataclass(frozen=True)
class IngestResult:
    rows: int
    files: tuple[Path, ...]
    stats: Mapping[str, int]


def iter_pcap_tables(path: str | Path, *, port: int = DEFAULT_PORT,
                     keys: KeyRing | str | Path | None = None, first_id: int = 0,
                     stats: CaptureStats | None = None,
                     chunk_rows: int = 250_000) -> Iterator[pa.Table]:
    """A capture's APDUs as schema tables of at most ``chunk_rows`` rows (bounded memory)."""
    ring = KeyRing.load(keys) if isinstance(keys, (str, Path)) else keys
    rec = ApduRecorder(keys=ring, source=Path(path).name, first_id=first_id)
    rows: list[dict[str, Any]] = []
    for w in read_apdus(path, port=port, stats=stats):
        rows.append(rec.record(w))
        if len(rows) >= chunk_rows:
            yield table_from_rows(rows)
            rows = []
    if rows:
        yield table_from_rows(rows)


def ingest_pcap(path: str | Path, *, port: int = DEFAULT_PORT, keys: KeyRing | str | Path |
                None = None, first_id: int = 0, stats: CaptureStats | None = None) -> pa.Table:
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


def ingest(paths: Iterable[str | Path], out_dir: str | Path, *, port: int = DEFAULT_PORT,
           keys: str | Path | None = None, mapping: str | Path | None = None,
           map_options: Iterable[str] = (),
           on_file: Callable[[Path, int], None] | None = None) -> IngestResult:
    """Ingest captures and logs into ``out_dir`` (appending to a dataset there)."""
    from metercert.fleet.logs import ColumnMapping, read_log
    from metercert.fleet.schema import next_id

    files = [Path(p) for p in paths]
    if not files:
        raise UsageError("give at least one capture or log file")
    kinds = [(f, sniff_kind(f)) for f in files]
    ring = KeyRing.load(keys) if keys else None
    col_map = ColumnMapping.load(mapping, map_options) if (
        mapping or any(k != "pcap" for _, k in kinds) or map_options) else None
    first = next_id(out_dir)
    total = 0
    written: list[Path] = []
    agg: dict[str, int] = {}
    for f, kind in kinds:
        if kind == "pcap":
            stats = CaptureStats()
            rows = 0
            for table in iter_pcap_tables(f, port=port, keys=ring, first_id=first, stats=stats):
                written += write_dataset(table, out_dir)
                first += table.num_rows
                rows += table.num_rows
            for k, v in vars(stats).items():
                agg[k] = agg.get(k, 0) + v
        else:
            assert col_map is not None
            table = read_log(f, col_map, kind=kind, first_id=first)
            written += write_dataset(table, out_dir)
            rows = table.num_rows
            first += rows
        total += rows
        if on_file:
            on_file(f, rows)
    return IngestResult(total, tuple(written), agg)


