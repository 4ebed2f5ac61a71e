"""``metercert gaps RESULTS.json``: per-framework readiness and the to-do list."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from metercert.errors import InputFileError

_STATE_STYLE = {"failed": "bold red", "inconclusive": "yellow", "not-assessed": "blue", "untested": "magenta",
                "document-review": "cyan"}


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("gaps", help="gap analysis of a results.json against the requirement catalog")
    parser.add_argument("results", type=Path, metavar="RESULTS.json", help="results file of a campaign run")
    parser.add_argument("--framework", metavar="X", help="only this framework (e.g. CRA, EN303645, DLMS)")
    parser.add_argument("--json", action="store_true", help="print the gap report as JSON")
    add_catalog_options(parser)
    parser.add_argument("--ics", type=Path, metavar="FILE.csv",
                        help="also write the EN 303 645 implementation conformance statement (TS 103 701 "
                             "shape: provision, status M/R/M C/R C, condition, verdict, evidence, IXIT)")
    parser.set_defaults(func=_gaps)


def add_catalog_options(parser: argparse.ArgumentParser) -> None:
    """Options that choose which catalog the analysis uses (standard version, target SL)."""
    parser.add_argument("--en303645-version", choices=["2.1.1", "3.1.3"], metavar="V",
                        help="EN 303 645 version to assess against: 2.1.1 (default) or 3.1.3")
    parser.add_argument("--iec62443-sl", type=int, choices=[1, 2, 3, 4], metavar="SL",
                        help="IEC 62443-4-2 target security level 1-4 (default 2)")


def catalog_for(args: argparse.Namespace) -> Any:
    """The catalog the options of :func:`add_catalog_options` select."""
    from metercert.catalog import load_catalog

    versions = {"EN303645": args.en303645_version} if getattr(args, "en303645_version", None) else None
    return load_catalog(versions=versions, security_level=getattr(args, "iec62443_sl", None))


def read_check_entries(path: Path) -> list[dict[str, Any]]:
    """The ``checks`` list of a results.json; one-line errors for anything else.

    The file is validated exactly as ``metercert report`` does (same schema): a file
    one command rejects must not be analysed by the other."""
    from metercert.report import load_results

    doc = load_results(path)
    checks = doc.get("checks") if isinstance(doc, dict) else None
    if not isinstance(checks, list):
        raise InputFileError(f"{path}: not a results document (no 'checks' list)")
    for i, entry in enumerate(checks):
        if not isinstance(entry, dict) or not {"id", "requirements", "verdict"} <= set(entry):
            raise InputFileError(f"{path}: checks[{i}] lacks id, requirements or verdict")
    return checks


def _deselected(path: Path) -> list[dict[str, Any]]:
    """``run.deselected`` of a results.json (already read once, so it parses)."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    run = doc.get("run") if isinstance(doc.get("run"), dict) else {}
    items = run.get("deselected") or []
    return [d for d in items if isinstance(d, dict)]


def _reviews(path: Path) -> list[dict[str, Any]]:
    """Manual review records of a results.json."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    return [r for r in doc.get("reviews") or [] if isinstance(r, dict)]


def _write_ics(path: Path, report: Any) -> None:
    import csv

    from metercert.catalog.gaps import ICS_COLUMNS, ics_rows

    try:
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=ICS_COLUMNS)
            writer.writeheader()
            writer.writerows(ics_rows(report))
    except OSError as exc:
        raise InputFileError(f"{path}: cannot write: {exc.strerror or exc.__class__.__name__}") from None


def _gaps(args: argparse.Namespace) -> int:
    from metercert.catalog.gaps import analyse

    catalog = catalog_for(args)
    if args.framework:
        catalog.framework(args.framework)  # UsageError for an unknown name
    report = analyse(read_check_entries(args.results), catalog, _deselected(args.results),
                     _reviews(args.results))
    frameworks = [f for f in report.frameworks if not args.framework or f.framework.lower() == args.framework.lower()]
    if args.ics:
        _write_ics(args.ics, report)
    if args.json:
        data = report.to_dict()
        if args.framework:
            data["frameworks"] = {f.framework: f.to_dict() for f in frameworks}
        print(json.dumps(data, indent=2))
        return 0
    console = Console()
    table = Table(title=f"Readiness per framework ({args.results})")
    for col in ("framework", "pass", "fail", "inconcl.", "not assessed", "untested", "doc review", "n/a",
                "ready"):
        table.add_column(col, justify="left" if col == "framework" else "right")
    for f in frameworks:
        table.add_row(
            f.framework, str(f.count("passed")), str(f.count("failed")), str(f.count("inconclusive")),
            str(f.count("not-assessed")), str(f.count("untested")), str(f.count("document-review")),
            str(f.count("not-applicable")),
            "n/a (nothing applies)" if f.readiness is None else f"{f.readiness:.1f} %",
        )
    console.print(table)
    for f in frameworks:
        if not f.todo:
            continue
        console.print(f"\n[bold]{f.framework}[/] to do ({len(f.todo)}):")
        for gap in f.todo:
            style = _STATE_STYLE.get(gap.state, "white")
            console.print(f"  [{style}]{gap.state:15}[/] {gap.requirement.id} ({gap.requirement.status}): "
                          f"{gap.action}", highlight=False)
    if report.unknown_requirements:
        console.print(f"[yellow]requirement ids not in the catalog: {', '.join(report.unknown_requirements)}[/]")
    return 0


__all__ = ["read_check_entries", "register"]
