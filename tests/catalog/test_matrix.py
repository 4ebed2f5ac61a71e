"""The coverage matrix reproduces the seed article's table cell for cell and adds
a column computed from the registered checks."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from metercert.catalog import load_catalog
from metercert.catalog.matrix import METERCERT_COLUMN, build_matrix
from metercert.checks import all_checks
from metercert.checks.base import CheckSpec, Severity, TargetKind, passed
from metercert.cli import main

# "Comparison: Framework Coverage by Threat Category" in
# /work/shared/seed/smart-meter-security-certification.txt, transcribed verbatim.
SEED_COLUMNS = ["DLMS/COSEM (IEC 62056)", "IEC 62351", "ENISA / CRA"]
SEED_TABLE = [
    ("Replay attacks on meter commands",
     "Covered — invocation counter, GMAC", "Partially (62351-5 sequence numbers)", "Referenced, not specified"),
    ("Man-in-the-middle on backhaul",
     "Not addressed at transport layer", "Covered — mTLS (62351-3)", "Addressed in principle"),
    ("Unauthorized command execution",
     "Covered — access rights model", "Covered — RBAC (62351-8)", "Covered (secure by default)"),
    ("Firmware integrity",
     "Partially — image authentication optional", "Not covered", "Covered — signed updates required"),
    ("Physical debug interface abuse", "Not addressed", "Not addressed", "Covered — explicit requirement"),
    ("Key lifecycle management",
     "Covered — key wrapping, GMK model", "Partially (62351-8 credential management)", "Covered — supply chain, SBoM"),
    ("Multi-tenant access isolation", "Partially — association model", "Covered — RBAC (62351-8)", "Referenced"),
    ("Incident notification", "Not addressed", "Not addressed", "Covered — NIS2, CRA Art. 14"),
]
# the seed's wording classified into the four levels
SEED_STATUS = [
    ("covered", "partial", "referenced"),
    ("not-addressed", "covered", "referenced"),
    ("covered", "covered", "covered"),
    ("partial", "not-addressed", "covered"),
    ("not-addressed", "not-addressed", "covered"),
    ("covered", "partial", "covered"),
    ("partial", "covered", "referenced"),
    ("not-addressed", "not-addressed", "covered"),
]


def _spec(check_id: str, *requirements: str, target: TargetKind = TargetKind.DLMS) -> CheckSpec:
    return CheckSpec(check_id, "t", Severity.LOW, target, tuple(requirements), lambda _t: passed("ok"))


def test_seed_table_is_reproduced_cell_for_cell():
    matrix = build_matrix(load_catalog(), {})
    rows = matrix.as_rows()
    assert rows[0] == ["Threat Category", *SEED_COLUMNS, METERCERT_COLUMN]
    assert [tuple(r[:4]) for r in rows[1:]] == SEED_TABLE
    assert [tuple(c.status for c in row.cells) for row in matrix.rows] == SEED_STATUS


def test_metercert_column_is_computed_from_checks():
    catalog = load_catalog()
    assert all(r.metercert_text == "Not tested" for r in build_matrix(catalog, {}).rows)
    checks = {
        "X-REPLAY": _spec("X-REPLAY", "DLMS:IC-REPLAY"),
        "X-TLS": _spec("X-TLS", "IEC62351-3:CIPHER-FS", target=TargetKind.TLS),
    }
    mapping = {"X-REPLAY": ("replay",), "X-TLS": ("mitm-backhaul",)}
    rows = {r.threat.id: r for r in build_matrix(catalog, checks, mapping).rows}
    assert rows["replay"].checks == ("X-REPLAY",)
    assert rows["replay"].metercert_text == "Tested — 1 check (dlms 1)"
    # a check counts only under the threats it exercises, whatever its requirements link to
    assert rows["mitm-backhaul"].checks == ("X-TLS",)
    assert rows["key-lifecycle"].checks == ()
    assert rows["debug-interface"].checks == ()


def test_replay_column_counts_only_checks_that_send_replays():
    """"Replay: 15 checks" counted TLS certificate checks; only replay senders count now."""
    rows = {r.threat.id: r for r in build_matrix(load_catalog(), all_checks()).rows}
    replay = rows["replay"].checks
    assert {"DLMS-REPLAY-01", "DLMS-IC-STALE-01", "DLMS-IC-PERSIST-01"} <= set(replay)
    assert not any(c.startswith(("TLS-", "DOSSIER-")) for c in replay)


def test_every_registered_check_has_a_threat_mapping():
    from metercert.catalog.matrix import check_threats, threats_of

    mapping = check_threats()
    known = {t.id for t in load_catalog().threats}
    assert {t for threats in mapping.values() for t in threats} <= known
    unmapped = [s.id for s in all_checks().values() if threats_of(s, mapping) is None]
    assert unmapped == []


def test_registered_dossier_checks_show_up_in_the_matrix():
    rows = {r.threat.id: r for r in build_matrix(load_catalog(), all_checks()).rows}
    assert "DOSSIER-DEBUG-01" in rows["debug-interface"].checks
    assert "DOSSIER-INCIDENT-01" in rows["incident-notification"].checks


def test_cli_matrix_writes_csv_and_html(tmp_path: Path, capsys):
    csv_path, html_path = tmp_path / "m.csv", tmp_path / "m.html"
    assert main(["catalog", "matrix", "--csv", str(csv_path), "--html", str(html_path)]) == 0
    out = capsys.readouterr().out
    assert "Physical" in out and "Framework coverage" in out
    rows = list(csv.reader(io.StringIO(csv_path.read_text())))
    assert rows[0][2:5] == SEED_COLUMNS
    assert [tuple(r[1:5]) for r in rows[1:]] == SEED_TABLE
    assert [tuple(r[5:8]) for r in rows[1:]] == SEED_STATUS
    html = html_path.read_text()
    assert html.count("<tr>") == 1 + len(SEED_TABLE)
    assert "Covered — NIS2, CRA Art. 14" in html and "DOSSIER-DEBUG-01" in html


def test_cli_show_lists_threats_and_checks(capsys):
    assert main(["catalog", "show", "EN303645:5.6-4"]) == 0
    out = capsys.readouterr().out
    assert "debug-interface" in out and "DOSSIER-DEBUG-01" in out


def test_cli_show_unknown_id_is_one_line_error(capsys):
    assert main(["catalog", "show", "DLMS:NOPE"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["metercert: error: unknown requirement id 'DLMS:NOPE'"]


def test_cli_list_filters_by_framework(capsys):
    assert main(["catalog", "list", "--framework", "IEC62351-8"]) == 0
    out = capsys.readouterr().out
    assert "RBAC-ENFORCE" in out and "CRA:I.2a" not in out
    assert main(["catalog", "list", "--framework", "NOPE"]) == 2
