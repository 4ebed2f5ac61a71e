"""The group-commit replay journal: windows on it, batches, recovery and failing closed."""

import asyncio
import os
from pathlib import Path

import pytest

from metercert.security import CounterStoreError, ReplayGuard
from metercert.security import journal as jmod
from metercert.security.journal import ReplayJournal, parse_journal

TITLE = bytes.fromhex("4D4354000000000001")[:8]


def guard(root: Path, journal: ReplayJournal, meter: int = 0, key: str = "a1-rx") -> ReplayGuard:
    return ReplayGuard(root / f"meter-{meter:04d}" / "counters", TITLE, key, journal=journal)


def test_accepted_counters_survive_reopen_and_replays_are_refused(tmp_path):
    j = ReplayJournal(tmp_path)
    g = guard(tmp_path, j)
    assert g.accept(5) and not g.accept(5) and g.accept(9) and not g.accept(7)
    g.close()
    j.close()
    j = ReplayJournal(tmp_path)
    g = guard(tmp_path, j)
    assert g.last_accepted == 9
    assert not g.accept(9) and g.accept(10)
    # the window's own file was never rewritten: the journal alone carries the values
    g.close()
    j.close()


def test_deferred_appends_wait_for_one_sync_per_batch(tmp_path, monkeypatch):
    j = ReplayJournal(tmp_path)
    j.deferred = True
    guards = [guard(tmp_path, j, meter=m) for m in range(50)]
    syncs = []
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (syncs.append(fd), real(fd))[1])

    async def burst() -> None:
        for i, g in enumerate(guards):
            assert g.accept(100 + i)
        assert j.pending
        await asyncio.gather(*(j.durable() for _ in guards))
        assert not j.pending

    asyncio.run(burst())
    assert len(syncs) == 1  # fifty windows, one fdatasync
    for g in guards:
        g.close()
    j.close()
    j = ReplayJournal(tmp_path)
    for m in range(50):
        assert guard(tmp_path, j, meter=m).last_accepted == 100 + m
    j.close()


def _active(root: Path) -> Path:
    files = [root / f"{jmod.JOURNAL_NAME}.{i}" for i in (0, 1)]
    return max(files, key=lambda f: (jmod.header_of(f.read_bytes()) or (0, 0))[0])


def test_a_torn_tail_is_dropped_but_damage_inside_synced_data_refuses(tmp_path):
    j = ReplayJournal(tmp_path)
    g = guard(tmp_path, j)
    for c in range(1, 4):
        g.accept(c)
    g.close()
    j.close()
    path = _active(tmp_path)
    raw = bytearray(path.read_bytes())
    gen = jmod.header_of(bytes(raw))[0]
    values, end = parse_journal(bytes(raw))
    assert list(values.values()) == [4] and end == 4  # header, 3 appends (empty snapshot)
    raw[end * 32:end * 32 + 20] = jmod._record(gen, b"k" * 14, 99)[:20]  # a write cut short
    path.write_bytes(bytes(raw))
    j = ReplayJournal(tmp_path)
    assert guard(tmp_path, j).last_accepted == 3
    j.close()
    # a damaged synced record with a long valid log after it cannot be a torn tail
    body = b"".join(jmod._record(7, bytes([i % 251]) * 14, i) for i in range(jmod.MAX_BATCH + 3))
    damaged = bytearray(jmod._record(7, bytes(14), 4096) + body + bytes(32 * 3000))
    damaged[32 + 5] ^= 0xFF
    with pytest.raises(CounterStoreError, match="damaged"):
        parse_journal(bytes(damaged))


def test_files_keep_their_size_while_serving(tmp_path):
    """Written in place: a disk that fills after start does not stop the windows."""
    j = ReplayJournal(tmp_path)
    g = guard(tmp_path, j)
    sizes = {f.name: f.stat().st_size for f in tmp_path.glob("replay.journal.*")}
    for c in range(1, 5000):  # several generations
        g.accept(c)
    assert {f.name: f.stat().st_size for f in tmp_path.glob("replay.journal.*")} == sizes
    g.close()
    j.close()
    j = ReplayJournal(tmp_path)
    assert guard(tmp_path, j).last_accepted == 4999
    j.close()


def test_a_missing_journal_is_refused_never_recreated_empty(tmp_path):
    j = ReplayJournal(tmp_path)
    guard(tmp_path, j).accept(42)
    j.close()
    (tmp_path / f"{jmod.JOURNAL_NAME}.1").unlink()
    with pytest.raises(CounterStoreError, match="missing although it has been in use"):
        ReplayJournal(tmp_path)
    # ledger lost too: the counter folder still says its windows used a journal
    (tmp_path / f"{jmod.JOURNAL_NAME}.0").unlink()
    (tmp_path / "counters.ledger").unlink()
    j = ReplayJournal(tmp_path)
    with pytest.raises(CounterStoreError, match="missing although the windows"):
        guard(tmp_path, j)
    j.close()


def test_a_new_window_file_forgets_older_records_of_its_path(tmp_path):
    """A folder wiped at start (the ic-reset flaw, or new keys) starts its windows at 0."""
    j = ReplayJournal(tmp_path)
    g = guard(tmp_path, j, key="volatile")
    g.accept(77)
    g.close()
    j.close()
    folder = tmp_path / "meter-0000" / "counters"
    for f in folder.iterdir():
        f.unlink()
    folder.rmdir()
    j = ReplayJournal(tmp_path)
    assert guard(tmp_path, j, key="volatile").last_accepted is None
    j.close()


def test_reset_and_write_errors(tmp_path, monkeypatch):
    j = ReplayJournal(tmp_path)
    g = guard(tmp_path, j)
    g.accept(10)
    g.reset()
    assert g.accept(1)

    def full(fd, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "pwrite", lambda fd, data, offset: full(fd, data))
    with pytest.raises(CounterStoreError, match="No space left"):
        g.accept(2)
    with pytest.raises(CounterStoreError):
        g.accept(3)  # failed for good
    monkeypatch.undo()
    g.close()
    j.close()
    j = ReplayJournal(tmp_path)
    assert guard(tmp_path, j).last_accepted == 1
    j.close()


def test_one_process_per_journal(tmp_path):
    j = ReplayJournal(tmp_path)
    import subprocess
    import sys

    code = ("import sys; from metercert.security.journal import ReplayJournal\n"
            "from metercert.security import CounterStoreError\n"
            "try:\n ReplayJournal(sys.argv[1])\nexcept CounterStoreError as e:\n"
            " print(e); sys.exit(3)\n")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=False,
                         capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 3 and "in use by another process" in out.stdout
    j.close()
