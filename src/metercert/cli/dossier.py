"""``metercert dossier init|assess``: write a template dossier, or assess one."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import re
import shutil
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from metercert import __version__
from metercert.checks.dossier import PLACEHOLDER_REASON
from metercert.dossier import sample_dossier
from metercert.dossier.yamldoc import PLACEHOLDER_TAG
from metercert.errors import InputFileError, UsageError
from metercert.report.json import check_entry, lab_context, summary_of

#: Top-level dossier fields ``init`` leaves unmarked: format settings, not product facts.
_NOT_PLACEHOLDERS = ("dossier_version", "allow_absolute_paths")
_TOP_LEVEL_KEY = re.compile(r"^([a-z_]+):(?=\s|$)", re.MULTILINE)


def mark_placeholders(text: str) -> str:
    """Tag every top-level product field of a dossier ``!placeholder``.

    The template describes metercert's reference meter; an unedited copy must not pass
    as the user's product, so each example value carries a mark the loader recognises
    (one well-named YAML tag, not a guess from the values) until the user replaces it.
    """
    def mark(m: re.Match[str]) -> str:
        return m.group(0) if m.group(1) in _NOT_PLACEHOLDERS else f"{m.group(0)} {PLACEHOLDER_TAG}"
    return _TOP_LEVEL_KEY.sub(mark, text)


_VERDICT_STYLE = {"pass": "green", "fail": "bold red", "inconclusive": "yellow", "not-applicable": "dim"}


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("dossier", help="device dossier: write a template, or assess one")
    sub = parser.add_subparsers(dest="dossier_command", metavar="SUBCOMMAND", required=True)

    init = sub.add_parser("init", help="write a commented template dossier with example files into DIR")
    init.add_argument("directory", type=Path, metavar="DIR", help="folder to write (created if missing)")
    init.add_argument("--force", action="store_true", help="overwrite an existing dossier.yaml")
    init.set_defaults(func=_init)

    assess = sub.add_parser("assess", help="run the dossier checks (SBOM, firmware signature, policies ...)")
    assess.add_argument("dossier", type=Path, metavar="DOSSIER.yaml", help="dossier file or its folder")
    assess.add_argument("--json", type=Path, metavar="FILE", help="also write results.json-shaped output")
    assess.add_argument("--patch-limit-days", type=int, metavar="N",
                        help="override the patch-window limit (dossier value, default 90)")
    assess.add_argument("--evidence", action="store_true", help="print each check's evidence")
    assess.set_defaults(func=_assess)


def _init(args: argparse.Namespace) -> int:
    target: Path = args.directory
    if (target / "dossier.yaml").exists() and not args.force:
        raise UsageError(f"{target / 'dossier.yaml'} already exists (use --force to overwrite)")
    if target.exists() and not target.is_dir():
        raise InputFileError(f"{target}: exists and is not a directory")
    source = sample_dossier("reference-meter")
    try:
        shutil.copytree(source, target, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        text = (target / "dossier.yaml").read_text(encoding="utf-8")
        header = (
            "# TEMPLATE written by `metercert dossier init`: it describes metercert's reference\n"
            "# meter. Replace every value and file with your product's and remove its\n"
            f"# {PLACEHOLDER_TAG} mark (a check reading a field still marked gives no verdict),\n"
            "# then run\n"
            f"#   metercert dossier assess {target / 'dossier.yaml'}\n"
        )
        (target / "dossier.yaml").write_text(header + mark_placeholders(text), encoding="utf-8")
    except OSError as exc:
        raise InputFileError(f"{target}: cannot write: {exc.strerror or exc.__class__.__name__}") from None
    Console().print(f"wrote template dossier {target / 'dossier.yaml'} with example SBOM, firmware, "
                    "signature, certificate, OSV export, audit log and EOL procedure")
    return 0


def _iso(moment: dt.datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def assess_document(path: Path, *, patch_limit_days: int | None = None) -> dict[str, Any]:
    """Load, assess and return a results.json-shaped dict (with ``gaps``)."""
    from metercert.catalog import load_catalog
    from metercert.catalog.gaps import analyse
    from metercert.checks import all_checks
    from metercert.checks.dossier import run_all
    from metercert.dossier.load import load_dossier

    all_checks()
    started = dt.datetime.now(dt.UTC)
    t0 = time.perf_counter()
    dossier = load_dossier(path)
    if patch_limit_days is not None:
        if patch_limit_days < 1:
            raise UsageError("--patch-limit-days must be at least 1")
        dossier = dataclasses.replace(dossier, patch_limit_days=patch_limit_days)
    entries = [check_entry(r) for r in run_all(dossier)]
    summary = summary_of(entries)
    reviews = [r.to_dict() for r in dossier.reviews]
    catalog = load_catalog()
    unknown = [r["requirement"] for r in reviews if not catalog.resolve(r["requirement"])]
    if unknown:
        raise InputFileError(f"{dossier.path}: reviews name unknown requirement(s): {', '.join(unknown)}")
    unconditional = [r["requirement"] for r in reviews if r["verdict"] == "not-applicable"
                     and not all(catalog.get(x).condition for x in catalog.resolve(r["requirement"]))]
    if unconditional:
        raise InputFileError(f"{dossier.path}: a review may only set not-applicable on a conditional "
                             f"provision; {', '.join(unconditional)} has no condition")
    return {
        "schema": "metercert-results",
        "schema_version": 1,
        "tool": {"name": "metercert", "version": __version__},
        "run": {
            "started_at": _iso(started),
            "finished_at": _iso(dt.datetime.now(dt.UTC)),
            "duration_s": round(time.perf_counter() - t0, 3),
            "target": f"dossier {dossier.path}",
            "meter_profile": None,
            "targets": {"dossier": dossier.describe()},
            "deselected": [],
            "notes": [(f"{PLACEHOLDER_REASON} {', '.join(dossier.placeholders)}: "
                       "no check reading these fields was judged")] if dossier.placeholders else [],
            **lab_context(),
        },
        "summary": summary,
        "checks": entries,
        **({"reviews": reviews} if reviews else {}),
        "gaps": analyse(entries, catalog, (), reviews).to_dict(),
    }


def _assess(args: argparse.Namespace) -> int:
    doc = assess_document(args.dossier, patch_limit_days=args.patch_limit_days)
    console = Console()
    table = Table(title=f"Dossier assessment: {doc['run']['target']}")
    table.add_column("check", style="bold", no_wrap=True)
    table.add_column("verdict")
    table.add_column("reason")
    table.add_column("requirements")
    for e in doc["checks"]:
        style = _VERDICT_STYLE.get(e["verdict"], "white")
        table.add_row(e["id"], f"[{style}]{e['verdict'].upper()}[/]", e["reason"], ", ".join(e["requirements"]))
    console.print(table)
    if args.evidence:
        for e in doc["checks"]:
            console.print(f"[bold]{e['id']}[/]")
            for ev in e["evidence"]:
                console.print(f"  {ev['label']}: {ev['content']}  [dim]({ev['source']})[/]", markup=True,
                              highlight=False)
    s = doc["summary"]
    console.print(f"{s['pass']} passed, {s['fail']} failed, {s['inconclusive']} inconclusive, "
                  f"{s['not-applicable']} not applicable in {doc['run']['duration_s']:.2f} s")
    if args.json:
        try:
            args.json.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            raise InputFileError(f"{args.json}: cannot write: {exc.strerror or exc.__class__.__name__}") from None
        console.print(f"wrote {args.json}")
    undecided = [e["id"] for e in doc["checks"]
                 if e["verdict"] == "inconclusive" and e["severity"] == "critical"]
    if undecided:
        # a critical check that could not decide is no evidence of safety: gate on it
        console.print(f"[bold yellow]critical check(s) inconclusive: {', '.join(undecided)}[/]")
    templated = [e["id"] for e in doc["checks"] if e["reason"].startswith(PLACEHOLDER_REASON)]
    if templated:
        console.print(f"[bold yellow]{len(templated)} check(s) not judged: the dossier still holds "
                      f"the template's placeholders ({PLACEHOLDER_TAG})[/]")
    return 1 if s["fail"] or undecided or templated else 0
