"""Head-end load on the reference meter beside gurux-dlms's server: ciphered GETs, HLS-GMAC.

Starts ``metercert meter serve --count M --port 0`` (a copy of the conformant profile at
security suite 0, so that both servers run HLS-GMAC in suite 0) and the gurux-dlms
server fixture with the HLS patches it needs to complete HLS-GMAC at all
(``tests/interop/gurux_server.py``, ``start_gurux_server(hls_gmac=True)``), each in its
own child process. This process opens one HLS-GMAC management association per
metercert meter (all M of them) and C to gurux with our :class:`DlmsClient` (counter
read first, AARQ, HLS pass 3), then drives ciphered GETs (glo-get of the clock, SC 0x30,
authenticated and encrypted) through the one load loop, :class:`Load`, for both:

* each association's requests are ciphered by its client ahead of the timed phase
  (``protect_request``: fresh counters from the client's own, strictly increasing); the
  timed loop writes them and reads the answers through an asyncio BufferedProtocol on
  the association's socket: no task, future or stream per request;
* every answer is checked as it arrives (a whole wrapper frame from the right wPort, a
  ciphered get-response, security control 0x30, its counter above the association's
  last) and, after each phase, verified by the client (GMAC tag, system title, suite,
  counter window) and decoded; ``--verify inline`` does that inside the timed loop;
* interleaved rounds: each round runs metercert with C requests in flight, gurux with
  C, then both one request at a time (the order alternates per round), for --phase
  seconds each; the metercert phases walk all M meters round-robin (the per-meter GET
  counts are printed);
* prints each phase's GETs/s, the server process's CPU-milliseconds per GET and this
  process's (the load generator's), then the medians over the rounds and the
  metercert/gurux ratio of each round.

Both servers run on the same 2 cores as this load generator: the rates are those of
the whole loopback system, the CPU per GET is the server's alone. The reference meter's
replay windows are durable before each answer (group commit, meter/server.py and
security/journal.py); gurux keeps its counters in RAM.

    python benchmarks/meter_load.py [--meters 1000] [--clients 64] [--rounds 3] [--phase 3]
                                    [--verify after|inline] [--no-gurux]

Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter, deque
from importlib import resources
from pathlib import Path

from metercert.client.session import ClientSettings, DlmsClient, settings_for_role
from metercert.cosem import (
    CosemAttributeDescriptor,
    DlmsData,
    GetRequestNormal,
    GetResponseNormal,
    ObisCode,
    decode_apdu,
)
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


_WRAPPER = struct.Struct(">HHHH")
_GET_CLOCK = GetRequestNormal(CosemAttributeDescriptor(8, ObisCode.parse(CLOCK), 2)).to_bytes()


class _Association:
    """One open association driven by :class:`Load`: its socket's protocol during a phase,
    the requests ciphered for it ahead of time and the answers it got."""

    __slots__ = (
        "answers",
        "buf",
        "busy",
        "ciphered_in_loop",
        "client",
        "index",
        "last_ic",
        "load",
        "prefix",
        "queue",
        "saved",
        "transport",
    )

    def __init__(self, client: DlmsClient, index: int) -> None:
        self.client, self.index = client, index
        assert client.stream is not None
        self.transport: asyncio.Transport = client.stream._writer.transport  # type: ignore[assignment]
        self.saved: asyncio.BaseProtocol | None = None
        self.queue: deque[bytes] = deque()
        self.busy = False
        self.buf = bytearray()
        self.last_ic = -1
        self.answers: list[bytes] = []
        # the wrapper header of the meter's answers: version 1, from wPort 1 to ours
        s = client.settings
        self.prefix = _WRAPPER.pack(1, s.server_sap, s.client_sap, 0)[:6]
        self.load: Load | None = None
        self.ciphered_in_loop = 0

    def cipher(self, count: int) -> None:
        """Cipher ``count`` more glo-get requests (fresh counters from the client's own)."""
        s = self.client.settings
        for _ in range(count):
            apdu = self.client.protect_request(_GET_CLOCK)
            self.queue.append(_WRAPPER.pack(1, s.client_sap, s.server_sap, len(apdu)) + apdu)

    def next_request(self) -> bytes:
        if not self.queue:  # ran out of requests ciphered ahead: cipher one here
            self.ciphered_in_loop += 1
            self.cipher(1)
        return self.queue.popleft()


class _Wire(asyncio.BufferedProtocol):
    """The socket's protocol during a phase: whole wrapper frames to :meth:`Load.answered`."""

    def __init__(self, a: _Association) -> None:
        self.a = a
        self.space = bytearray(4096)
        self.view = memoryview(self.space)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.view

    def buffer_updated(self, nbytes: int) -> None:
        a = self.a
        buf = a.buf
        buf += self.view[:nbytes]
        while len(buf) >= 8:
            size = 8 + int.from_bytes(buf[6:8], "big")
            if len(buf) < size:
                return
            frame = bytes(buf[:size])
            del buf[:size]
            assert a.load is not None
            a.load.answered(a, frame)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.a.load is not None:
            self.a.load.lost(self.a)


class Load:
    """The load loop: ``workers`` requests in flight, each on its own association, with no
    task, future or stream per request. A worker that gets its answer goes on to the
    association ``workers`` further on (the next free one), so the metercert phases walk
    every meter round-robin.

    Requests are ciphered ahead of the timed phase (valid glo-get requests, SC 0x30, from
    each client's own counter, so each association's counters strictly increase). Each
    answer is checked as it arrives: a whole wrapper frame from the right wPort, a
    glo-get-response (0xCC) with security control 0x30, its invocation counter above the
    association's last one. After the phase, and before the next one, every answer's tag
    is verified and it is deciphered by the client (``DlmsClient._open``: title, suite,
    GMAC tag, counter window) and must decode as a GET response with data; any failure is
    an error. ``verify="inline"`` does that inside the timed loop instead.
    """

    def __init__(self, clients: list[DlmsClient], verify: str = "after") -> None:
        self.clients = clients
        self.assocs = [_Association(c, i) for i, c in enumerate(clients)]
        self.per_client: Counter[int] = Counter()
        self.errors = 0
        self.first_error = ""
        self.verify = verify
        self.verified = 0
        self.ciphered_in_loop = 0
        self.generator_ms: list[float] = []  # this process's CPU-ms per GET, each phase
        self._reset(0, 0.0)

    def _reset(self, workers: int, deadline: float) -> None:
        self.workers, self.deadline = workers, deadline
        self.inflight = 0
        self.done = 0
        self.last_answer = 0.0
        self.finished: asyncio.Future[None] | None = None

    def error(self, text: str) -> None:
        self.errors += 1
        self.first_error = self.first_error or text

    def prepare(self, expected_per_association: int) -> None:
        """Cipher each association's requests for the next phase (outside the timing)."""
        for a in self.assocs:
            if len(a.queue) < expected_per_association:
                a.cipher(expected_per_association - len(a.queue))

    def _send(self, a: _Association) -> None:
        a.busy = True
        self.inflight += 1
        a.transport.write(a.next_request())

    def _next_free(self, start: int) -> _Association | None:
        n = len(self.assocs)
        for k in range(n):
            a = self.assocs[(start + k) % n]
            if not a.busy:
                return a
        return None

    def answered(self, a: _Association, frame: bytes) -> None:
        # frame: wrapper header, then glo-get-response 0xCC (or general-glo-ciphering 0xDB,
        # title) , length, SC, IC(4), ciphertext, tag(12)
        if not a.busy:
            self.error(f"association {a.index}: an answer nobody asked for")
            return
        a.busy = False
        self.inflight -= 1
        ok = False
        tag = frame[8]
        if frame[:6] != a.prefix:
            self.error(f"association {a.index}: wrapper header {frame[:8].hex()}")
        elif tag not in (0xCC, 0xDB) or (tag == 0xDB and frame[9] != 8):
            # 0xDB: general-glo-ciphering with the meter's system title (gurux answers so)
            self.error(f"association {a.index}: answer 0x{tag:02X}, not a ciphered "
                       "get-response")
        else:
            at = 9 if tag == 0xCC else 18  # the length of the ciphered part
            at += 1 if frame[at] < 0x80 else 1 + (frame[at] & 0x7F)
            ic = int.from_bytes(frame[at + 1:at + 5], "big")
            if frame[at] != 0x30:
                self.error(f"association {a.index}: security control 0x{frame[at]:02X}")
            elif ic <= a.last_ic:
                self.error(f"association {a.index}: answer counter {ic} after {a.last_ic}")
            else:
                a.last_ic = ic
                ok = True
        if ok:
            if self.verify == "inline":
                self._check(a, frame[8:])
            else:
                a.answers.append(frame[8:])
            self.done += 1
            self.per_client[a.index] += 1
        now = time.monotonic()
        self.last_answer = now
        if now < self.deadline:
            nxt = self._next_free(a.index + self.workers)
            if nxt is not None:
                self._send(nxt)
        if self.inflight == 0 and self.finished is not None and not self.finished.done():
            self.finished.set_result(None)

    def lost(self, a: _Association) -> None:
        self.error(f"association {a.index}: connection lost")
        if a.busy:
            a.busy = False
            self.inflight -= 1
        if self.inflight == 0 and self.finished is not None and not self.finished.done():
            self.finished.set_result(None)

    def _check(self, a: _Association, apdu: bytes) -> None:
        """The client's own check of a ciphered answer: tag, title, suite, counter window."""
        try:
            answer = decode_apdu(a.client._open(apdu))
        except (MetercertError, ValueError) as exc:
            self.error(f"association {a.index}: {type(exc).__name__}: {exc}")
            return
        if not isinstance(answer, GetResponseNormal) or not isinstance(answer.result, DlmsData):
            self.error(f"association {a.index}: {answer!r} is not the clock")
            return
        self.verified += 1

    def verify_answers(self) -> None:
        for a in self.assocs:
            for apdu in a.answers:
                self._check(a, apdu)
            a.answers.clear()

    async def gets(self, workers: int, seconds: float) -> tuple[int, float]:
        """Ciphered GETs for ``seconds`` with ``workers`` in flight; (answers, seconds taken
        to the last answer)."""
        loop = asyncio.get_running_loop()
        for a in self.assocs:
            a.load = self
            a.saved = a.transport.get_protocol()
            a.transport.set_protocol(_Wire(a))
        t0 = time.monotonic()
        self._reset(workers, t0 + seconds)
        self.finished = loop.create_future()
        try:
            for a in self.assocs[:max(1, min(workers, len(self.assocs)))]:
                self._send(a)
            try:
                await asyncio.wait_for(asyncio.shield(self.finished), seconds + 10.0)
            except TimeoutError:
                self.error(f"{self.inflight} answers missing 10 s after the phase")
        finally:
            for a in self.assocs:
                a.load = None
                if a.saved is not None:
                    a.transport.set_protocol(a.saved)  # type: ignore[arg-type]
                self.ciphered_in_loop += a.ciphered_in_loop
                a.ciphered_in_loop = 0
        return self.done, (self.last_answer or time.monotonic()) - t0


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


async def phase(load: Load, pid: int, workers: int, seconds: float,
                guess: float) -> tuple[float, float]:
    """(GETs/s, server CPU-ms per GET) of one timed phase; ``guess`` (GETs/s) sizes the
    requests ciphered ahead for it (more are ciphered in the loop if they run out)."""
    n_assoc = len(load.assocs)
    load.prepare(int(guess * seconds * 1.5 / n_assoc) + 4)
    c0, own = cpu_seconds(pid), time.process_time()
    n, took = await load.gets(workers, seconds)
    cpu, own = cpu_seconds(pid) - c0, time.process_time() - own
    load.verify_answers()  # every answer's tag, before the next phase
    load.generator_ms.append(own / n * 1000 if n else float("nan"))
    return (n / took if took > 0 else 0.0), (cpu / n * 1000 if n else float("nan"))


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
        mc = Load(await open_metercert(load_key_file(meter.keys_out)), args.verify)
        print(f"  metercert: {args.meters} HLS-GMAC associations in "
              f"{time.perf_counter() - t0:.1f} s")
        gx = None
        if gurux is not None:
            gx = Load(await open_gurux(gurux[1], args.clients), args.verify)
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
                seen = runs.get(name)
                guess = max(v[0] for v in seen) if seen else (3000.0 if workers == 1 else 12000.0)
                rate, cpu = await phase(load, pid, workers, args.phase, guess)
                runs.setdefault(name, []).append((rate, cpu))
                print(f"  round {r + 1} {name:<15} {rate:9,.0f} GETs/s  {cpu:7.3f} CPU-ms/GET"
                      f"  (load generator {load.generator_ms[-1]:.3f})"
                      + (f"  errors so far: {load.errors} ({load.first_error})"
                         if load.errors else ""))
        print("medians:")
        for name, values in runs.items():
            print(f"  {name:<15} {statistics.median(v[0] for v in values):9,.0f} GETs/s  "
                  f"{statistics.median(v[1] for v in values):7.3f} server CPU-ms/GET")
        for suffix in ("", " x1"):
            mine, theirs = runs.get("metercert" + suffix), runs.get("gurux-dlms" + suffix)
            if mine and theirs:
                ratios = [a[0] / b[0] if b[0] else float("nan") for a, b in zip(mine, theirs)]
                cpu = [b[1] / a[1] if a[1] else float("nan") for a, b in zip(mine, theirs)]
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
        for label, load in (("metercert", mc), ("gurux-dlms", gx)):
            if load is not None:
                total = sum(load.per_client.values())
                print(f"  {label}: {load.verified:,} of {total:,} answers verified (tag, title,"
                      f" suite, counter window, decoded; {args.verify} each phase), "
                      f"{load.ciphered_in_loop} requests ciphered in the timed loop, the rest "
                      f"ahead; load generator CPU-ms per GET, median "
                      f"{statistics.median(load.generator_ms):.3f}")
        best = statistics.median(v[0] for v in runs["metercert"])
        print(f"  goal >= 5,000 ciphered GETs/s across {args.meters} meters: {best:,.0f}/s")
        if gx is not None:
            print(f"  gurux-dlms errors: {gx.errors}" + (f" ({gx.first_error})" if gx.errors else ""))
        for load in (mc, gx):
            if load is not None:
                await asyncio.gather(*(c.close() for c in load.clients), return_exceptions=True)
        complete = all(load.verified == sum(load.per_client.values())
                       for load in (mc, gx) if load is not None)
        return 0 if used == args.meters and not mc.errors and complete else 1
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
    parser.add_argument("--verify", choices=("after", "inline"), default="after",
                        help="verify every answer's tag after each phase (default) or in "
                             "the timed loop")
    parser.add_argument("--no-gurux", action="store_true", help="skip the gurux comparison")
    args = parser.parse_args()
    if not 1 <= args.meters <= 20000 or args.clients < 1 or not 0.5 <= args.phase <= 120:
        parser.error("--meters 1..20000, --clients >= 1, --phase 0.5..120")
    with tempfile.TemporaryDirectory(prefix="metercert-load-") as tmp:
        return asyncio.run(main_async(args, Path(tmp)))


if __name__ == "__main__":
    sys.exit(main())
