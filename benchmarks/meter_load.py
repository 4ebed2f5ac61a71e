"""Head-end load on the reference meter beside gurux-dlms's server: ciphered GETs, HLS-GMAC.

Starts ``metercert meter serve --count M --port 0`` (a copy of the conformant profile at
security suite 0, so that both servers run HLS-GMAC in suite 0) and the gurux-dlms
server fixture with the HLS patches it needs to complete HLS-GMAC at all
(``tests/interop/gurux_server.py``, ``start_gurux_server(hls_gmac=True)``), each in its
own child process. This process then opens one HLS-GMAC management association per
metercert meter (all M of them) and sends ciphered GETs (glo-get of the clock,
authenticated and encrypted) with our asyncio :class:`DlmsClient`:

* interleaved rounds: each round runs metercert with C concurrent clients, gurux with C
  concurrent clients, then both with one client at a time (the order alternates per
  round), for --phase seconds each;
* the metercert clients walk all M meters round-robin, so every meter is exercised (the
  per-meter GET counts are printed);
* prints each phase's GETs/s and the server process's CPU-milliseconds per GET, then the
  medians over the rounds and the metercert/gurux ratio of each round.

Both servers run on the same 2 cores as this load generator, which costs CPU too: the
rates are those of the whole loopback system, the CPU per GET is the server's alone.
The reference meter's replay windows are durable before each answer (group commit,
meter/server.py and security/journal.py); gurux keeps its counters in RAM.

    python benchmarks/meter_load.py [--meters 1000] [--clients 64] [--rounds 3] [--phase 3]

Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from importlib import resources
from pathlib import Path

from metercert.client.session import ClientSettings, DlmsClient, settings_for_role
from metercert.errors import MetercertError
from metercert.lab.power import MeterProcess
from metercert.security import Key, KeySet, Mechanism, load_key_file

CLOCK = "0.0.1.0.0.255"
ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "interop"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (from /proc)."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def suite0_profile(folder: Path) -> Path:
    """The conformant profile with security suite 0 (gurux's HLS-GMAC suite)."""
    text = resources.files("metercert.meter").joinpath("profiles", "conformant.yaml").read_text()
    text = text.replace("name: conformant", "name: conformant-suite0", 1)
    text = text.replace("security_suite: 1", "security_suite: 0", 1)
    path = folder / "conformant-suite0.yaml"
    path.write_text(text)
    return path


class Load:
    """Open clients and the counts of what they did."""

    def __init__(self, clients: list[DlmsClient]) -> None:
        self.clients = clients
        self.per_client: Counter[int] = Counter()
        self.errors = 0
        self.first_error = ""

    async def gets(self, workers: int, seconds: float) -> int:
        """Ciphered GETs for ``seconds`` from ``workers`` tasks; returns how many."""
        done = 0
        deadline = time.monotonic() + seconds
        n = len(self.clients)
        lock = [asyncio.Lock() for _ in range(n)]  # one request at a time per association

        async def worker(w: int) -> None:
            nonlocal done
            i = w
            while time.monotonic() < deadline:
                m = i % n
                i += workers
                async with lock[m]:
                    try:
                        await self.clients[m].get(8, CLOCK, 2)
                    except MetercertError as exc:
                        self.errors += 1
                        self.first_error = self.first_error or f"{type(exc).__name__}: {exc}"
                        continue
                done += 1
                self.per_client[m] += 1

        await asyncio.gather(*(worker(w) for w in range(min(workers, n) or 1)))
        return done


async def open_metercert(keysets: list[KeySet], parallel: int = 50) -> list[DlmsClient]:
    clients = [DlmsClient(str(k.extra["host"]), int(k.extra["port"]),
                          settings_for_role(k, timeout=5.0)) for k in keysets]
    sem = asyncio.Semaphore(parallel)

    async def one(c: DlmsClient) -> None:
        async with sem:
            await c.open()

    await asyncio.gather(*(one(c) for c in clients))
    return clients


async def open_gurux(port: int, count: int) -> list[DlmsClient]:
    sys.path.insert(0, str(FIXTURE))
    from gurux_server import AK, CLIENT_TITLE, GUEK, SERVER_TITLE  # type: ignore[import-not-found]

    keys = KeySet(guek=Key(GUEK, "guek"), ak=Key(AK, "ak"), client_system_title=CLIENT_TITLE,
                  server_system_title=SERVER_TITLE)
    settings = ClientSettings(client_sap=1, mechanism=Mechanism.HLS_GMAC, suite=0, keys=keys,
                              timeout=5.0)
    clients = [DlmsClient("127.0.0.1", port, settings) for _ in range(count)]
    for c in clients:
        await c.open()
    return clients


def start_gurux() -> tuple[subprocess.Popen[str], int] | None:
    if not (FIXTURE / "gurux_server.py").exists():
        return None
    code = ("import sys, time; sys.path.insert(0, sys.argv[1]); "
            "from gurux_server import start_gurux_server; "
            "h, p, stop = start_gurux_server(hls_gmac=True); print(p, flush=True); "
            "time.sleep(3600)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(FIXTURE)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.isdigit():
        proc.kill()
        proc.wait()
        return None
    return proc, int(line)


async def phase(load: Load, pid: int, workers: int, seconds: float) -> tuple[float, float]:
    """(GETs/s, server CPU-ms per GET) of one timed phase."""
    c0, t0 = cpu_seconds(pid), time.perf_counter()
    n = await load.gets(workers, seconds)
    took, cpu = time.perf_counter() - t0, cpu_seconds(pid) - c0
    return n / took, (cpu / n * 1000 if n else float("nan"))


async def main_async(args: argparse.Namespace, work: Path) -> int:
    print(f"meter_load: {args.meters} metercert meters vs the gurux-dlms server, ciphered GETs "
          f"(HLS-GMAC, suite 0, SC 0x30), {args.clients} concurrent clients and 1, "
          f"{args.rounds} interleaved rounds of {args.phase:.0f} s phases, loopback")
    # every association comes from 127.0.0.1: the per-peer cap must let all of them in
    meter = MeterProcess(work / "meters", profile=str(suite0_profile(work)), port=0,
                         count=args.meters,
                         extra_args=("--max-per-peer", str(args.meters + 16)))
    t0 = time.perf_counter()
    await asyncio.to_thread(meter.start, 900.0)
    print(f"  metercert: {args.meters} meters up in {time.perf_counter() - t0:.1f} s")
    gurux = None if args.no_gurux else start_gurux()
    try:
        t0 = time.perf_counter()
        mc = Load(await open_metercert(load_key_file(meter.keys_out)))
        print(f"  metercert: {args.meters} HLS-GMAC associations in "
              f"{time.perf_counter() - t0:.1f} s")
        gx = None
        if gurux is not None:
            gx = Load(await open_gurux(gurux[1], args.clients))
        assert meter.proc is not None
        runs: dict[str, list[tuple[float, float]]] = {}
        for r in range(args.rounds):
            order: list[tuple[str, Load, int, int]] = [("metercert", mc, meter.proc.pid,
                                                        args.clients)]
            if gx is not None and gurux is not None:
                order.append(("gurux-dlms", gx, gurux[0].pid, args.clients))
            order += [(name + " x1", load, pid, 1) for name, load, pid, _ in order]
            if r % 2:
                order.reverse()
            for name, load, pid, workers in order:
                rate, cpu = await phase(load, pid, workers, args.phase)
                runs.setdefault(name, []).append((rate, cpu))
                print(f"  round {r + 1} {name:<15} {rate:9,.0f} GETs/s  {cpu:7.3f} CPU-ms/GET")
        print("medians:")
        for name, values in runs.items():
            print(f"  {name:<15} {statistics.median(v[0] for v in values):9,.0f} GETs/s  "
                  f"{statistics.median(v[1] for v in values):7.3f} server CPU-ms/GET")
        for suffix in ("", " x1"):
            mine, theirs = runs.get("metercert" + suffix), runs.get("gurux-dlms" + suffix)
            if mine and theirs:
                ratios = [a[0] / b[0] for a, b in zip(mine, theirs)]
                cpu = [b[1] / a[1] for a, b in zip(mine, theirs)]
                label = "one at a time" if suffix else f"{args.clients} at once"
                print(f"  metercert / gurux-dlms, {label}: GETs/s "
                      + " ".join(f"{x:.1f}x" for x in ratios)
                      + f" (median {statistics.median(ratios):.1f}x); CPU per GET "
                      + f"{statistics.median(cpu):.1f}x less (goal >= 10x)")
        used = len(mc.per_client)
        counts = sorted(mc.per_client.values())
        print(f"  metercert meters exercised: {used} of {args.meters} (GETs per meter: min "
              f"{counts[0] if counts else 0}, median {counts[len(counts) // 2] if counts else 0}"
              f", max {counts[-1] if counts else 0}); errors: {mc.errors}"
              + (f" ({mc.first_error})" if mc.errors else ""))
        best = statistics.median(v[0] for v in runs["metercert"])
        print(f"  goal >= 5,000 ciphered GETs/s across {args.meters} meters: {best:,.0f}/s")
        if gx is not None and gx.errors:
            print(f"  gurux errors: {gx.errors} ({gx.first_error})")
        for load in (mc, gx):
            if load is not None:
                await asyncio.gather(*(c.close() for c in load.clients), return_exceptions=True)
        return 0 if used == args.meters and not mc.errors else 1
    finally:
        meter.stop()
        if gurux is not None:
            gurux[0].kill()
            gurux[0].wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--meters", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--phase", type=float, default=3.0, help="seconds per phase")
    parser.add_argument("--no-gurux", action="store_true", help="skip the gurux comparison")
    args = parser.parse_args()
    if not 1 <= args.meters <= 20000 or args.clients < 1 or not 0.5 <= args.phase <= 120:
        parser.error("--meters 1..20000, --clients >= 1, --phase 0.5..120")
    with tempfile.TemporaryDirectory(prefix="metercert-load-") as tmp:
        return asyncio.run(main_async(args, Path(tmp)))


if __name__ == "__main__":
    sys.exit(main())
