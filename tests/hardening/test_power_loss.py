"""Counters and replay windows across simulated power cuts (unsynced data lost).

Each round runs a workload in a child process under :mod:`_powerloss`, cuts the power
at a random os call (before or after it), rebuilds the folder as the disk would
hold it, and the next boot must resume above every counter handed out and refuse
every counter accepted before the cut. The rounds are bounded to stay fast here;
benchmarks/power_loss.py runs many more and prints the counts.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from _powerloss import run_to_power_loss  # type: ignore[import-not-found]

from metercert.security import (
    CounterStoreError,
    InvocationCounterStore,
    ReplayGuard,
    parse_ciphered,
)

TITLE = bytes.fromhex("4D4D4D0000BC614E")


def store_rounds(folder: Path, rounds: int, seed: int) -> dict[str, int]:
    """Power cuts during a store and a replay window at work; returns the counts."""
    rng = random.Random(seed)
    sent: list[int] = []
    accepted: list[int] = []
    counts = {"rounds": 0, "cuts": 0, "repeated": 0, "replays_accepted": 0, "refused": 0,
              "sent": 0, "accepted": 0}
    for r in range(rounds):
        block, step = rng.choice((1, 3, 16)), rng.choice((8, 50, 1000))
        next_peer = (max(accepted) + 1) if accepted else 0

        def work(report, block=block, step=step, next_peer=next_peer, r=r):  # type: ignore[no-untyped-def]
            local = random.Random(r)
            store = InvocationCounterStore(folder, TITLE, "guek", block=block, hwm_step=step)
            guard = ReplayGuard(folder, TITLE, "peer", hwm_step=step)
            peer = next_peer
            for _ in range(40):
                report("tx", store.next())
                peer += local.randrange(1, 4)
                if guard.accept(peer):
                    report("rx", peer)
        reports, cut = run_to_power_loss(folder, work, seed=rng.getrandbits(32),
                                         crash_at=rng.randrange(1, 220))
        counts["rounds"] += 1
        counts["cuts"] += cut
        tx = [v for k, v in reports if k == "tx"]
        rx = [v for k, v in reports if k == "rx"]
        counts["repeated"] += len(set(tx) & set(sent)) + len(tx) - len(set(tx))
        sent.extend(tx)
        accepted.extend(rx)
        try:
            store = InvocationCounterStore(folder, TITLE, "guek")
            guard = ReplayGuard(folder, TITLE, "peer")
        except CounterStoreError:
            counts["refused"] += 1  # failing closed is safe; the tests require it never happens
            break
        if sent and store.peek() <= max(sent):
            counts["repeated"] += 1
        counts["replays_accepted"] += sum(guard.is_fresh(c) for c in accepted[-50:])
        store.close()
        guard.close()
    counts["sent"], counts["accepted"] = len(sent), len(accepted)
    return counts


GET_CLOCK = bytes.fromhex("C0010000080000010000FF0200")
CIPHERED_GET_RESPONSE = 0xCC  # glo-get-response


def meter_rounds(state: Path, rounds: int, seed: int) -> dict[str, int]:
    """Power cuts while a reference meter serves ciphered GETs (in-process, real state).

    The meter's own response counters must never repeat, and after each boot a GET
    carrying any invocation counter the meter accepted before the cut is refused."""
    from _inprocess import Closed, InProcessMeter  # type: ignore[import-not-found]

    rng = random.Random(seed)
    meter_sent: list[int] = []
    accepted: list[int] = []
    counts = {"rounds": 0, "cuts": 0, "repeated": 0, "replays_accepted": 0, "refused": 0,
              "sent": 0, "accepted": 0}
    client_next = 1 << 20
    for _ in range(rounds):
        start = client_next

        def work(report, start=start):  # type: ignore[no-untyped-def]
            m = InProcessMeter(state)
            m.client._counter.at_least(start)
            m.associate()
            for _ in range(12):
                request = m.client.protect_request(GET_CLOCK)
                try:
                    answer = m.raw(request)
                except Closed:
                    return
                if answer[:1] == bytes([CIPHERED_GET_RESPONSE]):
                    report("acc", parse_ciphered(request).invocation_counter)
                    report("mtx", parse_ciphered(answer).invocation_counter)
        reports, cut = run_to_power_loss(state, work, seed=rng.getrandbits(32),
                                         crash_at=rng.randrange(1, 50))
        counts["rounds"] += 1
        counts["cuts"] += cut
        mtx = [v for k, v in reports if k == "mtx"]
        counts["repeated"] += len(set(mtx) & set(meter_sent)) + len(mtx) - len(set(mtx))
        meter_sent.extend(mtx)
        accepted.extend(v for k, v in reports if k == "acc")
        client_next = max([client_next, *accepted]) + 100
        try:
            m = InProcessMeter(state)
        except CounterStoreError:
            counts["refused"] += 1
            break
        try:
            m.client._counter.at_least(client_next)
            client_next += 100
            m.associate()
            for old in accepted[-3:]:  # replays of counters accepted before the cut
                try:
                    answer = m.raw(m.client.protect_request(GET_CLOCK, invocation_counter=old))
                except Closed:
                    m.associate()
                    continue
                counts["replays_accepted"] += answer[:1] == bytes([CIPHERED_GET_RESPONSE])
            answer = m.raw(m.client.protect_request(GET_CLOCK))
            if answer[:1] == bytes([CIPHERED_GET_RESPONSE]):
                fresh = parse_ciphered(answer).invocation_counter
                counts["repeated"] += bool(meter_sent) and fresh <= max(meter_sent)
                meter_sent.append(fresh)
        finally:
            m.close()
    counts["sent"], counts["accepted"] = len(meter_sent), len(accepted)
    return counts


def test_power_cuts_never_repeat_a_counter_nor_accept_a_replay(tmp_path: Path) -> None:
    counts = store_rounds(tmp_path, rounds=40, seed=20261201)
    assert counts["repeated"] == 0 and counts["replays_accepted"] == 0, counts
    assert counts["refused"] == 0, counts  # one cut at a time is always recovered from
    assert counts["cuts"] > 15 and counts["sent"] > 100 and counts["accepted"] > 100, counts


def test_the_model_loses_unsynced_data(tmp_path: Path) -> None:
    """The wrapper itself: a write that was never synced does not always survive."""
    import os
    lost = kept = 0
    for seed in range(20):
        target = tmp_path / f"f{seed}"

        def work(report, target=target):  # type: ignore[no-untyped-def]
            fd = os.open(target, os.O_WRONLY | os.O_CREAT, 0o600)
            os.write(fd, b"x" * 2000)
            os.close(fd)
        _, cut = run_to_power_loss(tmp_path, work, seed=seed, crash_at=100)
        assert not cut
        lost += not target.exists() or target.read_bytes() != b"x" * 2000
        kept += target.exists()
    assert lost and kept, (lost, kept)


@pytest.mark.parametrize("seed", [1, 2])
def test_synced_data_always_survives(tmp_path: Path, seed: int) -> None:
    import os

    def work(report):  # type: ignore[no-untyped-def]
        fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, b"y" * 3000)
        os.fsync(fd)
        os.close(fd)
        dfd = os.open(tmp_path, os.O_RDONLY)
        os.fsync(dfd)
        os.close(dfd)
    run_to_power_loss(tmp_path, work, seed=seed, crash_at=100)
    assert (tmp_path / "f").read_bytes() == b"y" * 3000


def test_power_cuts_of_the_reference_meter(tmp_path: Path) -> None:
    counts = meter_rounds(tmp_path / "state", rounds=25, seed=7)
    assert counts["repeated"] == 0 and counts["replays_accepted"] == 0, counts
    assert counts["refused"] == 0, counts
    assert counts["cuts"] > 10 and counts["accepted"] > 20, counts
