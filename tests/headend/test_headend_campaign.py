"""The head-end campaign end to end, as a user runs it: ``metercert headend`` serves the
hostile reference meter on 127.0.0.1 and runs a client command once per scenario.

Clients under test: metercert's own client (must pass every check), dlms-cosem 25.1.0 and
gurux-dlms 1.0.203 (test extras, driven by the glue in tests/headend/clients/, verdicts
asserted as they are: the peers' known defects are in /work/shared/design/STANDARDS.md),
and a client written to ignore GCM tags (must fail exactly the checks tagged ``tag``).
Each campaign runs once per module; the tests read its results.json.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from metercert.checks import TargetKind, all_checks

CLIENTS = Path(__file__).parent / "clients"
SCHEMA = Path(__file__).parents[2] / "src/metercert/report/schema/results.schema.json"
HEADEND_IDS = sorted(s.id for s in all_checks().values() if s.target is TargetKind.HEADEND)
TAG_CHECKS = {s.id for s in all_checks().values()
              if s.target is TargetKind.HEADEND and "tag" in s.tags}


def metercert(*argv: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "metercert", *argv], capture_output=True,
                          text=True, timeout=timeout, check=False)


def campaign_file(tmp: Path, command: str, **client: Any) -> Path:
    path = tmp / "headend.yaml"
    body = {"client": {"command": command, "response_timeout_s": 1, **client}}
    path.write_text(json.dumps(body), encoding="utf-8")   # JSON is YAML
    return path


def run_headend(tmp: Path, *argv: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    out = tmp / "report"
    proc = metercert("headend", "--out", str(out), "--quiet", *argv)
    results_file = out / "results.json"
    assert results_file.exists(), proc.stdout + proc.stderr
    results = json.loads(results_file.read_text("utf-8"))
    jsonschema.validate(results, json.loads(SCHEMA.read_text("utf-8")))
    return proc, results


def verdicts(results: dict[str, Any]) -> dict[str, str]:
    return {c["id"]: c["verdict"] for c in results["checks"]}


def reason(results: dict[str, Any], check_id: str) -> str:
    return next(c["reason"] for c in results["checks"] if c["id"] == check_id)


def peer(name: str) -> str:
    return f"{sys.executable} {CLIENTS / name}"


@pytest.fixture(scope="module")
def own_client(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[str, Any]]:
    return run_headend(tmp_path_factory.mktemp("own"))


@pytest.fixture(scope="module")
def dlms_cosem_client(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[str, Any]]:
    pytest.importorskip("dlms_cosem")
    tmp = tmp_path_factory.mktemp("dlms-cosem")
    return run_headend(tmp, "--campaign", str(campaign_file(tmp, peer("dlms_cosem_reader.py"),
                                                            name="dlms-cosem 25.1.0")))


@pytest.fixture(scope="module")
def gurux_client(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[str, Any]]:
    pytest.importorskip("gurux_dlms")
    tmp = tmp_path_factory.mktemp("gurux")
    return run_headend(tmp, "--campaign", str(campaign_file(tmp, peer("gurux_reader.py"),
                                                            name="gurux-dlms 1.0.203")))


def test_metercert_client_passes_every_client_check(own_client: tuple[Any, dict[str, Any]]) -> None:
    proc, results = own_client
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert verdicts(results) == dict.fromkeys(HEADEND_IDS, "pass")
    assert len(HEADEND_IDS) >= 18
    assert results["run"]["targets"]["headend"].startswith("client under test: metercert client")


def test_own_client_evidence_shows_what_the_meter_did(own_client: tuple[Any, dict[str, Any]]) -> None:
    _, results = own_client
    check = next(c for c in results["checks"] if c["id"] == "HE-TAG-01")
    trace = next(e["content"] for e in check["evidence"] if e["kind"] == "apdu-trace")
    assert "forged value, one tag bit flipped" in trace
    assert "read 1 error" in next(e["content"] for e in check["evidence"]
                                  if e["label"] == "client output")
    # key material never reaches a report
    text = json.dumps(results)
    assert "kek:" not in text.lower() and "guek" not in text.lower()


def test_dlms_cosem_client_verdicts(dlms_cosem_client: tuple[Any, dict[str, Any]]) -> None:
    """dlms-cosem checks tags and counters, but moves its counter before the tag check,
    takes a plain response on a ciphered association and (as used here, like its examples)
    restarts its own counter at 0 every run; it takes no pushes and transfers no keys."""
    proc, results = dlms_cosem_client
    got = verdicts(results)
    expected = dict.fromkeys(HEADEND_IDS, "pass")
    expected.update(dict.fromkeys(["HE-IC-03", "HE-PROT-01", "HE-IC-SEND-01"], "fail"))
    expected.update(dict.fromkeys(["HE-PUSH-01", "HE-PUSH-02", "HE-KEY-01"], "inconclusive"))
    assert got == expected
    assert proc.returncode == 1


def test_dlms_cosem_counter_defect_is_found_and_named(
        dlms_cosem_client: tuple[Any, dict[str, Any]]) -> None:
    """STANDARDS.md, known defects: dlms-cosem moves its expected server counter forward
    before the tag is verified, so a forged high counter locks out genuine responses."""
    _, results = dlms_cosem_client
    text = reason(results, "HE-IC-03")
    assert "locked the client out" in text
    assert "before verifying the tag" in text and "dlms-cosem 25.1.0 defect" in text
    assert "not larger than the previous" in text   # dlms-cosem's own words on the genuine one


def test_gurux_client_verdicts(gurux_client: tuple[Any, dict[str, Any]]) -> None:
    """gurux-dlms does not verify the GCM tag and keeps no window on the server's counter:
    it takes every forged, replayed, downgraded or unprotected response; it verifies
    f(CtoS), survives malformed and oversized responses, and restarts its counter."""
    proc, results = gurux_client
    got = verdicts(results)
    expected = dict.fromkeys(HEADEND_IDS, "fail")
    expected.update(dict.fromkeys(["HE-HLS-01", "HE-ROBUST-01", "HE-ROBUST-02", "HE-AUTH-01",
                                   "HE-KEK-01"], "pass"))
    expected.update(dict.fromkeys(["HE-PUSH-01", "HE-PUSH-02", "HE-KEY-01"], "inconclusive"))
    assert got == expected
    assert proc.returncode == 1
    assert "printed read 1 value 900001" in reason(results, "HE-TAG-01")


def test_tag_ignoring_client_fails_exactly_the_tag_checks(tmp_path: Path) -> None:
    """metercert's reader with the tag check removed (clients/tag_ignoring_reader.py)."""
    proc, results = run_headend(tmp_path, "--client-cmd", peer("tag_ignoring_reader.py"),
                                "--pushes", "--key-transfer-cmd", peer("tag_ignoring_reader.py"))
    got = verdicts(results)
    assert TAG_CHECKS == {"HE-TAG-01", "HE-TAG-02", "HE-IC-03", "HE-PUSH-02"}
    assert {i for i, v in got.items() if v == "fail"} == TAG_CHECKS
    assert {i for i, v in got.items() if v != "fail"} == set(HEADEND_IDS) - TAG_CHECKS
    assert all(got[i] == "pass" for i in set(HEADEND_IDS) - TAG_CHECKS)
    assert proc.returncode == 1


def test_capture_lets_the_fleet_audit_see_the_same_counter_reuse(tmp_path: Path) -> None:
    """--capture writes the hostile meter's traffic as pcap (also into the bundle); the fleet
    audit, reading only that capture, finds the counter reuse HE-IC-SEND-01 reports for
    dlms-cosem (it restarts at 0 every run)."""
    pytest.importorskip("dlms_cosem")
    _, results = run_headend(
        tmp_path, "--campaign", str(campaign_file(tmp_path, peer("dlms_cosem_reader.py"))),
        "--capture", str(tmp_path / "cap"), "--only", "HE-IC-SEND-01")
    assert verdicts(results)["HE-IC-SEND-01"] == "fail"
    pcaps = list((tmp_path / "cap").glob("*.pcap"))
    assert len(pcaps) == 1 and (tmp_path / "report" / "bundle" / "traffic.pcap").exists()
    ingest = metercert("fleet", "ingest", str(pcaps[0]), "--out", str(tmp_path / "ds"))
    assert ingest.returncode == 0, ingest.stderr
    scan = metercert("fleet", "scan", str(tmp_path / "ds"), "--report", str(tmp_path / "fleet"))
    findings = json.loads((tmp_path / "fleet" / "findings.json").read_text("utf-8"))
    assert findings["summary"]["ic-reuse"] >= 1, scan.stdout
