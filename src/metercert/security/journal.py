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
  the server sends the response only once :meth:`ReplayJournal.when_durable` calls
  back (or :meth:`ReplayJournal.durable`, awaited, returns). The first waiter hands a
  flush to the journal's one writer thread; records appended while that sync runs form
  the next batch (pipelined group commit: one thread hop per batch, none per request,
  and the event loop never waits for the disk). The reference meter's plain TCP
  connections commit inline by default instead (:meth:`ReplayJournal.sync` once per
  pass of the event loop, in the loop: ``meter/server.py``).

Format, recovery, failing closed
--------------------------------
Two files of fixed size, ``replay.journal.0`` and ``.1``, written in place and never
grown while serving, so a disk that fills up after the meter started does not stop
it (as with the fixed-size window files). A record (32 bytes) is a magic, the file's
generation, the 14-byte BLAKE2b digest of the window's counter file path (relative to
the journal's folder), the window value (last accepted + 1, as in the window files; 0
after a key change) and a CRC-32. Record 0 of a file is its header (generation and
size); the file with the newest valid header is the active one. Batches are written
after the last record and synced. When the active file is full, a snapshot of every
window (one record each) is written into the other file and synced, and only then its
header with the next generation, synced: a crash leaves the old file in force, complete,
or the new one, complete. Opening always starts a new generation this way; the files are
sized for the windows known (4 snapshots' worth and 2 batches, at least 32 KiB).

Reading the active file stops at the first record that is invalid or of another
generation. When more than one batch (:data:`MAX_BATCH` records) of valid records of the
active generation follows it, synced data was damaged: the journal is refused
(:class:`CounterStoreError`) and the meter does not start; up to one batch is the torn
tail of a batch whose sync never returned (none of its requests was answered).

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
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from metercert.security.counters import (
    _ledger_add,
    _ledger_names,
    _strerror,
    fsync_dir,
    make_dirs_durable,
)
from metercert.security.errors import CounterStoreError

JOURNAL_NAME = "replay.journal"
FOLDER_MARK = "@replay-journal"  # in a counter folder's ledger: its windows use a journal
MAGIC = b"MJ"
_REC = struct.Struct(">2sI14sQI")
RECORD = _REC.size  # 32
MAX_BATCH = 256                  # records per write + sync (the longest possible torn tail)
MIN_RECORDS = 1024               # smallest file: 32 KiB
_HEADER_KEY = bytes(14)

_RECOVERY = ("replay windows cannot be proven; renew the meter's keys (remove its state "
             "folder); do not delete the journal")


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():  # its waiter was cancelled
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


def _record(gen: int, key: bytes, value: int) -> bytes:
    head = struct.pack(">2sI14sQ", MAGIC, gen, key, value)
    return head + struct.pack(">I", zlib.crc32(head))


def _unpack(chunk: bytes) -> tuple[int, bytes, int] | None:
    if len(chunk) < RECORD:
        return None
    magic, gen, key, value, crc = _REC.unpack(chunk)
    if magic != MAGIC or zlib.crc32(chunk[:-4]) != crc:
        return None
    return gen, key, value


def header_of(raw: bytes) -> tuple[int, int] | None:
    """(generation, size in records) of a journal file, None if its header is not valid."""
    rec = _unpack(raw[:RECORD])
    if rec is None or rec[1] != _HEADER_KEY:
        return None
    return rec[0], rec[2]


def parse_journal(raw: bytes, *, path: Path | str = "journal") -> tuple[dict[bytes, int], int]:
    """(last value of each key, records in use) of an active journal file; raises
    CounterStoreError when synced data is damaged."""
    head = header_of(raw)
    if head is None:
        raise CounterStoreError(f"replay journal {path} has no valid header; {_RECOVERY}")
    gen = head[0]
    values: dict[bytes, int] = {}
    end = 0
    after = 0
    for i in range(1, len(raw) // RECORD):
        rec = _unpack(raw[i * RECORD:(i + 1) * RECORD])
        current = rec is not None and rec[0] == gen
        if not end:
            if current:
                assert rec is not None
                values[rec[1]] = rec[2]
                continue
            end = i
        elif current:
            after += 1
    if after > MAX_BATCH:
        raise CounterStoreError(f"replay journal {path} is damaged at byte {end * RECORD}; "
                                f"{_RECOVERY}")
    return values, end or len(raw) // RECORD


def window_key(folder: Path, counter_file: Path) -> bytes:
    """The record key of a window's counter file: its path below the journal's folder."""
    try:
        rel = str(Path(counter_file).resolve().relative_to(Path(folder).resolve()))
    except ValueError:
        rel = str(Path(counter_file).resolve())
    return hashlib.blake2b(rel.encode(), digest_size=14).digest()


def read_journal(folder: str | os.PathLike[str], name: str = JOURNAL_NAME) -> dict[bytes, int]:
    """The window values the journal of ``folder`` holds, without locking (for inspection:
    a running meter owns the journal). Empty when there is none."""
    raws = [p.read_bytes() for p in (Path(folder) / f"{name}.0", Path(folder) / f"{name}.1")
            if p.exists()]
    heads = [(header_of(r) or (0, 0))[0] for r in raws]
    if not raws or max(heads) == 0:
        return {}
    return parse_journal(raws[heads.index(max(heads))])[0]


def _records_for(windows: int) -> int:
    need = 4 * (windows + 1) + 2 * MAX_BATCH
    size = MIN_RECORDS
    while size < need:
        size *= 2
    return size


class ReplayJournal:
    """The group-commit journal of one folder (see the module text)."""

    def __init__(self, folder: str | os.PathLike[str], *, name: str = JOURNAL_NAME) -> None:
        self.folder = Path(folder)
        self.name = name
        self.paths = (self.folder / f"{name}.0", self.folder / f"{name}.1")
        self.deferred = False
        self._values: dict[bytes, int] = {}
        self._known: set[bytes] = set()
        self._pending: list[tuple[bytes, int]] = []
        self._appended = 0   # records appended since open
        self._durable = 0    # of which durable
        self._lock = threading.Lock()      # values and pending
        self._io = threading.Lock()        # one writer at a time
        self._failed = False
        self._fds = [-1, -1]
        self._lock_fd = -1
        self._active = 0
        self._gen = 0
        self._pos = 0        # next record index in the active file
        self._size = 0       # records per file
        self._writer: ThreadPoolExecutor | None = None
        self._inflight: asyncio.Future[None] | None = None
        #: (records that must be durable, callback) of when_durable, oldest first
        self._waiters: deque[tuple[int, Callable[[BaseException | None], None]]] = deque()
        self._users = 0
        self._adopted: set[str] = set()  # counter folders checked (or marked) in this run
        #: the journal did not exist when opened (a counter folder that used one refuses)
        self.created = False
        #: group-commit figures: fdatasync calls for batches, records they made durable
        self.syncs = 0
        self.synced_records = 0
        try:
            self._open()
        except OSError as exc:
            self.close()
            raise CounterStoreError(f"cannot use replay journal {self.paths[0]}: "
                                    f"{_strerror(exc)}") from None
        except BaseException:
            self.close()
            raise

    # -- opening -------------------------------------------------------------------------
    def _open(self) -> None:
        make_dirs_durable(self.folder)
        lock = os.open(self.folder / f"{self.name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock)
            raise CounterStoreError(f"replay journal {self.paths[0]} is in use by another "
                                    "process: one meter process per state folder") from None
        self._lock_fd = lock
        listed = self.name in (_ledger_names(self.folder) or set())
        exists = [p.exists() for p in self.paths]
        if listed and not all(exists):
            raise CounterStoreError(f"replay journal {self.paths[exists.index(False)]} is "
                                    f"missing although it has been in use; {_RECOVERY}")
        heads = [None, None]
        raws = [b"", b""]
        if all(exists):
            raws = [p.read_bytes() for p in self.paths]
            heads = [header_of(r) for r in raws]
        if heads == [None, None]:
            if listed:
                raise CounterStoreError(f"replay journal {self.paths[0]} is damaged (no valid "
                                        f"header in either file); {_RECOVERY}")
            # new (or never used: a crash while it was being made, before the ledger)
            self.created = True
            self._size = MIN_RECORDS
            for i, p in enumerate(self.paths):
                fd = os.open(p, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
                self._fds[i] = fd
                self._fill(fd, 0, self._size)
                if i == 0:
                    self._put(fd, 0, _record(1, _HEADER_KEY, self._size))
                os.fsync(fd)
            fsync_dir(self.folder)
            self._active, self._gen, self._pos = 0, 1, 1
        else:
            self._active = 0 if (heads[1] is None or (heads[0] is not None
                                                      and heads[0][0] > heads[1][0])) else 1
            head = heads[self._active]
            assert head is not None
            self._gen, self._size = head
            self._values, self._pos = parse_journal(raws[self._active],
                                                    path=self.paths[self._active])
            self._fds = [os.open(p, os.O_RDWR) for p in self.paths]
        if not listed:
            _ledger_add(self.folder, self.name)
        self._switch()  # a new generation: no torn tail for appends to follow

    def _fill(self, fd: int, start: int, end: int) -> None:
        """Write zero records from ``start`` to ``end``: the space is taken now, not later."""
        zeros = bytes(RECORD * 1024)
        pos = start
        while pos < end:
            n = min(1024, end - pos)
            self._put(fd, pos, zeros[:n * RECORD])
            pos += n

    @staticmethod
    def _put(fd: int, index: int, data: bytes) -> None:
        if os.pwrite(fd, data, index * RECORD) != len(data):
            raise OSError(errno.ENOSPC, "short write")

    def _switch(self) -> None:
        """Snapshot every window into the other file, synced, then its header, synced."""
        with self._lock:
            values = list(self._values.items())
            size = max(self._size, _records_for(max(len(self._known), len(values))))
        other, gen = 1 - self._active, self._gen + 1
        fd = self._fds[other]
        current = os.fstat(fd).st_size // RECORD
        if current < size:
            self._fill(fd, current, size)
        data = b"".join(_record(gen, k, v) for k, v in values)
        if data:
            self._put(fd, 1, data)
        os.fdatasync(fd)
        self._put(fd, 0, _record(gen, _HEADER_KEY, size))
        os.fdatasync(fd)
        self._active, self._gen, self._pos, self._size = other, gen, 1 + len(values), size

    # -- windows -------------------------------------------------------------------------
    def key_for(self, counter_file: Path) -> bytes:
        """The record key of a window's counter file (its path below the journal's folder);
        the journal sizes its files for every window it was asked about."""
        key = window_key(self.folder, counter_file)
        with self._lock:
            self._known.add(key)
            grow = 4 * (len(self._known) + 1) + 2 * MAX_BATCH > self._size
        if grow:  # while the meters start up, not while they serve
            with self._io:
                try:
                    self._switch()
                except OSError as exc:
                    self._failed = True
                    raise CounterStoreError(f"cannot grow replay journal {self.paths[0]}: "
                                            f"{_strerror(exc)}") from None
        return key

    def value(self, key: bytes) -> int | None:
        with self._lock:
            return self._values.get(key)

    def adopt_folder(self, counter_dir: Path) -> None:
        """Called before a window of ``counter_dir`` first appends: refuse a folder whose
        windows used a journal that is gone, and mark the folder as using one."""
        folder = str(Path(counter_dir).resolve())
        if folder in self._adopted:
            return
        names = _ledger_names(counter_dir) or set()
        if FOLDER_MARK in names:
            if self.created:
                raise CounterStoreError(f"replay journal {self.paths[0]} is missing although "
                                        f"the windows in {counter_dir} used it; {_RECOVERY}")
            self._adopted.add(folder)
            return
        try:
            make_dirs_durable(Path(counter_dir))
            _ledger_add(counter_dir, FOLDER_MARK)
        except OSError as exc:
            raise CounterStoreError(f"cannot write the ledger of {counter_dir}: "
                                    f"{_strerror(exc)}") from None
        self._adopted.add(folder)

    def append(self, key: bytes, value: int) -> int:
        """Record a window value; returns its sequence number. In immediate mode the record
        is durable on return; deferred, see :meth:`durable`."""
        with self._lock:
            if self._failed:
                raise CounterStoreError(f"replay journal {self.paths[0]} failed earlier; "
                                        "refusing requests")
            self._values[key] = value
            self._pending.append((key, value))
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
        if self._durable >= self._appended:
            return
        future = asyncio.get_running_loop().create_future()
        self.when_durable(lambda error: _settle(future, error))
        await future  # a cancelled waiter leaves the flush running for the others

    def when_durable(self, callback: Callable[[BaseException | None], None]) -> None:
        """Call ``callback(None)`` in the event loop once every record appended before
        this call is durable, or ``callback(error)`` when the journal cannot persist them
        (a :class:`CounterStoreError`: it has failed for good). Never calls back before
        returning.

        The first waiter hands one flush to the writer thread; whoever asks while it runs
        waits for the next one, which covers every record appended meanwhile (group
        commit: one thread hop and one sync per batch, none per request)."""
        loop = asyncio.get_running_loop()
        if self._failed:
            loop.call_soon(callback, self._failure("failed"))
            return
        target = self._appended
        if self._durable >= target:
            loop.call_soon(callback, None)
            return
        self._waiters.append((target, callback))
        if self._inflight is None:
            self._start_flush(loop)

    def _failure(self, how: str) -> CounterStoreError:
        return CounterStoreError(f"replay journal {self.paths[0]} {how}; refusing requests")

    def _start_flush(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._writer is None:
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="replay-journal")
        inflight = loop.run_in_executor(self._writer, self._flush, self._appended)
        self._inflight = inflight
        inflight.add_done_callback(self._flush_done)

    def _flush_done(self, future: asyncio.Future[None]) -> None:
        self._inflight = None
        error: BaseException | None = None
        if future.cancelled():
            error = self._failure("flush was cancelled")
        else:
            error = future.exception()  # a CounterStoreError: the journal failed for good
        waiters = self._waiters
        if error is not None or self._failed:
            error = error or self._failure("failed")
            while waiters:
                waiters.popleft()[1](error)
            return
        durable = self._durable
        while waiters and waiters[0][0] <= durable:
            waiters.popleft()[1](None)
        if waiters:  # records appended while that sync ran: the next batch
            self._start_flush(future.get_loop())

    def _flush(self, upto: int) -> None:
        with self._io:
            while self._durable < upto:
                with self._lock:
                    if self._failed:
                        raise CounterStoreError(f"replay journal {self.paths[0]} failed "
                                                "earlier; refusing requests")
                    batch = self._pending[:MAX_BATCH]
                    del self._pending[:MAX_BATCH]
                try:
                    if self._pos + len(batch) > self._size:
                        self._switch()  # the snapshot holds this batch's values too
                    else:
                        fd = self._fds[self._active]
                        gen = self._gen
                        self._put(fd, self._pos, b"".join(_record(gen, k, v) for k, v in batch))
                        os.fdatasync(fd)
                        self._pos += len(batch)
                    self.syncs += 1
                    self.synced_records += len(batch)
                    self._durable += len(batch)
                except OSError as exc:
                    self._failed = True
                    raise CounterStoreError(f"cannot persist replay journal {self.paths[0]}: "
                                            f"{_strerror(exc)}") from None

    # -- lifetime ------------------------------------------------------------------------
    def close(self) -> None:
        self._failed = True
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None
        for i, fd in enumerate(self._fds):
            if fd >= 0:
                os.close(fd)
                self._fds[i] = -1
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1


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
