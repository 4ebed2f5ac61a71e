"""A role that cannot associate proves nothing: the RBAC checks that need it are
INCONCLUSIVE (never PASS), and the run does not exit 0."""

from __future__ import annotations

import json
import subprocess
import sys

import yaml

from metercert.lab.power import MeterProcess


def test_a_role_that_cannot_associate_leaves_its_rbac_checks_without_a_verdict(tmp_path):
    meter = MeterProcess(tmp_path / "state", profile="operator-can-update-firmware", port=0)
    meter.start()
    try:
        keys = yaml.safe_load(meter.keys_out.read_text())
        entry = keys["meters"][0] if "meters" in keys else keys
        for role in entry["roles"]:
            if role["role"] == "OPERATOR":
                role["guek"] = "00" * 16        # the key file is wrong for this role
        broken = meter.keys_out.parent / "broken-keys.yaml"   # beside the PEMs it names
        broken.write_text(yaml.safe_dump(keys))
        broken.chmod(0o600)
        out = tmp_path / "out"
        proc = subprocess.run(
            [sys.executable, "-m", "metercert", "test", f"tcp://{meter.host}:{meter.port}",
             "--keys", str(broken), "--out", str(out), "--quiet", "--only", "DLMS-RBAC-*"],
            capture_output=True, text=True, timeout=180, check=False)
    finally:
        meter.stop()
    verdicts = {c["id"]: (c["verdict"], c["reason"])
                for c in json.loads((out / "results.json").read_text())["checks"]}
    # the flaw (OPERATOR may activate firmware) cannot be seen without OPERATOR: no PASS
    for check_id in ("DLMS-RBAC-SECADM-01", "DLMS-RBAC-CONTROL-01", "DLMS-RBAC-ENFORCE-01"):
        verdict, reason = verdicts[check_id]
        assert verdict == "inconclusive", (check_id, verdicts[check_id])
        assert "OPERATOR" in reason
    # VIEWER and SECAUD associated: what they show still counts
    assert verdicts["DLMS-RBAC-READONLY-01"][0] == "pass"
    assert proc.returncode == 4, proc.stdout[-2000:]
