"""``metercert catalog matrix|show|list|oscal``: browse the requirement catalog."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from metercert.cli.gaps import add_catalog_options, catalog_for
from metercert.errors import InputFileError

_STYLE = {"covered": "green", "partial": "yellow", "referenced": "cyan", "not-addressed": "red"}


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "catalog", help="browse the cross-framework requirement catalog and coverage matrix"
    )
    sub = parser.add_subparsers(dest="catalog_command", metavar="SUBCOMMAND", required=True)

    matrix = sub.add_parser("matrix", help="framework x threat coverage (the seed's table + what metercert tests)")
    matrix.add_argument("--html", type=Path, metavar="FILE", help="also write a self-contained HTML table")
    matrix.add_argument("--csv", type=Path, metavar="FILE", help="also write CSV")
    matrix.set_defaults(func=_matrix)

    show = sub.add_parser("show", help="one requirement: its threats and the checks that evidence it")
    show.add_argument("requirement_id", metavar="ID", help="requirement or check id")
    show.set_defaults(func=_show)

    lst = sub.add_parser("list", help="list requirements")
    lst.add_argument("--framework", metavar="X", help="only this framework (e.g. DLMS, CRA, EN303645)")
    add_catalog_options(lst)
    lst.set_defaults(func=_list)

    oscal = sub.add_parser("oscal", help="write the catalog as an OSCAL catalog (JSON)")
    oscal.add_argument("--out", type=Path, metavar="FILE", help="file to write (default: stdout)")
    oscal.set_defaults(func=_oscal)


def _write(path: Path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InputFileError(f"{path}: cannot write: {exc.strerror or exc.__class__.__name__}") from None


def _matrix(args: argparse.Namespace) -> int:
    from metercert.catalog import load_catalog
    from metercert.catalog.matrix import METERCERT_COLUMN, build_matrix
    from metercert.checks import all_checks

    matrix = build_matrix(load_catalog(), all_checks())
    console = Console()
    table = Table(title="Framework coverage by threat category", show_lines=True)
    table.add_column("Threat Category", style="bold")
    for title in matrix.column_titles:
        table.add_column(title)
    table.add_column(METERCERT_COLUMN)
    for row in matrix.rows:
        cells = [f"[{_STYLE.get(c.status, 'white')}]{c.text}[/]" for c in row.cells]
        tested = f"[blue]{row.metercert_text}[/]" if row.checks else f"[dim]{row.metercert_text}[/]"
        table.add_row(row.threat.title, *cells, tested)
    console.print(table)
    console.print(
        "[dim]Framework columns restate the seed article's assessment (catalog/data/coverage.yaml); "
        "the last column is computed from the registered checks.[/]"
    )
    if args.html:
        _write(args.html, matrix.to_html())
        console.print(f"wrote {args.html}")
    if args.csv:
        _write(args.csv, matrix.to_csv())
        console.print(f"wrote {args.csv}")
    return 0


def _show(args: argparse.Namespace) -> int:
    from metercert.catalog import load_catalog
    from metercert.checks import all_checks

    catalog = load_catalog()
    req = catalog.get(args.requirement_id)
    fw = catalog.framework(req.framework)
    console = Console()
    console.print(f"[bold]{req.id}[/]  {req.title}")
    console.print(f"framework: {fw.name}")
    console.print(f"status:    {req.status}" + ("  [yellow](to verify against the standard text)[/]" if req.verify else ""))
    console.print(f"evidence:  {', '.join(req.evidence)}")
    console.print("threats:")
    for tid in req.threats:
        console.print(f"  - {tid}: {catalog.threat(tid).title}")
    checks = sorted((s for s in all_checks().values() if req.id in s.requirements), key=lambda s: s.id)
    if checks:
        console.print("checks that evidence it:")
        for spec in checks:
            console.print(f"  - {spec.id} [{spec.target.value}] {spec.title}")
    else:
        note = "document review" if req.document_review_only else "not yet tested automatically"
        console.print(f"checks that evidence it: none ({note})")
    for m in catalog.misstatements:
        if req.id in m.requirements:
            console.print(f"[yellow]seed misstatement {m.id}:[/] {m.correction}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from metercert.checks import all_checks

    catalog = catalog_for(args)
    reqs = catalog.in_framework(args.framework) if args.framework else catalog.requirements
    tested: dict[str, int] = {}
    for spec in all_checks().values():
        for cited in spec.requirements:
            for rid in catalog.resolve(cited):
                tested[rid] = tested.get(rid, 0) + 1
    table = Table(title=f"{len(reqs)} requirements" + (f" in {args.framework}" if args.framework else ""))
    table.add_column("id", style="bold", no_wrap=True)
    table.add_column("status")
    table.add_column("evidence")
    table.add_column("threats")
    table.add_column("checks", justify="right")
    table.add_column("title")
    for r in reqs:
        table.add_row(r.id, r.status, ", ".join(r.evidence), ", ".join(r.threats), str(tested.get(r.id, 0)), r.title)
    Console().print(table)
    return 0


def _oscal(args: argparse.Namespace) -> int:
    from metercert.catalog import load_catalog
    from metercert.catalog.oscal import catalog_to_oscal

    text = json.dumps(catalog_to_oscal(load_catalog()), indent=2) + "\n"
    if args.out:
        _write(args.out, text)
        Console(stderr=True).print(f"wrote {args.out}")
    else:
        print(text, end="")
    return 0


