"""``metercert push listen``: receive, verify and decrypt meters' pushes; watch their counters."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from rich.console import Console

from metercert.errors import UsageError


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    push = subparsers.add_parser(
        "push", help="receive DataNotification pushes: verify, decrypt, check counters",
        description="Listen for meters' pushes (DataNotification, plain or general-glo "
                    "ciphered) over TCP/UDP (wrapper) or a serial line (HDLC), verify and "
                    "decrypt them with the key file, flag replays, counter reuse and "
                    "regressions per meter, and write records that 'fleet scan' reads.")
    sub = push.add_subparsers(dest="push_command", metavar="SUBCOMMAND", required=True)
    listen = sub.add_parser("listen", help="listen for pushes until stopped (or --count)")
    listen.add_argument("--keys", required=True, help="key file naming the meters' keys")
    listen.add_argument("--tcp", metavar="HOST:PORT", action="append", default=[],
                        help="accept pushes over TCP (wrapper); port 0 picks a free one")
    listen.add_argument("--udp", metavar="HOST:PORT", action="append", default=[],
                        help="accept pushes over UDP (wrapper)")
    listen.add_argument("--serial", metavar="URL", action="append", default=[],
                        help="read pushes (HDLC UI frames) from serial:///dev/ttyX?baud=N")
    listen.add_argument("--out", help="dataset directory for 'metercert fleet scan'")
    listen.add_argument("--state", help="counter book (JSON) kept across runs (default: "
                                        "OUT/push-counters.json)")
    listen.add_argument("--count", type=int, help="stop after this many pushes")
    listen.add_argument("--ready-line", action="store_true", help=argparse.SUPPRESS)
    listen.set_defaults(func=_listen)


def _endpoint(text: str, what: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UsageError(f"--{what} {text!r}: expected HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


def _listen(args: argparse.Namespace) -> int:
    from metercert.fleet.ingest import KeyRing
    from metercert.transport.serial import parse_serial_url

    if not (args.tcp or args.udp or args.serial):
        raise UsageError("give at least one of --tcp HOST:PORT, --udp HOST:PORT, --serial URL")
    if args.count is not None and args.count < 1:
        raise UsageError("--count must be at least 1")
    tcp = [_endpoint(t, "tcp") for t in args.tcp]
    udp = [_endpoint(u, "udp") for u in args.udp]
    serial = [parse_serial_url(s) for s in args.serial]
    keys = KeyRing.load(args.keys)
    out = Path(args.out) if args.out else None
    if out is not None and out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: is a file, not a folder")
    state = Path(args.state) if args.state else (out / "push-counters.json" if out else None)
    return asyncio.run(_run(keys, tcp, udp, serial, out, state, args))


async def _run(keys, tcp, udp, serial, out, state, args) -> int:  # type: ignore[no-untyped-def]
    from metercert.push.listener import PushListener

    console = Console(stderr=True)
    flagged = 0

    def show(record) -> None:  # type: ignore[no-untyped-def]
        nonlocal flagged
        if record.verdict != "ok":
            flagged += 1
        print(record.line(), flush=True)

    listener = PushListener(keys, out_dir=out, state=state, on_record=show)
    try:
        for host, port in tcp:
            await listener.start_tcp(host, port)
        for host, port in udp:
            await listener.start_udp(host, port)
        for spec in serial:
            await listener.start_serial(spec.path, spec.baud)
        if args.ready_line:
            print("READY " + " ".join(listener.endpoints), flush=True)
        else:
            console.print("listening on " + ", ".join(listener.endpoints) + " (Ctrl-C stops)")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        while not stop.is_set():
            if args.count is not None and len(listener.records) >= args.count:
                break
            listener.arrived.clear()
            waiter = asyncio.create_task(listener.arrived.wait())
            stopper = asyncio.create_task(stop.wait())
            await asyncio.wait({waiter, stopper}, timeout=5.0,
                               return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            stopper.cancel()
            listener.flush()  # records reach the dataset while the listener runs
    finally:
        await listener.close()
        written = listener.flush()
    n = len(listener.records)
    console.print(f"{n} push(es), {flagged} flagged"
                  + (f"; records in {out}" if out is not None and (written or n) else ""))
    sys.stdout.flush()
    return 1 if flagged else 0
