"""``metercert report RESULTS.json --out DIR``: re-render the reports of a past run.

Useful when the HTML template improved, when CI needs JUnit from an archived
run, or to produce OSCAL for a GRC tool without re-testing the meter.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from metercert.report import load_results, render_documents
from metercert.report.terminal import print_results_summary


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "report",
        help="re-render HTML / JUnit / OSCAL from a results.json",
        description=(
            "Validate RESULTS.json against the results schema and write the chosen reports "
            "into DIR. Without a format flag, HTML and JUnit are written."
        ),
    )
    parser.add_argument("results", type=Path, metavar="RESULTS.json", help="results file of a campaign run")
    parser.add_argument("--out", "-o", type=Path, required=True, metavar="DIR", help="output directory")
    parser.add_argument("--html", action="store_true", help="write report.html")
    parser.add_argument("--junit", action="store_true", help="write junit.xml")
    parser.add_argument("--json", action="store_true", help="write a (validated) copy of results.json")
    parser.add_argument(
        "--oscal", action="store_true", help="write OSCAL assessment-results (assessment-results.json)"
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="do not print the summary")
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    doc = load_results(args.results)
    formats = [f for f in ("html", "junit", "json", "oscal") if getattr(args, f)]
    if not formats:
        formats = ["html", "junit"]
    if "json" in formats and args.out.resolve() / "results.json" == args.results.resolve():
        formats.remove("json")  # it is already there, validated
    written = render_documents(doc, args.out, formats)
    console = Console()
    if not args.quiet:
        print_results_summary(doc, console)
    for fmt, path in written.items():
        console.print(f"{fmt:>6}: {path}", highlight=False, markup=False)
    return 0
