"""JUnit XML: one suite per target kind, verdicts mapped to failure / error / skipped."""

from __future__ import annotations

from pathlib import Path

import junitparser
from junitparser import Error, Failure, JUnitXml, Skipped

from metercert.campaign import CampaignRun
from metercert.report import write_reports


def test_junit_parses_with_the_right_counts(run: CampaignRun, tmp_path: Path) -> None:
    path = write_reports(run, tmp_path, formats=["junit"])["junit"]
    xml = JUnitXml.fromfile(str(path))
    suites = {s.name: s for s in xml}
    assert list(suites) == ["metercert.dlms", "metercert.tls", "metercert.dossier"]
    dlms = suites["metercert.dlms"]
    assert (dlms.tests, dlms.failures, dlms.errors, dlms.skipped) == (4, 1, 2, 0)
    assert (suites["metercert.tls"].tests, suites["metercert.tls"].skipped) == (1, 1)
    assert (suites["metercert.dossier"].tests, suites["metercert.dossier"].failures) == (1, 0)

    cases = {case.name: case for suite in xml for case in suite}
    assert len(cases) == 6
    (failure,) = cases["dlms.ic-replay"].result
    assert isinstance(failure, Failure)
    assert failure.message == "meter accepted a replayed invocation counter 0x01234567"
    assert "C8 1E 30 01234567" in (failure.text or "")
    assert isinstance(cases["dlms.ic-persist"].result[0], Error)
    assert isinstance(cases["tls.version"].result[0], Skipped)
    assert cases["dlms.suite-negotiation"].is_passed
    assert cases["dlms.ic-replay"].classname == "metercert.dlms"


def test_control_characters_do_not_break_the_xml(run: CampaignRun, tmp_path: Path) -> None:
    path = write_reports(run, tmp_path, formats=["junit"])["junit"]
    xml = JUnitXml.fromfile(str(path))  # would raise on \x01 in the evidence
    case = next(c for s in xml for c in s if c.name == "dlms.weird-output")
    assert "\\x01" in (case.result[0].text or "")
    assert junitparser.__name__ == "junitparser"


XSD = Path(__file__).parent / "schemas" / "junit-10.xsd"  # Jenkins xUnit plugin, see SOURCES.md


def test_junit_validates_against_jenkins_xunit_junit10_xsd(run: CampaignRun, tmp_path: Path) -> None:
    import xmlschema

    schema = xmlschema.XMLSchema(str(XSD))
    path = write_reports(run, tmp_path, formats=["junit"])["junit"]
    errors = [str(e.reason) for e in schema.iter_errors(str(path))]
    assert errors == []
    text = path.read_text()
    # the attribute the schema refuses on the root; the skipped totals stay on each suite
    assert '<testsuites name="metercert"' in text and 'skipped="1"' in text
    root_tag = text[text.index("<testsuites"): text.index(">", text.index("<testsuites"))]
    assert "skipped=" not in root_tag


def test_junit_schema_check_can_fail(tmp_path: Path) -> None:
    import xmlschema

    bad = tmp_path / "bad.xml"
    bad.write_text('<testsuites skipped="1"><testsuite name="x" tests="1" failures="0" errors="0"/>'
                   "</testsuites>")
    assert not xmlschema.XMLSchema(str(XSD)).is_valid(str(bad))


def test_not_assessed_is_skipped_with_its_own_type(run: CampaignRun, tmp_path: Path) -> None:
    path = write_reports(run, tmp_path, formats=["junit"])["junit"]
    case = next(c for s in JUnitXml.fromfile(str(path)) for c in s if c.name == "tls.version")
    (skipped,) = case.result
    assert isinstance(skipped, Skipped) and skipped.type == "not-assessed"
