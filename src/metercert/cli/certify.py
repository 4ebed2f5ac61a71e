"""``metercert certify`` (the built-in meter) and ``metercert test`` (any meter)."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from metercert.checks import TargetKind, all_checks
from metercert.errors import UsageError


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="metercert-report", help="report folder (default: %(default)s)")
    p.add_argument("--only", action="append", default=[], metavar="ID|TAG",
                   help="run only matching checks (id, id glob such as 'DLMS-AUTH-*', or tag)")
    p.add_argument("--skip", action="append", default=[], metavar="ID|TAG", help="skip matching checks")
    p.add_argument("--no-destructive", action="store_true",
                   help="skip checks that power-cycle the meter, change keys or activate firmware")
    p.add_argument("--quiet", action="store_true", help="no progress display")


def register(sub: argparse._SubParsersAction) -> None:
    certify = sub.add_parser(
        "certify", help="run the whole campaign against the built-in reference meter",
        description="Start the reference meter on a free loopback port, run the full campaign "
                    "(DLMS security, roles, TLS, dossier) including power cycles, write reports.")
    certify.add_argument("--meter-profile", "--profile", default="conformant",
                         help="reference meter profile (see 'metercert meter profiles')")
    certify.add_argument("--no-tls", action="store_true", help="do not audit a TLS listener")
    _common(certify)
    certify.set_defaults(func=_certify)

    test = sub.add_parser("test", help="run the campaign against a meter over TCP or UDP",
                          description="Run the campaign against a meter at tcp://HOST:PORT or "
                                      "udp://HOST:PORT (DLMS wrapper, or HDLC over TCP).")
    test.add_argument("target", nargs="?",
                      help="tcp://HOST:PORT, udp://HOST:PORT, dtls://HOST:PORT (the wrapper in "
                           "mutual DTLS 1.2: --client-cert, --client-key, --ca) or "
                           "serial:///dev/ttyX?baud=9600[&optical=1] (or set 'target:' in "
                           "--campaign)")
    test.add_argument("--keys", help="key file (see README)")
    test.add_argument("--campaign", help="campaign file (YAML)")
    test.add_argument("--framing", choices=["wrapper", "hdlc"], default=None,
                      help="frame format on the connection (default: wrapper)")
    test.add_argument("--tls", metavar="HOST:PORT", help="also audit this TLS endpoint")
    test.add_argument("--client-cert", metavar="PEM",
                      help="client certificate for the --tls audit (mutual TLS) and for a "
                           "dtls:// target")
    test.add_argument("--client-key", metavar="PEM", help="private key of --client-cert")
    test.add_argument("--ca", metavar="PEM", help="CA certificate(s) that sign the meter's certificate")
    test.add_argument("--dossier", help="device dossier YAML to assess")
    test.add_argument("--power-cycle-cmd", metavar="CMD",
                      help="command that power-cycles the meter (enables persistence checks)")
    _common(test)
    test.set_defaults(func=_test)


@dataclass
class _Bench:
    """Processes and folders a campaign started, torn down at the end."""

    temp: Path
    processes: list[Any] = field(default_factory=list)

    def close(self) -> None:
        """Stop the bench's meters and remove its folder (safe to call twice)."""
        processes, self.processes = self.processes, []
        for proc in processes:
            proc.stop()
        shutil.rmtree(self.temp, ignore_errors=True)


def _reference_targets(profile: str, bench: _Bench, tls: bool) -> dict[TargetKind | str, object]:
    from metercert.client.target import DlmsTarget
    from metercert.dossier import load_dossier, sample_dossier
    from metercert.lab.power import BuiltinPowerController, MeterProcess
    from metercert.meter.profile import load_profile
    from metercert.security import load_keyset

    settings = load_profile(profile)  # a clear error for an unknown profile before anything starts
    served = _bench_profile(settings, profile, bench.temp)
    # a meter whose flaw is in its HDLC link layer is served over HDLC, where it shows
    hdlc = any(flaw.startswith("hdlc-") for flaw in settings.flaws)
    # the line traffic, for the evidence bundle (the recorder writes wrapper frames only)
    capture = () if hdlc else ("--capture", str(bench.temp / "capture"))
    meter = MeterProcess(bench.temp / "meter", profile=served, port=0,
                         extra_args=(("--framing", "hdlc") if hdlc else ()) + capture)
    bench.processes.append(meter)
    host, port = meter.start()
    keys = load_keyset(meter.keys_out)
    targets: dict[TargetKind | str, object] = {
        TargetKind.DLMS: DlmsTarget(host, port, keys, power=BuiltinPowerController(meter),
                                    framing="hdlc" if hdlc else "wrapper",
                                    label=f"reference meter '{profile}' tcp://{host}:{port}"
                                          + (" (HDLC)" if hdlc else "")),
        TargetKind.DOSSIER: load_dossier(sample_dossier("reference-meter")),
    }
    if tls:
        from metercert.tlsprobe.audit import TlsTarget
        from metercert.tlsprobe.pki import write_pki

        pki = write_pki(bench.temp / "pki")
        expired, revoked, crl = _bench_client_certificates(pki)
        tls_meter = MeterProcess(bench.temp / "meter-tls", profile=served, port=0,
                                 extra_args=("--tls", "--cert", str(pki.meter_cert), "--key",
                                             str(pki.meter_key), "--ca", str(pki.ca_cert),
                                             "--crl", str(crl)))
        bench.processes.append(tls_meter)
        thost, tport = tls_meter.start()
        targets[TargetKind.TLS] = TlsTarget(thost, tport, pki.headend_cert, pki.headend_key,
                                            pki.ca_cert, expired_client=expired,
                                            revoked_client=revoked)
    return targets


def _bench_client_certificates(pki: Any) -> tuple[tuple[str, str], tuple[str, str], Path]:
    """An expired and a revoked head-end certificate from the bench CA, and the CRL that
    revokes the second: TLS-CLIENTVAL-01 must see the meter refuse both."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from metercert.tlsprobe.pki import Issued, crl_revoking, issue, write_issued

    ca = Issued(x509.load_pem_x509_certificate(pki.ca_cert.read_bytes()),
                serialization.load_pem_private_key(pki.ca_key.read_bytes(), None))
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    expired = issue("head-end-expired", "client", issuer=ca, days=1, not_before=past,
                    crl_url=None)
    revoked = issue("head-end-revoked", "client", issuer=ca, crl_url=None)
    folder = Path(pki.directory)
    e_cert, e_key = write_issued(folder, "headend-expired", expired)
    r_cert, r_key = write_issued(folder, "headend-revoked", revoked)
    crl = folder / "ca-revoking.crl"
    crl.write_bytes(crl_revoking(ca, [revoked.certificate]).public_bytes(
        serialization.Encoding.PEM))
    return (str(e_cert), str(e_key)), (str(r_cert), str(r_key)), crl


#: the built-in meter's lockout on the bench: long enough to be seen (DLMS-THROTTLE-01 needs
#: the right key refused straight after the failures), short enough that the checks that
#: provoke it do not wait out a real meter's minutes
BENCH_LOCKOUT_S = 0.5


def _bench_profile(settings: Any, name_or_path: str, folder: Path) -> str:
    """The profile as a file with the bench lockout, everything else as written."""
    from importlib import resources

    import yaml

    from metercert.meter.profile import builtin_profiles

    if name_or_path in builtin_profiles() and not name_or_path.endswith((".yaml", ".yml")):
        text = resources.files("metercert.meter").joinpath(
            f"profiles/{name_or_path}.yaml").read_text("utf-8")
    else:
        text = Path(name_or_path).read_text("utf-8")
    data = yaml.safe_load(text) or {}
    data["lockout_seconds"] = min(float(settings.lockout_seconds), BENCH_LOCKOUT_S)
    path = folder / f"{settings.name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), "utf-8")
    return str(path)


def _merge_captures(folder: Path, out: Path) -> Path | None:
    """The line traffic of every meter process start (one pcap each: a power cycle starts a
    new one) as one capture in time order, for the evidence bundle."""
    import dpkt

    packets: list[tuple[float, bytes]] = []
    linktype = None
    for path in sorted(folder.glob("*.pcap")):
        try:
            with path.open("rb") as fh:
                reader = dpkt.pcap.Reader(fh)
                linktype = linktype if linktype is not None else reader.datalink()
                for ts, buf in reader:
                    packets.append((ts, buf))
        except (ValueError, dpkt.dpkt.NeedData, dpkt.dpkt.UnpackError):
            continue  # a file cut by the power cycle: what was read before the cut stays
    if not packets:
        return None
    packets.sort(key=lambda p: p[0])
    with out.open("wb") as fh:
        writer = dpkt.pcap.Writer(fh, linktype=linktype or dpkt.pcap.DLT_EN10MB)
        for ts, buf in packets:
            writer.writepkt(buf, ts=ts)
    return out


def process_started() -> float:
    """The ``time.monotonic()`` reading at which this process started (interpreter start-up
    and imports included), so that the printed run time is the whole run; the reading now
    where /proc cannot tell."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rpartition(")")[2].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return time.monotonic()
    age = uptime - ticks / os.sysconf("SC_CLK_TCK")
    return time.monotonic() - max(0.0, age)


def _run(targets: dict[TargetKind | str, object], args: argparse.Namespace, profile: str | None,
         console: Console, *, started: float | None = None,
         teardown: Any = None) -> int:
    from metercert.campaign.runner import EXIT_NO_VERDICT, run_campaign
    from metercert.report import write_reports

    start = time.monotonic() if started is None else started
    # a meter's campaign: the head-end checks test the other side (metercert headend)
    meter_checks = [c for c in all_checks().values() if c.target is not TargetKind.HEADEND]
    run = run_campaign(targets, meter_checks, only=tuple(args.only), skip=tuple(args.skip),
                       include_destructive=not args.no_destructive,
                       progress=False if args.quiet else console, meter_profile=profile,
                       strict_targets=True)
    written = write_reports(run, Path(args.out))
    from metercert.lab.bundle import bundle_run  # sealed evidence bundle beside the reports

    pcap = getattr(args, "capture_dir", None)
    line = _merge_captures(Path(pcap), Path(args.out) / "line-traffic.pcap") if pcap else None
    written["bundle"] = bundle_run(Path(args.out), campaign_file=getattr(args, "campaign", None),
                                   pcap=line)
    if teardown is not None:  # the bench's meters stopped: part of the run's time
        teardown()
    took = time.monotonic() - start
    if run.inconclusive:
        unresolved = run.unresolved
        console.print(f"[bold yellow]{len(run.inconclusive)} check(s) reached no verdict[/]"
                      + (f", {len(unresolved)} of them critical or high" if unresolved else ""))
        for r in run.inconclusive[:12]:
            console.print(f"  {r.spec.id}: {r.outcome.reason}", markup=False, highlight=False,
                          soft_wrap=True)
        if run.exit_code == EXIT_NO_VERDICT:
            console.print(f"exit code {EXIT_NO_VERDICT}: nothing failed, but the campaign is "
                          "not complete (see README, exit codes)")
    console.print(f"campaign time: {took:.1f} s (whole run)")
    html = written.get("html")
    if html is not None:
        console.print(f"HTML report: [bold]{html}[/]")
    console.print("reports: " + ", ".join(str(p) for p in written.values()))
    return run.exit_code


def _certify(args: argparse.Namespace) -> int:
    console = Console()
    started = process_started()
    bench = _Bench(Path(tempfile.mkdtemp(prefix="metercert-certify-")))
    try:
        targets = _reference_targets(args.meter_profile, bench, tls=not args.no_tls)
        args.capture_dir = str(bench.temp / "capture")
        return _run(targets, args, args.meter_profile, console, started=started,
                    teardown=bench.close)
    finally:
        bench.close()


def _test(args: argparse.Namespace) -> int:
    from metercert.client.target import DlmsTarget
    from metercert.lab.power import (
        CommandPowerController,
        ManualPowerController,
        PowerController,
    )
    from metercert.security import load_keyset

    console = Console()
    started = process_started()
    config = None
    if args.campaign:
        from metercert.campaign.config import load_campaign

        config = load_campaign(args.campaign)
    url = args.target or (config.target.url if config and config.target else None)
    if not url:
        raise UsageError("give the meter as tcp://HOST:PORT or 'target:' in --campaign")
    transport, host, port = _parse_target(url)
    dtls = None
    if transport == "dtls":  # the wrapper over UDP inside mutual DTLS 1.2
        dtls, transport = _dtls_client(args, config), "udp"
    keys_path = args.keys or (str(config.keys) if config and config.keys else None)
    if not keys_path:
        raise UsageError("--keys FILE is required (or 'keys:' in --campaign)")
    keys = load_keyset(keys_path)
    if config is not None and config.roles:
        keys = _with_campaign_roles(keys, config)
    framing = args.framing or (config.framing if config else "wrapper")
    if transport in ("serial", "optical"):  # a serial line carries HDLC
        if args.framing == "wrapper":
            raise UsageError("over a serial line DLMS uses HDLC: drop --framing wrapper")
        framing = "hdlc"
    if transport == "udp" and framing != "wrapper":
        raise UsageError("over udp DLMS uses the wrapper: drop --framing hdlc")
    # after a power cycle wait for the TCP port to answer; a UDP meter gives no such sign
    back_host, back_port = (host, port) if transport == "tcp" else (None, None)
    power: PowerController | None = None
    if args.power_cycle_cmd:
        power = CommandPowerController(cycle=args.power_cycle_cmd, host=back_host,
                                       port=back_port)
    elif config is not None and config.power.kind == "command":
        power = CommandPowerController(cycle=config.power.cycle, off=config.power.off,
                                       on=config.power.on, settle_s=config.power.settle_s,
                                       host=back_host, port=back_port)
    elif config is not None and config.power.kind == "manual" and args.campaign:
        power = ManualPowerController(config.power.settle_s)
    # the client's own counters persist between runs, as a head-end's must
    state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    counters = state / "metercert" / "client-counters"
    counters.mkdir(parents=True, exist_ok=True, mode=0o700)
    firmware = config.firmware if config is not None else None
    targets: dict[TargetKind | str, object] = {
        TargetKind.DLMS: DlmsTarget(
            host, port, keys, framing=framing, transport=transport, power=power,
            counter_dir=counters, ssl=dtls,
            label=_dtls_label(host, port, keys) if dtls is not None else "",
            firmware_image=firmware.image if firmware else None,
            firmware_identifier=firmware.identifier if firmware else None,
            firmware_verify_timeout=firmware.verify_timeout_s if firmware else 60.0,
            probe_overrides=_probes(config), challenge_length=config.challenge_length
            if config is not None else None,
            **({"timeout": config.timeout_s} if config is not None and config.timeout_s else {}))}
    tls_endpoint = args.tls or (config.tls.endpoint if config and config.tls else None)
    if tls_endpoint:
        from metercert.tlsprobe.audit import TlsTarget, parse_endpoint

        thost, tport = parse_endpoint(tls_endpoint)
        tcfg = config.tls if config and config.tls else None
        targets[TargetKind.TLS] = TlsTarget(
            thost, tport, args.client_cert or (tcfg.client_cert if tcfg else None),
            args.client_key or (tcfg.client_key if tcfg else None),
            args.ca or (tcfg.ca if tcfg else None), tcfg.profile if tcfg else None)
    dossier = args.dossier or (str(config.dossier) if config and config.dossier else None)
    if dossier:
        from metercert.dossier import load_dossier

        targets[TargetKind.DOSSIER] = load_dossier(dossier)
    if config is not None:
        args.only = args.only or list(config.only)
        args.skip = args.skip or list(config.skip)
        args.no_destructive = args.no_destructive or config.no_destructive
    if transport == "tcp":
        _probe(host, port)
    else:  # UDP has no handshake: ask the public association instead
        _probe_udp(targets[TargetKind.DLMS])  # type: ignore[arg-type]
    return _run(targets, args, None, console, started=started)


def _probes(config: Any) -> dict[str, Any]:
    from metercert.cosem import ObisCode

    if config is None:
        return {}
    return {name: ObisCode.parse(text) for name, text in config.probes.items()}


def _with_campaign_roles(keys: Any, config: Any) -> Any:
    """Roles from the campaign file join (and override) the key file's role entries.

    A role without keys of its own in the key file uses the key file's main keys;
    LLS passwords and HLS secrets come from the environment variables it names.
    """
    from dataclasses import replace

    names = {0: "none", 1: "lls", 5: "hls-gmac", 6: "hls-sha256", 7: "hls-ecdsa"}
    existing = {r.get("role"): dict(r) for r in keys.extra.get("roles", []) if isinstance(r, dict)}
    for name, role in config.roles.items():
        if role.mechanism not in names:
            raise UsageError(f"campaign role {name}: metercert's client does not authenticate with "
                             f"{role.mechanism_name} (mechanisms 2-4 are what DLMS-AUTH-LEGACY-01 "
                             "expects a meter to refuse); use none, lls, hls-gmac, hls-sha256 "
                             "or hls-ecdsa")
        entry = existing.get(name, {"role": name})
        entry.update(client_sap=role.client_sap, mechanism=names[role.mechanism])
        secret = role.credential()
        if role.password_env and secret:
            entry["password"] = secret
        if role.secret_env and secret:
            entry["hls_secret"] = secret.encode().hex()
        if role.mechanism >= 5 and "guek" not in entry and keys.guek is not None and keys.ak is not None:
            entry.update(guek=keys.guek.secret.hex(), ak=keys.ak.secret.hex())
        existing[name] = entry
    return replace(keys, extra={**keys.extra, "roles": list(existing.values())})


def _parse_target(url: str) -> tuple[str, str, int]:
    """(transport, host, port) of ``tcp://HOST:PORT`` or ``udp://HOST:PORT``; for
    ``serial:///dev/ttyX?baud=N[&optical=1]``: ("serial" or "optical", device, baud)."""
    if url.startswith("serial:"):
        from metercert.transport.serial import parse_serial_url

        spec = parse_serial_url(url)
        return spec.transport, spec.host, spec.baud
    scheme, sep, text = url.partition("://")
    if not sep:
        scheme, text = "tcp", url
    if scheme not in ("tcp", "udp", "dtls"):
        raise UsageError(f"bad target {url!r}: expected tcp://HOST:PORT or udp://HOST:PORT")
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"bad target {url!r}: expected tcp://HOST:PORT or udp://HOST:PORT")
    host = host.strip("[]") or "127.0.0.1"
    if not _HOST.fullmatch(host):
        # "TCP//10.0.0.1" is a typo, not a host name to look up
        raise UsageError(f"bad target {url!r}: {host!r} is not a host name or address "
                         "(expected tcp://HOST:PORT or udp://HOST:PORT)")
    return scheme, host, int(port)


#: a DNS name, an IPv4 address or an IPv6 address (letters, digits, dots, dashes, colons)
_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.\-]*[A-Za-z0-9])?|[0-9A-Fa-f:.]+(?:%\w+)?")


def _dtls_client(args: argparse.Namespace, config: Any) -> Any:
    """The head-end's DTLS context for a ``dtls://`` target (its certificate is required:
    62351-3 authenticates both ends); the campaign file's ``tls:`` files fill in."""
    tcfg = config.tls if config is not None and config.tls else None
    cert = args.client_cert or (tcfg.client_cert if tcfg else None)
    key = args.client_key or (tcfg.client_key if tcfg else None)
    ca = args.ca or (tcfg.ca if tcfg else None)
    if not (cert and key and ca):
        raise UsageError("a dtls:// target needs --client-cert, --client-key and --ca")
    from metercert.transport.dtls import client_context

    return client_context(ca, cert, key)


def _dtls_label(host: str, port: int, keys: Any) -> str:
    title = keys.server_system_title.hex().upper() if keys.server_system_title else "?"
    return f"DLMS meter dtls://{host}:{port} (system title {title})"


def _probe_udp(target: Any) -> None:
    import asyncio

    from metercert.client.errors import DlmsError
    from metercert.errors import ConnectionFailed

    async def ask() -> None:
        async with target.public():
            pass

    try:
        asyncio.run(ask())
    except (DlmsError, ConnectionFailed) as exc:
        scheme = "dtls" if target.ssl is not None else target.transport
        raise ConnectionFailed(f"no DLMS answer from {scheme}://{target.host}:"
                               f"{target.port}: "
                               f"{str(exc).splitlines()[0]}") from None


def _probe(host: str, port: int) -> None:
    import socket

    from metercert.errors import ConnectionFailed

    try:
        socket.create_connection((host, port), timeout=5).close()
    except OSError as exc:
        raise ConnectionFailed(f"cannot connect to {host}:{port}: {exc.strerror or exc}") from None
