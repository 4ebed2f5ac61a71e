"""`metercert dossier init` and `dossier assess` end to end."""

from __future__ import annotations

import json
from pathlib import Path

from metercert.cli import main
from metercert.dossier import sample_dossier


def test_init_writes_a_template_that_passes_nothing(tmp_path: Path, capsys):
    """An unedited template described metercert's reference meter and passed all 12 checks."""
    target = tmp_path / "my-meter"
    assert main(["dossier", "init", str(target)]) == 0
    text = (target / "dossier.yaml").read_text()
    assert text.startswith("# TEMPLATE") and "allow_absolute_paths" in text
    for name in ("sbom.cdx.json", "firmware/meter-fw-0.1.0.bin", "firmware/meter-fw-0.1.0.bin.sig",
                 "certs/vendor-signing.pem", "advisories/osv.json", "keys/injection-audit.jsonl",
                 "docs/eol-key-destruction.md"):
        assert (target / name).is_file(), name
    capsys.readouterr()
    assert main(["dossier", "assess", str(target / "dossier.yaml")]) == 1
    out = capsys.readouterr().out
    assert "0 passed, 0 failed, 12 inconclusive" in out and "!placeholder" in out


def test_init_refuses_to_overwrite(tmp_path: Path, capsys):
    assert main(["dossier", "init", str(tmp_path)]) == 0
    capsys.readouterr()
    assert main(["dossier", "init", str(tmp_path)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_assess_flawed_meter_exits_1_and_writes_results(tmp_path: Path, capsys):
    out = tmp_path / "results.json"
    assert main(["dossier", "assess", str(sample_dossier("flawed-meter")), "--json", str(out)]) == 1
    doc = json.loads(out.read_text())
    assert doc["schema"] == "metercert-results" and doc["schema_version"] == 1
    assert doc["summary"] == {"pass": 6, "fail": 6, "inconclusive": 0, "not-applicable": 0,
                              "not-assessed": 0}
    debug = next(c for c in doc["checks"] if c["id"] == "DOSSIER-DEBUG-01")
    assert debug["verdict"] == "fail" and "EN303645:5.6-4" in debug["requirements"]
    assert any(e["source"].startswith("dossier.yaml:") for e in debug["evidence"])
    en = doc["gaps"]["frameworks"]["EN303645"]
    assert en["requirements"]["EN303645:5.6-4"]["state"] == "failed"


def test_patch_limit_override(tmp_path: Path, capsys):
    path = str(sample_dossier("reference-meter"))
    out = tmp_path / "r.json"
    assert main(["dossier", "assess", path, "--patch-limit-days", "10", "--json", str(out)]) == 1
    patch = next(c for c in json.loads(out.read_text())["checks"] if c["id"] == "DOSSIER-PATCH-01")
    assert patch["verdict"] == "fail" and patch["reason"] == "patch window 30 days exceeds the 10-day limit"
    capsys.readouterr()
    assert main(["dossier", "assess", path, "--patch-limit-days", "0"]) == 2
    assert "--patch-limit-days must be at least 1" in capsys.readouterr().err


def test_assess_exits_1_when_a_critical_check_is_inconclusive(reference: Path, tmp_path: Path):
    """No advisory export: DOSSIER-VULN-01 (critical) cannot decide, so the gate must not open."""
    text = (reference / "dossier.yaml").read_text()
    (reference / "dossier.yaml").write_text(text.replace("advisories: advisories/osv.json\n", ""))
    out = tmp_path / "r.json"
    assert main(["dossier", "assess", str(reference), "--json", str(out)]) == 1
    doc = json.loads(out.read_text())
    vuln = next(c for c in doc["checks"] if c["id"] == "DOSSIER-VULN-01")
    assert vuln["verdict"] == "inconclusive" and doc["summary"]["fail"] == 0
