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
    # tls.version did not run because the run had no TLS target: not assessed, not "not applicable"
    assert [d[0] for d in details] == ["fail", "inconclusive", "inconclusive", "pass", "pass",
                                       "not-assessed"]
    assert details[0][1] == "check-dlms.ic-replay" and details[0][2] == " open"
    assert all(d[2] == "" for d in details[1:])
    assert '<pre class="apdu">-&gt; C8 1E 30 01234567' in html


def test_per_requirement_table_and_chart(run: CampaignRun) -> None:
    html = render_html(results_document(run, with_gaps=False))
    rows = re.findall(r'<td class="id">([A-Z0-9-]+:[^<]+)</td>\s*<td>([^<]*)</td>\s*'
                      r'<td><span class="v ([a-z-]+)">', html)
    assert {r[0]: r[2] for r in rows} == {
        "CRA:II.1": "pass", "DLMS:IC-PERSIST": "inconclusive", "DLMS:IC-REPLAY": "fail",
        "DLMS:ROBUSTNESS": "inconclusive", "DLMS:SUITE-NEGOTIATION": "pass",
        "EN303645:5.3-2": "pass", "EN303645:5.5-1": "fail", "IEC62351-3:TLS-VERSION": "not-assessed",
    }
    titles = {r[0]: r[1] for r in rows}  # every catalog requirement shows its title beside its id
    assert titles["CRA:II.1"] and titles["DLMS:IC-REPLAY"]
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


def test_dossier_assess_results_render_through_the_report_cli(tmp_path: Path) -> None:
    """`metercert report --html` crashed (UndefinedError 'targets', exit 3) on this document."""
    from metercert.cli import main

    results = tmp_path / "results.json"
    assert main(["dossier", "assess", str(_sample("flawed-meter")), "--json", str(results)]) == 1
    assert main(["report", str(results), "--out", str(tmp_path / "out"), "--html", "--oscal",
                 "--junit"]) == 0
    html = (tmp_path / "out" / "report.html").read_text()
    assert "DOSSIER-DEBUG-01" in html


def test_minimal_schema_valid_document_renders(run: CampaignRun) -> None:
    doc = results_document(run, with_gaps=False)
    for key in ("targets", "deselected", "notes"):
        doc["run"].pop(key, None)
    assert "<html" in render_html(doc)


def _sample(name: str) -> Path:
    from metercert.dossier import sample_dossier

    return Path(sample_dossier(name))


def test_pass_banner_names_open_readiness(run: CampaignRun) -> None:
    """A passing banner said "all applicable checks passed" beside CRA 70.8 %."""
    from metercert.report.html import overall_banner, readiness_view

    gaps = {"frameworks": {"CRA": {"name": "CRA", "counts": {"passed": 17}, "total": 24,
                                   "readiness_pct": 70.8, "todo": []}}}
    verdict, text = overall_banner({"pass": 5, "fail": 0, "inconclusive": 0}, readiness_view(gaps))
    assert verdict == "pass" and "CRA 70.8 %" in text and "all applicable" not in text


def test_header_shows_identity_lab_operator_and_record_hash(run: CampaignRun) -> None:
    import hashlib
    import json

    doc = results_document(run, with_gaps=False)
    doc["run"].update(device_identity={"logical_device_name": "MCR0000001LDN", "serial": "12345678"},
                      lab="Example Lab", operator="A. Tester")
    html = render_html(doc)
    header = html[html.index('<header'): html.index('</header>')]
    assert "MCR0000001LDN" in header and "Example Lab" in header and "A. Tester" in header
    digest = hashlib.sha256((json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode()).hexdigest()
    assert f'id="record-hash">{digest}<' in header


def test_long_evidence_is_cut_with_a_marker(run: CampaignRun) -> None:
    from metercert.report.json import EVIDENCE_MAX

    doc = results_document(run, with_gaps=False)
    doc["checks"][0]["evidence"] = [{"label": "big", "kind": "text", "source": "",
                                     "content": "A" * (EVIDENCE_MAX + 123)}]
    html = render_html(doc)
    assert "evidence truncated: 123 of" in html


def test_chart_says_how_many_catalog_requirements_were_cited(run: CampaignRun) -> None:
    """"EN303645 17/17" read as complete where 17 of 32 provisions were evidenced."""
    html = render_html(results_document(run))
    chart = html[html.index("<svg"): html.index("</svg>")]
    assert re.search(r">2 of \d+ requirements cited</text>", chart)  # EN 303 645: 5.3-2 and 5.5-1


@pytest.mark.browser
def test_printed_pdf_contains_every_checks_evidence(tmp_path: Path) -> None:
    """Collapsed <details> lost their evidence in print; the print CSS must expand them."""
    from metercert.cli.dossier import assess_document
    from metercert.report import render_documents

    doc = assess_document(_sample("flawed-meter"))
    html_path = render_documents(doc, tmp_path, ["html"])["html"]
    pdf = tmp_path / "report.pdf"
    out = _run_chromium([f"--print-to-pdf={pdf}", "--no-pdf-header-footer", html_path.resolve().as_uri()])
    assert pdf.exists(), out.stderr[-800:]
    pdftotext = shutil.which("pdftotext")
    assert pdftotext, "pdftotext (poppler-utils) is not installed; scripts/test installs it"
    text = subprocess.run([pdftotext, "-layout", str(pdf), "-"], capture_output=True, text=True,
                          check=True, timeout=60).stdout
    flat = " ".join(text.split())
    closed = [c for c in doc["checks"] if c["verdict"] != "fail"]
    assert closed, "the sample must have collapsed (non-failing) checks"
    for check in doc["checks"]:
        for ev in check["evidence"]:
            snippet = " ".join(ev["content"].split())[:40]
            assert snippet in flat, (check["id"], ev["label"], snippet)


def test_replay_finding_shows_decoded_counters_and_the_meters_answer(run: CampaignRun) -> None:
    """The glo-get-request is the Green Book vector V1 of STANDARDS.md (IC 01234567)."""
    from metercert.report.html import trace_facts

    v1 = "C81E3001234567411312FF935A47566827C467BC7D825C3BE4A77C3FCC056B6B"
    trace = (f"   0.036 -> glo-get-request              {v1}\n"
             "             note: original\n"
             f"   0.047 -> glo-get-request              {v1}\n"
             "             note: replay of the same bytes\n"
             "   0.048 <- glo-get-response             CC0C3000000042A1533E3B06F0EF6E\n")
    facts = trace_facts(trace)
    assert facts == [
        "sent glo-get-request, invocation counter 19088743 (0x01234567) (original)",
        "sent glo-get-request, invocation counter 19088743 (0x01234567) (replay of the same bytes)",
        "meter answered glo-get-response, invocation counter 66 (0x00000042)",
    ]
    doc = results_document(run, with_gaps=False)
    replay = next(c for c in doc["checks"] if c["id"] == "dlms.ic-replay")
    replay["evidence"].append({"label": "APDU trace", "kind": "apdu-trace", "source": "", "content": trace})
    findings = render_html(doc).split('<section id="frameworks"')[0]
    assert "invocation counter 19088743 (0x01234567) (replay of the same bytes)" in findings
    assert "meter answered glo-get-response, invocation counter 66" in findings
