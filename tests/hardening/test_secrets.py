"""Secrets never leave the key file and the meter's state folder.

Every command that touches keys runs for real against the reference meter on
127.0.0.1; all of its stdout, stderr, logs and report files are searched for every
key and secret from the key files and the meter state (raw, hex in both cases,
spaced hex, base64). Also: key and state files are 0600, tag comparisons in the
security layer are constant-time, and unprotect says the same thing whatever
check failed.
"""

from __future__ import annotations

import ast
import contextlib
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from metercert.cli import main as cli_main
from metercert.fleet.capture import write_sample_capture
from metercert.security import (
    AuthenticationFailed,
    CipheringForm,
    SecurityControl,
    protect,
    unprotect,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _secrets import files_under, scan, secrets_in

SRC = Path(__file__).resolve().parents[2] / "src" / "metercert"
CLI = [sys.executable, "-m", "metercert"]
pytestmark = pytest.mark.timeout(240)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise AssertionError(f"meter did not listen on 127.0.0.1:{port}")


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(check=False, args=[*CLI, *args], cwd=cwd, capture_output=True, timeout=180)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:  # type: ignore[type-arg]
    """`meter serve` on a free loopback port, and every key-touching command run against it."""
    work = tmp_path_factory.mktemp("secrets")
    state, keys = work / "state", work / "client-keys.yaml"
    port = _free_port()
    serve = subprocess.Popen([*CLI, "meter", "serve", "--port", str(port), "--state-dir", str(state),
                              "--keys-out", str(keys)], cwd=work, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    blobs: dict[str, bytes] = {}
    try:
        _wait_port(port)
        plain = "C0010000080000010000FF0200"
        protected = _run("apdu", "protect", plain, "--keys", str(keys), "--ic", "7", "--json", cwd=work)
        assert protected.returncode == 0, protected.stderr
        runs = {
            "apdu protect": protected,
            "apdu inspect": _run("apdu", "inspect", protected.stdout.decode().split('"apdu": "')[-1]
                                 .split('"')[0] if b'"apdu"' in protected.stdout else plain,
                                 "--keys", str(keys), cwd=work),
            "apdu inspect --json": _run("apdu", "inspect", plain, "--keys", str(keys), "--json", cwd=work),
            "test": _run("test", f"tcp://127.0.0.1:{port}", "--keys", str(keys), "--no-destructive",
                         "--out", str(work / "test-report"), "--quiet", cwd=work),
        }
        cap = write_sample_capture(work / "fleet.pcap", meters=2, requests=2)
        fleet_keys = work / "fleet.pcap.keys.yaml"
        runs["fleet ingest --keys"] = _run("fleet", "ingest", str(work / "fleet.pcap"), "--keys",
                                           str(fleet_keys), "--out", str(work / "dataset"), cwd=work)
        assert cap is not None
        for name, proc in runs.items():
            blobs[f"{name}: stdout"] = proc.stdout
            blobs[f"{name}: stderr"] = proc.stderr
        assert runs["test"].returncode in (0, 1), runs["test"].stderr[-2000:]
        assert runs["fleet ingest --keys"].returncode == 0, runs["fleet ingest --keys"].stderr
    finally:
        serve.send_signal(signal.SIGTERM)
        out, err = serve.communicate(timeout=30)
    blobs["meter serve: stdout"], blobs["meter serve: stderr"] = out, err
    blobs.update(files_under(work, exclude=[state, keys, fleet_keys]))
    secret_files = [keys, fleet_keys, *state.rglob("*.yaml"), *work.glob("*.pem")]
    yield {"blobs": blobs, "secrets": secrets_in(secret_files), "state": state, "keys": keys,
           "work": work, "runs": runs}


def test_the_scan_finds_a_planted_secret(served: dict) -> None:  # type: ignore[type-arg]
    """The scanner itself can fail: a key written in lower-case hex is found."""
    name, secret = next(iter(served["secrets"].items()))
    leaks = scan({"planted": b"log line " + secret.hex().encode()}, {name: secret})
    assert leaks and leaks[0].encoding == "hex"


def test_commands_do_not_leak_keys(served: dict) -> None:  # type: ignore[type-arg]
    secrets = served["secrets"]
    assert len(secrets) >= 10, "expected the GUEK/AK/KEK/HLS secrets of every role"
    assert len(served["blobs"]) >= 12  # outputs plus report files were really collected
    assert any("results.json" in k for k in served["blobs"])
    leaks = scan(served["blobs"], secrets)
    assert not leaks, "\n".join(f"{lk.secret_name} ({lk.encoding}) in {lk.where}" for lk in leaks)


def test_state_and_key_files_are_private(served: dict) -> None:  # type: ignore[type-arg]
    files = [served["keys"], *[p for p in served["state"].rglob("*") if p.is_file()]]
    assert any(p.name == "keys.yaml" for p in files)
    assert any(p.parent.name == "counters" for p in files)
    loose = {str(p): oct(stat.S_IMODE(p.stat().st_mode)) for p in files
             if stat.S_IMODE(p.stat().st_mode) & 0o077}
    assert not loose, f"files readable by group/others: {loose}"


def test_certify_does_not_leak_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capfd: pytest.CaptureFixture[str]) -> None:
    """The full certify run (destructive checks included: key transfer, firmware, power cycles)."""
    from metercert.cli import certify

    bench_root = tmp_path / "bench"
    bench_root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(bench_root))

    def keep_temp(self) -> None:  # type: ignore[no-untyped-def]
        for proc in self.processes:
            proc.stop()
    monkeypatch.setattr(certify._Bench, "close", keep_temp)
    out = tmp_path / "report"
    code = cli_main(["certify", "--no-tls", "--quiet", "--out", str(out)])
    captured = capfd.readouterr()
    assert code in (0, 1), captured.err
    state_dirs = list(bench_root.glob("metercert-certify-*"))
    assert len(state_dirs) == 1
    secret_files = [p for p in state_dirs[0].rglob("*") if p.suffix in (".yaml", ".pem")]
    secrets = secrets_in(secret_files)
    assert len(secrets) >= 10
    blobs = {"certify: stdout": captured.out.encode(), "certify: stderr": captured.err.encode(),
             **files_under(out)}
    assert {Path(k).name for k in blobs} >= {"results.json", "report.html", "junit.xml"}
    leaks = scan(blobs, secrets)
    assert not leaks, "\n".join(f"{lk.secret_name} ({lk.encoding}) in {lk.where}" for lk in leaks)


# -- constant-time comparisons -------------------------------------------------------------

_SENSITIVE = ("tag", "mac", "gmac", "digest", "secret", "password", "signature", "authentication_value",
              "f_stoc", "f_ctos", "response", "expected")


def _names(node: ast.AST) -> set[str]:
    out = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Name):
            out.add(n.id.lower())
        elif isinstance(n, ast.Attribute):
            out.add(n.attr.lower())
    return out


def _is_metadata(node: ast.AST) -> bool:
    """Sides that make a comparison harmless: len(...), an int, an ALL_CAPS constant."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "len":
        return True
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return True
    if isinstance(node, ast.Name) and node.id.isupper():
        return True
    return isinstance(node, ast.BinOp) and all(_is_metadata(n) for n in (node.left, node.right))


def _risky_compares(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and any(isinstance(op, (ast.Eq, ast.NotEq)) for op in node.ops):
            if any(_is_metadata(side) for side in (node.left, *node.comparators)):
                continue  # a length, or a tag byte against a protocol constant
            names = _names(node)
            # the APDU's service tag byte is protocol framing, not a MAC
            if names & {"expected_tag", "plain_tag", "tag_name"}:
                continue
            if any(n == s or n.endswith("_" + s) or n.startswith(s + "_") for n in names
                   for s in _SENSITIVE):
                where = path.relative_to(SRC) if SRC in path.parents else path.name
                found.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_plain_equality_on_tags_or_secrets() -> None:
    files = [*sorted((SRC / "security").glob("*.py")), SRC / "meter" / "session.py"]
    risky = [r for f in files for r in _risky_compares(f)]
    assert not risky, "use hmac.compare_digest:\n" + "\n".join(risky)


def test_the_compare_scan_can_fail(tmp_path: Path) -> None:
    bad = SRC / "security" / "_probe_not_a_module.py"
    probe = tmp_path / "probe.py"
    probe.write_text("def f(tag, expected_mac, password):\n"
                     "    return tag == expected_mac or password == b'0000' or len(tag) == 12\n")
    risky = _risky_compares(probe)
    assert len(risky) == 2, risky
    assert not bad.exists()


# -- unprotect failures all look the same --------------------------------------------------

EK = bytes.fromhex("000102030405060708090A0B0C0D0E0F")
AK = bytes.fromhex("D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF")
TITLE = bytes.fromhex("4D4D4D0000BC614E")
PLAIN = bytes.fromhex("C0010000080000010000FF0200")


def _flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes((data[index] ^ 0x01,)) + data[index + 1:]


@pytest.mark.parametrize("sc", [0x30, 0x10])
@pytest.mark.parametrize("form", [CipheringForm.GLOBAL, CipheringForm.GENERAL_GLO])
def test_unprotect_failures_are_indistinguishable(sc: int, form: CipheringForm) -> None:
    good = protect(PLAIN, security_control=SecurityControl.from_byte(sc), system_title=TITLE,
                   invocation_counter=0x01234567, encryption_key=EK, authentication_key=AK, form=form)
    assert unprotect(good, encryption_key=EK, authentication_key=AK, system_title=TITLE).plaintext == PLAIN
    other = bytes(16)
    title_at = 2 if form is CipheringForm.GENERAL_GLO else None
    cases = {
        "tag bit": (_flip(good, len(good) - 1), EK, AK, TITLE),
        "body bit": (_flip(good, len(good) - 14), EK, AK, TITLE),
        "counter bit": (_flip(good, len(good) - len(PLAIN) - 13), EK, AK, TITLE),
        "wrong EK": (good, other, AK, TITLE),
        "wrong AK": (good, EK, other, TITLE),
        "wrong title": ((_flip(good, title_at) if title_at else good), EK, AK,
                        TITLE if title_at else bytes(8)),
    }
    if form is CipheringForm.GLOBAL:
        cases["relabelled service"] = (bytes((0xC9,)) + good[1:], EK, AK, TITLE)  # glo-get -> glo-set
    messages = set()
    for name, (apdu, ek, ak, title) in cases.items():
        with pytest.raises(AuthenticationFailed) as info:
            unprotect(apdu, encryption_key=ek, authentication_key=ak, system_title=title)
        messages.add((type(info.value), str(info.value)))
        assert "tag" not in str(info.value).lower() or name == "x"
    assert len(messages) == 1, messages
