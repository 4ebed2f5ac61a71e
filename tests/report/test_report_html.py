"""The HTML report: self-contained, escaped, failing checks first and open; rendered in chromium."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from metercert.campaign import CampaignRun
from metercert.report import render_html, results_document, write_reports
from metercert.report.html import framework_of, requirement_verdict

HOSTILE = '<script>alert("x")</script>'
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def test_framework_and_requirement_verdict_rules() -> None:
    assert framework_of("IEC62351-3:TLS-VERSION") == "IEC62351-3"
    assert framework_of("EN303645:5.1-1") == "EN303645"
    assert requirement_verdict(["pass", "fail", "inconclusive"]) == "fail"
    assert requirement_verdict(["pass", "inconclusive"]) == "inconclusive"
    assert requirement_verdict(["pass", "not-applicable"]) == "pass"
    assert requirement_verdict(["not-applicable"]) == "not-applicable"


def test_html_is_self_contained_and_escaped(run: CampaignRun) -> None:
    html = render_html(results_document(run, with_gaps=False))
    assert "<script" not in html.lower()  # no script at all, and the hostile reason is escaped
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert "<img src=x" not in html
    links = re.findall(r"""<[^>]*\s(?:src|href|action|poster|data)\s*=\s*["']?([^"'\s>]*)""", html)
    assert links and all(link.startswith("#") for link in links), links  # in-page anchors only
    assert "<link" not in html and "@import" not in html and "url(" not in html
    assert "<svg" in html and "<style>" in html


def test_failing_checks_come_first_and_open(run: CampaignRun) -> None:
    html = render_html(results_document(run, with_gaps=False))
    details = re.findall(r'<details class="check (\S+)" id="([^"]+)"( open)?>', html)
    assert [d[0] for d in details] == ["fail", "inconclusive", "inconclusive", "pass", "pass",
                                       "not-applicable"]
    assert details[0][1] == "check-dlms.ic-replay" and details[0][2] == " open"
    assert all(d[2] == "" for d in details[1:])
    assert '<pre class="apdu">-&gt; C8 1E 30 01234567' in html


def test_per_requirement_table_and_chart(run: CampaignRun) -> None:
    html = render_html(results_document(run, with_gaps=False))
    rows = re.findall(r'<td class="id">([A-Z0-9-]+:[^<]+)</td>\s*<td><span class="v ([a-z-]+)">', html)
    assert dict(rows) == {
        "CRA:II.1": "pass", "DLMS:IC-PERSIST": "inconclusive", "DLMS:IC-REPLAY": "fail",
        "DLMS:ROBUSTNESS": "inconclusive", "DLMS:SUITE-NEGOTIATION": "pass",
        "EN303645:5.3-2": "pass", "EN303645:5.5-1": "fail", "IEC62351-3:TLS-VERSION": "not-applicable",
    }
    chart = html[html.index("<svg"): html.index("</svg>")]
    for fw in ("CRA", "DLMS", "EN303645", "IEC62351-3"):
        assert f">{fw}</text>" in chart
    assert chart.count("<rect") == 7  # DLMS: pass/fail/inconclusive; EN: pass/fail; CRA; IEC


def test_gap_section_renders_when_present(run: CampaignRun) -> None:
    doc = results_document(run, with_gaps=False)
    doc["gaps"] = {"frameworks": [{"framework": "DLMS", "passed": 1, "failed": 1,
                                   "untested": ["DLMS:KEY-WRAP"], "readiness": "33%"}]}
    html = render_html(doc)
    assert '<section id="gaps"' in html and "DLMS:KEY-WRAP" in html and "33%" in html
    doc["gaps"] = None
    assert '<section id="gaps"' not in render_html(doc)


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("chromium is not installed: run `apt-get update && apt-get install -y chromium` "
                    "(scripts/test does this) - the HTML report test needs a real browser")
    return exe


def _run_chromium(args: list[str]) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
            check=False, capture_output=True, text=True, timeout=90, env={**os.environ, "HOME": profile},
        )


@pytest.mark.browser
def test_report_renders_in_chromium(run: CampaignRun, tmp_path: Path) -> None:
    html_path = write_reports(run, tmp_path, formats=["html"])["html"]
    url = html_path.resolve().as_uri()
    png = tmp_path / "out.png"
    shot = _run_chromium([f"--screenshot={png}", "--window-size=1280,2000", url])
    assert png.exists(), f"no screenshot; chromium said: {shot.stderr[-800:]}"
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 30_000  # a blank 1280x2000 page compresses to a few KB

    dom = _run_chromium(["--dump-dom", url])
    assert dom.returncode == 0, dom.stderr[-800:]
    text = dom.stdout
    assert 'id="summary"' in text and "1 check(s) failed" in text
    assert re.search(r'class="card fail"><div class="n">1</div>', text)
    assert "meter accepted a replayed invocation counter 0x01234567" in text
    assert "411312FF935A47566827C467BC 7D825C3BE4A77C3FCC056B6B" in text
    assert "<script>alert" not in text


def test_catalog_gap_report_renders_as_readiness_and_todo(run: CampaignRun) -> None:
    doc = results_document(run, with_gaps=False)
    doc["gaps"] = {
        "frameworks": {
            "DLMS": {"framework": "DLMS", "name": "DLMS/COSEM security",
                     "counts": {"passed": 1, "failed": 1, "inconclusive": 1, "not-applicable": 0,
                                "untested": 0, "document-review": 0},
                     "total": 3, "readiness_pct": 33.3,
                     "todo": [{"requirement": "DLMS:IC-REPLAY", "title": "Replays are rejected",
                               "status": "mandatory", "state": "failed",
                               "action": "fix the product: dlms.ic-replay: <replay accepted>",
                               "checks": ["dlms.ic-replay"]}]},
        },
        "unknown_requirements": ["DLMS:NOT-IN-CATALOG"],
    }
    html = render_html(doc)
    gaps = html[html.index('<section id="gaps"'):]
    assert "33.3&thinsp;%" in gaps and "DLMS/COSEM security" in gaps
    assert '<td class="num bad">1</td>' in gaps  # failed count stands out
    assert "fix the product: dlms.ic-replay: &lt;replay accepted&gt;" in gaps
    assert "DLMS:NOT-IN-CATALOG" in gaps
    assert '<details class="todo" open>' in gaps  # a framework with failures is expanded
