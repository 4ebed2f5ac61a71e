"""The sealed evidence bundle: written from a run's results, verified byte for byte."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from metercert.cli import main
from metercert.cli.dossier import assess_document
from metercert.dossier import sample_dossier
from metercert.lab.bundle import MANIFEST, REDACTED, redact, verify_bundle, write_bundle

CAMPAIGN = """\
name: bench 3
target: tcp://127.0.0.1:4059
keys: keys.yaml
roles:
  VIEWER: {client_sap: 17, mechanism: lls, password: "s3cret-pass", password_env: METER_PW}
  SECADM: {client_sap: 1, mechanism: hls-gmac, hls_secret: "00112233445566778899AABBCCDDEEFF"}
notes: "guek 000102030405060708090A0B0C0D0E0F should never be here"
dlms:
  authentication_key: D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF
"""


def _key(tmp_path: Path, kind: str = "ed25519") -> tuple[Path, Path]:
    key = ed25519.Ed25519PrivateKey.generate() if kind == "ed25519" else ec.generate_private_key(ec.SECP256R1())
    priv, pub = tmp_path / f"lab-{kind}.pem", tmp_path / f"lab-{kind}.pub.pem"
    priv.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    return priv, pub


@pytest.fixture(scope="module")
def results() -> dict:
    doc = assess_document(sample_dossier("flawed-meter"))
    doc["run"]["device_identity"] = {"logical_device_name": "MCR0000001LDN", "serial": "12345678"}
    return doc


@pytest.fixture
def bundle(tmp_path: Path, results: dict) -> tuple[Path, Path]:
    campaign = tmp_path / "campaign.yaml"
    campaign.write_text(CAMPAIGN)
    pcap = tmp_path / "line.pcap"
    pcap.write_bytes(bytes.fromhex("d4c3b2a102000400000000000000000000000400" + "01000000"))
    priv, pub = _key(tmp_path)
    out = write_bundle(tmp_path / "bundle", results, campaign_file=campaign, pcap=pcap, lab_key=priv)
    return out, pub


def test_fresh_bundle_has_every_artefact_and_verifies(bundle: tuple[Path, Path]):
    out, pub = bundle
    names = {p.name for p in out.iterdir()}
    assert {"results.json", "report.html", "junit.xml", "assessment-results.json", "assessment-plan.json",
            "oscal-catalog.json", "traffic.pcap", "campaign.yaml", "device-identity.json",
            "versions.json", "MANIFEST.sha256", "MANIFEST.sig", "lab-key.pub.pem"} == names
    assert json.loads((out / "device-identity.json").read_text())["logical_device_name"] == "MCR0000001LDN"
    versions = json.loads((out / "versions.json").read_text())
    assert len(versions["catalog_sha256"]) == 64 and versions["metercert"]
    check = verify_bundle(out, lab_public_key=pub)
    assert check.ok and check.signed and check.files == len(names) - 2, check.problems


def test_campaign_copy_has_no_secret(bundle: tuple[Path, Path]):
    text = (bundle[0] / "campaign.yaml").read_text()
    for secret in ("s3cret-pass", "00112233445566778899AABBCCDDEEFF", "D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF",
                   "000102030405060708090A0B0C0D0E0F"):
        assert secret not in text
    assert "METER_PW" in text and "bench 3" in text and REDACTED in text
    for path in bundle[0].iterdir():  # nowhere else in the bundle either
        if path.suffix in (".json", ".html", ".xml", ".yaml"):
            assert "s3cret-pass" not in path.read_text(errors="replace")


def test_redaction_by_name_and_by_shape():
    assert redact({"kek": "x", "client_key": "pki/c.key", "password_env": "PW", "name": "n",
                   "blob": "A" * 40}) == {"kek": REDACTED, "client_key": REDACTED,
                                          "password_env": "PW", "name": "n", "blob": REDACTED}


def _every_file(out: Path) -> list[Path]:
    return sorted(p for p in out.iterdir() if p.is_file())


def test_one_changed_byte_in_any_file_fails(bundle: tuple[Path, Path]):
    out, pub = bundle
    for path in _every_file(out):
        original = path.read_bytes()
        changed = bytearray(original)
        changed[len(changed) // 2] ^= 0x01
        path.write_bytes(bytes(changed))
        check = verify_bundle(out, lab_public_key=pub)
        assert not check.ok, f"a changed byte in {path.name} went unnoticed"
        path.write_bytes(original)
    assert verify_bundle(out, lab_public_key=pub).ok


def test_missing_and_extra_files_fail(bundle: tuple[Path, Path]):
    out, pub = bundle
    html = (out / "report.html").read_bytes()
    (out / "report.html").unlink()
    assert "missing file: report.html" in verify_bundle(out, lab_public_key=pub).problems
    (out / "report.html").write_bytes(html)
    (out / "smuggled.txt").write_text("x")
    assert "extra file not in the manifest: smuggled.txt" in verify_bundle(out, lab_public_key=pub).problems


def test_consistent_tampering_is_caught_by_the_signature(bundle: tuple[Path, Path], tmp_path: Path):
    """Rewrite a file and its manifest line: hashes agree again, the signature does not."""
    import hashlib

    out, pub = bundle
    (out / "results.json").write_text((out / "results.json").read_text().replace('"fail"', '"pass"', 1))
    lines = (out / MANIFEST).read_text().splitlines()
    digest = hashlib.sha256((out / "results.json").read_bytes()).hexdigest()
    lines = [f"{digest}  results.json" if ln.endswith("  results.json") else ln for ln in lines]
    (out / MANIFEST).write_text("\n".join(lines) + "\n")
    problems = verify_bundle(out, lab_public_key=pub).problems
    assert len(problems) == 1 and problems[0].startswith("bad signature")
    assert not verify_bundle(out).ok  # also with the key the bundle carries


def test_resigned_with_another_key_fails_against_the_lab_key(bundle: tuple[Path, Path], tmp_path: Path):
    out, pub = bundle
    other = ec.generate_private_key(ec.SECP256R1())
    from metercert.lab.bundle import sign_manifest

    (out / "MANIFEST.sig").write_bytes(sign_manifest((out / MANIFEST).read_bytes(), other))
    assert not verify_bundle(out, lab_public_key=pub).ok


def test_ecdsa_lab_key_and_unsigned_bundles(tmp_path: Path, results: dict):
    priv, pub = _key(tmp_path, "ecdsa")
    signed = write_bundle(tmp_path / "b1", results, lab_key=priv)
    assert verify_bundle(signed, lab_public_key=pub).ok
    unsigned = write_bundle(tmp_path / "b2", results)
    assert verify_bundle(unsigned).ok and not verify_bundle(unsigned).signed
    assert not verify_bundle(unsigned, lab_public_key=pub).ok  # a lab key was expected


def test_cli_create_and_verify(tmp_path: Path, results: dict, capsys):
    res = tmp_path / "results.json"
    res.write_text(json.dumps(results))
    priv, pub = _key(tmp_path)
    assert main(["bundle", "create", str(res), "--out", str(tmp_path / "b"), "--sign-key", str(priv)]) == 0
    assert main(["bundle", "verify", str(tmp_path / "b"), "--key", str(pub)]) == 0
    assert "bundle OK" in capsys.readouterr().out
    (tmp_path / "b" / "junit.xml").write_text("<testsuites/>")
    assert main(["bundle", "verify", str(tmp_path / "b")]) == 1
    out = capsys.readouterr().out
    assert "changed file: junit.xml" in out


@pytest.mark.parametrize("argv, message", [
    (["bundle", "verify", "/nonexistent-bundle"], "not a folder"),
    (["bundle", "verify", "."], "no MANIFEST.sha256"),
])
def test_cli_bad_input_is_one_line(argv: list[str], message: str, capsys, tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_bundle_refuses_to_overwrite(tmp_path: Path, results: dict, capsys):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "old.txt").write_text("x")
    res = tmp_path / "results.json"
    res.write_text(json.dumps(results))
    assert main(["bundle", "create", str(res), "--out", str(tmp_path / "b")]) == 2
    assert "written once" in capsys.readouterr().err
