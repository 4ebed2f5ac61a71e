"""Connection caps: a flood of idle sockets never locks the head-end out (issue 14, item 5).

The gate's policy is tested directly (a fake clock, no sockets), then a real
``meter serve`` child runs with ``ulimit -n 1024`` (set in the child) while 2,000
idle connections are attempted: a good client keeps being served, the meter's log
stays small and holds no traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _meterproc import raise_fd_limit  # type: ignore[import-not-found]

from metercert.client.session import DlmsClient, settings_for_role
from metercert.meter.limits import ConnectionGate, ConnectionLimits, RateLog
from metercert.security import load_keyset

HOST = "127.0.0.1"
EXTRA: list[str] = []  # extra meter serve options (a manual control run disables the caps)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _gate(**kw) -> tuple[ConnectionGate, Clock, list[str]]:  # type: ignore[no-untyped-def]
    clock = Clock()
    total = kw.pop("total", 4)
    gate = ConnectionGate(ConnectionLimits(**kw), total=total, clock=clock)
    return gate, clock, []


def _open(gate: ConnectionGate, peer: str, closed: list[str], name: str):  # type: ignore[no-untyped-def]
    return gate.admit(peer, lambda: closed.append(name))


def test_idle_connections_are_shed_for_a_talking_client() -> None:
    gate, clock, closed = _gate(total=4, reserved=0)
    idle = [_open(gate, "10.0.0.9", closed, f"idle{i}") for i in range(4)]
    assert all(idle) and len(gate.open) == 4
    clock.now += 5
    good = _open(gate, "10.0.0.1", closed, "good")
    assert good is not None and closed == ["idle0"]  # the oldest silent one went
    good.last_frame = clock.now                      # the good client talks
    for i in range(10):                              # the flood goes on
        clock.now += 0.01
        assert _open(gate, "10.0.0.9", closed, f"more{i}") is not None
    assert "good" not in closed and len(gate.open) == 4


def test_per_peer_cap_sheds_within_that_peer() -> None:
    gate, _clock, closed = _gate(total=100, per_peer=3, reserved=0)
    other = _open(gate, "10.0.0.2", closed, "other")
    for i in range(3):
        _open(gate, "10.0.0.9", closed, f"a{i}")
    assert _open(gate, "10.0.0.9", closed, "a3") is not None
    assert closed == ["a0"] and other is not None and id(other) in gate.open


def test_reserved_slots_are_for_the_head_end_only() -> None:
    gate, clock, closed = _gate(total=3, reserved=1, head_end=frozenset({"10.0.0.1"}),
                                protect_active=1.0)
    a = _open(gate, "10.0.0.9", closed, "a")
    b = _open(gate, "10.0.0.9", closed, "b")
    assert a and b
    a.last_frame = b.last_frame = clock.now          # both busy: nothing to shed
    assert _open(gate, "10.0.0.9", closed, "c") is None  # the last slot is the head-end's
    head = _open(gate, "10.0.0.1", closed, "head")
    assert head is not None and closed == []
    clock.now += 10                                  # the head-end is never shed
    assert _open(gate, "10.0.0.9", closed, "d") is not None
    assert "head" not in closed and gate.refused == 1


def test_each_condition_is_logged_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    rate = RateLog(10.0, clock)
    with caplog.at_level("WARNING", logger="metercert.meter"):
        for _ in range(5000):
            rate.event("connection cap reached")
            clock.now += 0.001
        clock.now += 10
        rate.event("connection cap reached")
    assert rate.lines == 2 and len(caplog.records) == 2
    assert "times in the last 10 s" in caplog.records[-1].getMessage()


# -- a real meter with ulimit -n 1024 --------------------------------------------------------

# the child lowers its own limit (soft and hard: it cannot raise it back), then runs the CLI
LIMITED_METER = ("import resource, runpy, sys; "
                 "resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024)); "
                 "sys.argv = ['metercert', *sys.argv[1:]]; "
                 "runpy.run_module('metercert', run_name='__main__')")


async def _good_round(port: int, keys_path: Path) -> None:
    keys = load_keyset(keys_path)
    client = DlmsClient(HOST, port, settings_for_role(keys, timeout=10.0))
    async with client:
        await client.get(8, "0.0.1.0.0.255", 2)


async def _flood(port: int, count: int, held: list[asyncio.StreamWriter]) -> int:
    opened = 0
    for _ in range(count):
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 5)
        except (OSError, TimeoutError):
            continue
        held.append(writer)
        opened += 1
        if opened % 50 == 0:
            await asyncio.sleep(0)
    return opened


@pytest.mark.timeout(300)
def test_ulimit_1024_meter_serves_a_good_client_through_2000_idle_connections(
        tmp_path: Path) -> None:
    if raise_fd_limit(6000) < 4500:
        pytest.skip("this test process cannot hold 2,000 sockets")
    state, err_path = tmp_path / "state", tmp_path / "meter.stderr"
    with err_path.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-c", LIMITED_METER, "meter", "serve",
                                 "--port", "0", "--state-dir", str(state), "--ready-line",
                                 *EXTRA],
                                stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("READY"), err_path.read_text()[-2000:]
        port = int(line.rsplit(":", 1)[1])
        keys = state / "client-keys.yaml"
        limits = Path(f"/proc/{proc.pid}/limits").read_text()
        assert any(row.startswith("Max open files") and row.split()[3] == "1024"
                   for row in limits.splitlines()), limits

        async def scenario() -> tuple[int, int]:
            held: list[asyncio.StreamWriter] = []
            rounds = 0
            try:
                flood = asyncio.create_task(_flood(port, 2000, held))
                while not flood.done() or rounds < 3:
                    await _good_round(port, keys)  # must succeed every time
                    rounds += 1
                    if rounds > 60:
                        break
                opened = await flood
                for _ in range(3):               # and with the flood still held open
                    await _good_round(port, keys)
                    rounds += 1
                return opened, rounds
            finally:
                for w in held:
                    with contextlib.suppress(Exception):
                        w.close()
        t0 = time.monotonic()
        opened, rounds = asyncio.run(scenario())
        assert rounds >= 6 and opened > 1024, (opened, rounds)  # more than the meter's fds
        assert time.monotonic() - t0 < 240
        assert proc.poll() is None, "the meter died"
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        if proc.poll() is None:
            proc.kill()
    log = err_path.read_text()
    assert "Traceback" not in log, log[-3000:]
    assert len(log) < 20_000, f"{len(log)} bytes of log"
    assert "cap of" in log  # a cap was met, and said so (once per interval)


def test_accept_out_of_file_descriptors_is_one_line_per_interval(
        caplog: pytest.LogCaptureFixture) -> None:
    """asyncio reports each failed accept() with a traceback; the meter logs it once, plainly."""
    import errno

    from metercert.meter.limits import quiet_accept_errors

    loop = asyncio.new_event_loop()
    other: list[dict[str, object]] = []
    loop.set_exception_handler(lambda lp, ctx: other.append(ctx))
    try:
        rate = RateLog(10.0)
        restore = quiet_accept_errors(loop, rate)
        with caplog.at_level("WARNING", logger="metercert.meter"):
            for _ in range(3000):
                loop.call_exception_handler({
                    "message": "socket.accept() out of system resource",
                    "exception": OSError(errno.EMFILE, "Too many open files")})
            loop.call_exception_handler({"message": "something else"})
        assert len(caplog.records) == 1 and caplog.records[0].exc_info is None
        assert "EMFILE" in caplog.records[0].getMessage()
        assert [c["message"] for c in other] == ["something else"]  # passed on untouched
        restore()
        loop.call_exception_handler({"message": "after"})
        assert other[-1]["message"] == "after"
    finally:
        loop.close()
