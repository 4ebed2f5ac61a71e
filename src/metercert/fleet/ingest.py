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

import gc
import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Final

import pyarrow as pa

from metercert.cosem.acse import AARE, AARQ
from metercert.errors import InputFileError, MetercertError, UsageError
from metercert.fleet.pcap import CaptureReader, CaptureStats, WireApdu
from metercert.fleet.schema import (
    COLUMNS,
    default_key_id,
    meter_key,
    space_key,
    table_from_lists,
    write_dataset,
)
from metercert.security import (
    SUITES,
    ApduFormatError,
    AuthenticationFailed,
    Key,
    KeySet,
    SecurityControl,
    SecurityError,
    load_key_file,
    parse_ciphered,
    select_encryption_key,
)
from metercert.security.protection import (
    CIPHERED_TAGS,
    DEDICATED_TAGS,
    GLOBAL_TAGS,
    cipher_for,
    specific_start,
)

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


@lru_cache(maxsize=4096)
def _ap_title(apdu: bytes, tag: int) -> tuple[bytes | None, bytes | None]:
    """(AP-title, user-information) of an AARQ or AARE; ``(None, None)`` if it won't parse.
    (Memoised: a head-end sends the same AARQ to every meter.)"""
    try:
        if tag == AARQ_TAG:
            q = AARQ.from_bytes(apdu)
            return q.calling_ap_title, q.user_information
        a = AARE.from_bytes(apdu)
        return a.responding_ap_title, a.user_information
    except (MetercertError, ValueError, IndexError):
        return None, None


# column positions of a row list (the order of schema.COLUMNS)
(_ID, _TS, _DIR, _CADDR, _SADDR, _CSAP, _SSAP, _LINK, _MID, _MKEY, _EP, _ASSOC, _ST, _SC,
 _SUITE, _KSET, _KID, _SKEY, _IC, _TAG, _LEN, _SHA, _CIPH, _AUTH, _TAGOK, _PTAG,
 _SRC) = range(27)
assert len(COLUMNS) == 27 and COLUMNS[_SRC] == "source" and COLUMNS[_PTAG] == "plain_tag"

_SPECIFIC = frozenset(GLOBAL_TAGS) | frozenset(DEDICATED_TAGS)
# per security control byte: (byte, suite, key_set, authenticated, broadcast, SecurityControl)
_SC_FACTS = [(sc.byte, sc.suite, "broadcast" if sc.broadcast else "unicast", sc.authenticated,
              sc.broadcast, sc) for sc in (SecurityControl.from_byte(b) for b in range(256))]
_KEY_BYTES = {n: s.key_bytes for n, s in SUITES.items()}
_SHA256 = hashlib.sha256
GCM_TAG_BYTES = 12  # the tag length of every DLMS security suite


# what a finished row needs of its ciphered APDU, as a plain tuple (one per APDU):
# (APDU, SC facts, dedicated form, system title it carries, authenticated but shorter than
# the tag); the APDU itself is parsed again by parse_ciphered only to verify it with keys
_C_APDU: Final = 0
_C_FACTS: Final = 1
_C_DED: Final = 2
_C_TITLE: Final = 3
_C_SHORT: Final = 4
_Cipher = tuple[bytes, tuple[int, int, str, bool, bool, SecurityControl], bool, "bytes | None",
                bool]


def _split_ciphered(protected: bytes) -> tuple[_Cipher, int, bytes] | None:
    """(cipher facts, invocation counter, payload) of a ciphered APDU; None if it won't
    split. Service-specific forms whose 1-, 2- or 3-byte length covers the rest are read in
    place (as :func:`parse_ciphered` does); anything else goes through it."""
    tag = protected[0]
    if tag in _SPECIFIC:
        start = specific_start(protected)
        if start:
            facts = _SC_FACTS[protected[start]]
            return ((protected, facts, tag in DEDICATED_TAGS, None,
                     facts[3] and len(protected) - start < 5 + GCM_TAG_BYTES),
                    int.from_bytes(protected[start + 1:start + 5], "big"), protected[start + 5:])
    try:
        parsed = parse_ciphered(protected)
    except (ApduFormatError, SecurityError):
        return None
    facts = _SC_FACTS[parsed.security_control.byte]
    return ((protected, facts, parsed.form.dedicated, parsed.system_title,
             facts[3] and len(parsed.payload) < GCM_TAG_BYTES),
            parsed.invocation_counter, parsed.payload)


class _Association:
    """What one stream has told us so far about its current association."""

    __slots__ = ("client_title", "held", "ident", "key", "label", "meter_title", "number")

    def __init__(self, key: str) -> None:
        self.key = key
        self.number = 0
        self.label = f"{key}/0"
        self.client_title: bytes | None = None
        self.meter_title: bytes | None = None
        self.ident: tuple[bytes | None, str, tuple[str, int]] | None = None
        # rows waiting for the meter's system title: (row, cipher facts or None)
        self.held: list[tuple[list[Any], _Cipher | None]] = []


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

    Rows are lists in :data:`~metercert.fleet.schema.COLUMNS` order (``add`` appends
    them to ``sink``, what the ingest turns into tables with
    :func:`~metercert.fleet.schema.table_from_lists`); ``record`` returns them as dicts.
    """

    keys: KeyRing | None = None
    source: str = ""
    first_id: int = 0
    malformed: int = 0
    unattributed: int = 0
    short_tags: int = 0  # authenticated APDUs too short for the 12-byte GCM tag
    key_size_mismatch: int = 0  # APDUs not verified: no key of the suite's size
    sink: list[list[Any]] = field(default_factory=list)
    _assocs: dict[str, _Association] = field(default_factory=dict)
    _by_path: dict[tuple[str, int | None, str, str], _Association] = field(
        default_factory=dict)
    _endpoint_title: dict[str, bytes] = field(default_factory=dict)
    _last_key: dict[str, int] = field(default_factory=dict)
    _next: int = 0
    _spaces: dict[tuple[str, str], int] = field(default_factory=dict)  # memo: digests
    _ids: dict[tuple[bytes | None, str], tuple[str, int]] = field(default_factory=dict)
    _hex: dict[bytes, str] = field(default_factory=dict)

    @property
    def rows_done(self) -> int:
        """Rows finished so far (given their row id)."""
        return self._next

    def record(self, w: WireApdu) -> list[dict[str, Any]]:
        """The rows that are complete after ``w`` (held rows are released in order)."""
        sink, self.sink = self.sink, []
        try:
            self.add(w)
            return [dict(zip(COLUMNS, r, strict=True)) for r in self.sink]
        finally:
            self.sink = sink

    def flush(self) -> list[dict[str, Any]]:
        """Release every held row (end of the ingest)."""
        sink, self.sink = self.sink, []
        try:
            self.flush_rows()
            return [dict(zip(COLUMNS, r, strict=True)) for r in self.sink]
        finally:
            self.sink = sink

    def _association(self, path: tuple[str, int | None, str, str]) -> _Association:
        stream, client_sap, endpoint, server_addr = path
        # one association per client and server address pair on a connection: the
        # wrapper multiplexes by wPort, an HDLC gateway by the meters' addresses
        where = endpoint[len(server_addr) + 1:] or "-"
        akey = f"{stream} {client_sap}>{where}"
        assoc = self._assocs.get(akey)
        if assoc is None:
            assoc = self._assocs[akey] = _Association(akey)
        self._by_path[path] = assoc
        return assoc

    def add(self, w: WireApdu) -> None:
        """Append the rows that are complete after ``w`` to ``sink``."""
        (ts, direction, client_addr, server_addr, client_sap, server_sap, link, stream, apdu,
         endpoint, source) = w
        tag = apdu[0]
        path = (stream, client_sap, endpoint, server_addr)
        assoc = self._by_path.get(path)
        if assoc is None:
            assoc = self._association(path)
        released = False
        if tag in CIPHERED_TAGS:
            protected: bytes | None = apdu
        elif tag == AARQ_TAG:
            if assoc.held:
                self._resolve(assoc, endpoint)
                released = True
            title, info = _ap_title(apdu, tag)
            assoc.number += 1
            assoc.label = f"{assoc.key}/{assoc.number}"
            assoc.client_title, assoc.meter_title = title, None
            protected = info if info and info[0] in CIPHERED_TAGS else None
        elif tag == AARE_TAG:
            title, info = _ap_title(apdu, tag)
            if title:
                assoc.meter_title = title
            protected = info if info and info[0] in CIPHERED_TAGS else None
        else:
            protected = None
        cipher: _Cipher | None = None
        row: list[Any]
        if protected is None:
            row = [None, ts, direction, client_addr, server_addr, client_sap, server_sap, link,
                   None, None, endpoint, assoc.label, None, None, None, None, None, None, None,
                   tag, len(apdu), None, False, False, None, None, source or self.source]
        else:
            split = _split_ciphered(protected)
            if split is None:
                self.malformed += 1  # ciphered, but a form we cannot split: no SC claimed
                row = [None, ts, direction, client_addr, server_addr, client_sap, server_sap,
                       link, None, None, endpoint, assoc.label, None, None, None, None, None,
                       None, None, tag, len(apdu), None, True, False, None, None,
                       source or self.source]
            else:
                cipher, ic, payload = split
                facts = cipher[_C_FACTS]
                explicit = cipher[_C_TITLE]
                if explicit and assoc.meter_title is None and direction == "s2c":
                    assoc.meter_title = explicit
                row = [None, ts, direction, client_addr, server_addr, client_sap, server_sap,
                       link, None, None, endpoint, assoc.label, None, facts[0], facts[1],
                       facts[2], None, None, ic, tag, len(apdu), _SHA256(payload).digest(),
                       True, facts[3], None, None, source or self.source]
        if assoc.meter_title is not None and not released and not assoc.held:
            self.sink.append(self._finish(row, cipher, assoc, assoc.meter_title))
            return
        assoc.held.append((row, cipher))
        if assoc.meter_title is not None or tag == 0x63 or len(assoc.held) > _HOLD_LIMIT:
            self._resolve(assoc, endpoint)

    def _resolve(self, assoc: _Association, endpoint: str) -> None:
        """Give held rows their identity, counter space and tag verdict, in order."""
        if not assoc.held:
            return
        if assoc.meter_title is not None:
            self._endpoint_title[endpoint] = assoc.meter_title
        meter_title = assoc.meter_title or self._endpoint_title.get(endpoint)
        finish, sink = self._finish, self.sink
        for row, cipher in assoc.held:
            sink.append(finish(row, cipher, assoc, meter_title))
        assoc.held = []

    def _finish(self, row: list[Any], cipher: _Cipher | None, assoc: _Association,
                meter_title: bytes | None) -> list[Any]:
        row[_ID] = self.first_id + self._next
        self._next += 1
        endpoint = row[_EP]
        last = assoc.ident  # (meter title, endpoint, (meter id, meter key)) last used
        if last is None or last[0] is not meter_title or last[1] is not endpoint:
            found = self._ids.get((meter_title, endpoint))
            if found is None:
                mid = meter_identity(meter_title, endpoint)
                found = self._ids[(meter_title, endpoint)] = (mid, meter_key(mid))
            last = assoc.ident = (meter_title, endpoint, found)
        meter = row[_MID] = last[2][0]
        row[_MKEY] = last[2][1]
        if cipher is None:
            if row[_CIPH] and meter:  # a ciphered form we cannot split: the default space
                key_id = row[_KID] = default_key_id(meter, None, row[_CSAP])
                row[_SKEY] = self._space(f"?{row[_DIR]}", key_id)
            return row
        sender = cipher[_C_TITLE] or (
            assoc.client_title if row[_DIR] == "c2s" else meter_title)
        if sender:
            who = self._hex.get(sender)
            if who is None:
                who = self._hex[sender] = sender.hex().upper()
            row[_ST] = who
        else:
            who = f"?{row[_DIR]}"
            if sender is None:
                self.unattributed += 1
        if cipher[_C_SHORT]:
            self.short_tags += 1
        generation = ""
        if self.keys is not None and sender is not None and not cipher[_C_DED]:
            generation = self._verify(row, cipher, sender, endpoint, meter_title,
                                      assoc.client_title)
        if cipher[_C_DED]:
            key_id = f"ded {row[_ASSOC]}"
        elif cipher[_C_FACTS][4]:
            key_id = f"gbk{generation}"
        else:
            key_id = f"guk {meter}/{row[_CSAP]}{generation}"
        row[_KID] = key_id
        sk = self._spaces.get((who, key_id))
        if sk is None:
            sk = self._spaces[(who, key_id)] = space_key(who, key_id)
        row[_SKEY] = sk
        return row

    def _space(self, who: str, key_id: str) -> int:
        sk = self._spaces.get((who, key_id))
        if sk is None:
            sk = self._spaces[(who, key_id)] = space_key(who, key_id)
        return sk

    def _verify(self, row: list[Any], cipher: _Cipher, sender: bytes, endpoint: str,
                meter_title: bytes | None, client_title: bytes | None) -> str:
        """Check the tag with each candidate key set (through the bound cipher the client
        and meter use); return the key generation label.

        ``tag_ok`` is True when a key set verifies, False when the tag fails with every
        key set that could serve the suite, None (not verified) when none could: no key
        of the size the APDU's suite needs (counted in ``key_size_mismatch``), a title
        that is no system title, or a form the ingest does not open."""
        assert self.keys is not None
        cands = self.keys.candidates(endpoint, meter_title, client_title, row[_CSAP])
        if not cands:
            return ""
        try:
            parsed = parse_ciphered(cipher[_C_APDU])
        except (ApduFormatError, SecurityError):
            return ""
        memo = f"{endpoint}/{row[_CSAP]}"
        first = self._last_key.get(memo, 0)
        order = [first, *(i for i in range(len(cands)) if i != first)] if first < len(
            cands) else list(range(len(cands)))
        sc = parsed.security_control
        size = _KEY_BYTES.get(sc.suite)
        failed = wrong_size = False
        for i in order:
            ks = cands[i]
            ek = select_encryption_key(ks, parsed)
            ak = ks.ak if sc.authenticated else None
            if size is not None and ((sc.protected and ek is not None and len(ek) != size)
                                     or (ak is not None and len(ak) != size)):
                wrong_size = True  # this key set cannot serve the APDU's suite
                continue
            try:
                plain = cipher_for(ek, ak, sender, sender, sc).open_parsed(parsed)
            except AuthenticationFailed:
                failed = True
                continue
            except SecurityError:
                continue  # a key is missing, a title is no system title: nothing verified
            self._last_key[memo] = i
            row[_TAGOK] = True if sc.authenticated else None
            row[_PTAG] = plain[0] if plain else None
            return f"#k{i}" if len(cands) > 1 else ""
        if failed and sc.authenticated:
            row[_TAGOK] = False
        elif wrong_size:
            self.key_size_mismatch += 1
        return ""

    def flush_rows(self) -> None:
        """Release every held row into ``sink`` (end of the ingest)."""
        for assoc in self._assocs.values():
            if assoc.held:
                self._resolve(assoc, assoc.held[0][0][_EP])


@dataclass(frozen=True)
class IngestResult:
    rows: int
    files: tuple[Path, ...]
    stats: Mapping[str, int]
    skipped: tuple[Path, ...] = ()


class _GcPause:
    """Holds the cyclic garbage collector off while rows are built (and turns it back on
    around every yield and at the end, if it was on). The row builder makes no reference
    cycles, but it makes a few container objects per APDU, and each collection walks all
    the rows held so far: 10-15 % of the ingest's CPU time for nothing."""

    def __init__(self) -> None:
        self._paused = False

    def pause(self) -> None:
        if gc.isenabled():
            gc.disable()
            self._paused = True

    def resume(self) -> None:
        if self._paused:
            self._paused = False
            gc.enable()


def _capture_tables(reader: CaptureReader, rec: ApduRecorder,
                    files: Iterable[tuple[str | Path, str]], chunk_rows: int = 250_000,
                    on_file: Callable[[Any, int], None] | None = None) -> Iterator[pa.Table]:
    """The rows of ``files`` ((path, source name) pairs, read as one ingest) as schema
    tables of at most about ``chunk_rows`` rows (bounded memory)."""
    sink: list[list[Any]] = []
    rec.sink = sink
    add = rec.add
    gc_pause = _GcPause()
    gc_pause.pause()
    try:
        for path, source in files:
            before = rec.rows_done
            for w in reader.read(path, source):
                add(w)
                if len(sink) >= chunk_rows:
                    table = table_from_lists(sink)
                    sink.clear()
                    gc_pause.resume()
                    yield table
                    gc_pause.pause()
            if on_file:
                gc_pause.resume()
                on_file(path, rec.rows_done - before)
                gc_pause.pause()
        for w in reader.finish():
            add(w)
        rec.flush_rows()
        if sink:
            table = table_from_lists(sink)
            sink.clear()
            gc_pause.resume()
            yield table
    finally:
        gc_pause.resume()


def _recorder_stats(rec: ApduRecorder) -> dict[str, int]:
    return {"unattributed": rec.unattributed, "undecoded_ciphered": rec.malformed,
            "short_tags": rec.short_tags, "key_size_mismatch": rec.key_size_mismatch}


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
    yield from _capture_tables(reader, rec, [(p, str(p)) for p in paths], chunk_rows)


def ingest_pcap(path: str | Path, *, port: int | Iterable[int] | None = None,
                keys: KeyRing | str | Path | None = None, first_id: int = 0,
                stats: CaptureStats | None = None) -> pa.Table:
    """All APDUs of one capture as one table in the fleet schema (nothing written).

    ``keys`` is a key file path or a :class:`KeyRing`; row ids start at ``first_id``.
    """
    tables = list(iter_pcap_tables(path, port=port, keys=keys, first_id=first_id, stats=stats))
    return pa.concat_tables(tables) if tables else table_from_lists([])


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
    rows, written = 0, []
    for table in _capture_tables(reader, rec, [(path, path)]):
        written += [str(p) for p in write_dataset(table, out)]
        rows += table.num_rows
    agg = dict(vars(stats))
    agg.update(_recorder_stats(rec))
    return rows, written, agg


def _start_method() -> str:
    """How workers of a parallel ingest start: forked on Linux when no other Python
    thread runs (the workers inherit the imported modules instead of importing pyarrow
    and the rest again), spawned otherwise. With no other thread, no lock the workers
    could touch (the standard streams' at exit, a console's) is held by someone else at
    the fork; the native libraries loaded by then (OpenSSL, Arrow, jemalloc) reinitialise
    their state in a forked child, and the executor forks all its workers before it
    starts its own thread. (The CLI keeps its progress display threadless for --jobs.)"""
    import multiprocessing
    import sys
    import threading

    if (sys.platform == "linux" and "fork" in multiprocessing.get_all_start_methods()
            and threading.active_count() == 1):
        return "fork"
    return "spawn"


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
            ctx = multiprocessing.get_context(_start_method())
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
            reader = CaptureReader([port] if isinstance(port, int) else port, stats)
            rows = 0
            for table in _capture_tables(reader, rec, [(f, str(f)) for f in pcaps],
                                         on_file=on_file):
                written += write_dataset(table, out)
                rows += table.num_rows
            first += rows
            total += rows
            agg.update(vars(stats))
            agg.update(_recorder_stats(rec))
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
            rows = 0
            for table in _capture_tables(reader, rec, [(tmp, local)]):
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
