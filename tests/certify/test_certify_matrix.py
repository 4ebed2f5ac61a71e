"""`metercert certify` end to end: the conformant meter passes everything, and each flawed
profile fails exactly the checks for its flaw while every unrelated check still passes."""

import json
import subprocess
import sys

import pytest

# flaw -> the checks that must fail (and only these)
EXPECTED_FAILURES = {
    "conformant": set(),
    # pushes share the meter's sending counter: a counter lost at boot repeats in them too
    "ic-reset-on-power-cycle": {"DLMS-IC-PERSIST-01", "DLMS-PUSH-02"},
    "accepts-downgrade": {"DLMS-DOWNGRADE-01"},
    # without replay checks a stale counter and a post-restart replay are accepted too
    "no-replay-check": {"DLMS-REPLAY-01", "DLMS-IC-STALE-01", "DLMS-IC-PERSIST-01"},
    "default-lls-password": {"DLMS-AUTH-DEFAULT-01"},
    "unsigned-firmware-accepted": {"DLMS-FW-01"},
    "key-wrap-unchecked": {"DLMS-KEYWRAP-01"},
    "operator-can-update-firmware": {"DLMS-RBAC-SECADM-01"},
    "secret-readable": {"DLMS-SECRET-01"},
    "hls-reply-unchecked": {"DLMS-HLS-01"},
    # flaws seen only by discovery, per-association reads and the gap-counter power cycle
    "replay-window-in-ram": {"DLMS-IC-PERSIST-01"},
    "own-ic-reset-at-boot": {"DLMS-IC-PERSIST-01", "DLMS-PUSH-02"},
    "public-reads-secrets": {"DLMS-SECRET-01"},
    "firmware-size-only": {"DLMS-FW-01"},
    "no-lockout": {"DLMS-THROTTLE-01"},
    # the campaign power-cycles the wedged meter after ROBUST-01 and every later check passes
    "wedged-by-oversized-frame": {"DLMS-ROBUST-01"},
    # SAP 17 is in no key file: only the meter's own association list names it
    "default-password-second-lls": {"DLMS-AUTH-DEFAULT-01"},
    # the conformance cases a DLMS UA lab adds; one reset counter space also shows across
    # the power cycle
    "ic-per-association": {"DLMS-IC-OWN-01", "DLMS-IC-PERSIST-01"},
    "policy-can-be-lowered": {"DLMS-ACTIVATE-01"},
    "key-id-unchecked": {"DLMS-KEYS-02"},
    "release-ignored": {"DLMS-RELEASE-01"},
    # awkward but conformant, like real meters: they must pass everything
    "one-connection": set(),
    "strict-release": set(),
    "security-setup-v0": set(),
    "sparse-objects": set(),
    "exception-response": set(),
    "short-challenge": set(),
    "old-association-version": set(),
    "lls-second-association": set(),
    # MD5/SHA-1 AARQ "accepted, authentication required", nothing served, pass 3 refused
    "legacy-hls-pending": set(),
}
# pushes (Push Setup, class 40): in the clear they fail ciphering and replay detection and
# carry no counter to judge across a power cycle; a RAM push counter repeats after one
EXPECTED_FAILURES.update({
    "push-unprotected": {"DLMS-PUSH-01", "DLMS-PUSH-03"},
    "push-counter-reset-at-boot": {"DLMS-PUSH-02"},
})
# checks a profile's meter has no object for: not applicable there, never "denied" or FAIL
NOT_APPLICABLE = {
    "sparse-objects": {"DLMS-RBAC-CONTROL-01", "DLMS-RBAC-SECAUD-01"},
    "push-unprotected": {"DLMS-PUSH-02"},
}
# certify serves the wrapper, where the HDLC link-layer checks do not apply; a profile
# with an HDLC flaw is served over HDLC, so there they run
HDLC_ONLY = {"DLMS-HDLC-FCS-01", "DLMS-HDLC-SEQ-01", "DLMS-HDLC-INFO-01", "DLMS-HDLC-ADDR-01"}
EXPECTED_FAILURES.update({
    "hdlc-bad-fcs-accepted": {"DLMS-HDLC-FCS-01"},
    "hdlc-sequence-unchecked": {"DLMS-HDLC-SEQ-01"},
    "hdlc-info-length-unchecked": {"DLMS-HDLC-INFO-01"},
    "hdlc-any-address": {"DLMS-HDLC-ADDR-01"},  # HDLC_1 Subtest_4: unknown address
})

# suites 1/2 in the general forms (0xDD / 0xDF): conformant ones pass everything, each flawed
# one fails exactly its checks; on a meter without general protection these checks do not
# apply, and the P-256-on-suite-2 check applies to suite 2 only
GENERAL_ONLY = {"DLMS-GENSIGN-01", "DLMS-GENSIGN-02", "DLMS-GENSIGN-03", "DLMS-GENSIGN-04",
                "DLMS-GENDOWN-01", "DLMS-KEYAGREE-01", "DLMS-KEYAGREE-02", "DLMS-CERT-01",
                "DLMS-CERT-02", "DLMS-CERT-03"}
GENERAL_SUITE_1 = {"suite1-general", "unsigned-general-accepted", "untrusted-certificate-accepted",
                   "ephemeral-key-reused", "removed-certificate-still-used"}
GENERAL_PROFILES = GENERAL_SUITE_1 | {"suite2-general", "general-signature-unchecked",
                                      "general-suite-unchecked", "private-key-exported",
                                      "key-agreement-unverified"}
EXPECTED_FAILURES.update({
    "suite1-general": set(),
    "suite2-general": set(),
    # a meter that checks no signature also takes one by a removed certificate's key
    "general-signature-unchecked": {"DLMS-GENSIGN-01", "DLMS-GENSIGN-02", "DLMS-GENSIGN-03",
                                    "DLMS-CERT-02"},
    "unsigned-general-accepted": {"DLMS-GENSIGN-04"},
    "general-suite-unchecked": {"DLMS-GENDOWN-01"},
    "untrusted-certificate-accepted": {"DLMS-CERT-01"},
    "removed-certificate-still-used": {"DLMS-CERT-02"},
    "private-key-exported": {"DLMS-CERT-03"},
    "key-agreement-unverified": {"DLMS-KEYAGREE-01"},
    "ephemeral-key-reused": {"DLMS-KEYAGREE-02"},
})
for _name in EXPECTED_FAILURES:
    if _name not in GENERAL_PROFILES:
        NOT_APPLICABLE[_name] = NOT_APPLICABLE.get(_name, set()) | GENERAL_ONLY
    elif _name in GENERAL_SUITE_1:
        NOT_APPLICABLE[_name] = {"DLMS-GENSIGN-03"}


def _certify(tmp_path, profile, *extra):
    out = tmp_path / "report"
    proc = subprocess.run(
        [sys.executable, "-m", "metercert", "certify", "--meter-profile", profile, "--out",
         str(out), "--quiet", *extra],
        capture_output=True, text=True, timeout=240, check=False)
    assert proc.returncode in (0, 1), proc.stderr
    results = json.loads((out / "results.json").read_text())
    return proc, results


@pytest.mark.slow
@pytest.mark.parametrize("profile", sorted(EXPECTED_FAILURES))
def test_each_profile_fails_exactly_its_checks(tmp_path, profile):
    proc, results = _certify(tmp_path, profile, "--no-tls")
    verdicts = {c["id"]: c["verdict"] for c in results["checks"]}
    failed = {i for i, v in verdicts.items() if v == "fail"}
    assert failed == EXPECTED_FAILURES[profile], results["checks"]
    absent = NOT_APPLICABLE.get(profile, set()) | (
        set() if profile.startswith("hdlc-") else HDLC_ONLY)
    # link-layer checks (HDLC) do not apply to the wrapper meters, and say so
    assert {i for i, v in verdicts.items() if v == "not-applicable"} == absent
    unrelated = {i: v for i, v in verdicts.items()
                 if i.startswith(("DLMS-", "DOSSIER-")) and i not in EXPECTED_FAILURES[profile]
                 and i not in absent}
    assert set(unrelated.values()) == {"pass"}, unrelated
    assert proc.returncode == (1 if failed else 0)
    for check in results["checks"]:
        if check["verdict"] == "fail":
            assert check["evidence"], f"{check['id']} failed without evidence"


@pytest.mark.slow
def test_conformant_full_campaign_with_tls_passes_and_reports(tmp_path):
    proc, results = _certify(tmp_path, "conformant")
    assert proc.returncode == 0, proc.stdout[-3000:]
    kinds = {c["target"] for c in results["checks"]}
    assert kinds == {"dlms", "tls", "dossier"}
    # the bench CA publishes a CRL, no OCSP responder: stapling does not apply
    ocsp = {c["id"]: c["verdict"] for c in results["checks"] if c["id"] == "TLS-OCSP-01"}
    assert ocsp == {"TLS-OCSP-01": "not-applicable"}
    assert {c["verdict"] for c in results["checks"]
            if c["id"] not in HDLC_ONLY | GENERAL_ONLY | set(ocsp)} == {"pass"}
    assert {c["verdict"] for c in results["checks"] if c["id"] in GENERAL_ONLY} == {
        "not-applicable"}  # the conformant meter offers no general protection
    assert {c["verdict"] for c in results["checks"] if c["id"] in HDLC_ONLY} == {
        "not-applicable"}  # certify serves the wrapper: no HDLC link layer to test
    out = tmp_path / "report"
    assert (out / "report.html").stat().st_size > 10000
    assert (out / "junit.xml").exists()
    assert "campaign time:" in proc.stdout
    assert str(out / "report.html") in proc.stdout.replace("\n", "")


def test_unknown_profile_is_a_one_line_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "metercert", "certify", "--meter-profile",
                           "no-such-profile", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    assert "unknown meter profile 'no-such-profile'" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


# meters in suites 1 and 2 whose associations use HLS-ECDSA (mechanism 7) or, in suite 2,
# HLS-GMAC with 256-bit keys: the client takes the mechanism and ECDSA keys from the key file
VARIANTS = {
    "ecdsa-suite-1": ({"security_suite": 1, "mechanism": "hls-ecdsa"}, set()),
    "ecdsa-suite-2": ({"security_suite": 2, "mechanism": "hls-ecdsa"}, set()),
    "gmac-suite-2-accepts-downgrade": ({"security_suite": 2, "flaws": ["accepts-downgrade"]},
                                       {"DLMS-DOWNGRADE-01"}),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_suite_and_mechanism_variants(tmp_path, name):
    import yaml

    settings, expected = VARIANTS[name]
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "description": name, **settings}))
    proc, results = _certify(tmp_path, str(path), "--no-tls", "--only", "DLMS-*")
    verdicts = {c["id"]: c["verdict"] for c in results["checks"]}
    assert {i for i, v in verdicts.items()
            if v != "pass" and i not in GENERAL_ONLY | HDLC_ONLY} == expected, results["checks"]
    assert {verdicts[i] for i in GENERAL_ONLY | HDLC_ONLY} == {"not-applicable"}
    from metercert.checks import all_checks

    assert set(verdicts) == {s.id for s in all_checks().values() if s.target.value == "dlms"}
    assert proc.returncode == (1 if expected else 0)
    text = json.dumps(results)
    mechanism = settings.get("mechanism", "hls-gmac")
    assert ("60857405080207" in text) == (mechanism == "hls-ecdsa")   # mechanism 7 in the AARQs
