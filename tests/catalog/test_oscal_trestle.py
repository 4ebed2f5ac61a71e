"""The OSCAL exports as a third-party tool reads them: compliance-trestle (IBM).

trestle cannot live in the main environment (it needs a newer ``cryptography`` than sslyze
allows), so ./scripts/test installs it once into ``.cache/trestle-venv`` and these tests call
that virtualenv's ``trestle`` CLI. What trestle checks and what it does not:

- ``trestle import`` and ``trestle validate -a`` parse each file into trestle's OSCAL models
  (schema level) and run its duplicate-uuid and role-reference validators;
- ``trestle validate`` does *not* follow an assessment plan's or results' control and objective
  references into a catalog, so the references are checked through trestle's profile resolver:
  a profile that imports the catalog and selects every control the plan and the results name is
  resolved with ``trestle author profile-resolve``, which refuses a control id the catalog lacks;
  each finding's objective must then be a part of trestle's resolved catalog. The own resolver
  ``unresolved_references`` (tests/catalog/test_oscal.py) stays the check of ``import-ap`` and
  ``import-ssp``, which trestle does not follow either.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from metercert.cli import main
from metercert.cli.dossier import sample_dossier

REPO = Path(__file__).resolve().parents[2]
TRESTLE = REPO / ".cache" / "trestle-venv" / "bin" / "trestle"
CATALOG_NAME = "metercert"


def _trestle(workspace: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(TRESTLE), *args],
        cwd=workspace,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def trestle_ok() -> None:
    """Fail (never skip) when the virtualenv is missing: the reference check would be silent."""
    if not TRESTLE.exists():
        pytest.fail(
            f"compliance-trestle is not installed at {TRESTLE}: run ./scripts/test once "
            "(it creates .cache/trestle-venv; needs network the first time)"
        )
    version = subprocess.run(
        [str(TRESTLE), "version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert version.returncode == 0 and "Trestle version" in version.stdout, version.stderr


@pytest.fixture(scope="module")
def certify_oscal(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Catalog, plan and results of a real `metercert certify --no-tls` run (its bundle):
    the reference meter on a loopback port, DLMS and dossier checks."""
    out = tmp_path_factory.mktemp("certify") / "report"
    done = subprocess.run(
        [sys.executable, "-m", "metercert", "certify", "--no-tls", "--out", str(out), "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode in (0, 1), done.stdout[-2000:] + done.stderr[-2000:]
    bundle = out / "bundle"
    return {
        "catalog": bundle / "oscal-catalog.json",
        "plan": bundle / "assessment-plan.json",
        "results": bundle / "assessment-results.json",
    }


@pytest.fixture(params=["report", "certify"])
def any_oscal(request: pytest.FixtureRequest) -> dict[str, Path]:
    """The OSCAL of a dossier assessment (report --oscal) and of a certify run."""
    return request.getfixturevalue("oscal_files" if request.param == "report" else "certify_oscal")


@pytest.fixture(scope="module")
def oscal_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Catalog, plan and results exactly as `metercert report --oscal` writes them."""
    tmp = tmp_path_factory.mktemp("oscal")
    results = tmp / "results.json"
    dossier = str(sample_dossier("flawed-meter"))
    assert main(["dossier", "assess", dossier, "--json", str(results)]) != 0  # flawed: fails
    assert main(["report", str(results), "--out", str(tmp / "out"), "--oscal", "-q"]) == 0
    out = tmp / "out"
    return {
        "catalog": out / "oscal-catalog.json",
        "plan": out / "assessment-plan.json",
        "results": out / "assessment-results.json",
    }


def _workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    done = _trestle(ws, "init")
    assert done.returncode == 0, done.stdout + done.stderr
    return ws


def _import(ws: Path, path: Path, name: str) -> subprocess.CompletedProcess[str]:
    return _trestle(ws, "import", "-f", str(path), "-o", name)


def _selected_controls(plan: dict[str, Any], results: dict[str, Any]) -> list[str]:
    """Every control id the plan and the results name (their reviewed-controls)."""
    selections = list(plan["assessment-plan"]["reviewed-controls"]["control-selections"])
    for result in results["assessment-results"]["results"]:
        selections += result["reviewed-controls"]["control-selections"]
    ids = [c["control-id"] for s in selections for c in s.get("include-controls", [])]
    return sorted(set(ids))


def _profile(control_ids: list[str]) -> dict[str, Any]:
    return {
        "profile": {
            "uuid": "5b0c8b8e-6f3b-4d8e-9a53-0d9c1f1c2a01",
            "metadata": {
                "title": "controls named by the metercert assessment plan and results",
                "last-modified": "2026-01-01T00:00:00+00:00",
                "version": "1",
                "oscal-version": "1.2.1",
            },
            "imports": [
                {
                    "href": f"trestle://catalogs/{CATALOG_NAME}/catalog.json",
                    "include-controls": [{"with-ids": control_ids}],
                }
            ],
        }
    }


def _resolve(ws: Path, tmp_path: Path, plan: dict, results: dict) -> tuple[int, str, set[str]]:
    """Resolve the plan's and results' controls against the imported catalog with trestle.

    Returns trestle's exit code, its output and the part ids of the resolved catalog.
    """
    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps(_profile(_selected_controls(plan, results))))
    done = _import(ws, profile, "selected")
    assert done.returncode == 0, done.stdout + done.stderr
    done = _trestle(ws, "author", "profile-resolve", "-n", "selected", "-o", "resolved")
    resolved = ws / "catalogs" / "resolved" / "catalog.json"
    parts: set[str] = set()
    if done.returncode == 0 and resolved.exists():
        doc = json.loads(resolved.read_text())["catalog"]
        controls = [c for g in doc.get("groups", []) for c in g.get("controls", [])]
        controls += doc.get("controls", [])
        parts = {p["id"] for c in controls for p in c.get("parts", [])}
    return done.returncode, done.stdout + done.stderr, parts


def _finding_targets(results: dict[str, Any]) -> set[str]:
    return {
        f["target"]["target-id"]
        for r in results["assessment-results"]["results"]
        for f in r.get("findings", [])
    }


def test_trestle_imports_and_validates_every_export(trestle_ok, any_oscal, tmp_path: Path):
    oscal_files = any_oscal
    ws = _workspace(tmp_path)
    for name, path in (
        ("metercert", oscal_files["catalog"]),
        ("plan", oscal_files["plan"]),
        ("results", oscal_files["results"]),
    ):
        done = _import(ws, path, name)
        assert done.returncode == 0, f"trestle import {name}: {done.stdout}{done.stderr}"
    done = _trestle(ws, "validate", "-a")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("VALID: Model") == 3, done.stdout
    assert "INVALID" not in done.stdout


def test_trestle_refuses_a_schema_invalid_results_file(trestle_ok, oscal_files, tmp_path: Path):
    """Shows the import/validate above can fail: a finding without its required target."""
    ws = _workspace(tmp_path)
    results = json.loads(oscal_files["results"].read_text())
    del results["assessment-results"]["results"][0]["findings"][0]["target"]
    broken = tmp_path / "broken-results.json"
    broken.write_text(json.dumps(results))
    done = _import(ws, broken, "results")
    assert done.returncode != 0, done.stdout + done.stderr


def test_every_control_and_objective_resolves_in_trestle(trestle_ok, any_oscal, tmp_path: Path):
    oscal_files = any_oscal
    ws = _workspace(tmp_path)
    assert _import(ws, oscal_files["catalog"], CATALOG_NAME).returncode == 0
    plan = json.loads(oscal_files["plan"].read_text())
    results = json.loads(oscal_files["results"].read_text())
    assert _selected_controls(plan, results)
    code, output, parts = _resolve(ws, tmp_path, plan, results)
    assert code == 0, output
    targets = _finding_targets(results)
    assert targets and targets <= parts, sorted(targets - parts)


def test_trestle_refuses_a_control_the_catalog_lacks(trestle_ok, oscal_files, tmp_path: Path):
    ws = _workspace(tmp_path)
    assert _import(ws, oscal_files["catalog"], CATALOG_NAME).returncode == 0
    plan = json.loads(oscal_files["plan"].read_text())
    results = json.loads(oscal_files["results"].read_text())
    broken = copy.deepcopy(plan)
    selection = broken["assessment-plan"]["reviewed-controls"]["control-selections"][0]
    selection["include-controls"][0]["control-id"] = "cra-nope"
    code, output, _ = _resolve(ws, tmp_path, broken, results)
    assert code != 0
    assert "cra-nope" in output


def test_a_dangling_objective_is_not_in_trestles_resolved_catalog(
    trestle_ok, oscal_files, tmp_path: Path
):
    ws = _workspace(tmp_path)
    assert _import(ws, oscal_files["catalog"], CATALOG_NAME).returncode == 0
    plan = json.loads(oscal_files["plan"].read_text())
    results = json.loads(oscal_files["results"].read_text())
    broken = copy.deepcopy(results)
    broken["assessment-results"]["results"][0]["findings"][0]["target"]["target-id"] = (
        "cra-nope_obj"
    )
    code, output, parts = _resolve(ws, tmp_path, plan, broken)
    assert code == 0, output
    assert "cra-nope_obj" in _finding_targets(broken) - parts
