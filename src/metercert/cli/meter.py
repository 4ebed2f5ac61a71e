"""``metercert meter serve|profiles``: the reference meter."""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import sys
from pathlib import Path

from rich.console import Console

from metercert.errors import UsageError
from metercert.meter.profile import FLAWS, builtin_profiles, load_profile


def register(sub: argparse._SubParsersAction) -> None:
    meter = sub.add_parser("meter", help="run the reference meter (conformant or flawed)")
    cmds = meter.add_subparsers(dest="meter_command", metavar="ACTION", required=True)
    serve = cmds.add_parser("serve", help="serve one or many reference meters over TCP")
    serve.add_argument("--profile", default="conformant", help="profile name or YAML file")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=4059, help="first port (0 = any free port)")
    serve.add_argument("--count", type=int, default=1, help="number of meters (consecutive ports)")
    serve.add_argument("--framing", choices=["wrapper", "hdlc"], default="wrapper",
                       help="DLMS wrapper (default) or HDLC frames over the connection")
    serve.add_argument("--udp", action="store_true",
                       help="serve the wrapper over UDP (one frame per datagram) instead of TCP")
    serve.add_argument("--state-dir", default="metercert-state",
                       help="where keys and counters persist (a restart is a power cycle)")
    serve.add_argument("--keys-out", metavar="FILE",
                       help="write the client key file here (default: STATE_DIR/client-keys.yaml)")
    serve.add_argument("--tls", action="store_true",
                       help="serve DLMS over mutual TLS (with --udp: mutual DTLS 1.2)")
    serve.add_argument("--cert", help="meter certificate (PEM), with --tls")
    serve.add_argument("--key", help="meter private key (PEM), with --tls")
    serve.add_argument("--ca", help="CA certificate(s) that sign client certificates, with --tls")
    serve.add_argument("--crl", help="CRL (PEM) of that CA: revoked client certificates are "
                                     "refused, with --tls")
    serve.add_argument("--capture", metavar="DIR",
                       help="write the meters' traffic to a pcap file in DIR (one per start)")
    line = serve.add_mutually_exclusive_group()
    line.add_argument("--pty", metavar="LINK",
                      help="serve HDLC on a new pseudo-terminal; LINK becomes a symlink to it "
                           "(a client opens serial://LINK)")
    line.add_argument("--serial", metavar="DEVICE",
                      help="serve HDLC on a serial device (RS-232/RS-485 adapter, socat pty)")
    serve.add_argument("--baud", type=int, default=9600,
                       help="serial rate (with --optical: the rate after the opening)")
    serve.add_argument("--optical", action="store_true",
                       help="with --pty/--serial: IEC 62056-21 mode E opening at 300 baud first")
    serve.add_argument("--max-connections", type=int, metavar="N",
                       help="open TCP connections at most (default: what ulimit -n leaves); "
                            "idle ones are shed first")
    serve.add_argument("--max-per-peer", type=int, default=512, metavar="N",
                       help="open TCP connections per peer address at most (default 512)")
    serve.add_argument("--head-end", action="append", default=[], metavar="ADDR",
                       help="peer address that may use the reserved slots and is never shed "
                            "(repeatable)")
    serve.add_argument("--push-to", metavar="URL",
                       help="send pushes to tcp://HOST:PORT or udp://HOST:PORT: one at power-up, "
                            "then every --push-interval seconds")
    serve.add_argument("--push-interval", type=float, metavar="S",
                       help="seconds between scheduled pushes (default: power-up push only)")
    serve.add_argument("--ready-line", action="store_true", help=argparse.SUPPRESS)
    serve.set_defaults(func=_serve)
    profiles = cmds.add_parser("profiles", help="list the built-in meter profiles")
    profiles.set_defaults(func=_profiles)


def _profiles(args: argparse.Namespace) -> int:
    console = Console()
    for name in builtin_profiles():
        # a flawed profile is named after its flaw; the others say what is awkward about them
        console.print(f"[bold]{name}[/]: {FLAWS.get(name) or load_profile(name).description}")
    return 0


def _ssl_context(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    if not args.tls:
        return None
    if not (args.cert and args.key and args.ca):
        raise UsageError("--tls needs --cert, --key and --ca")
    if args.udp:  # DTLS 1.2, 62351-3's profile for UDP
        from metercert.transport.dtls import server_context as dtls_server_context

        return dtls_server_context(args.cert, args.key, args.ca, crl=getattr(args, "crl", None))
    from metercert.tlsprobe.contexts import server_context

    return server_context(args.cert, args.key, args.ca, crl=getattr(args, "crl", None))


def _serve(args: argparse.Namespace) -> int:
    if not 1 <= args.count <= 20000:
        raise UsageError("--count must be between 1 and 20000")
    if args.max_connections is not None and args.max_connections < 1 or args.max_per_peer < 1:
        raise UsageError("--max-connections and --max-per-peer must be at least 1")
    if not 0 <= args.port <= 65535 or (args.port and args.port + args.count - 1 > 65535):
        raise UsageError(f"--port {args.port}: a TCP/UDP port is 0-65535 (0: any free port), "
                         "and the last of --count consecutive ports must be too")
    if args.host not in ("127.0.0.1", "localhost", "::1") and not args.host.startswith("127."):
        Console(stderr=True).print(f"[yellow]warning:[/] serving on {args.host}, not loopback")
    if args.udp and (args.framing != "wrapper" or args.capture):
        raise UsageError("--udp serves the wrapper (with --tls: inside DTLS 1.2), without "
                         "--capture")
    if args.pty or args.serial:
        if args.udp or args.tls or args.capture or args.count != 1:
            raise UsageError("--pty/--serial serve one meter in HDLC, without --udp, --tls, "
                             "--capture or --count")
        args.framing = "hdlc"
        if args.optical:
            from metercert.transport.serial import baud_char

            baud_char(args.baud)  # mode E switches only to a rate that has a character
    elif args.optical:
        raise UsageError("--optical needs --pty LINK or --serial DEVICE")
    if args.push_to:
        from metercert.meter.push import parse_push_target

        parse_push_target(args.push_to)
        if args.push_interval is not None and args.push_interval <= 0:
            raise UsageError("--push-interval must be positive")
    elif args.push_interval is not None:
        raise UsageError("--push-interval needs --push-to URL")
    profile = load_profile(args.profile)
    state_dir = Path(args.state_dir)
    if state_dir.exists() and not state_dir.is_dir():
        raise UsageError(f"--state-dir {state_dir}: is a file, not a folder")
    keys_out = Path(args.keys_out) if args.keys_out else state_dir / "client-keys.yaml"
    if keys_out.is_dir():
        raise UsageError(f"--keys-out {keys_out}: is a folder, expected a file name")
    for parent in keys_out.parents:  # checked before anything is made
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(f"--keys-out {keys_out}: {parent} is a file, not a folder")
            break
    ssl = _ssl_context(args)
    return asyncio.run(_run(profile, state_dir, keys_out, args, ssl))


async def _run(profile, state_dir: Path, keys_out: Path, args: argparse.Namespace, ssl) -> int:  # type: ignore[no-untyped-def]
    from metercert.meter.limits import ConnectionLimits
    from metercert.meter.server import MeterFleet

    fleet = MeterFleet(profile, state_dir, host=args.host, port=args.port, count=args.count,
                       framing=args.framing, ssl=ssl, transport="udp" if args.udp else "tcp",
                       capture_dir=Path(args.capture) if args.capture else None,
                       limits=ConnectionLimits(total=args.max_connections,
                                               per_peer=args.max_per_peer,
                                               head_end=frozenset(args.head_end)),
                       line=f"pty:{args.pty}" if args.pty else args.serial, baud=args.baud,
                       optical=args.optical, push_to=args.push_to,
                       push_interval=args.push_interval)
    fresh_state = not state_dir.exists()
    try:
        try:
            await fleet.start()
        except OSError as exc:
            raise UsageError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
        try:
            keys_out.parent.mkdir(parents=True, exist_ok=True)
            fleet.write_key_file(keys_out)
        except OSError as exc:
            raise UsageError(f"--keys-out {keys_out}: {exc.strerror}") from None
    except BaseException:
        await fleet.stop()
        if fresh_state:  # a meter that never served leaves no factory keys behind
            shutil.rmtree(state_dir, ignore_errors=True)
        raise
    first_host, first_port = fleet.endpoints[0]
    if args.ready_line:
        print(f"READY {first_host}:{first_port}", flush=True)
    else:
        console = Console(stderr=True)
        last = fleet.endpoints[-1][1]
        ports = f"port {first_port}" if args.count == 1 else f"ports {first_port}-{last}"
        if args.pty or args.serial:
            ports = f"at {first_port} baud{' (optical, mode E)' if args.optical else ''}"
        console.print(f"[bold]{args.count} {profile.name} meter(s)[/] on {first_host} {ports} "
                      f"({args.framing}{' over UDP' if args.udp else ''}"
                      f"{(', DTLS 1.2' if args.udp else ', TLS') if ssl else ''})")
        console.print(f"client key file: {keys_out}  state: {state_dir}")
        console.print("Ctrl-C stops (a restart on the same --state-dir is a power cycle)")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await fleet.stop()
    sys.stdout.flush()
    return 0
