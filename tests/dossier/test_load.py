"""Dossier structure errors are one line with file and line; file references
may not leave the dossier folder unless the dossier allows it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from metercert.checks.base import Verdict
from metercert.cli import main
from metercert.dossier.load import load_dossier
from metercert.errors import InputFileError

from ._support import assess, edit


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("jtag: disabled", "jtag: open-ish", "'open-ish' is not one of"),
        ("days_disclosure_to_fix: 30", "days_disclosure_to_fix: soon", "expected integer"),
        ("  retention_days: 730", "  retention_days: 730\n  colour: blue", "unknown field 'colour'"),
        ("end_date: 2041-12-31", "end_date: next year", "expected a date"),
        ("dossier_version: 1", "dossier_version: 7", "1 was expected"),
    ],
)
def test_bad_field_names_file_and_line(reference: Path, old: str, new: str, message: str):
    path = reference / "dossier.yaml"
    line = edit(path, old, new)
    if "colour" in new:
        line += 1
    with pytest.raises(InputFileError) as info:
        load_dossier(path)
    text = str(info.value)
    assert f"dossier.yaml:{line}:" in text and message in text, text


def test_yaml_syntax_error_names_the_line(reference: Path):
    path = reference / "dossier.yaml"
    line = edit(path, "  uart: disabled", "  uart: [disabled")
    with pytest.raises(InputFileError, match=r"dossier\.yaml:\d+: invalid YAML") as info:
        load_dossier(path)
    reported = int(str(info.value).split("dossier.yaml:")[1].split(":")[0])
    assert line <= reported <= line + 2


def test_reference_leaving_the_folder_is_refused(reference: Path, tmp_path: Path):
    outside = tmp_path / "elsewhere.cdx.json"
    outside.write_text((reference / "sbom.cdx.json").read_text())
    path = reference / "dossier.yaml"
    line = edit(path, "sbom: sbom.cdx.json", "sbom: ../elsewhere.cdx.json")
    with pytest.raises(InputFileError, match=rf"dossier\.yaml:{line}: file reference '\.\./elsewhere") as info:
        load_dossier(path)
    assert "allow_absolute_paths" in str(info.value)
    edit(path, "sbom: ../elsewhere.cdx.json", f"sbom: {outside}")
    with pytest.raises(InputFileError, match="leaves the dossier folder"):
        load_dossier(path)
    edit(path, "allow_absolute_paths: false", "allow_absolute_paths: true")
    assert assess(reference)["DOSSIER-SBOM-01"].verdict is Verdict.PASS


def test_missing_artifact_is_a_finding_not_an_error(reference: Path):
    (reference / "sbom.cdx.json").unlink()
    outcomes = assess(reference)
    assert outcomes["DOSSIER-SBOM-01"].verdict is Verdict.FAIL
    assert "file not found" in outcomes["DOSSIER-SBOM-01"].reason
    assert outcomes["DOSSIER-VULN-01"].verdict is Verdict.INCONCLUSIVE


def test_cli_bad_dossier_is_one_line_exit_2(reference: Path):
    path = reference / "dossier.yaml"
    line = edit(path, "jtag: disabled", "jtag: wide-open")
    proc = subprocess.run(
        [sys.executable, "-m", "metercert", "dossier", "assess", str(path)],
        check=False, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("metercert: error: "), proc.stderr
    assert f"dossier.yaml:{line}: 'wide-open' is not one of" in err[0]
    assert "Traceback" not in proc.stderr


def test_cli_missing_dossier_is_one_line(tmp_path: Path, capsys):
    assert main(["dossier", "assess", str(tmp_path / "nope.yaml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope.yaml: file not found" in err[0]


def test_malformed_advisory_export_is_an_input_error(reference: Path):
    (reference / "advisories" / "osv.json").write_text('[{"id": "X",\n  "affected": ]')
    with pytest.raises(InputFileError, match=r"osv\.json:2: invalid JSON"):
        load_dossier(reference)


@pytest.mark.parametrize("content", ["", "- just\n- a list\n"])
def test_dossier_that_is_not_a_mapping(tmp_path: Path, content: str):
    path = tmp_path / "dossier.yaml"
    path.write_text(content)
    with pytest.raises(InputFileError, match=r"dossier\.yaml:1: a dossier must be a YAML mapping"):
        load_dossier(path)
