"""End to end as a new user runs it: `metercert certify --no-tls` writes a bundle that
verifies, and a missing TLS target keeps IEC 62351-3 readiness at 0 %, not 100 %."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_certify_without_tls_bundles_and_does_not_claim_tls_readiness(tmp_path: Path):
    out = tmp_path / "report"
    proc = subprocess.run([sys.executable, "-m", "metercert", "certify", "--no-tls", "--out", str(out),
                           "--quiet"], capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "METERCERT_LAB": "Bench Lab 3"})
    assert proc.returncode in (0, 1, 4), proc.stderr
    doc = json.loads((out / "results.json").read_text())
    tls = [c for c in doc["checks"] if c["target"] == "tls"]
    assert tls and {c["verdict"] for c in tls} == {"not-assessed"}
    assert doc["summary"]["not-assessed"] >= len(tls) and doc["run"]["lab"] == "Bench Lab 3"
    fw = doc["gaps"]["frameworks"]["IEC62351-3"]
    assert fw["readiness_pct"] == 0.0 and fw["counts"]["not-applicable"] == 0
    assert fw["counts"]["not-assessed"] == fw["total"]
    assert all("TLS endpoint target" in t["action"] for t in fw["todo"])
    assert doc["run"]["device_identity"]  # what the reference meter said it is
    verify = subprocess.run([sys.executable, "-m", "metercert", "bundle", "verify", str(out / "bundle")],
                            capture_output=True, text=True, timeout=60, check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    identity = json.loads((out / "bundle" / "device-identity.json").read_text())
    assert identity == doc["run"]["device_identity"]
    html = (out / "bundle" / "report.html").read_text()
    assert "Bench Lab 3" in html and "NOT ASSESSED" in html
