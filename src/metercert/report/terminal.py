"""The end-of-run summary in the terminal: counts, total time, and what failed.

It is deliberately short: the failing and inconclusive checks with their reasons
are what an engineer acts on at the console; the full evidence is in the HTML.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from metercert.report.html import VERDICT_LABEL, human_duration, ordered_checks

if TYPE_CHECKING:
    from metercert.campaign.runner import CampaignRun

STYLE = {"pass": "bold green", "fail": "bold red", "inconclusive": "bold yellow", "not-applicable": "dim",
         "not-assessed": "magenta"}


def summary_table(doc: Mapping[str, Any]) -> Table:
    """Verdict counts plus total time, as one small table."""
    run = doc["run"]
    table = Table(box=box.SIMPLE_HEAVY)
    table.add_column("verdict")
    table.add_column("checks", justify="right")
    for verdict in ("pass", "fail", "inconclusive", "not-applicable", "not-assessed"):
        count = doc["summary"].get(verdict, 0)
        if verdict == "not-assessed" and not count:
            continue
        table.add_row(Text(VERDICT_LABEL[verdict], style=STYLE[verdict]), str(count))
    table.add_section()
    table.add_row("total", str(len(doc["checks"])))
    table.add_row("time", human_duration(float(run["duration_s"])))
    if run.get("meter_profile"):
        table.add_row("profile", Text(str(run["meter_profile"])))
    return table


def findings_table(doc: Mapping[str, Any]) -> Table | None:
    """Failing then inconclusive checks with their reasons, or None when there are none."""
    rows = [c for c in ordered_checks(list(doc["checks"])) if c["verdict"] in ("fail", "inconclusive")]
    if not rows:
        return None
    table = Table(box=box.SIMPLE, title="findings", title_justify="left", expand=False)
    table.add_column("verdict", no_wrap=True)
    table.add_column("severity", no_wrap=True)
    table.add_column("check", no_wrap=True)
    table.add_column("reason", overflow="fold")
    for c in rows:
        # Text(), not str: reasons come from the device and may contain rich markup.
        table.add_row(Text(VERDICT_LABEL[c["verdict"]], style=STYLE[c["verdict"]]), Text(c["severity"]),
                      Text(c["id"]), Text(c["reason"]))
    return table


def print_results_summary(doc: Mapping[str, Any], console: Console) -> None:
    console.print(Text.assemble(("metercert campaign: ", "bold"), str(doc["run"]["target"])))
    console.print(summary_table(doc))
    findings = findings_table(doc)
    if findings is not None:
        console.print(findings)
    deselected = doc["run"].get("deselected") or []
    if deselected:
        console.print(f"[dim]{len(deselected)} check(s) not run (--only/--skip/no-destructive)[/dim]")


def print_run_summary(run: CampaignRun, console: Console) -> None:
    """Summary of a finished run (no gap analysis; that belongs to the written reports)."""
    from metercert.report.json import results_document

    print_results_summary(results_document(run, with_gaps=False), console)
