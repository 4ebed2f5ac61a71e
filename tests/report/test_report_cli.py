"""`metercert report RESULTS.json --out DIR`: re-render, and one-line errors."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from junitparser import JUnitXml

from metercert.campaign import CampaignRun
from metercert.cli import main
from metercert.report import write_reports


def test_report_rerenders_html_and_junit(run: CampaignRun, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    results = write_reports(run, tmp_path / "run", formats=["json"])["json"]
    out = tmp_path / "again"
    assert main(["report", str(results), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["junit.xml", "report.html"]
    assert "meter accepted a replayed invocation counter" in (out / "report.html").read_text("utf-8")
    assert sum(s.tests for s in JUnitXml.fromfile(str(out / "junit.xml"))) == 6
    printed = capsys.readouterr().out.replace("\n", "")  # long paths wrap at the console width
    assert "FAIL" in printed and "report.html" in printed

    assert main(["report", str(results), "--out", str(out / "j"), "--junit", "-q"]) == 0
    assert [p.name for p in (out / "j").iterdir()] == ["junit.xml"]


@pytest.mark.parametrize("content, needle", [
    (None, "no such results file"),
    ("{not json", "not valid JSON"),
    ('{"schema": "metercert-results"}', "not a valid results document"),
])
def test_bad_input_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      content: str | None, needle: str) -> None:
    path = tmp_path / "results.json"
    if content is not None:
        path.write_text(content, "utf-8")
    assert main(["report", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("metercert: error: ") and needle in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_oscal_output_or_a_clear_error(run: CampaignRun, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    results = write_reports(run, tmp_path / "run", formats=["json"])["json"]
    code = main(["report", str(results), "--out", str(tmp_path / "o"), "--oscal", "-q"])
    has_oscal = importlib.util.find_spec("metercert.catalog.oscal") is not None
    if has_oscal:
        assert code == 0
        data = json.loads((tmp_path / "o" / "assessment-results.json").read_text("utf-8"))
        assert "assessment-results" in data
    else:
        assert code == 2
        assert "OSCAL output needs metercert.catalog.oscal" in capsys.readouterr().err


def test_terminal_summary_does_not_interpret_markup_from_the_device(run: CampaignRun) -> None:
    import io

    from rich.console import Console

    from metercert.report import results_document
    from metercert.report.terminal import print_results_summary

    doc = results_document(run, with_gaps=False)
    doc["checks"][1]["reason"] = "meter said [/bold] [red]boom[/red]"
    out = io.StringIO()
    print_results_summary(doc, Console(file=out, width=200, color_system=None))
    assert "meter said [/bold] [red]boom[/red]" in out.getvalue()
