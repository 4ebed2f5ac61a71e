"""The reference meter fails closed on damaged state, a second process and a full disk.

Counter-store damage at the store level is in tests/security/test_counters.py; here
the same damage reaches the meter (in-process and ``metercert meter serve``), and a
key transfer that cannot be made durable is refused while the old key stays.
"""

from __future__ import annotations

import asyncio
import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
from _inprocess import InProcessMeter  # type: ignore[import-not-found]
from _meterproc import ServedMeter  # type: ignore[import-not-found]

from metercert.cosem import ActionResult
from metercert.cosem import DlmsData as D
from metercert.meter.model import Meter
from metercert.meter.profile import load_profile
from metercert.security import CounterStoreError, Key, parse_ciphered, wrap_key

CLOCK = "0.0.1.0.0.255"


def _association(m: InProcessMeter) -> int:
    role = m.meter.rbac.role_for_sap(m.settings.client_sap)
    assert role is not None
    return role.association


def _key_transfer(m: InProcessMeter, new: Key) -> ActionResult:
    """key_transfer (Security setup, method 2) of the GUEK, wrapped under the KEK."""
    params = D.array([D.structure([D.enum(0), D.octet_string(wrap_key(m.keys.kek, new))])])
    obis = f"0.0.43.0.{_association(m)}.255"
    result, _ = asyncio.run(m.client.action(64, obis, 2, params))
    return result


def _fail_writes_to(monkeypatch: pytest.MonkeyPatch, call: str, suffix: str, code: int) -> list[str]:
    real = getattr(os, call)
    hits: list[str] = []

    def faulty(fd: int, *args):  # type: ignore[no-untyped-def]
        target = os.readlink(f"/proc/self/fd/{fd}")
        if target.endswith(suffix):
            hits.append(target)
            raise OSError(code, os.strerror(code))
        return real(fd, *args)
    monkeypatch.setattr(os, call, faulty)
    return hits


@pytest.mark.parametrize("call", ["write", "fsync"])
def test_key_transfer_that_cannot_be_saved_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      call: str) -> None:
    state = tmp_path / "state"
    m = InProcessMeter(state)
    before = (state / "meter-0000" / "keys.yaml").read_bytes()
    m.associate()
    hits = _fail_writes_to(monkeypatch, call, "keys.yaml.new", errno.ENOSPC)
    assert _key_transfer(m, Key(os.urandom(16), "guek")) is ActionResult.TEMPORARY_FAILURE
    assert hits, "the full disk was never met"
    monkeypatch.undo()
    assert m.get(8, CLOCK, 2) is not None  # still on the old key, in this association
    m.close()
    assert (state / "meter-0000" / "keys.yaml").read_bytes() == before
    assert not (state / "meter-0000" / "keys.yaml.new").exists()
    again = InProcessMeter(state)  # power cycle: the old key is the one on disk
    again.client._counter.at_least(1 << 20)  # a new client: above the meter's window
    again.associate()
    assert again.get(8, CLOCK, 2) is not None
    again.close()


def test_key_transfer_is_durable_before_it_takes_effect(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "state"
    m = InProcessMeter(state)
    m.associate()
    synced: list[str] = []
    real = os.fsync

    def spy(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)
    monkeypatch.setattr(os, "fsync", spy)
    new = Key(os.urandom(16), "guek")
    assert _key_transfer(m, new) is ActionResult.SUCCESS
    folder = str(state / "meter-0000")
    assert synced.index(folder + "/keys.yaml.new") < synced.index(folder)  # file, then folder
    e = _association(m)
    m.close()
    reopened = Meter(load_profile("conformant"), state)
    assert reopened.state.secrets[e].guek.secret == new.secret
    reopened.close()


@pytest.mark.parametrize("damage", ["zeroed", "random", "missing", "folder-missing", "truncated"])
def test_meter_refuses_to_start_on_damaged_counters(tmp_path: Path, damage: str) -> None:
    state = tmp_path / "state"
    m = InProcessMeter(state)
    m.associate()
    m.get(8, CLOCK, 2)
    m.close()
    counters = state / "meter-0000" / "counters"
    victim = min(counters.glob("tx-*.ctr"))
    if damage == "zeroed":
        victim.write_bytes(bytes(victim.stat().st_size))
    elif damage == "random":
        victim.write_bytes(os.urandom(victim.stat().st_size))
    elif damage == "missing":
        victim.unlink()
    elif damage == "truncated":
        victim.write_bytes(victim.read_bytes()[:100])
    else:
        for p in counters.iterdir():
            p.unlink()
        counters.rmdir()
    with pytest.raises(CounterStoreError) as info:
        Meter(load_profile("conformant"), state)
    text = str(info.value)
    assert victim.name in text and "remove the state folder" in text and "\n" not in text
    # no half-started meter left the folder locked: the refusal can be repeated
    with pytest.raises(CounterStoreError):
        Meter(load_profile("conformant"), state)


def test_two_meters_on_one_state_folder_in_one_process(tmp_path: Path) -> None:
    first = Meter(load_profile("conformant"), tmp_path)
    with pytest.raises(Exception, match="in use by another meter"):
        Meter(load_profile("conformant"), tmp_path)
    first.close()
    Meter(load_profile("conformant"), tmp_path).close()


def _serve(state: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "metercert", "meter", "serve", "--port", "0",
                           "--state-dir", str(state), *extra], capture_output=True, text=True,
                          timeout=60, check=False)


def test_second_meter_serve_on_one_state_dir_exits_with_one_line(tmp_path: Path) -> None:
    first = ServedMeter(tmp_path / "state")
    first.start()
    try:
        second = _serve(tmp_path / "state")
        assert second.returncode == 2
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and "in use by another meter" in lines[0], second.stderr
    finally:
        first.stop()


def test_meter_serve_on_damaged_counters_exits_with_one_line(tmp_path: Path) -> None:
    first = ServedMeter(tmp_path / "state")
    first.start()
    first.stop()
    victim = min((tmp_path / "state" / "meter-0000" / "counters").glob("rx-*.ctr"))
    victim.write_bytes(bytes(victim.stat().st_size))
    proc = _serve(tmp_path / "state")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "damaged" in lines[0] and victim.name in lines[0], proc.stderr


def test_one_torn_record_is_recovered_and_said_so(tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    """One damaged slot (a torn write): the meter resumes above every value it used."""
    state = tmp_path / "state"
    m = InProcessMeter(state)
    m.associate()
    used = []
    for _ in range(3):
        m.get(8, CLOCK, 2)
        used.append(parse_ciphered(m.client.trace.entries[-1].wire).invocation_counter)
    e = _association(m)
    m.close()
    (victim,) = (state / "meter-0000" / "counters").glob(f"tx-*-a{e}-tx.ctr")  # the one in use
    raw = bytearray(victim.read_bytes())
    raw[4096 + 9] ^= 0xFF  # a slot's sequence/value bytes: its checksum no longer matches
    raw[9] ^= 0xFF         # and the other slot: only the high-water record is left
    victim.write_bytes(bytes(raw))
    with caplog.at_level("WARNING", logger="metercert.meter"):
        again = InProcessMeter(state)
    assert any("high-water mark" in r.getMessage() for r in caplog.records)
    again.client._counter.at_least(1 << 20)
    again.associate()
    again.get(8, CLOCK, 2)
    fresh = parse_ciphered(again.client.trace.entries[-1].wire).invocation_counter
    assert fresh > max(used)
    again.close()
