"""Bad-input matrix: every command, every kind of bad input -> one line, exit 2, no traceback.

Each case runs the real ``metercert`` entry point in a subprocess. Network cases
use 127.0.0.1 with a port that was just closed (never any other address).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

CLI = [sys.executable, "-m", "metercert"]
GOOD_KEYS = ("client_system_title: 4D4D4D0000000001\nserver_system_title: 4D4D4D0000BC614E\n"
             "guek: 000102030405060708090A0B0C0D0E0F\nak: D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF\n")
APDU = "C0010000080000010000FF0200"
CIPHERED = "C81E3001234567411312FF935A47566827C467BC7D825C3BE4A77C3FCC056B6B"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("bad")
    made = {
        "missing": d / "no-such-file.yaml",
        "dir": d / "a-directory.yaml",
        "binary": d / "binary.yaml",
        "bad_yaml": d / "bad.yaml",
        "bad_date": d / "bad-date.yaml",
        "deep": d / "deep.yaml",
        "short_key": d / "short-key.yaml",
        "bad_hex_key": d / "bad-hex-key.yaml",
        "good_keys": d / "keys.yaml",
        "bad_json": d / "bad.json",
        "not_pcap": d / "capture.pcap",
        "a_file": d / "plain-file",
        "bad_mechanism": d / "bad-mechanism-keys.yaml",
        "md5_campaign": d / "md5-campaign.yaml",
        "alias_keys": d / "alias-keys.yaml",
        "alias_campaign": d / "alias-campaign.yaml",
        "alias_dossier": d / "alias-dossier.yaml",
        "alias_profile": d / "alias-profile.yaml",
        "dup_keys": d / "dup-keys.yaml",
        "dup_json": d / "dup-keys.json",
        "fifo_keys": d / "fifo-keys.yaml",
        "big_keys": d / "big-keys.yaml",
        "suite_two": d / "suite-two-keys.yaml",
        "role_no_sap": d / "role-no-sap-keys.yaml",
        "ds_corrupt": d / "ds-corrupt",
        "ds_wrong": d / "ds-wrong",
        "bad_results": d / "schema-invalid-results.json",
        "pki_dir": d / "existing-pki",
    }
    made["dir"].mkdir()
    made["binary"].write_bytes(b"\xb7\xff\xfe binary \x00 junk")
    made["bad_yaml"].write_text("a: [1, 2\nb: : :\n")
    made["bad_date"].write_text("target: tcp://127.0.0.1:1\nname: 2024-13-01\n")
    made["deep"].write_text("[" * 5000)
    made["short_key"].write_text(GOOD_KEYS.replace("000102030405060708090A0B0C0D0E0F", "0001020304"))
    made["bad_hex_key"].write_text(GOOD_KEYS.replace("000102030405060708090A0B0C0D0E0F",
                                                     "XY0102030405060708090A0B0C0D0E0F"))
    made["good_keys"].write_text(GOOD_KEYS)
    made["bad_json"].write_text('{"schema": "metercert-results", ')
    made["not_pcap"].write_bytes(b"this is not a capture\n" * 10)
    made["a_file"].write_text("x")
    made["bad_mechanism"].write_text(GOOD_KEYS + "mechanism: hls-md6\n")
    made["md5_campaign"].write_text(
        f"target: tcp://127.0.0.1:1\nkeys: {made['good_keys'].name}\n"
        "roles:\n  SECAUD: {client_sap: 48, mechanism: hls-md5, secret_env: SECAUD_SECRET}\n")
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 9) + "]\n"
        for i in range(10))
    for name in ("alias_keys", "alias_campaign", "alias_dossier", "alias_profile"):
        made[name].write_text(bomb)
    made["dup_keys"].write_text(GOOD_KEYS + "guek: 0F0E0D0C0B0A09080706050403020100\n")
    made["dup_json"].write_text('{"guek": "000102030405060708090A0B0C0D0E0F", '
                                '"guek": "0F0E0D0C0B0A09080706050403020100"}')
    os.mkfifo(made["fifo_keys"])
    with made["big_keys"].open("wb") as fh:
        fh.truncate(20 * 1024 * 1024)  # sparse: nothing is written
    made["suite_two"].write_text(GOOD_KEYS + "security_suite: two\n")
    made["role_no_sap"].write_text(GOOD_KEYS + "roles:\n  - {role: READER, guek: "
                                   "000102030405060708090A0B0C0D0E0F}\n")
    for name in ("ds_corrupt", "ds_wrong"):
        (made[name] / "day=2026-01-01").mkdir(parents=True)
    (made["ds_corrupt"] / "day=2026-01-01" / "part.parquet").write_bytes(b"PAR1" + b"\x07" * 4000)
    pq.write_table(pa.table({"x": [1, 2]}), made["ds_wrong"] / "day=2026-01-01" / "part.parquet")
    made["bad_results"].write_text('{"checks": []}')
    made["pki_dir"].mkdir()
    (made["pki_dir"] / "ca.key").write_text("an operator's CA key")
    out = {k: str(v) for k, v in made.items()}
    out["tmp"] = str(d)
    out["closed"] = str(_closed_port())
    return out


CASES: list[tuple[str, list[str], str]] = [
    # apdu inspect / protect
    ("inspect bad hex", ["apdu", "inspect", "ZZ"],
     'not valid hex'),
    ("inspect odd hex", ["apdu", "inspect", "C01"],
     'not valid hex'),
    ("inspect missing keys", ["apdu", "inspect", CIPHERED, "--keys", "{missing}"],
     'no-such-file.yaml: no such file'),
    ("inspect keys is a dir", ["apdu", "inspect", CIPHERED, "--keys", "{dir}"],
     'a-directory.yaml'),
    ("inspect binary keys", ["apdu", "inspect", CIPHERED, "--keys", "{binary}"],
     'not UTF-8'),
    ("inspect bad yaml keys", ["apdu", "inspect", CIPHERED, "--keys", "{bad_yaml}"],
     'invalid YAML at line 2'),
    ("inspect deep keys", ["apdu", "inspect", CIPHERED, "--keys", "{deep}"],
     'deep.yaml'),
    ("inspect short key", ["apdu", "inspect", CIPHERED, "--keys", "{short_key}"],
     '16 or 32 bytes'),
    ("inspect bad hex key", ["apdu", "inspect", CIPHERED, "--keys", "{bad_hex_key}"],
     'guek: not valid hex'),
    ("inspect meter index", ["apdu", "inspect", CIPHERED, "--keys", "{good_keys}", "--meter", "5"],
     'no entry 5'),
    ("inspect bad title", ["apdu", "inspect", CIPHERED, "--system-title", "4D4D"],
     '--system-title'),
    ("inspect short dedicated", ["apdu", "inspect", CIPHERED, "--dedicated-key", "0011"],
     '--dedicated-key'),
    ("protect bad hex", ["apdu", "protect", "G0", "--keys", "{good_keys}", "--ic", "1"],
     'not valid hex'),
    ("protect short key", ["apdu", "protect", APDU, "--keys", "{short_key}", "--ic", "1"],
     '16 or 32 bytes'),
    ("protect missing keys", ["apdu", "protect", APDU, "--keys", "{missing}", "--ic", "1"],
     'no such file'),
    ("protect no keys", ["apdu", "protect", APDU, "--ic", "1"],
     'system title'),
    ("protect bad ic", ["apdu", "protect", APDU, "--keys", "{good_keys}", "--ic", "0x1FFFFFFFF"],
     '--ic'),
    ("protect negative ic", ["apdu", "protect", APDU, "--keys", "{good_keys}", "--ic", "-1"],
     '--ic'),
    ("protect empty apdu", ["apdu", "protect", "", "--keys", "{good_keys}", "--ic", "1"],
     'empty'),
    # catalog
    ("catalog unknown id", ["catalog", "show", "NOPE:1"],
     'NOPE:1'),
    ("catalog oscal into missing dir", ["catalog", "oscal", "--out", "{missing}/x/oscal.json"],
     'oscal.json'),
    ("catalog matrix html is a dir", ["catalog", "matrix", "--html", "{dir}"],
     'a-directory.yaml'),
    ("catalog list unknown framework", ["catalog", "list", "--framework", "NOPE"],
     "'NOPE'"),
    # certify
    ("certify unknown profile", ["certify", "--meter-profile", "no-such-profile", "--no-tls"],
     'no-such-profile'),
    ("certify profile bad yaml", ["certify", "--meter-profile", "{bad_yaml}", "--no-tls"],
     'invalid YAML'),
    ("certify profile binary", ["certify", "--meter-profile", "{binary}", "--no-tls"],
     'not UTF-8'),
    # test
    ("test closed port", ["test", "tcp://127.0.0.1:{closed}", "--keys", "{good_keys}",
                          "--out", "{tmp}/r1", "--quiet"],
     'Connection refused'),
    ("test no keys", ["test", "tcp://127.0.0.1:{closed}", "--quiet"],
     '--keys'),
    ("test missing keys", ["test", "tcp://127.0.0.1:{closed}", "--keys", "{missing}", "--quiet"],
     'no such file'),
    ("test short key", ["test", "tcp://127.0.0.1:{closed}", "--keys", "{short_key}", "--quiet"],
     '16 or 32 bytes'),
    ("test bad target", ["test", "http//nowhere", "--keys", "{good_keys}", "--quiet"],
     'bad target'),
    ("test other scheme", ["test", "http://127.0.0.1:4059", "--keys", "{good_keys}", "--quiet"],
     'bad target'),
    ("test udp nobody", ["test", "udp://127.0.0.1:{closed}", "--keys", "{good_keys}", "--quiet"],
     'no DLMS answer'),
    ("test bad port", ["test", "tcp://127.0.0.1:99999", "--keys", "{good_keys}", "--quiet"],
     'bad target'),
    ("test unknown mechanism", ["test", "tcp://127.0.0.1:{closed}", "--keys", "{bad_mechanism}",
                                "--quiet"],
     'hls-md6'),
    ("test legacy role mechanism", ["test", "--campaign", "{md5_campaign}", "--quiet"],
     'hls-md5'),
    ("test missing campaign", ["test", "--campaign", "{missing}", "--quiet"],
     'no such campaign file'),
    ("test bad yaml campaign", ["test", "--campaign", "{bad_yaml}", "--quiet"],
     'not valid YAML'),
    ("test bad date campaign", ["test", "--campaign", "{bad_date}", "--quiet"],
     'bad-date.yaml'),
    ("test deep campaign", ["test", "--campaign", "{deep}", "--quiet"],
     'deep.yaml'),
    ("test binary campaign", ["test", "--campaign", "{binary}", "--quiet"],
     'not UTF-8'),
    ("test missing dossier", ["test", "tcp://127.0.0.1:{closed}", "--keys", "{good_keys}",
                              "--dossier", "{missing}", "--quiet"],
     'no-such-file.yaml: file not found'),
    ("test tls closed", ["test", "tcp://127.0.0.1:{closed}", "--keys", "{good_keys}",
                         "--tls", "127.0.0.1:{closed}", "--quiet"],
     'Connection refused'),
    # dossier
    ("dossier assess missing", ["dossier", "assess", "{missing}"],
     'file not found'),
    ("dossier assess bad yaml", ["dossier", "assess", "{bad_yaml}"],
     'invalid YAML'),
    ("dossier assess binary", ["dossier", "assess", "{binary}"],
     'binary.yaml'),
    ("dossier assess deep", ["dossier", "assess", "{deep}"],
     'deep.yaml'),
    ("dossier assess bad date", ["dossier", "assess", "{bad_date}"],
     'bad-date.yaml'),
    ("dossier init onto a file", ["dossier", "init", "{a_file}"],
     'not a directory'),
    # fleet
    ("fleet ingest missing", ["fleet", "ingest", "{missing}", "--out", "{tmp}/ds1"],
     'no such file'),
    ("fleet ingest not a capture", ["fleet", "ingest", "{not_pcap}", "--out", "{tmp}/ds2"],
     'not a pcap'),
    ("fleet ingest binary", ["fleet", "ingest", "{binary}", "--out", "{tmp}/ds3"],
     'not a pcap'),
    ("fleet ingest missing keys", ["fleet", "ingest", "{not_pcap}", "--keys", "{missing}",
                                  "--out", "{tmp}/ds4"],
     'key file'),
    ("fleet ingest short key", ["fleet", "ingest", "{not_pcap}", "--keys", "{short_key}",
                                "--out", "{tmp}/ds5"],
     '16 or 32 bytes'),
    ("fleet ingest bad mapping", ["fleet", "ingest", "{not_pcap}", "--mapping", "{bad_yaml}",
                                  "--out", "{tmp}/ds6"],
     'invalid YAML'),
    ("fleet scan missing", ["fleet", "scan", "{missing}"],
     'no such directory'),
    ("fleet scan a file", ["fleet", "scan", "{a_file}"],
     'not a directory'),
    ("fleet simulate bad inject", ["fleet", "simulate", "--meters", "2", "--days", "1",
                                   "--out", "{tmp}/sim1", "--inject", "nonsense=3"],
     '--inject'),
    ("fleet simulate out is a file", ["fleet", "simulate", "--meters", "2", "--days", "1",
                                      "--out", "{a_file}"],
     'is a file'),
    # gaps / report
    ("gaps missing", ["gaps", "{missing}"],
     'no such results file'),
    ("gaps bad json", ["gaps", "{bad_json}"],
     'not valid JSON'),
    ("gaps binary", ["gaps", "{binary}"],
     'not UTF-8'),
    ("gaps dir", ["gaps", "{dir}"],
     'is a directory'),
    ("report missing", ["report", "{missing}", "--out", "{tmp}/rep1"],
     'no such results file'),
    ("report bad json", ["report", "{bad_json}", "--out", "{tmp}/rep2"],
     'not valid JSON'),
    ("report binary", ["report", "{binary}", "--out", "{tmp}/rep3"],
     'not UTF-8'),
    # meter serve (errors before it starts serving)
    ("meter serve unknown profile", ["meter", "serve", "--profile", "no-such-profile", "--port", "0",
                                     "--state-dir", "{tmp}/st1"],
     'no-such-profile'),
    ("meter serve bad yaml profile", ["meter", "serve", "--profile", "{bad_yaml}", "--port", "0",
                                      "--state-dir", "{tmp}/st2"],
     'invalid YAML'),
    ("meter serve state dir is a file", ["meter", "serve", "--port", "0", "--state-dir", "{a_file}"],
     '--state-dir'),
    ("meter serve tls without cert", ["meter", "serve", "--port", "0", "--tls",
                                      "--state-dir", "{tmp}/st3"],
     '--tls needs'),
    ("meter serve count 0", ["meter", "serve", "--port", "0", "--count", "0",
                             "--state-dir", "{tmp}/st4"],
     '--count'),
    # tls-audit / pki
    ("tls-audit closed port", ["tls-audit", "127.0.0.1:{closed}", "--timeout", "2"],
     'connection refused'),
    ("tls-audit bad address", ["tls-audit", "no-port-here"],
     'no-port-here'),
    ("tls-audit missing profile", ["tls-audit", "127.0.0.1:{closed}", "--profile", "{missing}"],
     'TLS profile not found'),
    ("tls-audit bad profile", ["tls-audit", "127.0.0.1:{closed}", "--profile", "{bad_date}"],
     'unknown setting'),
    ("tls-audit missing cert", ["tls-audit", "127.0.0.1:{closed}", "--client-cert", "{missing}",
                                "--client-key", "{missing}"],
     'client certificate not found'),
    ("pki init onto a file", ["pki", "init", "{a_file}"],
     'not a directory'),
    # argument errors (argparse) are one line too
    ("unknown option", ["--bogus"],
     '--bogus'),
    ("unknown sub-command", ["apdu", "frob"],
     'frob'),
    ("bad typed value", ["apdu", "protect", APDU, "--ic", "lots"],
     'lots'),
    ("bad choice", ["apdu", "protect", APDU, "--ic", "1", "--suite", "7"],
     '--suite'),
    ("fleet ingest out is a file", ["fleet", "ingest", "{not_pcap}", "--out", "{a_file}"],
     '--out'),
    # hostile files (issue 14): refused quickly, never a hang or a silent last value
    ("inspect keys alias bomb", ["apdu", "inspect", CIPHERED, "--keys", "{alias_keys}"], "anchors"),
    ("inspect keys duplicate", ["apdu", "inspect", CIPHERED, "--keys", "{dup_keys}"],
     "'guek' appears twice"),
    ("inspect json keys duplicate", ["apdu", "inspect", CIPHERED, "--keys", "{dup_json}"],
     "'guek' appears twice"),
    ("inspect keys named pipe", ["apdu", "inspect", CIPHERED, "--keys", "{fifo_keys}"],
     "not a regular file"),
    ("inspect keys /dev/zero", ["apdu", "inspect", CIPHERED, "--keys", "/dev/zero"],
     "not a regular file"),
    ("inspect keys oversized", ["apdu", "inspect", CIPHERED, "--keys", "{big_keys}"],
     "over the limit"),
    ("inspect truncated plaintext", ["apdu", "inspect", "C0010000080000010000"], "does not decode"),
    ("test campaign alias bomb", ["test", "--campaign", "{alias_campaign}", "--quiet"], "anchors"),
    ("dossier assess alias bomb", ["dossier", "assess", "{alias_dossier}"], "anchors"),
    ("meter serve profile alias bomb", ["meter", "serve", "--profile", "{alias_profile}",
                                        "--port", "0", "--state-dir", "{tmp}/st5"], "anchors"),
    # key-file fields read before any connection (the port is closed: an error about the
    # connection would mean the input was not looked at)
    ("test suite two", ["test", "tcp://127.0.0.1:{closed}", "--keys", "{suite_two}", "--quiet"],
     "security_suite must be a whole number 0-2"),
    ("test role without client_sap", ["test", "tcp://127.0.0.1:{closed}", "--keys",
                                      "{role_no_sap}", "--quiet"], "role READER has no client_sap"),
    # internal errors before issue 14
    ("meter serve port 70000", ["meter", "serve", "--port", "70000", "--state-dir", "{tmp}/st6"],
     "--port 70000"),
    ("meter serve port -1", ["meter", "serve", "--port", "-1", "--state-dir", "{tmp}/st6"],
     "--port -1"),
    ("meter serve keys-out under a file", ["meter", "serve", "--port", "0", "--state-dir",
                                           "{tmp}/st7", "--keys-out", "{a_file}/k.yaml"],
     "plain-file is a file"),
    ("fleet scan corrupt parquet", ["fleet", "scan", "{ds_corrupt}"], "cannot be read"),
    ("fleet scan wrong schema", ["fleet", "scan", "{ds_wrong}"], "not a fleet dataset"),
    ("fleet simulate truth in missing folder", ["fleet", "simulate", "--meters", "2", "--days",
                                                "1", "--out", "{tmp}/sim2", "--truth",
                                                "{missing}/t.json"], "does not exist"),
    ("pki init days 1e9", ["pki", "init", "{tmp}/pki1", "--days", "1000000000"], "--days"),
    ("pki init over an existing pki", ["pki", "init", "{pki_dir}"], "already holds a PKI"),
    ("gaps schema-invalid results", ["gaps", "{bad_results}"], "not a valid results document"),
    pytest.param("test typo'd target", ["test", "TCP//127.0.0.1:{closed}", "--keys",
                                        "{good_keys}", "--quiet"], "bad target"),
]


def _case(c):  # type: ignore[no-untyped-def]
    if hasattr(c, "marks"):  # already a pytest.param (an expected failure)
        return pytest.param(c.values[1], c.values[2], id=c.values[0], marks=c.marks)
    return pytest.param(c[1], c[2], id=c[0])


@pytest.mark.timeout(120)
@pytest.mark.parametrize("argv, needle", [_case(c) for c in CASES])
def test_bad_input_is_one_line_exit_2(argv: list[str], needle: str, files: dict[str, str]) -> None:
    """One line, exit 2, and the line names the problem (``needle``), not a later symptom."""
    args = [a.format(**files) for a in argv]
    proc = subprocess.run(check=False, args=[*CLI, *args], capture_output=True, text=True, timeout=100,
                          cwd=files["tmp"], stdin=subprocess.DEVNULL)
    err = proc.stderr.strip()
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-3000:]
    assert proc.returncode == 2, f"exit {proc.returncode}\nstderr: {err[-2000:]}\nstdout: {proc.stdout[-500:]}"
    lines = err.splitlines()
    assert len(lines) == 1, f"{len(lines)} stderr lines:\n{err[-2000:]}"
    assert lines[0].startswith("metercert: error: "), lines[0]
    assert needle in lines[0], f"the error does not name the problem ({needle!r}): {lines[0]}"


@pytest.mark.parametrize("argv, words", [
    (["test", "tcp://127.0.0.1:{closed}", "--keys", "{bad_mechanism}", "--quiet"],
     ["key file", "unknown mechanism 'hls-md6'"]),
    (["test", "--campaign", "{md5_campaign}", "--quiet"], ["role SECAUD", "hls-md5"]),
], ids=["key file mechanism", "campaign role mechanism"])
def test_mechanism_errors_come_before_any_connection(argv: list[str], words: list[str],
                                                     files: dict[str, str]) -> None:
    """Both targets are unreachable: the error must be about the mechanism, found up front."""
    proc = subprocess.run(check=False, args=[*CLI, *(a.format(**files) for a in argv)],
                          capture_output=True, text=True, timeout=100, cwd=files["tmp"],
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 2 and all(w in proc.stderr for w in words), proc.stderr
