"""Invocation counters that survive a power cut, and replay checks for received ones.

What is guaranteed
------------------
*Sent counters.* :class:`InvocationCounterStore` hands out counters for one
(system title, key) pair. No value is ever handed out twice and values only grow,
even if the process is killed at any instant (SIGKILL, power loss) and restarted
any number of times. The price is a gap after a crash: up to one block of values
is skipped.

How: the store persists a *reservation mark* R, meaning "no value >= R has been
handed out". Values below R may have been. To hand out value v the store first
makes sure R > v is on disk (written and fsync'ed); only then does v leave the
store. Reservations advance in blocks (default 256) so the fsync is paid once per
block, not once per APDU. After a restart the store resumes at the persisted R,
which is above every value handed out before: those are below the R that was on
disk when they were handed out, and R never decreases.

*Received counters.* :class:`ReplayGuard` keeps the last accepted counter per
sender and accepts a counter only if it is strictly greater. Callers call
:meth:`ReplayGuard.accept` *after* the APDU's tag has verified (a forged APDU with
a high counter must not move the window — a defect of one peer stack), and
accept persists the new value before returning, so a request accepted before a
power cut is still a replay after it.

On-disk format
--------------
Each counter is one small file with two 32-byte slots. A write goes to the slot
after the newest valid one and carries a sequence number and a CRC-32; a torn
write damages only the slot being written, and loading picks the valid slot with
the highest sequence number. Files are created 0600. If a write or fsync fails,
:class:`CounterStoreError` is raised and the store refuses to hand out further
values: a meter must then fail closed and stop ciphering.
"""

from __future__ import annotations

import os
import struct
import threading
import zlib
from pathlib import Path

from metercert.security.errors import CounterExhausted, CounterStoreError

MAX_COUNTER = 0xFFFFFFFF
_SLOT = struct.Struct(">QQI")  # sequence, value, crc32 of the first 16 bytes
_SLOT_SIZE = 32


class _DurableValue:
    """One non-negative integer persisted with two alternating checksummed slots."""

    def __init__(self, path: Path, *, fsync: bool = True) -> None:
        self.path = path
        self._fsync = fsync
        path.parent.mkdir(parents=True, exist_ok=True)
        created = not path.exists()
        try:
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise CounterStoreError(f"cannot open counter file {path}: {exc.strerror}") from None
        if created:
            self._sync_dir()
        self._seq, self.value = self._load()

    def _load(self) -> tuple[int, int]:
        best = (0, 0)
        raw = os.pread(self._fd, 2 * _SLOT_SIZE, 0)
        for i in range(2):
            chunk = raw[i * _SLOT_SIZE:i * _SLOT_SIZE + _SLOT.size]
            if len(chunk) < _SLOT.size:
                continue
            seq, value, crc = _SLOT.unpack(chunk)
            if seq and zlib.crc32(chunk[:16]) == crc and seq > best[0]:
                best = (seq, value)
        return best

    def _sync_dir(self) -> None:
        if not self._fsync:
            return
        try:
            dfd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError:
            pass

    def write(self, value: int) -> None:
        seq = self._seq + 1
        head = struct.pack(">QQ", seq, value)
        record = head + struct.pack(">I", zlib.crc32(head))
        try:
            written = os.pwrite(self._fd, record.ljust(_SLOT_SIZE, b"\0"), (seq % 2) * _SLOT_SIZE)
            if written != _SLOT_SIZE:
                raise OSError(28, "short write")
            if self._fsync:
                os.fdatasync(self._fd)
        except OSError as exc:
            raise CounterStoreError(
                f"cannot persist counter file {self.path}: {exc.strerror or exc}") from None
        self._seq, self.value = seq, value

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _file_name(kind: str, system_title: bytes, key_name: str) -> str:
    safe_key = "".join(c for c in key_name if c.isalnum() or c in "-_") or "key"
    return f"{kind}-{system_title.hex().upper()}-{safe_key}.ctr"


class InvocationCounterStore:
    """Monotonic, crash-safe counter for frames *we* send under one key."""

    def __init__(self, directory: str | os.PathLike[str], system_title: bytes, key_name: str,
                 *, block: int = 256, fsync: bool = True) -> None:
        if block < 1:
            raise ValueError("block must be at least 1")
        self._value = _DurableValue(Path(directory) / _file_name("tx", system_title, key_name),
                                    fsync=fsync)
        self._next = self._value.value
        self._block = block
        self._lock = threading.Lock()
        self._failed = False

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
        self._value.close()


class ReplayGuard:
    """Last accepted received counter for one sender and key, persisted on acceptance."""

    def __init__(self, directory: str | os.PathLike[str] | None, system_title: bytes, key_name: str,
                 *, fsync: bool = True) -> None:
        self._value = (None if directory is None else
                       _DurableValue(Path(directory) / _file_name("rx", system_title, key_name),
                                     fsync=fsync))
        # stored as last+1 so that 0 means "nothing accepted yet"
        self._last_plus_one = self._value.value if self._value else 0
        self._lock = threading.Lock()

    @property
    def last_accepted(self) -> int | None:
        return self._last_plus_one - 1 if self._last_plus_one else None

    def is_fresh(self, counter: int) -> bool:
        return counter + 1 > self._last_plus_one

    def accept(self, counter: int) -> bool:
        """Record ``counter`` if it is fresh; return False for a replay or stale counter."""
        with self._lock:
            if counter + 1 <= self._last_plus_one:
                return False
            if self._value is not None:
                self._value.write(counter + 1)
            self._last_plus_one = counter + 1
            return True

    def reset(self) -> None:
        """Forget the window (only when the key changes: counters restart with a new key)."""
        with self._lock:
            if self._value is not None:
                self._value.write(0)
            self._last_plus_one = 0

    def close(self) -> None:
        if self._value is not None:
            self._value.close()
