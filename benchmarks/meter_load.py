"""Head-end load on the reference meter: N concurrent clients against M meters on loopback.

Starts ``metercert meter serve --count M --port 0`` in a child process (each meter on its
own free port, read from the key file), then runs our asyncio :class:`DlmsClient` from
this process in timed phases:

1. HLS-GMAC associations/s (AARQ with ciphered initiate, HLS pass 3/4, RLRQ), suite 1;
2. ciphered GETs/s (glo-get of the clock on established management associations);
3. public associations/s and plain GETs/s (client SAP 16, no security), the only load
   the gurux-dlms server fixture (``tests/interop/gurux_server.py``) can carry, run the
   same way against it in its own child process for comparison.

It also measures what the meter's durable replay window costs: every accepted ciphered
request persists the received counter with ``fdatasync`` before it is executed (see
``security/counters.py``); the figure is the time of one ``ReplayGuard.accept`` on the
meter's state folder, with and without the sync (the product never runs without it).

    python benchmarks/meter_load.py [--meters 1000] [--clients 50] [--duration 20]

Loopback only; the run is bounded by --duration (plus meter start-up, about 5 ms a meter).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from metercert.client.session import ClientSettings, DlmsClient, settings_for_role
from metercert.errors import MetercertError
from metercert.lab.power import MeterProcess
from metercert.security import KeySet, ReplayGuard, load_key_file

CLOCK = "0.0.1.0.0.255"
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Phase:
    name: str
    ops: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    first_error: str = ""

    @property
    def rate(self) -> float:
        return self.ops / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        lat = sorted(self.latencies)
        p50 = lat[len(lat) // 2] * 1000 if lat else 0.0
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000 if lat else 0.0
        err = f", {self.errors} errors ({self.first_error})" if self.errors else ""
        return (f"  {self.name:<34} {self.rate:9.1f}/s  ({self.ops} in {self.seconds:.1f} s, "
                f"p50 {p50:.1f} ms, p99 {p99:.1f} ms{err})")


class CounterBook:
    """Next invocation counter per meter: each meter is used by one worker at a time, so
    the benchmark keeps the client's counters in memory instead of on disk."""

    def __init__(self) -> None:
        self.next: dict[int, int] = {}

    def open(self, meter: int, client: DlmsClient) -> None:
        client.skip_counter_to(self.next.get(meter, 0))

    def close(self, meter: int, client: DlmsClient) -> None:
        if client.last_sent_counter is not None:
            self.next[meter] = client.last_sent_counter + 1


async def timed(phase: Phase, workers: int, seconds: float,
                body: Callable[[int, float], Awaitable[None]]) -> Phase:
    deadline = time.monotonic() + seconds
    start = time.perf_counter()
    await asyncio.gather(*(body(w, deadline) for w in range(workers)))
    phase.seconds = time.perf_counter() - start
    return phase


def _fail(phase: Phase, exc: BaseException) -> None:
    phase.errors += 1
    phase.first_error = phase.first_error or f"{type(exc).__name__}: {exc}"


def _endpoint(keys: KeySet) -> tuple[str, int]:
    return str(keys.extra["host"]), int(keys.extra["port"])


async def hls_associations(keysets: list[KeySet], book: CounterBook, workers: int,
                           seconds: float) -> Phase:
    phase = Phase("HLS-GMAC associations (suite 1)")

    async def body(w: int, deadline: float) -> None:
        i = w
        while time.monotonic() < deadline:
            m = i % len(keysets)
            client = DlmsClient(*_endpoint(keysets[m]), settings_for_role(keysets[m], timeout=3.0))
            book.open(m, client)
            t0 = time.perf_counter()
            try:
                async with client:
                    pass
                phase.ops += 1
                phase.latencies.append(time.perf_counter() - t0)
            except MetercertError as exc:
                _fail(phase, exc)
            book.close(m, client)
            i += workers

    return await timed(phase, workers, seconds, body)


async def ciphered_gets(keysets: list[KeySet], book: CounterBook, workers: int,
                        seconds: float) -> Phase:
    phase = Phase("ciphered GETs (glo-get, SC 0x31)")

    async def body(w: int, deadline: float) -> None:
        m = w % len(keysets)
        client = DlmsClient(*_endpoint(keysets[m]), settings_for_role(keysets[m], timeout=3.0))
        book.open(m, client)
        try:
            async with client:
                while time.monotonic() < deadline:
                    t0 = time.perf_counter()
                    await client.get(8, CLOCK, 2)
                    phase.ops += 1
                    phase.latencies.append(time.perf_counter() - t0)
        except MetercertError as exc:
            _fail(phase, exc)
        book.close(m, client)

    return await timed(phase, workers, seconds, body)


async def public_load(endpoints: list[tuple[str, int]], workers: int, seconds: float,
                      label: str) -> tuple[Phase, Phase]:
    assoc = Phase(f"{label}: public associations")
    gets = Phase(f"{label}: plain GETs")

    async def associate(w: int, deadline: float) -> None:
        i = w
        while time.monotonic() < deadline:
            client = DlmsClient(*endpoints[i % len(endpoints)], ClientSettings(timeout=3.0))
            t0 = time.perf_counter()
            try:
                async with client:
                    pass
                assoc.ops += 1
                assoc.latencies.append(time.perf_counter() - t0)
            except MetercertError as exc:
                _fail(assoc, exc)
            i += workers

    async def get(w: int, deadline: float) -> None:
        client = DlmsClient(*endpoints[w % len(endpoints)], ClientSettings(timeout=3.0))
        try:
            async with client:
                while time.monotonic() < deadline:
                    t0 = time.perf_counter()
                    await client.get(8, CLOCK, 2)
                    gets.ops += 1
                    gets.latencies.append(time.perf_counter() - t0)
        except MetercertError as exc:
            _fail(gets, exc)

    await timed(assoc, workers, seconds / 2, associate)
    await timed(gets, workers, seconds / 2, get)
    return assoc, gets


def replay_window_cost(folder: Path, seconds: float = 1.0) -> tuple[float, float]:
    """Microseconds per ReplayGuard.accept with fdatasync (as the meter runs) and without."""
    out = []
    for fsync in (True, False):
        guard = ReplayGuard(folder, b"BENCH\0\0\0", f"sync-{fsync}", fsync=fsync)
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            guard.accept(n)
            n += 1
        out.append((time.perf_counter() - start) / n * 1e6)
    return out[0], out[1]


def start_gurux() -> tuple[subprocess.Popen[str], int] | None:
    fixture = ROOT / "tests" / "interop" / "gurux_server.py"
    if not fixture.exists():
        return None
    code = ("import sys, time; sys.path.insert(0, sys.argv[1]); "
            "from gurux_server import start_gurux_server; "
            "h, p, stop = start_gurux_server(); print(p, flush=True); time.sleep(3600)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(fixture.parent)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.isdigit():
        proc.kill()
        proc.wait()
        return None
    return proc, int(line)


async def main_async(args: argparse.Namespace, state: Path) -> int:
    q = args.duration / 4
    print(f"meter_load: {args.meters} meters, {args.clients} concurrent clients, "
          f"~{args.duration:.0f} s of load, loopback only")
    meter = MeterProcess(state / "meters", profile=args.profile, port=0, count=args.meters)
    t0 = time.perf_counter()
    await asyncio.to_thread(meter.start, 600.0)
    startup = time.perf_counter() - t0
    try:
        keysets = load_key_file(meter.keys_out)
        print(f"  meter process up in {startup:.1f} s ({startup / args.meters * 1000:.1f} ms/meter)")
        book = CounterBook()
        results = [await hls_associations(keysets, book, args.clients, q)]
        results.append(await ciphered_gets(keysets, book, args.clients, q))
        results += await public_load([_endpoint(k) for k in keysets], args.clients, q, "metercert")
    finally:
        meter.stop()
    print("metercert reference meter (one process, asyncio):")
    for r in results:
        print(r.line())
    gurux = None if args.no_gurux else start_gurux()
    if gurux is None:
        print("gurux fixture unavailable")
    else:
        proc, port = gurux
        try:
            g = await public_load([("127.0.0.1", port)], args.clients, q, "gurux-dlms")
        finally:
            proc.kill()
            proc.wait()
        print("gurux-dlms 1.0.203 server fixture (one process, threads; no HLS-GMAC: see "
              "tests/interop/gurux_server.py):")
        for r in g:
            print(r.line())
    synced, unsynced = replay_window_cost(state / "meters")
    gets = results[1].rate
    print("durable replay window (ReplayGuard.accept on the meter's state folder):")
    print(f"  with fdatasync {synced:8.1f} us/accept; without {unsynced:6.1f} us/accept "
          f"(sync = {synced - unsynced:.1f} us per accepted ciphered request)")
    if gets:
        print(f"  one sync at a time would cap a meter process at {1e6 / synced:,.0f} accepted "
              f"requests/s; measured {gets:,.0f} ciphered GETs/s because requests run in worker "
              "threads (meter/server.py) and the journal commits concurrent syncs together")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--meters", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load in all")
    parser.add_argument("--profile", default="conformant")
    parser.add_argument("--no-gurux", action="store_true", help="skip the gurux comparison")
    args = parser.parse_args()
    if not 1 <= args.meters <= 20000 or args.clients < 1 or not 1 <= args.duration <= 600:
        parser.error("--meters 1..20000, --clients >= 1, --duration 1..600")
    with tempfile.TemporaryDirectory(prefix="metercert-load-") as tmp:
        return asyncio.run(main_async(args, Path(tmp)))


if __name__ == "__main__":
    sys.exit(main())
