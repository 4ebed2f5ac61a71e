"""Bad-input matrix: every command, every kind of bad input -> one line, exit 2, no traceback.

Each case runs the real ``metercert`` entry point in a subprocess. Network cases
use 127.0.0.1 with a port that was just closed (never any other address).
"""

from __future__ import annotations

import socket
import subprocess
import sys

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
    out = {k: str(v) for k, v in made.items()}
    out["tmp"] = str(d)
    out["closed"] = str(_closed_port())
    return out


CASES: list[tuple[str, list[str]]] = [
    # apdu inspect / protect
    ("inspect bad hex", ["apdu", "inspect", "ZZ"]),
    ("inspect odd hex", ["apdu", "inspect", "C01"]),
    ("inspect missing keys", ["apdu", "inspect", CIPHERED, "--keys", "{missing}"]),
    ("inspect keys is a dir", ["apdu", "inspect", CIPHERED, "--keys", "{dir}"]),
    ("inspect binary keys", ["apdu", "inspect", CIPHERED, "--keys", "{binary}"]),
    ("inspect bad yaml keys", ["apdu", "inspect", CIPHERED, "--keys", "{bad_yaml}"]),
    ("inspect deep keys", ["apdu", "inspect", CIPHERED, "--keys", "{deep}"]),
    ("inspect short key", ["apdu", "inspect", CIPHERED, "--keys", "{short_key}"]),
    ("inspect bad hex key", ["apdu", "inspect", CIPHERED, "--keys", "{bad_hex_key}"]),
    ("inspect meter index", ["apdu", "inspect", CIPHERED, "--keys", "{good_keys}", "--meter", "5"]),
    ("inspect bad title", ["apdu", "inspect", CIPHERED, "--system-title", "4D4D"]),
    ("inspect short dedicated", ["apdu", "inspect", CIPHERED, "--dedicated-key", "0011"]),
    ("protect bad hex", ["apdu", "protect", "G0", "--keys", "{good_keys}", "--ic", "1"]),
    ("protect short key", ["apdu", "protect", APDU, "--keys", "{short_key}", "--ic", "1"]),
    ("protect missing keys", ["apdu", "protect", APDU, "--keys", "{missing}", "--ic", "1"]),
    ("protect no keys", ["apdu", "protect", APDU, "--ic", "1"]),
    ("protect bad ic", ["apdu", "protect", APDU, "--keys", "{good_keys}", "--ic", "0x1FFFFFFFF"]),
    ("protect negative ic", ["apdu", "protect", APDU, "--keys", "{good_keys}", "--ic", "-1"]),
    ("protect empty apdu", ["apdu", "protect", "", "--keys", "{good_keys}", "--ic", "1"]),
    # catalog
    ("catalog unknown id", ["catalog", "show", "NOPE:1"]),
    ("catalog oscal into missing dir", ["catalog", "oscal", "--out", "{missing}/x/oscal.json"]),
    ("catalog matrix html is a dir", ["catalog", "matrix", "--html", "{dir}"]),
    ("catalog list unknown framework", ["catalog", "list", "--framework", "NOPE"]),
    # certify
    ("certify unknown profile", ["certify", "--meter-profile", "no-such-profile", "--no-tls"]),
    ("certify profile bad yaml", ["certify", "--meter-profile", "{bad_yaml}", "--no-tls"]),
    ("certify profile binary", ["certify", "--meter-profile", "{binary}", "--no-tls"]),
    # test
    ("test closed port", ["test", "tcp://127.0.0.1:{closed}", "--keys", "{good_keys}",
                          "--out", "{tmp}/r1", "--quiet"]),
    ("test no keys", ["test", "tcp://127.0.0.1:{closed}", "--quiet"]),
    ("test missing keys", ["test", "tcp://127.0.0.1:{closed}", "--keys", "{missing}", "--quiet"]),
    ("test short key", ["test", "tcp://127.0.0.1:{closed}", "--keys", "{short_key}", "--quiet"]),
    ("test bad target", ["test", "http//nowhere", "--keys", "{good_keys}", "--quiet"]),
    ("test other scheme", ["test", "http://127.0.0.1:4059", "--keys", "{good_keys}", "--quiet"]),
    ("test udp nobody", ["test", "udp://127.0.0.1:{closed}", "--keys", "{good_keys}", "--quiet"]),
    ("test bad port", ["test", "tcp://127.0.0.1:99999", "--keys", "{good_keys}", "--quiet"]),
    ("test unknown mechanism", ["test", "tcp://127.0.0.1:{closed}", "--keys", "{bad_mechanism}",
                                "--quiet"]),
    ("test legacy role mechanism", ["test", "--campaign", "{md5_campaign}", "--quiet"]),
    ("test missing campaign", ["test", "--campaign", "{missing}", "--quiet"]),
    ("test bad yaml campaign", ["test", "--campaign", "{bad_yaml}", "--quiet"]),
    ("test bad date campaign", ["test", "--campaign", "{bad_date}", "--quiet"]),
    ("test deep campaign", ["test", "--campaign", "{deep}", "--quiet"]),
    ("test binary campaign", ["test", "--campaign", "{binary}", "--quiet"]),
    ("test missing dossier", ["test", "tcp://127.0.0.1:{closed}", "--keys", "{good_keys}",
                              "--dossier", "{missing}", "--quiet"]),
    ("test tls closed", ["test", "tcp://127.0.0.1:{closed}", "--keys", "{good_keys}",
                         "--tls", "127.0.0.1:{closed}", "--quiet"]),
    # dossier
    ("dossier assess missing", ["dossier", "assess", "{missing}"]),
    ("dossier assess bad yaml", ["dossier", "assess", "{bad_yaml}"]),
    ("dossier assess binary", ["dossier", "assess", "{binary}"]),
    ("dossier assess deep", ["dossier", "assess", "{deep}"]),
    ("dossier assess bad date", ["dossier", "assess", "{bad_date}"]),
    ("dossier init onto a file", ["dossier", "init", "{a_file}"]),
    # fleet
    ("fleet ingest missing", ["fleet", "ingest", "{missing}", "--out", "{tmp}/ds1"]),
    ("fleet ingest not a capture", ["fleet", "ingest", "{not_pcap}", "--out", "{tmp}/ds2"]),
    ("fleet ingest binary", ["fleet", "ingest", "{binary}", "--out", "{tmp}/ds3"]),
    ("fleet ingest missing keys", ["fleet", "ingest", "{not_pcap}", "--keys", "{missing}",
                                  "--out", "{tmp}/ds4"]),
    ("fleet ingest short key", ["fleet", "ingest", "{not_pcap}", "--keys", "{short_key}",
                                "--out", "{tmp}/ds5"]),
    ("fleet ingest bad mapping", ["fleet", "ingest", "{not_pcap}", "--mapping", "{bad_yaml}",
                                  "--out", "{tmp}/ds6"]),
    ("fleet scan missing", ["fleet", "scan", "{missing}"]),
    ("fleet scan a file", ["fleet", "scan", "{a_file}"]),
    ("fleet simulate bad inject", ["fleet", "simulate", "--meters", "2", "--days", "1",
                                   "--out", "{tmp}/sim1", "--inject", "nonsense=3"]),
    ("fleet simulate out is a file", ["fleet", "simulate", "--meters", "2", "--days", "1",
                                      "--out", "{a_file}"]),
    # gaps / report
    ("gaps missing", ["gaps", "{missing}"]),
    ("gaps bad json", ["gaps", "{bad_json}"]),
    ("gaps binary", ["gaps", "{binary}"]),
    ("gaps dir", ["gaps", "{dir}"]),
    ("report missing", ["report", "{missing}", "--out", "{tmp}/rep1"]),
    ("report bad json", ["report", "{bad_json}", "--out", "{tmp}/rep2"]),
    ("report binary", ["report", "{binary}", "--out", "{tmp}/rep3"]),
    # meter serve (errors before it starts serving)
    ("meter serve unknown profile", ["meter", "serve", "--profile", "no-such-profile", "--port", "0",
                                     "--state-dir", "{tmp}/st1"]),
    ("meter serve bad yaml profile", ["meter", "serve", "--profile", "{bad_yaml}", "--port", "0",
                                      "--state-dir", "{tmp}/st2"]),
    ("meter serve state dir is a file", ["meter", "serve", "--port", "0", "--state-dir", "{a_file}"]),
    ("meter serve tls without cert", ["meter", "serve", "--port", "0", "--tls",
                                      "--state-dir", "{tmp}/st3"]),
    ("meter serve count 0", ["meter", "serve", "--port", "0", "--count", "0",
                             "--state-dir", "{tmp}/st4"]),
    # tls-audit / pki
    ("tls-audit closed port", ["tls-audit", "127.0.0.1:{closed}", "--timeout", "2"]),
    ("tls-audit bad address", ["tls-audit", "no-port-here"]),
    ("tls-audit missing profile", ["tls-audit", "127.0.0.1:{closed}", "--profile", "{missing}"]),
    ("tls-audit bad profile", ["tls-audit", "127.0.0.1:{closed}", "--profile", "{bad_date}"]),
    ("tls-audit missing cert", ["tls-audit", "127.0.0.1:{closed}", "--client-cert", "{missing}",
                                "--client-key", "{missing}"]),
    ("pki init onto a file", ["pki", "init", "{a_file}"]),
    # argument errors (argparse) are one line too
    ("unknown option", ["--bogus"]),
    ("unknown sub-command", ["apdu", "frob"]),
    ("bad typed value", ["apdu", "protect", APDU, "--ic", "lots"]),
    ("bad choice", ["apdu", "protect", APDU, "--ic", "1", "--suite", "7"]),
    ("fleet ingest out is a file", ["fleet", "ingest", "{not_pcap}", "--out", "{a_file}"]),
]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("argv", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2(argv: list[str], files: dict[str, str]) -> None:
    args = [a.format(**files) for a in argv]
    proc = subprocess.run(check=False, args=[*CLI, *args], capture_output=True, text=True, timeout=100,
                          cwd=files["tmp"], stdin=subprocess.DEVNULL)
    err = proc.stderr.strip()
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-3000:]
    assert proc.returncode == 2, f"exit {proc.returncode}\nstderr: {err[-2000:]}\nstdout: {proc.stdout[-500:]}"
    lines = err.splitlines()
    assert len(lines) == 1, f"{len(lines)} stderr lines:\n{err[-2000:]}"
    assert lines[0].startswith("metercert: error: "), lines[0]


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
