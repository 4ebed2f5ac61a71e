"""Write scan results: findings as Parquet, CSV and JSON, and one self-contained
HTML summary (findings by kind, affected meters, an inline SVG timeline)."""

from __future__ import annotations

import csv
import json
import math
from collections import Counter, defaultdict
from datetime import UTC, datetime
from html import escape
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import pyarrow as pa
import pyarrow.parquet as pq

from metercert import __version__
from metercert.fleet.detectors import KIND_INFO, KINDS, Finding
from metercert.fleet.engines import ScanResult

FINDINGS_SCHEMA = pa.schema([
    ("kind", pa.string()), ("severity", pa.string()), ("meter_id", pa.string()),
    ("system_title", pa.string()), ("direction", pa.string()), ("key_set", pa.string()),
    ("ts", pa.timestamp("us", tz="UTC")), ("ref_ts", pa.timestamp("us", tz="UTC")),
    ("value", pa.int64()), ("ref_value", pa.int64()), ("n", pa.int64()),
    ("assoc_id", pa.string()), ("ref_assoc_id", pa.string()),
    ("evidence_ids", pa.list_(pa.int64())), ("detail", pa.string()),
    ("requirements", pa.list_(pa.string())), ("threat", pa.string()),
    ("key_id", pa.string()),
])
_COLORS = {"critical": "#8b0000", "high": "#d9534f", "medium": "#e0a800", "low": "#5b8def"}
HTML_ROWS = 500


def findings_json(result: ScanResult) -> dict[str, Any]:
    counts = Counter(f.kind for f in result.findings)
    return {
        "schema": "metercert-fleet-findings", "schema_version": 1,
        "tool": {"name": "metercert", "version": __version__},
        "scan": {"engine": result.engine, "dataset": str(result.dataset), "rows": result.rows,
                 "duration_s": round(result.seconds, 3)},
        "summary": {k: counts.get(k, 0) for k in KINDS},
        "findings": [_jsonable(f.to_record()) for f in result.findings],
    }


def _jsonable(rec: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in rec.items()}


def timeline_svg(findings: tuple[Finding, ...] | list[Finding], width: int = 1000) -> str:
    """Circles per kind and day, area proportional to the number of findings."""
    if not findings:
        return "<p>No findings to plot.</p>"
    per: dict[tuple[str, str], int] = defaultdict(int)
    for f in findings:
        per[(f.kind, f.ts.astimezone(UTC).strftime("%Y-%m-%d"))] += 1
    days = sorted({d for _, d in per})
    kinds = [k for k in KINDS if any(kk == k for kk, _ in per)]
    left, top, row_h = 130, 20, 34
    height = top + row_h * len(kinds) + 40
    span = max(len(days) - 1, 1)
    plot_w = width - left - 30
    biggest = max(per.values())
    parts = [(f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'role="img" aria-label="findings per day and kind">')]
    for i, k in enumerate(kinds):
        y = top + row_h * i + row_h // 2
        parts.append(f'<text x="5" y="{y + 4}" font-size="12">{escape(k)}</text>'
                     f'<line x1="{left}" y1="{y}" x2="{width - 20}" y2="{y}" stroke="#eee"/>')
    for j, d in enumerate(days):
        x = left + (plot_w * j / span if len(days) > 1 else plot_w / 2)
        if len(days) <= 12 or j % max(1, len(days) // 12) == 0:
            parts.append(f'<text x="{x:.1f}" y="{height - 10}" font-size="10" '
                         f'text-anchor="middle">{d}</text>')
    for (k, d), n in sorted(per.items()):
        x = left + (plot_w * days.index(d) / span if len(days) > 1 else plot_w / 2)
        y = top + row_h * kinds.index(k) + row_h // 2
        r = 3 + 11 * math.sqrt(n / biggest)
        color = _COLORS.get(KIND_INFO[k].severity, "#888")
        parts.append(f'<circle cx="{x:.1f}" cy="{y}" r="{r:.1f}" fill="{color}" '
                     f'fill-opacity="0.75"><title>{escape(k)} {d}: {n}</title></circle>')
    parts.append("</svg>")
    return "".join(parts)


def render_html(result: ScanResult) -> str:
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    text = resources.files("metercert.fleet").joinpath(
        "templates", "fleet_report.html.j2").read_text("utf-8")
    findings = result.findings
    kinds = []
    for k in KINDS:
        sel = [f for f in findings if f.kind == k]
        info = KIND_INFO[k]
        kinds.append({"kind": k, "severity": info.severity, "count": len(sel),
                      "meters": len({f.meter_id for f in sel}),
                      "requirements": info.requirements, "title": info.title})
    by_meter: dict[str, list[Finding]] = defaultdict(list)
    for f in findings:
        by_meter[f.meter_id].append(f)
    ranked = sorted(by_meter.items(), key=lambda item: (-len(item[1]), item[0]))
    meters = [{"meter_id": m, "count": len(fs), "kinds": sorted({f.kind for f in fs})}
              for m, fs in ranked]
    rows = [{"ts": f.ts.strftime("%Y-%m-%d %H:%M:%S"), "kind": f.kind, "severity": f.severity,
             "meter_id": f.meter_id, "system_title": f.system_title, "detail": f.detail,
             "evidence": ", ".join(map(str, f.evidence_ids[:12]))
             + (" ..." if len(f.evidence_ids) > 12 else "")} for f in findings]
    return env.from_string(text).render(
        dataset=str(result.dataset), rows=result.rows, engine=result.engine,
        seconds=result.seconds, generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        critical=sum(1 for f in findings if f.severity == "critical"), findings=rows,
        kinds=kinds, meters=meters[:25], shown=min(HTML_ROWS, len(rows)),
        timeline=timeline_svg(findings), version=__version__)


def write_report(result: ScanResult, out_dir: str | Path) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"html": out / "fleet-report.html", "json": out / "findings.json",
             "csv": out / "findings.csv", "parquet": out / "findings.parquet"}
    records = [f.to_record() for f in result.findings]
    pq.write_table(pa.Table.from_pylist(records, schema=FINDINGS_SCHEMA), paths["parquet"])
    with open(paths["csv"], "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(FINDINGS_SCHEMA.names)
        for r in records:
            w.writerow([" ".join(map(str, r[c])) if isinstance(r[c], list)
                        else r[c].isoformat() if isinstance(r[c], datetime)
                        else "" if r[c] is None else r[c] for c in FINDINGS_SCHEMA.names])
    paths["json"].write_text(json.dumps(findings_json(result), indent=1), encoding="utf-8")
    paths["html"].write_text(render_html(result), encoding="utf-8")
    return paths
