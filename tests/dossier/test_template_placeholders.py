"""An unedited `metercert dossier init` template passes no dossier check (issue 14, item 8).

The template copies metercert's reference meter, which passes every check; each product
field of the copy is tagged ``!placeholder`` and a check reading a marked field is
INCONCLUSIVE naming it, until the user replaces the value and removes the mark.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from metercert.checks.base import Verdict
from metercert.checks.dossier import PLACEHOLDER_REASON, dossier_checks
from metercert.cli import main
from metercert.dossier import sample_dossier
from metercert.dossier.load import load_dossier
from metercert.dossier.yamldoc import read_yaml
from metercert.errors import InputFileError

from ._support import DOSSIER_CHECKS, assess, edit

#: The fields each check reads besides ``meter`` (what its reason must name).
READS = {
    "DOSSIER-SBOM-01": {"sbom"},
    "DOSSIER-VULN-01": {"sbom", "advisories", "advisories_retrieved", "advisories_max_age_days"},
    "DOSSIER-FW-01": {"firmware", "firmware_trust_anchor", "sbom"},
    "DOSSIER-DEBUG-01": {"debug_interfaces"},
    "DOSSIER-PASSWD-01": {"credentials"},
    "DOSSIER-PATCH-01": {"patch_policy"},
    "DOSSIER-SUPPORT-01": {"support_period"},
    "DOSSIER-CVD-01": {"cvd"},
    "DOSSIER-INCIDENT-01": {"incident_notification"},
    "DOSSIER-KEYAUDIT-01": {"key_injection"},
    "DOSSIER-EOL-01": {"end_of_life"},
    "DOSSIER-LOG-01": {"security_logging"},
}


@pytest.fixture()
def template(tmp_path: Path, capsys) -> Path:
    folder = tmp_path / "my-meter"
    assert main(["dossier", "init", str(folder)]) == 0
    capsys.readouterr()
    return folder


def _unmark(folder: Path, *fields: str) -> None:
    for field in fields:
        text = (folder / "dossier.yaml").read_text()
        old = f"\n{field}: !placeholder"
        assert old in text, field
        (folder / "dossier.yaml").write_text(text.replace(old, f"\n{field}:", 1))


def _named(reason: str) -> set[str]:
    assert reason.startswith(PLACEHOLDER_REASON), reason
    return {p.strip() for p in reason[len(PLACEHOLDER_REASON) :].split(",")}


def test_unedited_template_passes_nothing_and_exits_non_zero(template: Path, tmp_path, capsys):
    out = tmp_path / "results.json"
    assert main(["dossier", "assess", str(template), "--json", str(out)]) == 1
    printed = capsys.readouterr().out
    assert "12 check(s) not judged" in printed and "!placeholder" in printed
    doc = json.loads(out.read_text())
    assert doc["summary"]["pass"] == 0 and doc["summary"]["inconclusive"] == 12
    assert {c["id"] for c in doc["checks"]} == set(DOSSIER_CHECKS)
    for entry in doc["checks"]:
        assert entry["verdict"] == "inconclusive", entry["id"]
        assert _named(entry["reason"]) == {"meter"} | READS[entry["id"]], entry["id"]
        assert any(e["label"] == "template placeholder" for e in entry["evidence"])
    assert any("placeholder" in note for note in doc["run"]["notes"])


def test_every_product_field_of_the_template_is_marked(template: Path):
    """A field added to the reference sample must not slip into the template unmarked."""
    sample = read_yaml(sample_dossier("reference-meter") / "dossier.yaml").data
    product = set(sample) - {"dossier_version", "allow_absolute_paths"}
    assert set(load_dossier(template).placeholders) == product
    assert load_dossier(sample_dossier("reference-meter")).placeholders == ()


def test_each_check_is_guarded_whoever_runs_it(template: Path):
    """The campaign runner calls spec.func itself (certify --dossier), not run_all."""
    dossier = load_dossier(template)
    specs = dossier_checks()
    assert {s.id for s in specs} == set(DOSSIER_CHECKS)
    for spec in specs:
        assert set(spec.func.reads) == {"meter"} | READS[spec.id], spec.id
        assert spec.func(dossier).verdict is Verdict.INCONCLUSIVE, spec.id


def test_campaign_run_on_the_template_passes_nothing(template: Path):
    """The path of `metercert test --dossier` and `certify`: the campaign runner."""
    from metercert.campaign import run_campaign
    from metercert.checks.base import TargetKind

    run = run_campaign({TargetKind.DOSSIER: load_dossier(template)}, dossier_checks())
    assert {r.spec.id for r in run.results} == set(DOSSIER_CHECKS)
    for result in run.results:
        assert result.outcome.verdict is Verdict.INCONCLUSIVE, result.spec.id
        assert "meter" in _named(result.outcome.reason)
    assert run.exit_code != 0


def test_removing_a_mark_lets_its_check_judge_the_value(template: Path):
    _unmark(template, "cvd")
    outcomes = assess(template)
    assert _named(outcomes["DOSSIER-CVD-01"].reason) == {"meter"}  # identity still the template's
    _unmark(template, "meter")
    outcomes = assess(template)
    assert outcomes["DOSSIER-CVD-01"].verdict is Verdict.PASS
    assert _named(outcomes["DOSSIER-SUPPORT-01"].reason) == {"support_period"}
    assert [i for i, o in outcomes.items() if o.verdict is Verdict.PASS] == ["DOSSIER-CVD-01"]


def test_a_value_edited_but_still_marked_is_not_judged(template: Path):
    _unmark(template, "meter")
    edit(template / "dossier.yaml", "end_date: 2041-12-31", "end_date: 2026-12-30")
    outcome = assess(template)["DOSSIER-SUPPORT-01"]
    assert outcome.verdict is Verdict.INCONCLUSIVE
    assert _named(outcome.reason) == {"support_period"}
    _unmark(template, "support_period")
    assert assess(template)["DOSSIER-SUPPORT-01"].verdict is Verdict.FAIL  # 2026-12-30: too short


def test_a_nested_placeholder_holds_only_the_checks_reading_it(reference: Path):
    line = edit(
        reference / "dossier.yaml",
        "    signature: firmware/",
        "    signature: !placeholder firmware/",
    )
    outcomes = assess(reference)
    fw = outcomes["DOSSIER-FW-01"]
    assert fw.verdict is Verdict.INCONCLUSIVE
    assert _named(fw.reason) == {"firmware[0].signature"}
    assert any(f"dossier.yaml:{line} firmware[0].signature" in e.source for e in fw.evidence)
    assert all(o.verdict is Verdict.PASS for i, o in outcomes.items() if i != "DOSSIER-FW-01")


def test_the_mark_is_an_error_outside_a_dossier(tmp_path: Path):
    path = tmp_path / "other.yaml"
    path.write_text("title: !placeholder x\n")
    with pytest.raises(InputFileError, match=r"other\.yaml:1: invalid YAML"):
        read_yaml(path)
    assert read_yaml(path, placeholders=True).placeholders == ("title",)


def test_built_in_samples_are_unaffected():
    assert all(
        o.verdict is Verdict.PASS for o in assess(sample_dossier("reference-meter")).values()
    )
    flawed = assess(sample_dossier("flawed-meter"))
    assert not any(o.reason.startswith(PLACEHOLDER_REASON) for o in flawed.values())
