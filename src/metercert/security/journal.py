"""One journal for the replay windows of every meter in a process: group commit.

What is guaranteed
------------------
A replay window (:class:`~metercert.security.counters.ReplayGuard`) attached to a
journal records each accepted counter as one 32-byte record appended here, instead
of rewriting and syncing its own counter file. One ``fdatasync`` makes a whole batch
of records durable, whichever meters and associations they come from. The promise
to the peer is the one a file per window gives: **no response to a request leaves
the meter before the window that accepted its counter is durable**, and no effect of
the request reaches the disk before that either (the meter state syncs the journal
before it writes a key or firmware file). Effects held only in RAM die with the power
together with the unsynced window, so a counter accepted before a power cut or a
SIGKILL is refused after it, and a request whose window was lost was never answered
and left no trace.

Two ways of waiting:

* immediate (the default, for callers that answer as soon as ``accept`` returns, such
  as the sans-IO session used directly): :meth:`ReplayJournal.append` returns once its
  record is durable, one sync per record;
* deferred (the asyncio server, ``journal.deferred = True``): ``append`` only buffers;
  the server awaits :meth:`ReplayJournal.durable` before it sends the response. The
  first waiter hands a flush to the journal's one writer thread; records appended while
  that sync runs form the next batch (pipelined group commit: one thread hop per batch,
  none per request, and the event loop never waits for the disk).

Format, recovery, failing closed
--------------------------------
A record is ``"MRJ1"``, the 16-byte BLAKE2b digest of the window's counter file path
(relative to the journal's folder), the window value (last accepted + 1, as in the
window files; 0 after a key change) and a CRC-32. The last record of a key wins; a
window opens at the larger of its file's value and the journal's.

Records are read from the start. The first invalid one ends the log when at most one
batch (:data:`MAX_BATCH` records) follows it: that is the torn tail of a batch whose
sync never returned, so none of its requests was answered. Anything longer after an
invalid record is damage to synced data: the journal is refused
(:class:`CounterStoreError`) and the meter does not start. On open, and whenever it
grows past :data:`COMPACT_BYTES`, the journal is rewritten with one record per key
(temporary file synced, renamed, folder synced), so a crash leaves the old or the new
journal, each complete.

A journal that existed is never silently replaced by an empty one: its creation is
recorded (and synced) in the folder's ``counters.ledger``, and every counter folder
whose windows use it records that in its own ledger before the first append; a
journal missing while either ledger names it is refused. One process per journal: it
is held with ``flock``. Write and sync errors raise :class:`CounterStoreError` and
fail the journal for good (every window on it then refuses requests).
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import hashlib
import os
import struct
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from metercert.security.counters import _ledger_add, _ledger_names, _strerror, fsync_dir
from metercert.security.errors import CounterStoreError

JOURNAL_NAME = "replay.journal"
FOLDER_MARK = "@replay-journal"  # in a counter folder's ledger: its windows use a journal
MAGIC = b"MRJ1"
_REC = struct.Struct(">4s16sQI")
RECORD = _REC.size  # 32
MAX_BATCH = 4096                 # records per write + sync (the longest possible torn tail)
COMPACT_BYTES = 4 << 20          # rewrite the journal once it passes this size

_RECOVERY = ("replay windows cannot be proven; renew the meter's keys (remove its state "
             "folder); do not delete the journal")


def _record(key: bytes, value: int) -> bytes:
    head = struct.pack(">4s16sQ", MAGIC, key, value)
    return head + struct.pack(">I", zlib.crc32(head))


def parse_journal(raw: bytes, *, path: Path | str = "journal") -> dict[bytes, int]:
    """The last value of each key; raises CounterStoreError when synced data is damaged."""
    values: dict[bytes, int] = {}
    count = len(raw) // RECORD
    for i in range(count):
        chunk = raw[i * RECORD:(i + 1) * RECORD]
        magic, key, value, crc = _REC.unpack(chunk)
        if magic != MAGIC or zlib.crc32(chunk[:-4]) != crc:
            if len(raw) - i * RECORD > MAX_BATCH * RECORD:
                raise CounterStoreError(f"replay journal {path} is damaged at byte "
                                        f"{i * RECORD}; {_RECOVERY}")
            break  # the torn tail of a batch that was never synced (never answered)
        values[key] = value
    return values


class ReplayJournal:
    """The group-commit journal of one folder (see the module text)."""

    def __init__(self, folder: str | os.PathLike[str], *, name: str = JOURNAL_NAME) -> None:
        self.folder = Path(folder)
        self.path = self.folder / name
        self.deferred = False
        self._values: dict[bytes, int] = {}
        self._pending: list[bytes] = []
        self._appended = 0   # records appended since open
        self._durable = 0    # of which durable
        self._lock = threading.Lock()      # values and pending
        self._io = threading.Lock()        # one writer at a time
        self._failed = False
        self._fd = -1
        self._size = 0
        self._writer: ThreadPoolExecutor | None = None
        self._inflight: asyncio.Future[None] | None = None
        self._users = 0
        #: the journal did not exist when opened (a counter folder that used one refuses)
        self.created = False
        try:
            self._open()
        except OSError as exc:
            self.close()
            raise CounterStoreError(f"cannot use replay journal {self.path}: "
                                    f"{_strerror(exc)}") from None
        except BaseException:
            self.close()
            raise

    # -- opening -------------------------------------------------------------------------
    def _open(self) -> None:
        listed = _ledger_names(self.folder)
        lock = os.open(self.folder / (self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock)
            raise CounterStoreError(f"replay journal {self.path} is in use by another "
                                    "process: one meter process per state folder") from None
        self._lock_fd = lock
        if self.path.exists():
            self._values = parse_journal(self.path.read_bytes(), path=self.path)
        elif listed is not None and self.path.name in listed:
            raise CounterStoreError(f"replay journal {self.path} is missing although it has "
                                    f"been in use; {_RECOVERY}")
        else:
            self.created = True
        self._compact()  # a clean file: no torn tail for appends to follow
        if listed is None or self.path.name not in listed:
            _ledger_add(self.folder, self.path.name)

    def _compact(self) -> None:
        """Rewrite the journal as one record per key: synced, renamed, folder synced."""
        with self._lock:
            data = b"".join(_record(k, v) for k, v in self._values.items())
        tmp = self.path.with_name(self.path.name + ".new")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            if data and os.write(fd, data) != len(data):
                raise OSError(errno.ENOSPC, "short write")
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        fsync_dir(self.folder)
        old, self._fd = self._fd, os.open(self.path, os.O_WRONLY | os.O_APPEND)
        if old >= 0:
            os.close(old)
        self._size = len(data)

    # -- windows -------------------------------------------------------------------------
    def key_for(self, counter_file: Path) -> bytes:
        """The record key of a window's counter file (its path below the journal's folder)."""
        try:
            rel = str(Path(counter_file).resolve().relative_to(self.folder.resolve()))
        except ValueError:
            rel = str(Path(counter_file).resolve())
        return hashlib.blake2b(rel.encode(), digest_size=16).digest()

    def value(self, key: bytes) -> int | None:
        with self._lock:
            return self._values.get(key)

    def adopt_folder(self, counter_dir: Path) -> None:
        """Called before a window of ``counter_dir`` first appends: refuse a folder whose
        windows used a journal that is gone, and mark the folder as using one."""
        names = _ledger_names(counter_dir) or set()
        if FOLDER_MARK in names:
            if self.created:
                raise CounterStoreError(f"replay journal {self.path} is missing although the "
                                        f"windows in {counter_dir} used it; {_RECOVERY}")
            return
        try:
            _ledger_add(counter_dir, FOLDER_MARK)
        except OSError as exc:
            raise CounterStoreError(f"cannot write the ledger of {counter_dir}: "
                                    f"{_strerror(exc)}") from None

    def append(self, key: bytes, value: int) -> int:
        """Record a window value; returns its sequence number. In immediate mode the record
        is durable on return; deferred, see :meth:`durable`."""
        record = _record(key, value)
        with self._lock:
            if self._failed:
                raise CounterStoreError(f"replay journal {self.path} failed earlier; "
                                        "refusing requests")
            self._values[key] = value
            self._pending.append(record)
            self._appended += 1
            seq = self._appended
        if not self.deferred:
            self._flush(seq)
        return seq

    @property
    def pending(self) -> bool:
        """True while some appended record is not yet durable."""
        return self._durable < self._appended

    def sync(self) -> None:
        """Make every record appended so far durable now (in the calling thread)."""
        self._flush(self._appended)

    async def durable(self) -> None:
        """Return once every record appended before the call is durable (group commit)."""
        target = self._appended
        while self._durable < target:
            if self._failed:
                raise CounterStoreError(f"replay journal {self.path} failed; refusing requests")
            inflight = self._inflight
            if inflight is None:
                if self._writer is None:
                    self._writer = ThreadPoolExecutor(1, thread_name_prefix="replay-journal")
                inflight = asyncio.get_running_loop().run_in_executor(
                    self._writer, self._flush, self._appended)
                self._inflight = inflight
                inflight.add_done_callback(self._flush_done)
            await asyncio.shield(inflight)

    def _flush_done(self, future: asyncio.Future[None]) -> None:
        if self._inflight is future:
            self._inflight = None
        if not future.cancelled():
            future.exception()  # retrieved: waiters see it through their shield

    def _flush(self, upto: int) -> None:
        with self._io:
            while self._durable < upto:
                with self._lock:
                    if self._failed:
                        raise CounterStoreError(f"replay journal {self.path} failed earlier; "
                                                "refusing requests")
                    batch = self._pending[:MAX_BATCH]
                    del self._pending[:MAX_BATCH]
                data = b"".join(batch)
                try:
                    if os.write(self._fd, data) != len(data):
                        raise OSError(errno.ENOSPC, "short write")
                    os.fdatasync(self._fd)
                    self._size += len(data)
                    self._durable += len(batch)
                    if self._size > COMPACT_BYTES:
                        self._compact()
                except OSError as exc:
                    self._failed = True
                    raise CounterStoreError(f"cannot persist replay journal {self.path}: "
                                            f"{_strerror(exc)}") from None

    # -- lifetime ------------------------------------------------------------------------
    def close(self) -> None:
        self._failed = True
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None
        for name in ("_fd", "_lock_fd"):
            fd = getattr(self, name, -1)
            if fd >= 0:
                os.close(fd)
                setattr(self, name, -1)


_SHARED: dict[str, ReplayJournal] = {}
_SHARED_LOCK = threading.Lock()


def shared_journal(folder: str | os.PathLike[str]) -> ReplayJournal:
    """This process's journal for ``folder`` (opened on first use); pair with
    :func:`release_journal`."""
    key = str(Path(folder).resolve())
    with _SHARED_LOCK:
        journal = _SHARED.get(key)
        if journal is None:
            journal = _SHARED[key] = ReplayJournal(folder)
        journal._users += 1
        return journal


def release_journal(journal: ReplayJournal) -> None:
    """Give back a :func:`shared_journal` handle; the last one flushes and closes it."""
    with _SHARED_LOCK:
        journal._users -= 1
        if journal._users > 0:
            return
        _SHARED.pop(str(journal.folder.resolve()), None)
    try:
        if not journal._failed:
            journal.sync()
    finally:
        journal.close()
