"""`metercert fleet ...` end to end: exit codes, outputs, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from metercert.cli import main


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "metercert", "fleet", *args],
                          capture_output=True, text=True, timeout=120, check=False)


def one_line_error(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("metercert: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for w in words:
        assert w in lines[0]


def test_simulate_scan_report_and_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, rep = tmp_path / "d", tmp_path / "rep"
    assert main(["fleet", "simulate", "--meters", "60", "--days", "2", "--out", str(data),
                 "--inject", "ic-reuse=1", "--inject", "ic-gap=2", "--seed", "5"]) == 0
    truth = json.loads((data / "ground-truth.json").read_text())
    assert truth["counts"] == {"ic-reuse": 1, "ic-gap": 2}
    assert main(["fleet", "scan", str(data), "--report", str(rep)]) == 1  # critical found
    found = json.loads((rep / "findings.json").read_text())
    assert found["summary"]["ic-reuse"] == 1 and found["summary"]["ic-gap"] == 2
    assert pq.read_table(rep / "findings.parquet").num_rows == 3
    assert (rep / "findings.csv").read_text().count("\n") == 4
    html = (rep / "fleet-report.html").read_text()
    assert "<svg" in html and "ic-reuse" in html and "<script" not in html
    assert "http" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")

    clean = tmp_path / "clean"
    assert main(["fleet", "simulate", "--meters", "20", "--days", "1", "--out", str(clean),
                 "--inject", "ic-gap=1"]) == 0
    assert main(["fleet", "scan", str(clean)]) == 0  # findings, none critical


def test_ingest_then_scan_a_capture(tmp_path: Path) -> None:
    proc = run("simulate", "--meters", "4", "--days", "1", "--out", str(tmp_path / "sim"),
               "--pcap", str(tmp_path / "s.pcap"))
    assert proc.returncode == 0, proc.stderr
    proc = run("ingest", str(tmp_path / "s.pcap"), "--out", str(tmp_path / "d"),
               "--keys", str(tmp_path / "s.pcap.keys.yaml"))
    assert proc.returncode == 0, proc.stderr
    assert "40 APDU records" in proc.stdout
    keys = (tmp_path / "s.pcap.keys.yaml").read_text()
    guek = next(ln.split(":")[1].strip() for ln in keys.splitlines() if "guek" in ln)
    assert guek not in proc.stdout + proc.stderr  # secrets never printed
    proc = run("scan", str(tmp_path / "d"))
    assert proc.returncode == 1 and "ic-reuse" in proc.stdout


def test_head_end_csv_log_with_mapping(tmp_path: Path) -> None:
    log = tmp_path / "headend.csv"
    log.write_text(
        "when,serial,dir,title,secctl,fc,hash\n"
        f"2026-02-01T10:00:00Z,MTR1,REQ,48454E4400000001,0x30,7,{'11' * 32}\n"
        f"2026-02-01T10:00:05Z,MTR1,REQ,48454E4400000001,0x30,7,{'22' * 32}\n"
        f"2026-02-02T10:00:00Z,MTR1,RSP,4D4D4D0000000001,0x30,9,{'33' * 32}\n")
    mapping = tmp_path / "map.yaml"
    mapping.write_text("columns:\n  ts: when\n  meter_id: serial\n  direction: dir\n"
                       "  system_title: title\n  sc: secctl\n  ic: fc\n  ct_sha256: hash\n"
                       "values:\n  direction: {REQ: c2s, RSP: s2c}\n")
    out = tmp_path / "d"
    assert main(["fleet", "ingest", str(log), "--out", str(out), "--mapping", str(mapping)]) == 0
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["day=2026-02-01", "day=2026-02-02"]
    assert main(["fleet", "scan", str(out), "--report", str(tmp_path / "r")]) == 1
    found = json.loads((tmp_path / "r" / "findings.json").read_text())["findings"]
    assert [(f["kind"], f["meter_id"], f["value"]) for f in found] == [("ic-reuse", "MTR1", 7)]


@pytest.mark.parametrize("setup, args, words", [
    (None, ["ingest", "{tmp}/missing.pcap", "--out", "{tmp}/o"], ["missing.pcap", "no such file"]),
    ("notpcap", ["ingest", "{tmp}/junk.pcap", "--out", "{tmp}/o"], ["not a pcap"]),
    ("badyaml", ["ingest", "{tmp}/log.csv", "--out", "{tmp}/o", "--mapping", "{tmp}/m.yaml"],
     ["m.yaml", "line 3"]),
    ("badcol", ["ingest", "{tmp}/log.csv", "--out", "{tmp}/o", "--mapping", "{tmp}/m.yaml"],
     ["unknown schema column", "colour"]),
    ("badvalue", ["ingest", "{tmp}/log.csv", "--out", "{tmp}/o", "--map", "ts=t",
                  "--map", "meter_id=m", "--map", "direction=d", "--map", "ic=ic"],
     ["line 2", "'ic'"]),
    (None, ["scan", "{tmp}"], ["no day=YYYY-MM-DD"]),
    (None, ["scan", "{tmp}/nowhere"], ["no such directory"]),
    ("sim", ["scan", "{tmp}/sim", "--memory-limit", "lots"], ["--memory-limit"]),
    ("notpcap", ["ingest", "{tmp}/junk.pcap", "--out", "{tmp}/o", "--keys", "{tmp}/k.yaml"],
     ["k.yaml"]),
])
def test_bad_input_is_one_line(tmp_path: Path, setup: str | None, args: list[str],
                               words: list[str]) -> None:
    if setup == "notpcap":
        (tmp_path / "junk.pcap").write_text("hello, I am text\n")
    if setup in ("badyaml", "badcol", "badvalue"):
        (tmp_path / "log.csv").write_text("t,m,d,ic\n2026-01-01T00:00:00Z,M1,c2s,seven\n")
    if setup == "badyaml":
        (tmp_path / "m.yaml").write_text("columns:\n  ts: when\n\tmeter_id: m\n")
    if setup == "badcol":
        (tmp_path / "m.yaml").write_text("columns:\n  colour: t\n")
    if setup == "sim":
        main(["fleet", "simulate", "--meters", "2", "--days", "1", "--out", str(tmp_path / "sim")])
    proc = run(*(a.replace("{tmp}", str(tmp_path)) for a in args))
    one_line_error(proc, *words)


def test_parquet_log_with_schema_column_names(tmp_path: Path) -> None:
    import pyarrow as pa

    log = tmp_path / "export.parquet"
    pq.write_table(pa.table({
        "ts": ["2026-02-01T10:00:00+00:00", "2026-02-01T10:01:00+00:00"],
        "meter_id": ["MTR9", "MTR9"], "direction": ["s2c", "s2c"],
        "system_title": ["4D4D4D0000000009"] * 2, "sc": [0x30, 0x30], "ic": [500, 20],
        "extra_column": ["ignored", "ignored"]}), log)
    out = tmp_path / "d"
    assert main(["fleet", "ingest", str(log), "--out", str(out)]) == 0
    assert main(["fleet", "scan", str(out), "--report", str(tmp_path / "r")]) == 0
    found = json.loads((tmp_path / "r" / "findings.json").read_text())["findings"]
    assert [(f["kind"], f["value"], f["ref_value"]) for f in found] == [("ic-regression", 20, 500)]
