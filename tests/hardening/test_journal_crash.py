"""The group-commit replay journal under SIGKILL and under power cuts.

SIGKILL: a `metercert meter serve --count 4` process answers ciphered GETs from four
concurrent clients (requests of all meters share the journal's batches) and is killed
at a random instant; after the restart on the same state folder, every request the
meter had *answered* is sent again byte for byte and must be refused. That is the
promise of meter/server.py: no answer leaves before its window is durable, so a counter
that was answered is never accepted twice.

Power cut: windows of several meters append to one journal in deferred mode and wait
for its group commit, under the page-cache model of _powerloss.py (unsynced data lost
per sector, the sector being written torn); a counter is reported only once its wait
returned, and after the cut every reported counter must be refused.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from _powerloss import run_to_power_loss  # type: ignore[import-not-found]

from metercert.client.session import DlmsClient, settings_for_role
from metercert.security import CounterStoreError, ReplayGuard, load_key_file, parse_ciphered
from metercert.security.journal import ReplayJournal

GET_CLOCK = bytes.fromhex("C0010000080000010000FF0200")
GLO_GET_RESPONSE = 0xCC
METERS = 4


def start_meter(state: Path) -> subprocess.Popen[str]:
    err = open(state.parent / "meter.stderr", "a")  # noqa: SIM115 - owned by the child
    proc = subprocess.Popen(
        [sys.executable, "-m", "metercert", "meter", "serve", "--host", "127.0.0.1",
         "--port", "0", "--count", str(METERS), "--state-dir", str(state),
         "--keys-out", str(state / "keys.yaml"), "--ready-line"],
        stdout=subprocess.PIPE, stderr=err, text=True)
    err.close()
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError((state.parent / "meter.stderr").read_text()[-2000:])
        if line.startswith("READY"):
            return proc
    raise RuntimeError("meter not ready")


async def load_until_killed(state: Path, proc: subprocess.Popen[str], kill_after: float,
                            next_counter: dict[int, int]) -> dict[int, list[bytes]]:
    """Ciphered GETs on every meter until SIGKILL; returns the answered requests per meter."""
    answered: dict[int, list[bytes]] = {m: [] for m in range(METERS)}
    keysets = load_key_file(state / "keys.yaml")

    async def one(m: int) -> None:
        ks = keysets[m]
        client = DlmsClient(str(ks.extra["host"]), int(ks.extra["port"]),
                            settings_for_role(ks, timeout=3.0))
        client.skip_counter_to(next_counter.get(m, 0))
        try:
            await client.open()
            while True:
                wire = client.protect_request(GET_CLOCK)
                next_counter[m] = parse_ciphered(wire).invocation_counter + 1
                answer = await client.exchange(wire)
                if answer[:1] == bytes([GLO_GET_RESPONSE]):
                    answered[m].append(wire)
        except Exception:  # noqa: BLE001 - the meter was killed under us
            return
        finally:
            if client.last_sent_counter is not None:
                next_counter[m] = max(next_counter.get(m, 0), client.last_sent_counter + 1)
            await client.close()

    async def killer() -> None:
        await asyncio.sleep(kill_after)
        os.kill(proc.pid, signal.SIGKILL)

    await asyncio.gather(killer(), *(one(m) for m in range(METERS)))
    proc.wait()
    return answered


async def replays_accepted(state: Path, answered: dict[int, list[bytes]],
                           next_counter: dict[int, int]) -> tuple[int, int]:
    """(replays answered with a GET response, replays sent) after the restart."""
    keysets = load_key_file(state / "keys.yaml")
    accepted = sent = 0
    for m, wires in answered.items():
        ks = keysets[m]
        client = DlmsClient(str(ks.extra["host"]), int(ks.extra["port"]),
                            settings_for_role(ks, timeout=3.0))
        client.skip_counter_to(next_counter.get(m, 0) + 10)
        await client.open()
        try:
            for wire in wires[-25:]:
                answer = await client.exchange(wire)
                sent += 1
                accepted += answer[:1] == bytes([GLO_GET_RESPONSE])
            # and the meter still serves fresh requests
            assert await client.get(8, "0.0.1.0.0.255", 2) is not None
            next_counter[m] = client.last_sent_counter + 1  # type: ignore[operator]
        finally:
            await client.close()
    return accepted, sent


def test_no_answered_counter_is_accepted_again_after_sigkill(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    rng = random.Random(17)
    next_counter: dict[int, int] = {}
    total_answered = total_sent = 0
    for _ in range(3):
        proc = start_meter(state)
        try:
            answered = asyncio.run(load_until_killed(state, proc, rng.uniform(0.4, 1.2),
                                                     next_counter))
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            assert proc.stdout is not None
            proc.stdout.close()
        total_answered += sum(len(w) for w in answered.values())
        proc = start_meter(state)
        try:
            accepted, sent = asyncio.run(replays_accepted(state, answered, next_counter))
        finally:
            proc.terminate()
            proc.wait(timeout=20)
            assert proc.stdout is not None
            proc.stdout.close()
        assert accepted == 0, f"{accepted} of {sent} replays of answered requests were served"
        total_sent += sent
    assert total_answered > 20 and total_sent > 20  # the load really ran on every cycle


def journal_rounds(root: Path, rounds: int, seed: int, *, early: bool = False) -> dict[str, int]:
    """Power cuts while windows of several meters wait for group commits (``early``: a
    flawed server that lets the answer out before the wait, to show the check bites)."""
    rng = random.Random(seed)
    accepted: dict[str, list[int]] = {}
    counts = {"rounds": 0, "cuts": 0, "replays_accepted": 0, "refused": 0, "accepted": 0}
    title = bytes.fromhex("4D43540000000001")
    names = [f"m{m}" for m in range(3)]  # report tags are 8 bytes at most
    for r in range(rounds):
        start = {n: (max(accepted[n]) + 1 if accepted.get(n) else 0) for n in names}

        def work(report, start=start, r=r):  # type: ignore[no-untyped-def]
            local = random.Random(r)
            journal = ReplayJournal(root)
            journal.deferred = True
            guards = {n: ReplayGuard(root / n / "counters", title, "a1-rx", journal=journal)
                      for n in names}

            async def run() -> None:
                nxt = dict(start)
                for _ in range(30):
                    batch = []
                    for n in local.sample(names, local.randrange(1, 4)):
                        nxt[n] += local.randrange(1, 3)
                        if guards[n].accept(nxt[n]):
                            batch.append((n, nxt[n]))
                            if early:
                                report(n, nxt[n])
                    if early:
                        batch = []
                    await journal.durable()  # the answer would leave only now
                    for n, c in batch:
                        report(n, c)

            asyncio.run(run())

        reports, cut = run_to_power_loss(root, work, seed=rng.getrandbits(32),
                                         crash_at=rng.randrange(1, 120))
        counts["rounds"] += 1
        counts["cuts"] += cut
        for n, c in reports:
            accepted.setdefault(n, []).append(c)
        try:
            journal = ReplayJournal(root)
            guards = {n: ReplayGuard(root / n / "counters", title, "a1-rx", journal=journal)
                      for n in names}
        except CounterStoreError:
            counts["refused"] += 1
            break
        for n, values in accepted.items():
            counts["replays_accepted"] += sum(guards[n].is_fresh(c) for c in values[-40:])
        for g in guards.values():
            g.close()
        journal.close()
    counts["accepted"] = sum(len(v) for v in accepted.values())
    return counts


def test_power_cuts_during_group_commits_never_lose_an_answered_counter(tmp_path):
    counts = journal_rounds(tmp_path / "state", rounds=40, seed=5)
    assert counts["cuts"] > 10 and counts["accepted"] > 100
    assert counts["replays_accepted"] == 0 and counts["refused"] == 0, counts


def test_the_power_cut_check_catches_answers_sent_before_the_commit(tmp_path):
    counts = journal_rounds(tmp_path / "state", rounds=40, seed=5, early=True)
    assert counts["replays_accepted"] > 0, counts
