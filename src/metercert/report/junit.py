"""JUnit XML for CI systems: a failed security check fails the pipeline like a failed test.

Mapping: one ``<testsuite>`` per target kind, one ``<testcase>`` per check;
FAIL -> ``<failure>``, INCONCLUSIVE -> ``<error>`` (the check could not decide,
which a CI gate should notice), NOT-APPLICABLE and NOT-ASSESSED -> ``<skipped>``
(with ``type`` telling them apart). The evidence text goes into the element body
so it shows up in the CI's test view. The document validates against the Jenkins
xUnit plugin's ``junit-10.xsd``, the strictest published JUnit dialect: it has no
``skipped`` attribute on ``<testsuites>``, so the total lives on the suites only.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from metercert.checks.base import TargetKind

# Characters XML 1.0 cannot carry; exception messages and traces may contain them.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml_text(text: str) -> str:
    return _NOT_XML.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def evidence_text(check: Mapping[str, Any]) -> str:
    """Evidence of a check as plain text, one block per item."""
    blocks = []
    for item in check.get("evidence", []):
        head = f"[{item.get('kind', 'text')}] {item.get('label', '')}"
        if item.get("source"):
            head += f" ({item['source']})"
        blocks.append(f"{head}\n{item.get('content', '')}")
    return "\n\n".join(blocks)


def _kind_order(kind: str) -> tuple[int, str]:
    values = [k.value for k in TargetKind]
    return (values.index(kind), kind) if kind in values else (len(values), kind)


def junit_tree(doc: Mapping[str, Any]) -> ET.ElementTree:
    """Build the JUnit document from a results.json document."""
    by_kind: dict[str, list[Mapping[str, Any]]] = {}
    for check in doc["checks"]:
        by_kind.setdefault(check["target"], []).append(check)

    run = doc["run"]
    root = ET.Element("testsuites", name="metercert")
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0, "time": 0.0}
    for kind in sorted(by_kind, key=_kind_order):
        checks = by_kind[kind]
        counts = {
            "tests": len(checks),
            "failures": sum(c["verdict"] == "fail" for c in checks),
            "errors": sum(c["verdict"] == "inconclusive" for c in checks),
            "skipped": sum(c["verdict"] in ("not-applicable", "not-assessed") for c in checks),
            "time": sum(float(c["duration_s"]) for c in checks),
        }
        suite = ET.SubElement(
            root,
            "testsuite",
            name=f"metercert.{kind}",
            tests=str(counts["tests"]),
            failures=str(counts["failures"]),
            errors=str(counts["errors"]),
            skipped=str(counts["skipped"]),
            time=f"{counts['time']:.3f}",
            timestamp=run["started_at"],
        )
        props = ET.SubElement(suite, "properties")
        target_desc = run.get("targets", {}).get(kind, run["target"] if kind == "dlms" else "")
        for name, value in (
            ("target", target_desc),
            ("meter_profile", run.get("meter_profile") or ""),
            ("tool_version", doc["tool"]["version"]),
        ):
            ET.SubElement(props, "property", name=name, value=_xml_text(str(value)))
        for check in checks:
            _testcase(suite, kind, check)
        for key in totals:
            totals[key] += counts[key]
    for key, value in totals.items():
        if key != "skipped":  # junit-10.xsd has no testsuites/@skipped
            root.set(key, f"{value:.3f}" if key == "time" else str(value))
    ET.indent(root)
    return ET.ElementTree(root)


def _testcase(suite: ET.Element, kind: str, check: Mapping[str, Any]) -> None:
    case = ET.SubElement(
        suite,
        "testcase",
        name=_xml_text(check["id"]),
        classname=f"metercert.{kind}",
        time=f"{float(check['duration_s']):.3f}",
    )
    reason = _xml_text(check["reason"])
    evidence = _xml_text(evidence_text(check))
    verdict = check["verdict"]
    if verdict == "fail":
        node = ET.SubElement(case, "failure", message=reason, type=f"severity:{check['severity']}")
        node.text = evidence or reason
    elif verdict == "inconclusive":
        node = ET.SubElement(case, "error", message=reason, type="inconclusive")
        node.text = evidence or reason
    elif verdict in ("not-applicable", "not-assessed"):
        ET.SubElement(case, "skipped", message=reason, type=verdict)
    header = (
        f"{check['title']}\nverdict: {verdict}\nseverity: {check['severity']}\n"
        f"requirements: {', '.join(check['requirements'])}\nreason: {check['reason']}"
    )
    out = ET.SubElement(case, "system-out")
    out.text = _xml_text(header + ("\n\n" + evidence_text(check) if check.get("evidence") else ""))


def write_junit(doc: Mapping[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    junit_tree(doc).write(path, encoding="utf-8", xml_declaration=True)
    return path
