"""The framework x threat coverage matrix.

The first columns restate the seed article's assessment from ``coverage.yaml``;
the last column is computed: for each threat, the registered checks that exercise
it according to ``check-threats.yaml`` (a check counts under a threat only where
it exercises that threat, not because a requirement it cites is linked to it). So
the table shows both what the frameworks ask for and what metercert actually
tests.
"""

from __future__ import annotations

import csv
import fnmatch
import io
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, select_autoescape

from metercert.catalog.load import CATALOG_DIR_ENV, default_data_dir
from metercert.catalog.model import Catalog, CoverageCell, Threat
from metercert.dossier.yamldoc import read_yaml, validate

if TYPE_CHECKING:  # checks sit above the catalog; only their metadata shape is used here
    from metercert.checks.base import CheckSpec

METERCERT_COLUMN = "metercert (automated)"
_CHECK_THREATS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["checks"],
    "additionalProperties": False,
    "properties": {"checks": {"type": "object", "additionalProperties": {
        "type": "array", "items": {"type": "string", "minLength": 1}}}},
}


@dataclass(frozen=True)
class MatrixRow:
    threat: Threat
    cells: tuple[CoverageCell, ...]
    checks: tuple[str, ...]
    by_target: tuple[tuple[str, int], ...]

    @property
    def metercert_text(self) -> str:
        """Text of the computed column: how many checks test this threat, by target kind."""
        if not self.checks:
            return "Not tested"
        kinds = ", ".join(f"{kind} {n}" for kind, n in self.by_target)
        noun = "check" if len(self.checks) == 1 else "checks"
        return f"Tested — {len(self.checks)} {noun} ({kinds})"


@dataclass(frozen=True)
class CoverageMatrix:
    column_titles: tuple[str, ...]
    rows: tuple[MatrixRow, ...]

    def as_rows(self) -> list[list[str]]:
        """Header plus one list of cell texts per threat, as the CSV and HTML show it."""
        out = [["Threat Category", *self.column_titles, METERCERT_COLUMN]]
        for row in self.rows:
            out.append([row.threat.title, *(c.text for c in row.cells), row.metercert_text])
        return out

    def to_csv(self) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        header = ["threat_id", "threat", *self.column_titles]
        header += [f"{t} status" for t in self.column_titles]
        header += [METERCERT_COLUMN, "metercert checks"]
        writer.writerow(header)
        for row in self.rows:
            writer.writerow(
                [row.threat.id, row.threat.title]
                + [c.text for c in row.cells]
                + [c.status for c in row.cells]
                + [row.metercert_text, " ".join(row.checks)]
            )
        return buf.getvalue()

    def to_html(self) -> str:
        env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
        return env.from_string(_HTML).render(matrix=self, metercert_column=METERCERT_COLUMN)


def check_threats(data_dir: Path | None = None) -> dict[str, tuple[str, ...]]:
    """Check id or glob -> threats it exercises, from ``check-threats.yaml`` (ordered)."""
    base = Path(data_dir or os.environ.get(CATALOG_DIR_ENV) or default_data_dir())
    path = base / "check-threats.yaml"
    if not path.is_file():
        return {}
    doc = read_yaml(path)
    validate(doc, _CHECK_THREATS_SCHEMA)
    return {str(k): tuple(v) for k, v in doc.data["checks"].items()}


def threats_of(spec: CheckSpec, mapping: Mapping[str, tuple[str, ...]]) -> tuple[str, ...] | None:
    """The threats ``spec`` exercises: the first matching mapping key; None when unmapped."""
    for pattern, threats in mapping.items():
        if fnmatch.fnmatchcase(spec.id, pattern):
            return threats
    return None


def build_matrix(catalog: Catalog, checks: Mapping[str, CheckSpec],
                 mapping: Mapping[str, tuple[str, ...]] | None = None) -> CoverageMatrix:
    """Combine the seed's coverage data with the registered checks."""
    mapping = check_threats() if mapping is None else mapping
    known = {t.id for t in catalog.threats}
    rows = []
    for threat in catalog.threats:
        def exercises(spec: CheckSpec, threat_id: str = threat.id) -> bool:
            mapped = threats_of(spec, mapping)
            if mapped is None:  # unmapped: only a tag naming the threat counts
                return threat_id in spec.tags and threat_id in known
            return threat_id in mapped

        hits = sorted((spec for spec in checks.values() if exercises(spec)), key=lambda s: s.id)
        counts: dict[str, int] = {}
        for spec in hits:
            kind = spec.target.value if hasattr(spec.target, "value") else str(spec.target)
            counts[kind] = counts.get(kind, 0) + 1
        rows.append(
            MatrixRow(
                threat=threat,
                cells=tuple(catalog.coverage.cell(threat.id, c.id) for c in catalog.coverage.columns),
                checks=tuple(s.id for s in hits),
                by_target=tuple(sorted(counts.items())),
            )
        )
    return CoverageMatrix(
        column_titles=tuple(c.title for c in catalog.coverage.columns), rows=tuple(rows)
    )


_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>metercert coverage matrix</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em}
table{border-collapse:collapse}
th,td{border:1px solid #999;padding:.4em .6em;vertical-align:top;text-align:left}
.covered{background:#d7f0d2}.partial{background:#fbeec1}.referenced{background:#e6e9f5}
.not-addressed{background:#f6d5d5}.tested{background:#cfe8fc}.untested{background:#eee}
small{color:#444}
</style></head><body>
<h1>Framework coverage by threat category</h1>
<p>Framework columns restate the seed article's assessment; the last column is computed
from metercert's registered checks.</p>
<table>
<thead><tr><th>Threat Category</th>
{% for title in matrix.column_titles %}<th>{{ title }}</th>{% endfor %}
<th>{{ metercert_column }}</th></tr></thead>
<tbody>
{% for row in matrix.rows %}<tr><th>{{ row.threat.title }}</th>
{% for cell in row.cells %}<td class="{{ cell.status }}">{{ cell.text }}</td>{% endfor %}
<td class="{{ 'tested' if row.checks else 'untested' }}">{{ row.metercert_text }}
{% if row.checks %}<br><small>{{ row.checks | join(', ') }}</small>{% endif %}</td></tr>
{% endfor %}</tbody></table>
</body></html>
"""
