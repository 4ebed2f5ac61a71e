"""``metercert headend`` on bad input and on clients whose decision cannot be seen."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

CLIENTS = Path(__file__).parent / "clients"


def metercert(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "metercert", *argv], capture_output=True,
                          text=True, timeout=120, check=False)


def one_line_error(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("metercert: error:"), proc.stderr
    assert "Traceback" not in proc.stderr
    for word in words:
        assert word in lines[0]


@pytest.mark.parametrize(("body", "words"), [
    ("client: {command: ''}", ("client.command",)),
    ("client: {commnd: x}", ("unknown keys", "commnd")),
    ("output: {value: 'read (\\d+)'}", ("output.value", "named group")),
    ("output: {value: '(?P<n>'}", ("not a regular expression",)),
    ("client: {reads: 1}", ("client.reads",)),
    ("meter: {framing: serial}", ("meter.framing",)),
    ("[1, 2]", ("expected a mapping",)),
])
def test_bad_campaign_file_is_one_line(tmp_path: Path, body: str, words: tuple[str, ...]) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(body, encoding="utf-8")
    one_line_error(metercert("headend", "--campaign", str(path), "--out", str(tmp_path / "r")),
                   *words)


def test_missing_client_program_is_one_line(tmp_path: Path) -> None:
    one_line_error(metercert("headend", "--client-cmd", "/nonexistent/head-end --x",
                             "--out", str(tmp_path / "r")), "/nonexistent/head-end")


def test_bad_regex_option_is_one_line(tmp_path: Path) -> None:
    one_line_error(metercert("headend", "--value-regex", "value (\\S+)",
                             "--out", str(tmp_path / "r")), "named group")


def test_a_client_that_never_connects_gets_no_verdict(tmp_path: Path) -> None:
    """Nothing the client did can be seen: every check is INCONCLUSIVE (exit 4), none passes."""
    out = tmp_path / "r"
    proc = metercert("headend", "--client-cmd", f"{sys.executable} -c pass", "--out", str(out),
                     "--quiet")
    assert proc.returncode == 4, proc.stdout + proc.stderr
    results = json.loads((out / "results.json").read_text("utf-8"))
    assert {c["verdict"] for c in results["checks"]} == {"inconclusive"}
    tag = next(c for c in results["checks"] if c["id"] == "HE-TAG-01")
    assert "baseline" in tag["reason"]


def test_a_client_that_hangs_on_a_short_frame_fails_robustness(tmp_path: Path) -> None:
    """metercert's reader told to wait 300 s for a response, under an 8 s run limit: the
    wrapper header that announces 65535 bytes and sends 32 leaves it hanging, killed."""
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps({"client": {"response_timeout_s": 300, "run_limit_s": 8}}),
                    encoding="utf-8")
    out = tmp_path / "r"
    proc = metercert("headend", "--campaign", str(path), "--only", "HE-ROBUST-02",
                     "--out", str(out), "--quiet")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    results = json.loads((out / "results.json").read_text("utf-8"))
    check = next(c for c in results["checks"] if c["id"] == "HE-ROBUST-02")
    assert check["verdict"] == "fail" and "hung" in check["reason"]


def test_hdlc_framing(tmp_path: Path) -> None:
    out = tmp_path / "r"
    proc = metercert("headend", "--framing", "hdlc", "--only", "HE-TAG-01", "--only",
                     "HE-IC-SEND-01", "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads((out / "results.json").read_text("utf-8"))
    assert [c["verdict"] for c in results["checks"] if c["verdict"] != "not-assessed"] == [
        "pass", "pass"]


def test_tls_mutual(tmp_path: Path) -> None:
    """Behind mutual TLS the client gets the PKI in METERCERT_CA/CLIENT_CERT/CLIENT_KEY; the
    same client speaking plain TCP to it reads nothing, so its checks get no verdict."""
    out = tmp_path / "r"
    proc = metercert("headend", "--tls", "--only", "HE-TAG-01", "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads((out / "results.json").read_text("utf-8"))
    assert "over TLS" in results["run"]["targets"]["headend"]
    assert next(c["verdict"] for c in results["checks"] if c["id"] == "HE-TAG-01") == "pass"
    plain = f"sh -c 'METERCERT_TLS=0 exec {sys.executable} -m metercert.headend.reader'"
    proc = metercert("headend", "--tls", "--client-cmd", plain, "--only", "HE-TAG-01",
                     "--out", str(tmp_path / "p"), "--quiet")
    assert proc.returncode == 4, proc.stdout + proc.stderr


def test_a_stateless_client_that_synchronises_from_the_meter_keeps_counters_rising(
        tmp_path: Path) -> None:
    """metercert's reader with a fresh state folder every run: it keeps no counter of its
    own, but reads the meter's invocation counter object first, so its counters still rise
    across restarts (the hostile meter serves stale counters yet keeps that object true)."""
    fresh = ("sh -c 'METERCERT_STATE_DIR=$(mktemp -d -p " + str(tmp_path)
             + f") exec {sys.executable} -m metercert.headend.reader'")
    out = tmp_path / "r"
    proc = metercert("headend", "--client-cmd", fresh, "--only", "HE-IC-SEND-01", "--only",
                     "HE-TAG-01", "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads((out / "results.json").read_text("utf-8"))
    check = next(c for c in results["checks"] if c["id"] == "HE-IC-SEND-01")
    assert check["verdict"] == "pass" and "strictly increasing" in check["reason"]


def test_a_client_that_crashes_on_malformed_responses_fails_robustness(tmp_path: Path) -> None:
    out = tmp_path / "r"
    proc = metercert("headend", "--client-cmd", f"{sys.executable} {CLIENTS / 'fragile_reader.py'}",
                     "--only", "HE-ROBUST-01", "--out", str(out), "--quiet")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    results = json.loads((out / "results.json").read_text("utf-8"))
    check = next(c for c in results["checks"] if c["id"] == "HE-ROBUST-01")
    assert check["verdict"] == "fail" and "crashed" in check["reason"]
    assert "unhandled exception" in check["reason"]


def test_keys_a_client_prints_are_redacted(tmp_path: Path) -> None:
    """A client that dumps its key file: the report shows <redacted>, never the keys."""
    seen = tmp_path / "seen-keys.yaml"
    chatty = (f"sh -c 'cp \"$METERCERT_KEYS\" {seen}; cat \"$METERCERT_KEYS\"; "
              f"exec {sys.executable} -m metercert.headend.reader'")
    out = tmp_path / "r"
    proc = metercert("headend", "--client-cmd", chatty, "--only", "HE-TAG-01", "--out", str(out),
                     "--quiet")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    keys = yaml.safe_load(seen.read_text("utf-8"))
    text = ((out / "results.json").read_text("utf-8") + (out / "report.html").read_text("utf-8"))
    assert "redacted" in text
    for name in ("guek", "ak", "kek", "hls_secret"):
        assert keys[name].lower() not in text.lower()


def test_a_client_that_retries_is_judged_by_the_value_it_shows(tmp_path: Path) -> None:
    """After refusing the lie it asks again and prints the genuine answer under the same read
    number: that is a refusal (the printed value is GET 2's genuine one, not the lie's)."""
    out = tmp_path / "r"
    proc = metercert("headend", "--client-cmd",
                     f"{sys.executable} {CLIENTS / 'retrying_reader.py'}", "--only", "HE-TAG-01",
                     "--only", "HE-REPLAY-01", "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads((out / "results.json").read_text("utf-8"))
    checks = {c["id"]: c for c in results["checks"] if c["verdict"] != "not-assessed"}
    assert {i: c["verdict"] for i, c in checks.items()} == {"HE-TAG-01": "pass",
                                                           "HE-REPLAY-01": "pass"}
    assert "asked again: its read 1 shows 4002" in checks["HE-TAG-01"]["reason"]


def test_a_client_spoiled_by_a_refused_lie_fails(tmp_path: Path) -> None:
    """It refuses the replay, but then also the genuine response to GET 3 it asked for."""
    out = tmp_path / "r"
    proc = metercert("headend", "--client-cmd", f"{sys.executable} {CLIENTS / 'sticky_reader.py'}",
                     "--only", "HE-REPLAY-01", "--out", str(out), "--quiet")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    results = json.loads((out / "results.json").read_text("utf-8"))
    check = next(c for c in results["checks"] if c["id"] == "HE-REPLAY-01")
    assert check["verdict"] == "fail"
    assert "refused the genuine response to GET 3 too" in check["reason"]


@pytest.mark.parametrize(("profile", "suite_verdict"), [("suite2-general", "pass"),
                                                        ("suite0.yaml", "not-applicable")])
def test_other_suites(tmp_path: Path, profile: str, suite_verdict: str) -> None:
    """Suite 2 (AES-256): a suite-0 response with the same keys is refused; in suite 0 there
    is no lower suite, so HE-SUITE-01 does not apply."""
    if profile.endswith(".yaml"):
        path = tmp_path / profile
        path.write_text("name: suite-0\nsecurity_suite: 0\n", encoding="utf-8")
        profile = str(path)
    out = tmp_path / "r"
    proc = metercert("headend", "--meter-profile", profile, "--only", "HE-SUITE-01", "--only",
                     "HE-TAG-02", "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads((out / "results.json").read_text("utf-8"))
    got = {c["id"]: c["verdict"] for c in results["checks"] if c["verdict"] != "not-assessed"}
    assert got == {"HE-SUITE-01": suite_verdict, "HE-TAG-02": "pass"}
