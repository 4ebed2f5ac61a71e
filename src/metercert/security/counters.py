"""Invocation counters that never repeat, and replay checks for received ones.

What is guaranteed
------------------
*Sent counters.* :class:`InvocationCounterStore` hands out counters for one
(system title, key) pair. No value is ever handed out twice and values only grow,
whatever happens between two runs: SIGKILL, power loss (unsynced writes lost), a
torn write, a damaged or deleted counter file, a second process or a second store
object on the same file. When the store cannot *prove* that it resumes above every
value handed out before, it refuses to start (:class:`CounterStoreError`, one line
saying what the operator must do): ciphering with that key stops. It never falls
back to 0. The price of a crash is a gap: up to one block of values is skipped,
and after a recovery from the high-water mark up to ``hwm_step`` values.

How: the store persists a *reservation mark* R, meaning "no value >= R has been
handed out". To hand out v the store first makes sure R > v is on disk (written
and fsync'ed); only then does v leave the store. Reservations advance in blocks so
the fsync is paid once per block. Ahead of R it keeps a *high-water mark* H >= R,
moved (and synced) before any R above it is written, in large steps.

*Received counters.* :class:`ReplayGuard` keeps the last accepted counter per
sender and accepts a counter only if it is strictly greater. Callers call
:meth:`ReplayGuard.accept` *after* the APDU's tag has verified (a forged APDU with
a high counter must not move the window), and accept persists the new value (and,
ahead of it, H) before returning, so a request accepted before a power cut is still
a replay after it. Recovering a window from H refuses more, never less. A window
may instead append its accepted values to a journal that every window of a process
shares (:mod:`metercert.security.journal`: one fsync per batch of requests, same
promise: no answer before the window is durable).

On-disk format and what each kind of damage does
------------------------------------------------
A counter file holds three checksummed records, each at the start of its own 4 KiB
block so that one torn write (which stays inside the sector or page being written)
damages at most one record: two alternating slots for R (a sequence number picks
the newest) and the high-water record H. Loading:

* both slots valid: the newest slot is R (a torn write can only hit the slot being
  written, and the older one was then the newest);
* one slot valid and H valid: resume at H. The damaged slot might have been the
  newest, so the valid one alone proves nothing; H is above every R ever written;
* no slot valid, H valid: resume at H;
* anything less (random bytes, zeroed, truncated, two records damaged): refuse.

A *missing* file is told apart from a fresh key by the folder's ledger
(``counters.ledger``): a file's name is appended (and synced) to it once the file is
durable, so a listed name without its file means the file was lost: refuse. A
caller that knows the key has been used (the reference meter, whose key file is
written only after the counter files exist) passes ``require_existing=True`` and a
lost folder (ledger and all) is refused too. New files are built under a temporary
name and linked into place, then the folder is synced into its parent, so a crash
never leaves a half-made file. Files of the earlier two-slot format are read (both
slots valid, else refused) and rewritten in place, H first.

One owner: a store holds its counter file with ``flock`` for its lifetime; a second
process or a second store object in this process on the same file is refused. (A
file is created complete under a unique name and ``link``-ed into place, which fails
when the name exists: two creators never replace each other's file.)

Every write and fsync error (file or folder) raises :class:`CounterStoreError`, and
the store refuses to hand out further values: a meter must then stop ciphering.
Files are created 0600.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
import threading
import weakref
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

from metercert.security.errors import CounterExhausted, CounterStoreError

if TYPE_CHECKING:  # the journal imports this module's helpers
    from metercert.security.journal import ReplayJournal

MAX_COUNTER = 0xFFFFFFFF
BLOCK = 4096                     # one record per 4 KiB block: a torn write spoils one record
_RECORD = struct.Struct(">4sQQI")  # magic, sequence, value, crc32 of the first 20 bytes
_SLOT_MAGIC, _HWM_MAGIC = b"MCR1", b"MCH1"
_FILE_SIZE = 2 * BLOCK + _RECORD.size
_LEGACY = struct.Struct(">QQI")  # before 2026-12: two 32-byte slots in one sector
LEDGER = "counters.ledger"
DEFAULT_HWM_STEP = 1 << 16

_RECOVERY = ("ciphering with this key is refused: renew the key (a new key starts new "
             "counters); do not delete or recreate the file")


def _record(magic: bytes, seq: int, value: int) -> bytes:
    head = struct.pack(">4sQQ", magic, seq, value)
    return head + struct.pack(">I", zlib.crc32(head))


def _parse(raw: bytes, magic: bytes) -> tuple[int, int] | None:
    if len(raw) < _RECORD.size:
        return None
    kind, seq, value, crc = _RECORD.unpack(raw[:_RECORD.size])
    if kind != magic or seq == 0 or zlib.crc32(raw[:_RECORD.size - 4]) != crc:
        return None
    return seq, value


def _strerror(exc: OSError) -> str:
    return exc.strerror or str(exc)


def fsync_dir(folder: Path) -> None:
    """Make a folder's entries (a new or renamed file) durable; errors are raised."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs_durable(folder: Path, mode: int = 0o700) -> None:
    """``mkdir -p`` that syncs each new folder into its parent (a lost folder loses its files)."""
    missing = []
    p = folder
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=mode)
        except FileExistsError:
            continue
        fsync_dir(d.parent)


def _ledger_names(folder: Path) -> set[str] | None:
    """Names the ledger lists (lines with a bad checksum, e.g. torn, are ignored)."""
    try:
        text = (folder / LEDGER).read_bytes().decode("ascii", "replace")
    except FileNotFoundError:
        return None
    names = set()
    for line in text.splitlines():
        name, _, crc = line.rpartition(" ")
        if name and crc == f"{zlib.crc32(name.encode()):08x}":
            names.add(name)
    return names


def _ledger_add(folder: Path, name: str) -> None:
    path = folder / LEDGER
    created = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        line = f"{name} {zlib.crc32(name.encode()):08x}\n".encode()
        if os.write(fd, line) != len(line):
            raise OSError(errno.ENOSPC, "short write")
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        fsync_dir(folder)


def read_counter_file(path: Path) -> int | None:
    """The value a store would resume at, without locking or repairing (for inspection)."""
    raw = path.read_bytes()
    value, _ = _decide(raw)
    return value


def _decide(raw: bytes) -> tuple[int | None, int]:
    """(value to resume at or None when nothing proves one, newest slot sequence)."""
    if len(raw) == 64 and not raw.startswith(_SLOT_MAGIC):  # the format before 2026-12
        old = []
        for i in range(2):
            chunk = raw[i * 32:i * 32 + _LEGACY.size]
            seq, value, crc = _LEGACY.unpack(chunk)
            if seq and zlib.crc32(chunk[:16]) == crc:
                old.append((seq, value))
        return (max(old)[1], 0) if len(old) == 2 else (None, 0)
    slots = [s for s in (_parse(raw[i * BLOCK:], _SLOT_MAGIC) for i in range(2)) if s]
    hwm = _parse(raw[2 * BLOCK:], _HWM_MAGIC)
    if len(slots) == 2:
        seq, value = max(slots)
        return value, seq
    if hwm is not None:
        return (max(hwm[1], slots[0][1]) if slots else hwm[1]), (slots[0][0] if slots else 0)
    return None, 0


_OPEN: set[str] = set()   # counter files open in this process (flock also covers this)
_OPEN_LOCK = threading.Lock()


class _DurableValue:
    """One non-negative integer persisted in a counter file (see the module text)."""

    def __init__(self, path: Path, *, fsync: bool = True, require_existing: bool = False,
                 hwm_step: int = DEFAULT_HWM_STEP) -> None:
        self.path = path
        self._fsync = fsync
        self._hwm_step = max(1, hwm_step)
        self._fd = -1
        self._key: str | None = None
        #: the value came from the high-water mark (a slot was damaged): values jumped
        self.recovered = False
        #: the file did not exist and was made at 0 by this open
        self.created = False
        try:
            make_dirs_durable(path.parent)
            self._open(require_existing)
        except BaseException as exc:
            self.close()
            if isinstance(exc, OSError):
                raise CounterStoreError(
                    f"cannot use counter file {path}: {_strerror(exc)}") from None
            raise
        self._finalizer = weakref.finalize(self, _close_fd, self._fd, self._key)

    def _claim(self) -> None:
        """Open the file and hold it: one store per file, in this process and in any other."""
        key = str(self.path.resolve())
        with _OPEN_LOCK:
            if key in _OPEN:
                raise CounterStoreError(f"counter file {self.path} is already open in this "
                                        "process: one owner per counter file")
            fd = os.open(self.path, os.O_RDWR)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise CounterStoreError(f"counter file {self.path} is in use by another "
                                        "process: one owner per counter file") from None
            _OPEN.add(key)
            self._fd, self._key = fd, key

    def _open(self, require_existing: bool) -> None:
        folder, name = self.path.parent, self.path.name
        listed = _ledger_names(folder)
        if not self.path.exists():
            if listed is not None and name in listed:
                raise CounterStoreError(f"counter file {self.path} is missing although its "
                                        f"key has been in use; {_RECOVERY}")
            if require_existing:
                raise CounterStoreError(f"counter file {self.path} is missing for a key that "
                                        f"has been in use; {_RECOVERY}")
            self._create()
            self.created = True
        self._claim()
        raw = os.pread(self._fd, _FILE_SIZE, 0)
        value, seq = _decide(raw)
        if value is None:
            raise CounterStoreError(f"counter file {self.path} is damaged (no record proves "
                                    f"which values were used); {_RECOVERY}")
        legacy = len(raw) == 64 and not raw.startswith(_SLOT_MAGIC)
        slots = [_parse(raw[i * BLOCK:], _SLOT_MAGIC) for i in range(2)]
        hwm = None if legacy else _parse(raw[2 * BLOCK:], _HWM_MAGIC)
        self.recovered = not legacy and None in slots
        self.value, self._seq = value, seq
        self._hwm = hwm[1] if hwm else -1
        self._hwm_seq = hwm[0] if hwm else 0
        if legacy:  # rewritten in place, H first: a crash midway leaves H to resume from
            self._hwm, self._hwm_seq, self._seq = -1, 0, 0
            self.write(value)
            self.write(value)
        elif self.recovered or self._hwm < value:
            self.write(value)  # repair: both slots and H valid again before any use
            if None in slots:
                self.write(value)
        if listed is None or name not in listed:
            _ledger_add(folder, name)

    def _create(self) -> None:
        """A complete file at 0, made under a unique name and linked into place.

        ``link`` fails if the name exists, so two processes creating the same counter
        never replace each other's file; the loser opens the winner's (and waits its turn
        for the lock)."""
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.{threading.get_ident()}.new")
        data = bytearray(_FILE_SIZE)
        data[0:_RECORD.size] = _record(_SLOT_MAGIC, 1, 0)
        data[BLOCK:BLOCK + _RECORD.size] = _record(_SLOT_MAGIC, 2, 0)
        data[2 * BLOCK:] = _record(_HWM_MAGIC, 1, self._hwm_step)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            if os.write(fd, bytes(data)) != len(data):
                raise OSError(errno.ENOSPC, "short write")
            if self._fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, self.path)
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
        if self._fsync:
            fsync_dir(self.path.parent)

    def _put(self, offset: int, record: bytes) -> None:
        if os.pwrite(self._fd, record, offset) != len(record):
            raise OSError(errno.ENOSPC, "short write")
        if self._fsync:
            os.fdatasync(self._fd)

    def write(self, value: int, *, lower_hwm: bool = False) -> None:
        """Persist ``value``; H is moved (and synced) first whenever value would pass it."""
        try:
            if value > self._hwm or lower_hwm:
                hwm_seq = self._hwm_seq + 1
                hwm = value + self._hwm_step
                self._put(2 * BLOCK, _record(_HWM_MAGIC, hwm_seq, hwm))
                self._hwm, self._hwm_seq = hwm, hwm_seq
            seq = self._seq + 1
            self._put((seq % 2) * BLOCK, _record(_SLOT_MAGIC, seq, value))
        except OSError as exc:
            raise CounterStoreError(
                f"cannot persist counter file {self.path}: {_strerror(exc)}") from None
        self._seq, self.value = seq, value

    def close(self) -> None:
        fin = getattr(self, "_finalizer", None)
        if fin is not None:
            fin()
        else:
            _close_fd(self._fd, self._key)
        self._fd, self._key = -1, None


def _close_fd(fd: int, key: str | None) -> None:
    """Close a counter file (its flock goes with it) and free its name in this process."""
    with _OPEN_LOCK:
        if fd >= 0:
            os.close(fd)
        _OPEN.discard(key or "")


def _file_name(kind: str, system_title: bytes, key_name: str) -> str:
    safe_key = "".join(c for c in key_name if c.isalnum() or c in "-_") or "key"
    return f"{kind}-{system_title.hex().upper()}-{safe_key}.ctr"


class InvocationCounterStore:
    """Monotonic counter for frames *we* send under one key, never repeated (module text)."""

    def __init__(self, directory: str | os.PathLike[str], system_title: bytes, key_name: str,
                 *, block: int = 256, fsync: bool = True, require_existing: bool = False,
                 hwm_step: int = DEFAULT_HWM_STEP) -> None:
        if block < 1:
            raise ValueError("block must be at least 1")
        self._value = _DurableValue(Path(directory) / _file_name("tx", system_title, key_name),
                                    fsync=fsync, require_existing=require_existing,
                                    hwm_step=max(hwm_step, block))
        self._next = self._value.value
        self._block = block
        self._lock = threading.Lock()
        self._failed = False

    @property
    def path(self) -> Path:
        return self._value.path

    @property
    def recovered(self) -> bool:
        """True when a damaged slot made the store resume at its high-water mark."""
        return self._value.recovered

    @property
    def reserved(self) -> int:
        """The persisted mark: no value at or above it has been handed out."""
        return self._value.value

    def peek(self) -> int:
        """The value the next call to :meth:`next` returns (nothing is reserved)."""
        return self._next

    def advance_to(self, value: int) -> None:
        """Never hand out anything below ``value`` (resynchronising with a peer's window)."""
        with self._lock:
            self._next = max(self._next, value)

    def next(self) -> int:
        with self._lock:
            if self._failed:
                raise CounterStoreError("counter store failed earlier; refusing to hand out values")
            value = self._next
            if value > MAX_COUNTER:
                raise CounterExhausted("invocation counter exhausted: the key must be renewed")
            if value >= self._value.value:
                try:
                    self._value.write(min(value + self._block, MAX_COUNTER + 1))
                except CounterStoreError:
                    self._failed = True
                    raise
            self._next = value + 1
            return value

    def close(self) -> None:
        self._failed = True
        self._value.close()


class ReplayGuard:
    """Last accepted received counter for one sender and key, persisted on acceptance.

    With a ``journal`` (:class:`metercert.security.journal.ReplayJournal`) accepted values
    go to that journal (group commit) instead of this window's file; the file still proves
    the window exists (ledger, fail-closed checks) and is where a key change resets it.
    """

    def __init__(self, directory: str | os.PathLike[str] | None, system_title: bytes, key_name: str,
                 *, fsync: bool = True, require_existing: bool = False,
                 hwm_step: int = DEFAULT_HWM_STEP, journal: ReplayJournal | None = None) -> None:
        self._value = (None if directory is None else
                       _DurableValue(Path(directory) / _file_name("rx", system_title, key_name),
                                     fsync=fsync, require_existing=require_existing,
                                     hwm_step=hwm_step))
        # stored as last+1 so that 0 means "nothing accepted yet"
        self._last_plus_one = self._value.value if self._value else 0
        self._journal = journal if self._value is not None else None
        self._jkey = b""
        if self._journal is not None and self._value is not None:
            try:
                self._journal.adopt_folder(self._value.path.parent)
                self._jkey = self._journal.key_for(self._value.path)
                if self._value.created:
                    # a new window (new keys, or a folder a flaw wipes): older journal
                    # records of this path belong to keys that are gone
                    if self._journal.value(self._jkey):
                        self._journal.append(self._jkey, 0)
                        self._journal.sync()
                else:
                    self._last_plus_one = max(self._last_plus_one,
                                              self._journal.value(self._jkey) or 0)
            except BaseException:
                self._value.close()
                raise
        self._lock = threading.Lock()
        self._failed = False

    @property
    def recovered(self) -> bool:
        """True when a damaged slot made the window resume at its high-water mark."""
        return self._value is not None and self._value.recovered

    @property
    def last_accepted(self) -> int | None:
        return self._last_plus_one - 1 if self._last_plus_one else None

    def is_fresh(self, counter: int) -> bool:
        return counter + 1 > self._last_plus_one

    def accept(self, counter: int) -> bool:
        """Record ``counter`` if it is fresh; return False for a replay or stale counter.

        Raises :class:`CounterStoreError` when the new window cannot be persisted (the
        request must then not be served) and for good after that.
        """
        with self._lock:
            if self._failed:
                raise CounterStoreError("replay window failed earlier; refusing requests")
            if counter + 1 <= self._last_plus_one:
                return False
            try:
                if self._journal is not None:
                    # immediate journal: durable now; deferred: the server waits for it
                    self._journal.append(self._jkey, counter + 1)
                elif self._value is not None:
                    self._value.write(counter + 1)
            except CounterStoreError:
                self._failed = True
                raise
            self._last_plus_one = counter + 1
            return True

    def reset(self) -> None:
        """Forget the window (only when the key changes: counters restart with a new key)."""
        with self._lock:
            if self._value is not None:
                self._value.write(0, lower_hwm=True)
            if self._journal is not None:
                self._journal.append(self._jkey, 0)
                self._journal.sync()
            self._last_plus_one = 0

    def close(self) -> None:
        self._failed = True
        if self._value is not None:
            self._value.close()


class SharedCounter:
    """A borrowed handle on the one store this process keeps for a counter file.

    Several clients of one head-end may talk to the same meter association at once;
    they must draw from one sequence, not open the file twice (which is refused).
    ``close`` gives the handle back; the file is closed when the last one is.
    """

    def __init__(self, key: str, store: InvocationCounterStore) -> None:
        self._key, self._store, self._open = key, store, True

    def next(self) -> int:
        if not self._open:
            raise CounterStoreError("counter handle was closed; refusing to hand out values")
        return self._store.next()

    def advance_to(self, value: int) -> None:
        self._store.advance_to(value)

    def peek(self) -> int:
        return self._store.peek()

    @property
    def reserved(self) -> int:
        return self._store.reserved

    def close(self) -> None:
        if not self._open:
            return
        self._open = False
        with _SHARED_LOCK:
            store, users = _SHARED[self._key]
            if users > 1:
                _SHARED[self._key] = (store, users - 1)
                return
            del _SHARED[self._key]
        store.close()


_SHARED: dict[str, tuple[InvocationCounterStore, int]] = {}
_SHARED_LOCK = threading.Lock()


def shared_store(directory: str | os.PathLike[str], system_title: bytes, key_name: str,
                 **options: int | bool) -> SharedCounter:
    """A handle on this process's single store for the file (opened on first use)."""
    key = str((Path(directory) / _file_name("tx", system_title, key_name)).resolve())
    with _SHARED_LOCK:
        entry = _SHARED.get(key)
        if entry is None:
            entry = (InvocationCounterStore(directory, system_title, key_name,
                                            **options), 0)  # type: ignore[arg-type]
        _SHARED[key] = (entry[0], entry[1] + 1)
        return SharedCounter(key, entry[0])
