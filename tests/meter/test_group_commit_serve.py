"""The served meter's group commit: an answer leaves only once its window is durable.

Plain TCP wrapper meters are served by callbacks (meter/server.py,
``_WrapperMeterConnection``). With ``commit="inline"`` (the default) the requests of
one pass of the event loop wait for one sync made in the loop; with ``"thread"`` the
journal's writer thread syncs and calls back. Either way: each answer is written only
when no record appended so far is pending; with the writer thread held back, the
answer does not arrive; a journal that cannot persist gets the plain
exception-response and the connection closes; requests sent back to back on one
connection are answered in order, each after its window.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from metercert.client.errors import ExceptionResponseReceived
from metercert.cosem import CosemAttributeDescriptor, GetRequestNormal, ObisCode, ServiceError
from metercert.errors import MetercertError
from metercert.meter.server import _WrapperMeterConnection
from metercert.security import CounterStoreError

from ._support import CLOCK, run, serving


def _hold_syncs(journal):  # type: ignore[no-untyped-def]
    """Make the journal's flushes wait for the returned event; returns (event, flushes)."""
    gate = threading.Event()
    flushes: list[int] = []
    real = journal._flush

    def held(upto: int) -> None:
        gate.wait(30)
        real(upto)
        flushes.append(journal._durable)

    journal._flush = held
    return gate, flushes


def _watch_answers(monkeypatch: pytest.MonkeyPatch, journal) -> list[bool]:  # type: ignore[no-untyped-def]
    """Record, for every answer the meter writes, whether a journal record was pending."""
    seen: list[bool] = []
    real = _WrapperMeterConnection._answer

    def answer(self, source, dest, data, last):  # type: ignore[no-untyped-def]
        if data:
            seen.append(journal.pending)
        real(self, source, dest, data, last)

    monkeypatch.setattr(_WrapperMeterConnection, "_answer", answer)
    return seen


# inline: the answers of one pass leave right after its sync, before anything else is
# appended, so three meters at once still see nothing pending; thread: another meter's
# request may be appended while an answer waits, so one meter at a time
@pytest.mark.parametrize(("commit", "meters"), [("inline", 3), ("thread", 1)])
def test_no_answer_is_written_while_a_record_is_pending(tmp_path: Path, commit: str,
                                                        meters: int,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        async with serving(tmp_path / "m", count=meters) as bench:
            bench.fleet.commit = commit
            journal = bench.meter.state.journal
            assert journal is not None and journal.deferred
            seen = _watch_answers(monkeypatch, journal)
            syncs = journal.syncs
            clients = [await bench.target(i).management() for i in range(meters)]
            try:
                for _ in range(5):
                    values = await asyncio.gather(*(c.get(8, CLOCK, 2) for c in clients))
                    assert all(len(v.value) == 12 for v in values)
            finally:
                for c in clients:
                    await c.close()
            assert len(seen) >= 5 * meters and not any(seen)
            assert journal.syncs > syncs

    run(scenario)


def test_answer_waits_for_the_sync_of_its_window(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(tmp_path / "m") as bench:
            bench.fleet.commit = "thread"  # the writer thread can be held back
            client = await bench.target().management()
            try:
                journal = bench.meter.state.journal
                assert journal is not None and journal.deferred
                assert bench.fleet.servers[0].active  # served by the callback connection
                assert all(isinstance(c, _WrapperMeterConnection)
                           for c in bench.fleet.servers[0].active)
                gate, flushes = _hold_syncs(journal)
                get = asyncio.create_task(client.get(8, CLOCK, 2))
                await asyncio.sleep(0.3)
                assert not get.done()  # the window is not durable: no answer yet
                assert journal.pending
                gate.set()
                clock = await get
                assert len(clock.value) == 12
                assert flushes and not journal.pending
            finally:
                await client.close()

    run(scenario)


@pytest.mark.parametrize("commit", ["inline", "thread"])
def test_journal_that_cannot_persist_refuses_and_closes(tmp_path: Path, commit: str) -> None:
    async def scenario() -> None:
        async with serving(tmp_path / "m") as bench:
            bench.fleet.commit = commit
            client = await bench.target().management()
            try:
                journal = bench.meter.state.journal
                assert journal is not None

                def broken(upto: int) -> None:
                    journal._failed = True
                    raise CounterStoreError("disk gone (test)")

                journal._flush = broken
                with pytest.raises(MetercertError) as caught:
                    await client.get(8, CLOCK, 2)
                assert isinstance(caught.value, ExceptionResponseReceived)
                assert caught.value.service_error is ServiceError.OPERATION_NOT_POSSIBLE
                with pytest.raises(MetercertError):  # the connection is gone
                    await client.get(8, CLOCK, 2)
            finally:
                await client.close()

    run(scenario)


def test_back_to_back_requests_are_answered_in_order(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(tmp_path / "m") as bench:
            bench.fleet.commit = "thread"  # held back while the three requests arrive
            client = await bench.target().management()
            try:
                assert client.stream is not None
                journal = bench.meter.state.journal
                assert journal is not None
                gate, flushes = _hold_syncs(journal)
                # three requests written at once, before any answer
                get = GetRequestNormal(CosemAttributeDescriptor(8, ObisCode.parse(CLOCK),
                                                                2)).to_bytes()
                wires = [client.protect_request(get) for _ in range(3)]
                for wire in wires:
                    client.stream._link.start_send(wire)
                await client.stream._flush()
                await asyncio.sleep(0.2)
                gate.set()
                answers = [await client.stream.recv(timeout=10) for _ in wires]
                counters = [int.from_bytes(a[3:7], "big") for a in answers]
                assert [a[0] for a in answers] == [0xCC] * 3
                assert counters == sorted(counters) and len(set(counters)) == 3
                plain = [client._open(a) for a in answers]  # each verifies, in order
                assert all(p[:2] == b"\xc4\x01" for p in plain)
                assert len(flushes) >= 1
            finally:
                await client.close()

    run(scenario)
