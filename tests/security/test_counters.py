import itertools
import os
import random
import signal
import struct
import time

import pytest

from metercert.security import (
    CounterExhausted,
    CounterStoreError,
    InvocationCounterStore,
    ReplayGuard,
)

TITLE = bytes.fromhex("4D4D4D0000BC614E")


def test_counters_increase_and_resume_above_the_reservation(tmp_path):
    store = InvocationCounterStore(tmp_path, TITLE, "guek", block=10)
    values = [store.next() for _ in range(25)]
    assert values == list(range(25))
    assert store.reserved == 30
    store.close()
    again = InvocationCounterStore(tmp_path, TITLE, "guek", block=10)
    assert again.next() == 30  # the unused rest of the block is skipped, never reused


def test_state_files_are_private(tmp_path):
    store = InvocationCounterStore(tmp_path, TITLE, "guek")
    store.next()
    (path,) = tmp_path.iterdir()
    assert path.stat().st_mode & 0o777 == 0o600


def test_separate_keys_have_separate_counters(tmp_path):
    a = InvocationCounterStore(tmp_path, TITLE, "guek")
    b = InvocationCounterStore(tmp_path, TITLE, "dedicated")
    assert (a.next(), a.next(), b.next()) == (0, 1, 0)


def test_exhaustion(tmp_path):
    store = InvocationCounterStore(tmp_path, TITLE, "guek", block=4)
    store._next = 0xFFFFFFFF  # white-box: jump to the end of the space
    assert store.next() == 0xFFFFFFFF
    with pytest.raises(CounterExhausted):
        store.next()


def test_torn_write_falls_back_to_the_other_slot(tmp_path):
    store = InvocationCounterStore(tmp_path, TITLE, "guek", block=5)
    for _ in range(12):
        store.next()
    mark = store.reserved
    store.close()
    (path,) = tmp_path.iterdir()
    raw = bytearray(path.read_bytes())
    # corrupt the newest slot as a torn write would
    newest = max((0, 1), key=lambda i: struct.unpack(">Q", raw[i * 32:i * 32 + 8])[0])
    raw[newest * 32 + 10] ^= 0xFF
    path.write_bytes(bytes(raw))
    again = InvocationCounterStore(tmp_path, TITLE, "guek", block=5)
    # the older slot is the previous reservation: still above everything handed out
    # before that reservation was made
    assert again.next() == mark - 5


def test_failing_disk_fails_closed(tmp_path, monkeypatch):
    store = InvocationCounterStore(tmp_path, TITLE, "guek", block=2)
    store.next(), store.next()

    def broken(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "pwrite", broken)
    with pytest.raises(CounterStoreError, match="No space left"):
        store.next()
    monkeypatch.undo()
    with pytest.raises(CounterStoreError, match="refusing"):
        store.next()


def test_replay_guard_rejects_replays_and_stale_counters_across_restart(tmp_path):
    guard = ReplayGuard(tmp_path, TITLE, "guek")
    assert guard.accept(5)
    assert not guard.accept(5)
    assert not guard.accept(4)
    assert guard.accept(6)
    guard.close()
    after_power_cycle = ReplayGuard(tmp_path, TITLE, "guek")
    assert after_power_cycle.last_accepted == 6
    assert not after_power_cycle.accept(6)
    assert after_power_cycle.accept(7)
    assert ReplayGuard(None, TITLE, "k").accept(0)


def _child(directory, write_fd):
    store = InvocationCounterStore(directory, TITLE, "guek", block=8)
    while True:
        value = store.next()
        os.write(write_fd, struct.pack(">I", value))


def _read_all(fd) -> bytes:
    chunks = []
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


@pytest.mark.slow
def test_sigkill_at_random_moments_never_repeats_a_counter(tmp_path):
    """200 SIGKILLs at random instants; the union of handed-out values is strictly increasing."""
    rng = random.Random(20261125)
    seen: list[int] = []
    for _ in range(200):
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # child
            os.close(read_fd)
            try:
                _child(tmp_path, write_fd)
            finally:
                os._exit(0)
        os.close(write_fd)
        time.sleep(rng.uniform(0.0005, 0.01))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        data = _read_all(read_fd)
        os.close(read_fd)
        values = [v for (v,) in struct.iter_unpack(">I", data[: len(data) // 4 * 4])]
        if values and seen:
            assert values[0] > seen[-1], "a restart handed out a value at or below an earlier one"
        seen.extend(values)
    assert len(seen) == len(set(seen))
    assert all(a < b for a, b in itertools.pairwise(seen))
    assert len(seen) > 200  # the children really handed values out
