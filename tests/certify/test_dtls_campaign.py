"""The DLMS campaign against the reference meter serving the wrapper inside mutual DTLS 1.2
(``meter serve --udp --tls``): the same verdicts as over plain UDP, ``metercert test
dtls://``, ``tls-audit udp://`` against that listener, and bad input in one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from metercert.campaign.runner import run_campaign
from metercert.checks import all_checks
from metercert.checks.base import TargetKind
from metercert.client.target import DlmsTarget
from metercert.lab.power import BuiltinPowerController, MeterProcess
from metercert.security import load_keyset
from metercert.tlsprobe import pki
from metercert.transport import dtls

pytestmark = pytest.mark.timeout(300)


class Pki:
    def __init__(self, root: Path) -> None:
        self.paths = pki.write_pki(root)
        ca = pki.Issued(x509.load_pem_x509_certificate(self.paths.ca_cert.read_bytes()),
                        serialization.load_pem_private_key(self.paths.ca_key.read_bytes(),
                                                           None))  # type: ignore[arg-type]
        revoked = pki.issue("head-end-revoked", "client", issuer=ca)
        self.revoked = pki.write_issued(root, "revoked", revoked)
        self.expired = pki.write_issued(root, "expired",
                                        pki.expired("head-end-expired", ca, role="client"))
        self.crl = root / "revoking.crl"
        self.crl.write_bytes(pki.crl_revoking(ca, [revoked.certificate]).public_bytes(
            serialization.Encoding.PEM))

    def serve_args(self, *, crl: bool = True) -> tuple[str, ...]:
        p = self.paths
        return ("--udp", "--tls", "--cert", str(p.meter_cert), "--key", str(p.meter_key),
                "--ca", str(p.ca_cert), *(("--crl", str(self.crl)) if crl else ()))

    def client_args(self) -> list[str]:
        p = self.paths
        return ["--client-cert", str(p.headend_cert), "--client-key", str(p.headend_key),
                "--ca", str(p.ca_cert)]


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("dtls-pki"))


def _verdicts(folder: Path, profile: str, bench: Pki | None) -> dict[str, str]:
    """Every DLMS check against the meter, over DTLS when ``bench`` is given, else UDP."""
    extra = bench.serve_args() if bench is not None else ("--udp",)
    meter = MeterProcess(folder / profile, profile=profile, port=0, extra_args=extra)
    host, port = meter.start()
    ctx = None
    if bench is not None:
        p = bench.paths
        ctx = dtls.client_context(p.ca_cert, p.headend_cert, p.headend_key)
    try:
        target = DlmsTarget(host, port, load_keyset(meter.keys_out), transport="udp", ssl=ctx,
                            power=BuiltinPowerController(meter))
        checks = [c for c in all_checks().values() if c.target is TargetKind.DLMS]
        run = run_campaign({TargetKind.DLMS: target}, checks, progress=False,
                           meter_profile=profile)
    finally:
        meter.stop()
    if bench is not None:  # every connection went through DTLS: plain datagrams were refused
        log = meter.log_path.read_text(encoding="utf-8", errors="replace")
        assert "Traceback" not in log, log[-2000:]
    return {r.spec.id: r.verdict.value for r in run.results}


@pytest.mark.parametrize("profile", ["conformant", "no-replay-check"])
def test_the_campaign_over_dtls_gives_the_udp_verdicts(tmp_path: Path, bench: Pki,
                                                       profile: str) -> None:
    over_dtls = _verdicts(tmp_path / "dtls", profile, bench)
    over_udp = _verdicts(tmp_path / "udp", profile, None)
    assert over_dtls == over_udp
    fails = {k for k, v in over_dtls.items() if v == "fail"}
    if profile == "conformant":
        assert len(over_dtls) >= 20 and fails == set()
        assert {k for k, v in over_dtls.items() if v == "pass"} >= {
            "DLMS-REPLAY-01", "DLMS-IC-PERSIST-01", "DLMS-ROBUST-01", "DLMS-TAMPER-01"}
    else:  # the flaw shows through DTLS as it does without it
        assert fails == {"DLMS-REPLAY-01", "DLMS-IC-STALE-01", "DLMS-IC-PERSIST-01"}


def _metercert(*argv: str, cwd: Path | None = None,
               timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "metercert", *argv], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd, check=False)


def test_metercert_test_takes_a_dtls_target(tmp_path: Path, bench: Pki) -> None:
    meter = MeterProcess(tmp_path / "m", profile="default-lls-password", port=0,
                         extra_args=bench.serve_args())
    host, port = meter.start()
    try:
        out = tmp_path / "out"
        proc = _metercert("test", f"dtls://{host}:{port}", "--keys", str(meter.keys_out),
                          *bench.client_args(), "--out", str(out), "--quiet",
                          "--only", "DLMS-AUTH-DEFAULT-01", "--only", "DLMS-REPLAY-01")
        # a plain UDP client gets nothing from a DTLS meter: one line, exit 2
        plain = _metercert("test", f"udp://{host}:{port}", "--keys", str(meter.keys_out),
                           "--out", str(tmp_path / "plain"), "--quiet", "--only",
                           "DLMS-REPLAY-01")
    finally:
        meter.stop()
    assert proc.returncode == 1, proc.stderr  # the factory password works: a failure
    results = json.loads((out / "results.json").read_text())
    assert {c["id"]: c["verdict"] for c in results["checks"]} == {
        "DLMS-AUTH-DEFAULT-01": "fail", "DLMS-REPLAY-01": "pass"}
    assert f"dtls://{host}:{port}" in results["run"]["target"]
    assert plain.returncode == 2 and len(plain.stderr.strip().splitlines()) == 1, plain.stderr
    assert "no DLMS answer" in plain.stderr


def _audit(host: str, port: int, bench: Pki) -> tuple[int, dict[str, dict]]:
    proc = _metercert("tls-audit", f"udp://{host}:{port}", *bench.client_args(),
                      "--expired-client", *map(str, bench.expired),
                      "--revoked-client", *map(str, bench.revoked), "--json", timeout=240)
    assert proc.stdout, proc.stderr
    return proc.returncode, {c["id"]: c for c in json.loads(proc.stdout)["checks"]}


def test_tls_audit_of_the_meter_dtls_listener(tmp_path: Path, bench: Pki) -> None:
    """With the CRL the meter refuses the revoked and the expired head-end certificate;
    without it (the flaw) the revoked one gets in and TLS-CLIENTVAL-01 fails."""
    meter = MeterProcess(tmp_path / "m", port=0, extra_args=bench.serve_args())
    careless = MeterProcess(tmp_path / "no-crl", port=0, extra_args=bench.serve_args(crl=False))
    try:
        code, by_id = _audit(*meter.start(), bench)
        flawed_code, flawed = _audit(*careless.start(), bench)
    finally:
        meter.stop()
        careless.stop()
    for cid in ("TLS-VERSION-01", "TLS-FS-01", "TLS-CIPHER-01", "TLS-MUTUAL-01", "TLS-CERT-01",
                "TLS-KEY-01", "TLS-VALID-01", "TLS-SAN-01", "TLS-RENEG-01", "TLS-EMS-01",
                "TLS-CLIENTVAL-01"):
        assert by_id[cid]["verdict"] == "pass", by_id[cid]
    assert "DTLS 1.2" in json.dumps(by_id["TLS-VERSION-01"]["evidence"])
    # what no DTLS probe reads stays INCONCLUSIVE (DTLS 1.3, compression): no exit 0
    assert by_id["TLS-13-01"]["verdict"] == "inconclusive" and code == 4
    assert flawed["TLS-CLIENTVAL-01"]["verdict"] == "fail", flawed["TLS-CLIENTVAL-01"]
    assert "revoked" in flawed["TLS-CLIENTVAL-01"]["reason"] and flawed_code == 1


def test_bad_dtls_input_is_one_line_exit_2(tmp_path: Path, bench: Pki) -> None:
    p = bench.paths
    keys = tmp_path / "k.yaml"
    keys.write_text("guek: " + "00" * 16 + "\n")
    garbage = tmp_path / "garbage.key"
    garbage.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    import socket

    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # bound, never answers
    silent.bind(("127.0.0.1", 0))
    port = silent.getsockname()[1]
    serve = ["meter", "serve", "--port", "0", "--state-dir", str(tmp_path / "st"), "--udp",
             "--tls"]
    cases = {
        "--tls needs --cert": serve,
        "does not belong": [*serve, "--cert", str(p.meter_cert), "--key", str(p.headend_key),
                            "--ca", str(p.ca_cert)],
        "not a PEM private key": [*serve, "--cert", str(p.meter_cert), "--key", str(garbage),
                                  "--ca", str(p.ca_cert)],
        "needs --client-cert": ["test", f"dtls://127.0.0.1:{port}", "--keys", str(keys)],
        "garbage.key: not a PEM private key": [
            "test", f"dtls://127.0.0.1:{port}", "--keys", str(keys), "--client-cert",
            str(p.headend_cert), "--client-key", str(garbage), "--ca", str(p.ca_cert)],
        "no DTLS handshake within": ["test", f"dtls://127.0.0.1:{port}", "--keys", str(keys),
                                     *bench.client_args(), "--out", str(tmp_path / "o")],
    }
    try:
        for expected, argv in cases.items():
            proc = _metercert(*argv, cwd=tmp_path, timeout=120)
            assert proc.returncode == 2, (argv, proc.stderr)
            lines = proc.stderr.strip().splitlines()
            assert len(lines) == 1 and expected in lines[0], (argv, proc.stderr)
            assert "Traceback" not in proc.stderr
    finally:
        silent.close()
