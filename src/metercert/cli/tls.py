"""``metercert tls-audit`` (IEC 62351-3 audit of one endpoint) and ``metercert pki init``."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from typing import Any

from rich.console import Console
from rich.table import Table

from metercert import __version__
from metercert.checks.base import CheckResult, CheckSpec, TargetKind, Verdict, inconclusive
from metercert.errors import MetercertError, UsageError
from metercert.report.json import check_entry

_VERDICT_STYLE = {
    Verdict.PASS: "bold green",
    Verdict.FAIL: "bold red",
    Verdict.INCONCLUSIVE: "bold yellow",
    Verdict.NOT_APPLICABLE: "dim",
}


def register(subparsers: Any) -> None:
    audit = subparsers.add_parser(
        "tls-audit",
        help="audit a TLS endpoint against IEC 62351-3",
        description="Probe HOST:PORT once (sslyze + own handshakes) and run the IEC 62351-3 TLS "
        "checks. Exit 0 if every check passes (or is not applicable), 1 if one fails, 4 if none "
        "fails but one is inconclusive, 2 on usage or connection errors.",
    )
    audit.add_argument("endpoint", metavar="HOST:PORT", help="TLS endpoint to audit")
    audit.add_argument("--client-cert", metavar="FILE", help="operator client certificate (PEM)")
    audit.add_argument("--client-key", metavar="FILE", help="its private key (PEM, unencrypted)")
    audit.add_argument(
        "--ca", metavar="FILE", help="operator CA certificate to validate the server chain"
    )
    audit.add_argument(
        "--profile", metavar="FILE", help="TLS profile YAML (default: built-in iec62351-3)"
    )
    audit.add_argument(
        "--server-name",
        metavar="NAME",
        help="name or IP the server certificate must carry (default: the HOST audited)",
    )
    audit.add_argument(
        "--expired-client",
        nargs=2,
        metavar=("CERT", "KEY"),
        help="an expired client certificate + key from the operator CA (must be refused)",
    )
    audit.add_argument(
        "--revoked-client",
        nargs=2,
        metavar=("CERT", "KEY"),
        help="a revoked client certificate + key from the operator CA (must be refused)",
    )
    audit.add_argument(
        "--json", action="store_true", help="print results JSON (metercert-results shape)"
    )
    audit.add_argument("--evidence", action="store_true", help="print each check's evidence")
    audit.add_argument(
        "--starttls",
        choices=["none"],
        default="none",
        help="opportunistic TLS protocol; only 'none' (TLS from the first byte) is supported",
    )
    audit.add_argument(
        "--timeout", type=float, default=5.0, metavar="S", help="network timeout (default 5)"
    )
    audit.set_defaults(func=_tls_audit)

    pki = subparsers.add_parser("pki", help="operator PKI for mutual TLS")
    pki_sub = pki.add_subparsers(dest="pki_command", metavar="ACTION")
    init = pki_sub.add_parser(
        "init",
        help="create a root CA, a meter and a head-end certificate and an empty CRL",
        description="Write ca.pem/ca.key, meter.pem/meter.key (server), headend.pem/headend.key "
        "(client) and ca.crl into DIR. Private keys are mode 0600.",
    )
    init.add_argument("directory", metavar="DIR", help="folder for the keys and certificates")
    init.add_argument("--curve", choices=["P-256", "P-384"], default="P-256",
                      help="ECDSA curve of every key (default P-256)")
    init.add_argument(
        "--days", type=int, default=365, help="leaf validity in days (CA: twice that)"
    )
    init.add_argument("--dlms", action="store_true",
                      help="also DLMS suite-1/2 certificates (signing, key agreement) for the "
                      "meter and the head-end, from the same root (P-256: suite 1, P-384: 2)")
    init.add_argument("--meter-title", metavar="HEX", help="meter system title for --dlms "
                      "(default 4D4D4D0000000001)")
    init.add_argument("--client-title", metavar="HEX", help="head-end system title for --dlms "
                      "(default 4D4D4D0000BC614E)")
    init.set_defaults(func=_pki_init)
    pki.set_defaults(func=lambda args: _usage(pki))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _tls_specs() -> list[CheckSpec]:
    from metercert.checks import all_checks
    from metercert.checks.tls import tls_check_ids

    specs = [s for s in all_checks().values() if s.target == TargetKind.TLS]
    order = {cid: i for i, cid in enumerate(tls_check_ids())}
    return sorted(specs, key=lambda s: (order.get(s.id, len(order)), s.id))


def run_tls_checks(target: Any, specs: list[CheckSpec]) -> list[CheckResult]:
    """Run TLS checks one after another on a target whose probe is already cached.

    A check that raises becomes INCONCLUSIVE with the reason, as in the campaign runner.
    """
    results = []
    for spec in specs:
        started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        t0 = time.perf_counter()
        try:
            outcome = spec.func(target)
        except MetercertError as exc:
            outcome = inconclusive(f"{exc.__class__.__name__}: {exc}")
        except Exception as exc:  # noqa: BLE001 - one broken check must not end the audit
            outcome = inconclusive(f"check raised {exc.__class__.__name__}: {exc}")
        results.append(CheckResult(spec, outcome, round(time.perf_counter() - t0, 4), started))
    return results


def results_document(
    results: list[CheckResult], target: Any, started: str, finished: str, duration_s: float
) -> dict[str, Any]:
    """The results.json shape shared with the report package."""
    summary = {v.value: 0 for v in Verdict}
    for r in results:
        summary[r.verdict.value] += 1
    return {
        "schema": "metercert-results",
        "schema_version": 1,
        "tool": {"name": "metercert", "version": __version__},
        "run": {
            "started_at": started,
            "finished_at": finished,
            "duration_s": round(duration_s, 3),
            "target": target.describe(),
            "meter_profile": None,
        },
        "summary": summary,
        "checks": [check_entry(r) for r in results],
        "gaps": {},
    }


def _tls_audit(args: argparse.Namespace) -> int:
    from metercert.tlsprobe.audit import TlsTarget

    if args.timeout <= 0:
        raise UsageError("--timeout must be positive")
    target = TlsTarget.from_endpoint(
        args.endpoint,
        client_cert=args.client_cert,
        client_key=args.client_key,
        ca=args.ca,
        profile=args.profile,
        timeout=args.timeout,
        server_name=args.server_name,
        expired_client=tuple(args.expired_client) if args.expired_client else None,
        revoked_client=tuple(args.revoked_client) if args.revoked_client else None,
    )
    console = Console(stderr=args.json)
    started = dt.datetime.now(dt.UTC)
    t0 = time.perf_counter()
    with console.status(f"probing {target.endpoint} (sslyze + own handshakes)..."):
        scan = target.scan()  # ConnectionFailed -> one line, exit 2
    results = run_tls_checks(target, _tls_specs())
    elapsed = time.perf_counter() - t0
    finished = dt.datetime.now(dt.UTC)

    if args.json:
        doc = results_document(
            results,
            target,
            started.isoformat(timespec="seconds"),
            finished.isoformat(timespec="seconds"),
            elapsed,
        )
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        _print_table(console, target, results, scan.tool, elapsed, args.evidence)
    return audit_exit_code(results)


def audit_exit_code(results: list[CheckResult]) -> int:
    """1 when a check failed; 4 when none failed but one could not be decided; else 0.

    An INCONCLUSIVE check (a scanner error, a timeout, an incomplete enumeration) is
    never a pass, so the audit cannot exit 0 with one.
    """
    if any(r.verdict == Verdict.FAIL for r in results):
        return 1
    if any(r.verdict == Verdict.INCONCLUSIVE for r in results):
        return 4
    return 0


def _print_table(
    console: Console,
    target: Any,
    results: list[CheckResult],
    tool: str,
    elapsed: float,
    show_evidence: bool,
) -> None:
    table = Table(title=f"IEC 62351-3 TLS audit of {target.describe()}", title_justify="left")
    table.add_column("Check", no_wrap=True)
    table.add_column("Verdict", no_wrap=True)
    table.add_column("Severity", no_wrap=True)
    table.add_column("Reason")
    for r in results:
        style = _VERDICT_STYLE[r.verdict]
        table.add_row(
            r.spec.id,
            f"[{style}]{r.verdict.value.upper()}[/]",
            r.spec.severity.value,
            r.outcome.reason,
        )
    console.print(table)
    if show_evidence:
        for r in results:
            console.rule(f"{r.spec.id} evidence")
            for e in r.outcome.evidence:
                console.print(f"[bold]{e.label}[/] [dim]({e.source})[/]")
                console.print(e.content, markup=False, highlight=False)
    counts = {v: sum(1 for r in results if r.verdict == v) for v in Verdict}
    console.print(
        f"{counts[Verdict.PASS]} pass, {counts[Verdict.FAIL]} fail, "
        f"{counts[Verdict.INCONCLUSIVE]} inconclusive, {counts[Verdict.NOT_APPLICABLE]} n/a "
        f"in {elapsed:.1f} s  [dim]({tool})[/]"
    )


def _pki_init(args: argparse.Namespace) -> int:
    from metercert.tlsprobe.pki import write_pki

    titles = _dlms_titles(args) if args.dlms else {}  # a bad title: nothing written
    paths = write_pki(args.directory, curve=args.curve, days=args.days)
    console = Console()
    table = Table(
        title=f"operator PKI in {paths.directory} ({args.curve}, {args.days} days)",
        title_justify="left",
    )
    table.add_column("file")
    table.add_column("what")
    for path, what in (
        (paths.ca_cert, "root CA certificate (trust anchor for both sides)"),
        (paths.ca_key, "root CA private key (0600) - keep offline"),
        (paths.crl, "empty CRL signed by the CA"),
        (paths.meter_cert, "meter / TLS server certificate (serverAuth, SAN localhost, 127.0.0.1)"),
        (paths.meter_key, "meter private key (0600)"),
        (paths.headend_cert, "head-end / TLS client certificate (clientAuth)"),
        (paths.headend_key, "head-end private key (0600)"),
    ):
        table.add_row(str(path), what)
    if args.dlms:
        _pki_dlms(args, paths, table, titles)
    console.print(table)
    return 0


def _dlms_titles(args: argparse.Namespace) -> dict[str, bytes]:
    from metercert.errors import UsageError
    from metercert.security import InvalidKey, parse_system_title
    from metercert.tlsprobe import dlms_pki

    titles = {}
    for name, default in (("meter_title", dlms_pki.DEFAULT_METER_TITLE),
                          ("client_title", dlms_pki.DEFAULT_CLIENT_TITLE)):
        value = getattr(args, name)
        try:
            titles[name] = parse_system_title(value, f"--{name.replace('_', '-')}") if value \
                else default
        except InvalidKey as exc:
            raise UsageError(str(exc)) from None
    return titles


def _pki_dlms(args: argparse.Namespace, paths: Any, table: Table,
              titles: dict[str, bytes]) -> None:
    """``--dlms``: the DLMS certificates (tlsprobe/dlms_pki.py), rows added to ``table``."""
    from metercert.tlsprobe import dlms_pki

    dlms = dlms_pki.write_dlms_certificates(paths.directory, paths.ca_cert, paths.ca_key,
                                            curve=args.curve, days=args.days, **titles)
    for stem, (cert, key) in dlms.files.items():
        who = "meter" if stem.startswith("meter") else "head-end"
        what = "digital signature" if stem.endswith("signing") else "key agreement"
        table.add_row(str(cert), f"DLMS suite-{dlms.suite} {who} {what} certificate "
                      f"(CN = system title)")
        table.add_row(str(key), "its private key (0600)")
