"""The human report: one self-contained HTML file an auditor can archive and open offline.

Everything is inline (CSS, the SVG chart); there is no script and no external
URL, so the file renders the same in ten years and leaks nothing when opened.
All text passes through jinja2 autoescaping: check reasons and evidence come
from the device under test and must be treated as hostile.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2

VERDICT_ORDER = ("fail", "inconclusive", "pass", "not-assessed", "not-applicable")
VERDICT_LABEL = {
    "pass": "PASS",
    "fail": "FAIL",
    "inconclusive": "INCONCLUSIVE",
    "not-applicable": "NOT APPLICABLE",
    "not-assessed": "NOT ASSESSED",
}
VERDICT_COLOUR = {
    "pass": "#2e7d32",
    "fail": "#c62828",
    "inconclusive": "#e08a00",
    "not-applicable": "#8a8f98",
    "not-assessed": "#5e6ad2",
}
SEVERITY_ORDER = ("critical", "high", "medium", "low", "info")


@dataclass(frozen=True)
class Segment:
    verdict: str
    count: int
    x: float
    width: float
    colour: str


@dataclass(frozen=True)
class FrameworkBar:
    framework: str
    total: int
    y: float
    segments: tuple[Segment, ...]
    catalog_total: int | None = None

    @property
    def label(self) -> str:
        """``17 of 32 evidenced`` when the catalog size is known (never ``17/17``)."""
        if self.catalog_total:
            return f"{self.total} of {self.catalog_total} requirements cited"
        return f"{self.total} requirements cited"


@dataclass(frozen=True)
class RequirementRow:
    id: str
    framework: str
    verdict: str
    checks: tuple[tuple[str, str], ...]  # (check id, its verdict)
    title: str = ""


def requirement_titles(gaps: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Requirement id -> title: from the document's gap analysis, else the packaged catalog."""
    titles: dict[str, str] = {}
    if isinstance(gaps, Mapping) and isinstance(gaps.get("frameworks"), Mapping):
        for fw in gaps["frameworks"].values():
            reqs = fw.get("requirements") if isinstance(fw, Mapping) else None
            if isinstance(reqs, Mapping):
                for rid, item in reqs.items():
                    if isinstance(item, Mapping) and item.get("title"):
                        titles[str(rid)] = str(item["title"])
    if not titles:
        try:
            from metercert.catalog import load_catalog

            titles = {r.id: r.title for r in load_catalog().requirements}
        except Exception:  # noqa: BLE001 - the catalog is another layer; keep the report
            titles = {}
    return titles


def framework_totals(gaps: Mapping[str, Any] | None) -> dict[str, int]:
    """Framework -> number of catalog requirements, from the gap analysis when present."""
    out: dict[str, int] = {}
    if isinstance(gaps, Mapping) and isinstance(gaps.get("frameworks"), Mapping):
        for fw_id, fw in gaps["frameworks"].items():
            if isinstance(fw, Mapping) and isinstance(fw.get("total"), int):
                out[str(fw_id)] = fw["total"]
    return out


def framework_of(requirement_id: str) -> str:
    """Framework of a catalog id: the prefix before the first ``:``."""
    return requirement_id.split(":", 1)[0] if ":" in requirement_id else requirement_id


def requirement_verdict(verdicts: list[str]) -> str:
    """One verdict per requirement: any FAIL fails it; then INCONCLUSIVE; then PASS."""
    for verdict in VERDICT_ORDER:
        if verdict in verdicts:
            return verdict
    return "not-applicable"


def requirement_rows(
    checks: list[Mapping[str, Any]], titles: Mapping[str, str] | None = None
) -> list[RequirementRow]:
    by_req: dict[str, list[tuple[str, str]]] = {}
    for check in checks:
        per = check.get("requirement_verdicts") or {}
        for req in check["requirements"]:
            by_req.setdefault(req, []).append((check["id"], per.get(req, check["verdict"])))
    titles = titles or {}
    rows = [
        RequirementRow(req, framework_of(req), requirement_verdict([v for _, v in pairs]), tuple(pairs),
                       titles.get(req, ""))
        for req, pairs in by_req.items()
    ]
    rows.sort(key=lambda r: (r.framework, _natural_key(r.id)))
    return rows


def _natural_key(text: str) -> tuple[Any, ...]:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text))


# Chart geometry (SVG user units).
_LABEL_W = 150.0
_BAR_W = 560.0
_ROW_H = 30.0
_BAR_H = 20.0
_TOP = 8.0


def framework_bars(
    rows: list[RequirementRow], totals: Mapping[str, int] | None = None
) -> tuple[list[FrameworkBar], float]:
    """Stacked bars (requirements per verdict) per framework, and the chart height."""
    totals = totals or {}
    per_fw: dict[str, Counter[str]] = {}
    for row in rows:
        per_fw.setdefault(row.framework, Counter())[row.verdict] += 1
    widest = max((sum(c.values()) for c in per_fw.values()), default=1)
    bars = []
    for i, fw in enumerate(sorted(per_fw)):
        counts = per_fw[fw]
        x = _LABEL_W
        segments = []
        for verdict in ("pass", "fail", "inconclusive", "not-assessed", "not-applicable"):
            n = counts.get(verdict, 0)
            if not n:
                continue
            width = _BAR_W * n / widest
            segments.append(Segment(verdict, n, round(x, 2), round(width, 2), VERDICT_COLOUR[verdict]))
            x += width
        bars.append(FrameworkBar(fw, sum(counts.values()), _TOP + i * _ROW_H, tuple(segments),
                                 totals.get(fw)))
    return bars, _TOP + len(bars) * _ROW_H + 4


GAP_STATES = ("passed", "failed", "inconclusive", "not-assessed", "untested", "document-review",
              "not-applicable")


@dataclass(frozen=True)
class FrameworkReadiness:
    framework: str
    name: str
    readiness_pct: float | None
    counts: Mapping[str, int]
    total: int
    todo: tuple[Mapping[str, Any], ...]


def readiness_view(gaps: Mapping[str, Any] | None) -> list[FrameworkReadiness] | None:
    """Per-framework readiness from the catalog's gap analysis, or None for another shape.

    The catalog owns the ``gaps`` layout; an unknown layout is still shown, as a
    generic nested listing, rather than dropped.
    """
    if not isinstance(gaps, Mapping) or not isinstance(gaps.get("frameworks"), Mapping):
        return None
    view = []
    try:
        for fw_id, fw in gaps["frameworks"].items():
            counts = {state: int(fw["counts"].get(state, 0)) for state in GAP_STATES}
            pct = fw["readiness_pct"]
            view.append(FrameworkReadiness(
                str(fw_id), str(fw.get("name", fw_id)), None if pct is None else float(pct), counts,
                int(fw["total"]), tuple(t for t in fw.get("todo", []) if isinstance(t, Mapping)),
            ))
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    return view


def ordered_checks(checks: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Failing checks first, then by severity; run order otherwise."""

    def key(item: tuple[int, Mapping[str, Any]]) -> tuple[int, int, int]:
        index, check = item
        v = VERDICT_ORDER.index(check["verdict"]) if check["verdict"] in VERDICT_ORDER else 9
        s = SEVERITY_ORDER.index(check["severity"]) if check["severity"] in SEVERITY_ORDER else 9
        return (v, s, index)

    return [c for _, c in sorted(enumerate(checks), key=key)]


def human_duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{int(minutes)} min {secs:.0f} s"
    hours, minutes = divmod(minutes, 60)
    return f"{int(hours)} h {int(minutes)} min"


def human_time(stamp: str) -> str:
    try:
        ts = datetime.fromisoformat(stamp)
    except ValueError:
        return stamp
    return ts.strftime("%Y-%m-%d %H:%M:%S UTC")


#: Service-specific global/dedicated ciphered APDU tags (IEC 62056-5-3): tag, length,
#: security control byte, invocation counter (4 bytes big endian), ciphertext || tag.
_CIPHERED_TAGS = frozenset(range(0xC8, 0xD0)) | frozenset(range(0xD0, 0xD8)) | {0x21, 0x28}
_TRACE_LINE = re.compile(r"^\s*[\d.]*\s*(->|<-)\s+(\S+)\s+([0-9A-Fa-f]{12,})\s*$")
_NOTE_LINE = re.compile(r"^\s*note:\s*(.+)$")


def _counter(apdu: bytes) -> int | None:
    """The invocation counter of a service-specific ciphered APDU, or None."""
    if len(apdu) < 7 or apdu[0] not in _CIPHERED_TAGS:
        return None
    pos = 1
    if apdu[pos] & 0x80:  # long-form length
        pos += 1 + (apdu[pos] & 0x7F)
    else:
        pos += 1
    if len(apdu) < pos + 5:
        return None
    return int.from_bytes(apdu[pos + 1:pos + 5], "big")


def trace_facts(trace: str, limit: int = 8) -> list[str]:
    """Decoded invocation counters of the ciphered APDUs in an APDU trace, with the notes
    the check wrote beside them and the meter's answer: the facts of a replay finding."""
    facts: list[str] = []
    last = ""
    for line in trace.splitlines():
        note = _NOTE_LINE.match(line)
        if note and last:
            facts[-1] += f" ({note.group(1).strip()})"
            continue
        match = _TRACE_LINE.match(line)
        if not match:
            continue
        direction, name, hexdata = match.groups()
        try:
            ic = _counter(bytes.fromhex(hexdata))
        except ValueError:
            ic = None
        if ic is None:
            last = ""
            continue
        who = "sent" if direction == "->" else "meter answered"
        facts.append(f"{who} {name}, invocation counter {ic} (0x{ic:08X})")
        last = name
    return facts[-limit:]


def _evidence_text(content: str) -> str:
    from metercert.report.json import truncate_evidence

    return truncate_evidence(str(content))


def anchor(check_id: str) -> str:
    return "check-" + "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in check_id)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("metercert.report", "templates"),
        autoescape=True,  # every value, whatever the template name
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["duration"] = human_duration
    env.filters["when"] = human_time
    env.filters["anchor"] = anchor
    env.filters["trace_facts"] = trace_facts
    env.globals.update(VERDICT_LABEL=VERDICT_LABEL, VERDICT_COLOUR=VERDICT_COLOUR)
    env.tests["mapping"] = lambda v: isinstance(v, Mapping)
    env.tests["scalar_list"] = lambda v: isinstance(v, list) and all(
        not isinstance(i, (Mapping, list)) for i in v
    )
    env.tests["record_list"] = lambda v: isinstance(v, list) and bool(v) and all(
        isinstance(i, Mapping) for i in v
    )
    return env


def record_hash(doc: Mapping[str, Any]) -> str:
    """SHA-256 of the results document as results.json stores it (the record this page shows)."""
    text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def overall_banner(
    summary: Mapping[str, int], readiness: list[FrameworkReadiness] | None
) -> tuple[str, str]:
    """The headline: what the checks showed, and never "passed" without the readiness beside it."""
    open_fw = [f"{f.framework} {f.readiness_pct:.1f} %" for f in readiness or []
               if f.readiness_pct is not None and f.readiness_pct < 100.0]
    tail = ("; requirements still open, readiness " + ", ".join(open_fw)) if open_fw else ""
    unassessed = summary.get("not-assessed", 0)
    if unassessed:
        tail += f"; {unassessed} check(s) not assessed (target missing)"
    if summary.get("fail"):
        undecided = summary.get("inconclusive", 0)
        also = f"; {undecided} check(s) reached no verdict (reasons below)" if undecided else ""
        return "fail", f"{summary['fail']} check(s) failed" + also + tail
    if summary.get("inconclusive"):
        return "inconclusive", (f"no failure seen, but {summary['inconclusive']} check(s) reached "
                                "no verdict (reasons below): the campaign is not complete") + tail
    if summary.get("pass"):
        return "pass", f"all {summary['pass']} checks that produced a verdict passed" + tail
    return "not-applicable", "no check produced a verdict" + tail


def render_html(doc: Mapping[str, Any]) -> str:
    """The report page for a results.json document."""
    checks = list(doc["checks"])
    gaps = doc.get("gaps")
    rows = requirement_rows(checks, requirement_titles(gaps))
    bars, chart_height = framework_bars(rows, framework_totals(gaps))
    summary = {v: 0 for v in VERDICT_LABEL} | dict(doc["summary"])
    readiness = readiness_view(gaps)
    overall = overall_banner(summary, readiness)
    req_counts = Counter(r.verdict for r in rows)
    # Optional fields get their empty value: any schema-valid document must render.
    run = {"targets": {}, "deselected": [], "notes": [], "device_identity": {}, "lab": "",
           "operator": "", "catalog_version": "", **doc["run"]}
    template = _environment().get_template("report.html.j2")
    return template.render(
        doc={"reviews": [], **doc},
        run=run,
        record_sha256=record_hash(doc),
        evidence_text=_evidence_text,
        tool=doc["tool"],
        summary=summary,
        overall=overall,
        checks=ordered_checks(checks),
        rows=rows,
        req_counts=req_counts,
        bars=bars,
        chart_height=chart_height,
        chart_width=_LABEL_W + _BAR_W + 60,
        bar_h=_BAR_H,
        label_w=_LABEL_W,
        gaps=gaps,
        readiness=readiness,
        gap_states=GAP_STATES,
        verdict_order=VERDICT_ORDER,
    )


def write_html(doc: Mapping[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(doc), encoding="utf-8")
    return path
