"""``metercert headend``: certify a head-end / meter-reading client against a hostile meter."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from metercert.errors import UsageError

if TYPE_CHECKING:
    from metercert.headend.target import HeadendSettings


PROTOCOL = """\
plugging in a client (docs/headend.md has the details):
  the command runs once per scenario with
    METERCERT_HOST, METERCERT_PORT    the hostile meter (127.0.0.1)
    METERCERT_FRAMING                 wrapper | hdlc
    METERCERT_KEYS                    key file (titles, GUEK, AK, KEK, suite, client_sap)
    METERCERT_CLIENT_SAP              management association (server SAP 1)
    METERCERT_REGISTER, METERCERT_READS   register to read (class 3, attribute 2), how often
    METERCERT_TIMEOUT                 seconds to wait for one response
    METERCERT_PUSHES                  pushes arriving right after association (0 or 4)
    METERCERT_ACTION                  read | key-transfer
    METERCERT_STATE_DIR               a folder that lasts the whole campaign
    METERCERT_TLS, METERCERT_CA, METERCERT_CLIENT_CERT, METERCERT_CLIENT_KEY   with --tls
  and prints one line per decision (other lines are ignored):
    read N value V | read N error TEXT | push N value V | push N error TEXT
  going on after a refused response when it can, ending within --run-limit seconds.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "headend", help="run the client checks: a hostile reference meter against a client command",
        description="Serve a hostile reference meter on 127.0.0.1 and run the client under test "
                    "once per scenario (flipped tag, replay, stale or forged counters, downgrade, "
                    "wrong f(CtoS), malformed and oversized responses, pushes, key transfer). "
                    "Without --client-cmd, metercert's own client is the client under test. "
                    "The client protocol (environment, output lines) is in docs/headend.md.",
        epilog=PROTOCOL, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--client-cmd", metavar="CMD",
                   help="command line of the client under test (run once per scenario)")
    p.add_argument("--campaign", metavar="FILE", help="head-end campaign file (YAML)")
    p.add_argument("--name", help="name of the client in the report")
    p.add_argument("--key-transfer-cmd", metavar="CMD",
                   help="command that makes the client transfer a key (default: --client-cmd "
                        "with METERCERT_ACTION=key-transfer)")
    p.add_argument("--pushes", action="store_true",
                   help="the client takes pushes (DataNotification) after association")
    p.add_argument("--value-regex", metavar="RE",
                   help="regex with groups n and value for an accepted read")
    p.add_argument("--error-regex", metavar="RE", help="regex with group n for a refused read")
    p.add_argument("--framing", choices=["wrapper", "hdlc"], default=None,
                   help="frame format the hostile meter speaks (default: wrapper)")
    p.add_argument("--tls", action="store_true",
                   help="serve the hostile meter behind mutual TLS (fresh PKI; the client gets "
                        "METERCERT_CA, METERCERT_CLIENT_CERT, METERCERT_CLIENT_KEY)")
    p.add_argument("--capture", metavar="DIR",
                   help="write the hostile meter's traffic to a pcap file in DIR (wrapper only); "
                        "it goes into the evidence bundle")
    p.add_argument("--meter-profile", "--profile", default=None,
                   help="reference meter profile the hostile meter starts from (default conformant)")
    p.add_argument("--run-limit", type=float, default=None, metavar="S",
                   help="seconds a client run may take before it counts as hung (default 30)")
    p.add_argument("--out", default="metercert-report", help="report folder (default: %(default)s)")
    p.add_argument("--only", action="append", default=[], metavar="ID|TAG",
                   help="run only matching checks (id, id glob such as 'HE-IC-*', or tag)")
    p.add_argument("--skip", action="append", default=[], metavar="ID|TAG",
                   help="skip matching checks")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.set_defaults(func=_headend)


def _settings(args: argparse.Namespace) -> HeadendSettings:
    from dataclasses import replace

    from metercert.headend.config import check_regex, load_campaign
    from metercert.headend.target import HeadendSettings

    # metercert's own client takes pushes; any other client only when it says so
    settings = HeadendSettings(name="metercert client (metercert.headend.reader)", pushes=True)
    if args.campaign:
        settings = load_campaign(args.campaign, settings)
    changes: dict[str, Any] = {}
    if args.client_cmd is not None:
        if not args.client_cmd.strip():
            raise UsageError("--client-cmd is empty")
        changes.update(command=args.client_cmd, name=args.client_cmd.split()[0],
                       pushes=False)
    if args.name:
        changes["name"] = args.name
    if args.key_transfer_cmd:
        changes["key_transfer_command"] = args.key_transfer_cmd
    if args.pushes:
        changes["pushes"] = True
    if args.framing:
        changes["framing"] = args.framing
    if args.tls:
        changes["tls"] = True
    if args.capture:
        changes["capture_dir"] = Path(args.capture)
    if args.meter_profile:
        changes["profile"] = args.meter_profile
    if args.run_limit is not None:
        if not 1 <= args.run_limit <= 600:
            raise UsageError(f"--run-limit must be 1-600 seconds, got {args.run_limit:g}")
        changes["run_limit"] = args.run_limit
    output = settings.output
    if args.value_regex:
        output = replace(output, value=check_regex(args.value_regex, "value", "--value-regex"))
    if args.error_regex:
        output = replace(output, error=check_regex(args.error_regex, "error", "--error-regex"))
    changes["output"] = output
    return replace(settings, **changes)


def _headend(args: argparse.Namespace) -> int:
    from metercert.campaign.runner import EXIT_NO_VERDICT, run_campaign
    from metercert.checks import TargetKind, all_checks
    from metercert.headend.target import HeadendTarget
    from metercert.report import write_reports

    console = Console()
    start = time.monotonic()
    settings = _settings(args)
    target = HeadendTarget(settings)
    specs = [s for s in all_checks().values() if s.target is TargetKind.HEADEND]
    run = run_campaign({TargetKind.HEADEND: target}, specs, only=tuple(args.only),
                       skip=tuple(args.skip), progress=False if args.quiet else console,
                       meter_profile=target.profile.name, strict_targets=True)
    written = write_reports(run, Path(args.out))
    from metercert.lab.bundle import bundle_run  # the sealed evidence bundle, as certify/test

    pcap = target.pcap.path if target.pcap is not None else None
    written["bundle"] = bundle_run(Path(args.out), campaign_file=args.campaign, pcap=pcap)
    if pcap is not None:
        written["pcap"] = pcap
    for note in run.notes:
        console.print(f"note: {note}", markup=False, highlight=False, soft_wrap=True)
    if run.exit_code == EXIT_NO_VERDICT:
        console.print(f"exit code {EXIT_NO_VERDICT}: nothing failed, but the campaign is not "
                      "complete (see README, exit codes)")
    console.print(f"campaign time: {time.monotonic() - start:.1f} s (whole run)")
    console.print("reports: " + ", ".join(str(p) for p in written.values()))
    return run.exit_code
