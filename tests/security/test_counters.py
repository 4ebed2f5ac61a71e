import itertools
import multiprocessing
import os
import random
import signal
import struct
import time
from pathlib import Path

import pytest

from metercert.security import (
    CounterExhausted,
    CounterStoreError,
    InvocationCounterStore,
    ReplayGuard,
)
from metercert.security import counters as ctr

TITLE = bytes.fromhex("4D4D4D0000BC614E")


def _ctr_file(folder: Path, kind: str = "tx") -> Path:
    (path,) = folder.glob(f"{kind}-*.ctr")
    return path


def test_counters_increase_and_resume_above_the_reservation(tmp_path):
    store = InvocationCounterStore(tmp_path, TITLE, "guek", block=10)
    values = [store.next() for _ in range(25)]
    assert values == list(range(25))
    assert store.reserved == 30
    store.close()
    again = InvocationCounterStore(tmp_path, TITLE, "guek", block=10)
    assert again.next() == 30  # the unused rest of the block is skipped, never reused
    assert not again.recovered


def test_state_files_are_private(tmp_path):
    store = InvocationCounterStore(tmp_path, TITLE, "guek")
    store.next()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 2 and names[0] == "counters.ledger"  # ledger, counter file
    for path in tmp_path.iterdir():
        assert path.stat().st_mode & 0o777 == 0o600, path.name


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


def test_records_sit_in_separate_4k_blocks(tmp_path):
    """One torn write stays inside one sector/page: each record has a 4 KiB block of its own."""
    store = InvocationCounterStore(tmp_path, TITLE, "guek", block=3)
    for _ in range(7):
        store.next()
    store.close()
    raw = _ctr_file(tmp_path).read_bytes()
    starts = [i for i in range(0, len(raw), 4096) if raw[i:i + 4] in (b"MCR1", b"MCH1")]
    assert starts == [0, 4096, 8192]
    assert raw[8192:8196] == b"MCH1"


# -- damage: every kind, never a repeated value ---------------------------------------------

def _torn(raw: bytearray, offset: int) -> None:
    raw[offset + 9] ^= 0x5A  # inside the sequence/value: the checksum no longer matches


def _newest_slot(raw: bytes) -> int:
    seqs = [struct.unpack(">Q", raw[i * 4096 + 4:i * 4096 + 12])[0] for i in (0, 1)]
    return 0 if seqs[0] > seqs[1] else 1


def _damage(path: Path, kind: str, rng: random.Random) -> None:
    raw = bytearray(path.read_bytes())
    if kind == "random-bytes":
        path.write_bytes(rng.randbytes(len(raw)))
    elif kind == "zeroed":
        path.write_bytes(bytes(len(raw)))
    elif kind.startswith("truncated-"):
        path.write_bytes(bytes(raw[: int(kind.split("-")[1])]))
    elif kind == "missing":
        path.unlink()
    elif kind == "newest-slot-torn":
        _torn(raw, _newest_slot(raw) * 4096)
        path.write_bytes(bytes(raw))
    elif kind == "older-slot-torn":
        _torn(raw, (1 - _newest_slot(raw)) * 4096)
        path.write_bytes(bytes(raw))
    elif kind == "high-water-torn":
        _torn(raw, 8192)
        path.write_bytes(bytes(raw))
    elif kind == "both-slots-torn":
        _torn(raw, 0)
        _torn(raw, 4096)
        path.write_bytes(bytes(raw))
    else:
        raise AssertionError(kind)


REFUSED = ["random-bytes", "zeroed", "truncated-0", "truncated-30", "truncated-4100", "missing"]
# both slots intact (truncated-8200: the high-water record is cut) or H intact
RECOVERED = ["newest-slot-torn", "older-slot-torn", "high-water-torn", "both-slots-torn",
             "truncated-8200"]


@pytest.mark.parametrize("kind", REFUSED + RECOVERED)
def test_damaged_send_counter_never_repeats(tmp_path, kind):
    rng = random.Random(kind)
    store = InvocationCounterStore(tmp_path, TITLE, "guek", block=8, hwm_step=100)
    seen = [store.next() for _ in range(rng.randrange(20, 300))]
    store.close()
    _damage(_ctr_file(tmp_path), kind, rng)
    if kind in REFUSED:
        with pytest.raises(CounterStoreError) as info:
            InvocationCounterStore(tmp_path, TITLE, "guek", block=8, hwm_step=100)
        message = str(info.value)
        assert ("missing" if kind == "missing" else "damaged") in message
        assert "renew the key" in message and "\n" not in message
        # and it stays refused: the refusal did not "repair" the file into a fresh one
        with pytest.raises(CounterStoreError):
            InvocationCounterStore(tmp_path, TITLE, "guek", block=8)
        return
    again = InvocationCounterStore(tmp_path, TITLE, "guek", block=8, hwm_step=100)
    fresh = [again.next() for _ in range(20)]
    assert fresh[0] > max(seen)
    assert again.recovered == (kind not in ("high-water-torn", "truncated-8200"))
    again.close()
    # the repair made every record valid again: the next start needs no recovery
    third = InvocationCounterStore(tmp_path, TITLE, "guek", block=8, hwm_step=100)
    assert not third.recovered and third.next() > max(fresh)


@pytest.mark.parametrize("kind", REFUSED + RECOVERED)
def test_damaged_receive_window_never_accepts_a_replay(tmp_path, kind):
    rng = random.Random("rx" + kind)
    guard = ReplayGuard(tmp_path, TITLE, "guek", hwm_step=50)
    accepted = [c for c in sorted(rng.sample(range(10_000), 120)) if guard.accept(c)]
    guard.close()
    _damage(_ctr_file(tmp_path, "rx"), kind, rng)
    if kind in REFUSED:
        with pytest.raises(CounterStoreError, match="renew the key"):
            ReplayGuard(tmp_path, TITLE, "guek")
        return
    again = ReplayGuard(tmp_path, TITLE, "guek", hwm_step=50)
    assert not any(again.accept(c) for c in accepted)
    assert again.accept(max(accepted) + 1000)


def test_missing_file_of_a_used_key_is_not_a_fresh_key(tmp_path):
    """The ledger tells a lost file from a new key; a caller may also demand the file."""
    store = InvocationCounterStore(tmp_path, TITLE, "guek")
    store.next()
    store.close()
    fresh = InvocationCounterStore(tmp_path, TITLE, "other-key")  # a new key: starts at 0
    assert fresh.next() == 0
    with pytest.raises(CounterStoreError, match="missing for a key that has been in use"):
        InvocationCounterStore(tmp_path / "lost", TITLE, "guek", require_existing=True)
    assert not (tmp_path / "lost" / "counters.ledger").exists()


def test_legacy_file_is_migrated(tmp_path):
    """A counter file of the earlier two-slot format is read and rewritten (not reset)."""
    def slot(seq: int, value: int) -> bytes:
        head = struct.pack(">QQ", seq, value)
        return (head + struct.pack(">I", __import__("zlib").crc32(head))).ljust(32, b"\0")
    path = tmp_path / ctr._file_name("tx", TITLE, "guek")
    path.write_bytes(slot(7, 512) + slot(6, 256))
    store = InvocationCounterStore(tmp_path, TITLE, "guek")
    assert store.next() == 512
    store.close()
    assert path.stat().st_size > 8192
    path.write_bytes(slot(7, 512) + bytes(32))  # legacy with one slot: nothing proves a value
    with pytest.raises(CounterStoreError, match="damaged"):
        InvocationCounterStore(tmp_path, TITLE, "guek")


# -- one owner --------------------------------------------------------------------------------

def test_two_store_objects_on_one_file_refuse(tmp_path):
    first = InvocationCounterStore(tmp_path, TITLE, "guek")
    with pytest.raises(CounterStoreError, match="one owner"):
        InvocationCounterStore(tmp_path, TITLE, "guek")
    with pytest.raises(CounterStoreError, match="one owner"):
        InvocationCounterStore(str(tmp_path) + "/./", TITLE, "guek")  # same file, other spelling
    assert first.next() == 0
    first.close()
    second = InvocationCounterStore(tmp_path, TITLE, "guek")
    assert second.next() > 0


def test_a_dropped_store_releases_its_lock(tmp_path):
    store = InvocationCounterStore(tmp_path, TITLE, "guek")
    store.next()
    del store
    InvocationCounterStore(tmp_path, TITLE, "guek").close()


def _hold(directory: str, ready, done) -> None:  # child process
    store = InvocationCounterStore(directory, TITLE, "guek")
    store.next()
    ready.set()
    done.wait(20)
    store.close()


def test_a_second_process_is_refused(tmp_path):
    ctx = multiprocessing.get_context("fork")
    ready, done = ctx.Event(), ctx.Event()
    child = ctx.Process(target=_hold, args=(str(tmp_path), ready, done))
    child.start()
    try:
        assert ready.wait(20)
        with pytest.raises(CounterStoreError, match="in use by another process"):
            InvocationCounterStore(tmp_path, TITLE, "guek")
    finally:
        done.set()
        child.join(20)
    assert InvocationCounterStore(tmp_path, TITLE, "guek").next() > 0


def _race(directory: str, write_fd: int, base: int) -> None:  # child process
    try:
        guard = ReplayGuard(directory, TITLE, "peer")
        store = InvocationCounterStore(directory, TITLE, "guek", block=4)
    except CounterStoreError:
        os.write(write_fd, b"R")
        return
    for i in range(200):
        os.write(write_fd, struct.pack(">cI", b"V", store.next()))
        if guard.accept(base + i):  # both children offer the same counters: one may accept
            os.write(write_fd, struct.pack(">cI", b"A", base + i))
    store.close()
    guard.close()


def test_two_processes_racing_on_one_folder_never_share_a_value(tmp_path):
    """Two processes starting together, many times: never a value handed out twice, never a
    received counter accepted twice (the loser of each race is refused)."""
    seen: list[int] = []
    accepted: list[int] = []
    for r in range(15):
        pipes = [os.pipe() for _ in range(2)]
        pids = []
        for read_fd, write_fd in pipes:
            pid = os.fork()
            if pid == 0:
                os.close(read_fd)
                try:
                    _race(str(tmp_path), write_fd, r * 1000)
                finally:
                    os._exit(0)
            os.close(write_fd)
            pids.append(pid)
        for pid in pids:
            os.waitpid(pid, 0)
        for read_fd, _ in pipes:
            data = _read_all(read_fd)
            os.close(read_fd)
            if data[:1] == b"V":
                for kind, v in struct.iter_unpack(">cI", data):
                    (seen if kind == b"V" else accepted).append(v)
    assert len(seen) == len(set(seen)), "two processes handed out the same counter"
    assert len(accepted) == len(set(accepted)), "two processes accepted the same counter"
    assert len(seen) >= 15 * 200 and len(accepted) >= 15 * 200


# -- durability and failing disks -------------------------------------------------------------

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


def test_replay_guard_fails_closed_when_it_cannot_persist(tmp_path, monkeypatch):
    guard = ReplayGuard(tmp_path, TITLE, "guek")
    assert guard.accept(1)
    monkeypatch.setattr(os, "fdatasync", lambda fd: (_ for _ in ()).throw(OSError(5, "I/O error")))
    with pytest.raises(CounterStoreError, match="I/O error"):
        guard.accept(2)
    monkeypatch.undo()
    with pytest.raises(CounterStoreError, match="refusing"):
        guard.accept(3)


def test_new_folder_is_synced_into_its_parent_and_errors_are_raised(tmp_path, monkeypatch):
    synced: list[str] = []
    real = os.fsync

    def spy(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)
    monkeypatch.setattr(os, "fsync", spy)
    InvocationCounterStore(tmp_path / "a" / "counters", TITLE, "guek").close()
    assert str(tmp_path) in synced and str(tmp_path / "a") in synced  # each new level
    assert str(tmp_path / "a" / "counters") in synced                 # the new file's entry

    def failing(fd: int) -> None:
        if os.path.isdir(os.readlink(f"/proc/self/fd/{fd}")):
            raise OSError(5, "Input/output error")
        real(fd)
    monkeypatch.setattr(os, "fsync", failing)
    with pytest.raises(CounterStoreError, match="Input/output error"):
        InvocationCounterStore(tmp_path / "b", TITLE, "guek")


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
    refused = 0
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
        refused += not values
        seen.extend(values)
    assert len(seen) == len(set(seen))
    assert all(a < b for a, b in itertools.pairwise(seen))
    assert len(seen) > 200  # the children really handed values out
