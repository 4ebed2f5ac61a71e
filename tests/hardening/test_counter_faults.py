"""The meter's counter store on a disk that fails: it fails closed, never uses an unpersisted counter.

Two ways to make persisting fail: ``os.pwrite`` / ``os.fdatasync`` raising
ENOSPC or EROFS for the counter files (monkeypatched in an in-process meter), and
a real 256 KiB tmpfs filled to the last byte (when this process may mount).
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from _inprocess import Closed, InProcessMeter  # type: ignore[import-not-found]

from metercert.errors import MetercertError
from metercert.security import InvocationCounterStore, parse_ciphered

CLOCK = ("0.0.1.0.0.255", 8, 2)
EXCEPTION_RESPONSE = 0xD8


def _fail_counter_writes(monkeypatch: pytest.MonkeyPatch, call: str, code: int, which: str) -> list[str]:
    """Make ``os.<call>`` fail on counter files whose name contains ``which``."""
    real = getattr(os, call)
    failed: list[str] = []

    def faulty(fd: int, *args):  # type: ignore[no-untyped-def]
        target = os.readlink(f"/proc/self/fd/{fd}")
        name = Path(target).name
        # receive windows persist in the process's replay journal (security/journal.py)
        if (target.endswith(".ctr") and which in name) or (
                which == "-rx" and name.startswith("replay.journal")):
            failed.append(name)
            raise OSError(code, os.strerror(code))
        return real(fd, *args)
    monkeypatch.setattr(os, call, faulty)
    return failed


def _response_counter(apdu: bytes) -> int:
    return parse_ciphered(apdu).invocation_counter


@pytest.fixture()
def meter(tmp_path: Path) -> Iterator[InProcessMeter]:
    m = InProcessMeter(tmp_path / "state")
    m.associate()
    yield m
    m.close()


def test_meter_serves_normally(meter: InProcessMeter) -> None:
    assert meter.get(8, CLOCK[0], 2) is not None


@pytest.mark.parametrize("call", ["pwrite", "fdatasync"])
@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_receive_window_cannot_persist(meter: InProcessMeter, monkeypatch: pytest.MonkeyPatch,
                                       call: str, code: int) -> None:
    """A request whose counter cannot be recorded is not served: exception-response, close."""
    failed = _fail_counter_writes(monkeypatch, call, code, "-rx")
    plain = bytes.fromhex("C0010000080000010000FF0200")
    request = meter.client.protect_request(plain)
    with pytest.raises(Closed) as info:
        meter.raw(request)
    assert failed, "the fault was never hit"
    assert info.value.last is not None and info.value.last[0] == EXCEPTION_RESPONSE
    # the meter logged it, and a new association is refused while the disk stays broken
    with pytest.raises(Closed):
        meter.associate()


@pytest.mark.parametrize("call", ["pwrite", "fdatasync"])
def test_send_counter_cannot_persist(meter: InProcessMeter, monkeypatch: pytest.MonkeyPatch,
                                     tmp_path: Path, call: str) -> None:
    """The meter ciphers only with counters below its persisted mark, then fails closed."""
    seen: list[int] = []
    for _ in range(3):
        meter.get(8, CLOCK[0], 2)
        seen.append(_response_counter(meter.client.trace.entries[-1].wire))
    failed = _fail_counter_writes(monkeypatch, call, errno.ENOSPC, "-tx")
    closed = None
    for _ in range(200):  # bounded: the tx store reserves blocks of 64
        try:
            meter.get(8, CLOCK[0], 2)
        except Closed as exc:
            closed = exc
            break
        seen.append(_response_counter(meter.client.trace.entries[-1].wire))
    assert failed, "the fault was never hit"
    assert closed is not None, "the meter kept ciphering although it could not persist"
    assert closed.last is not None and closed.last[0] == EXCEPTION_RESPONSE  # plain, not ciphered
    # fails closed for good: even a fresh association gets no ciphered answer
    with pytest.raises(Closed):
        meter.associate()
        meter.get(8, CLOCK[0], 2)
    monkeypatch.undo()
    # every counter the meter used is below the mark it had persisted
    state = meter.meter.state
    meter.close()
    reopened = InvocationCounterStore(state.counter_dir, state.system_title,
                                      f"a{meter.session.e or _management(meter)}-tx", block=64)
    try:
        assert seen == sorted(set(seen)), "counters must strictly increase"
        assert max(seen) < reopened.reserved
        assert reopened.next() > max(seen)
    finally:
        reopened.close()


def _management(meter: InProcessMeter) -> int:
    role = meter.meter.rbac.role_for_sap(meter.settings.client_sap)
    assert role is not None
    return role.association


# -- a real full disk ----------------------------------------------------------------------

@pytest.fixture()
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    proc = subprocess.run(check=False, args=["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)],
                          capture_output=True, timeout=10)
    if proc.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs CAP_SYS_ADMIN)")
    try:
        yield mnt
    finally:
        subprocess.run(check=False, args=["umount", "-l", str(mnt)], capture_output=True, timeout=10)


def _fill(folder: Path) -> None:
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for _ in range(10_000):  # bounded: 256 KiB is full long before
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    else:
        raise AssertionError("the tmpfs never filled up")
    finally:
        os.close(fd)


def test_full_disk_after_factory_setup(tiny_tmpfs: Path) -> None:
    """Counter files are made with the keys, so a disk that fills later does not stop them."""
    m = InProcessMeter(tiny_tmpfs / "state")
    try:
        _fill(tiny_tmpfs)
        m.associate()
        seen = []
        for _ in range(3):
            m.get(8, CLOCK[0], 2)
            seen.append(_response_counter(m.client.trace.entries[-1].wire))
        assert seen == sorted(set(seen))
    finally:
        m.close()


def test_full_disk_before_factory_setup(tiny_tmpfs: Path) -> None:
    """A meter that cannot make its counter files refuses to start: no keys.yaml without them."""
    _fill(tiny_tmpfs)
    with pytest.raises(MetercertError) as info:
        InProcessMeter(tiny_tmpfs / "state")
    assert "No space left" in str(info.value) and "\n" not in str(info.value)
    assert not (tiny_tmpfs / "state" / "meter-0000" / "keys.yaml").exists()
