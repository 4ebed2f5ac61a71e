"""Each flawed profile does what its name says; the conformant meter refuses the same attack.

Every test runs twice: ``flawed=False`` against the conformant profile (the attack must
fail) and ``flawed=True`` against the profile with that one flaw (the attack works).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from metercert.client.errors import AssociationRejected, DataAccessFailed
from metercert.cosem import AARE, ActionResult, AssociationResult, DataAccessResult
from metercert.security import Key, Mechanism, wrap_key
from metercert.security.firmware_image import build_signed_image

from ._support import (
    CLOCK,
    CURRENT_ASSOCIATION,
    DISCONNECT,
    IMAGE_TRANSFER,
    key_transfer_parameters,
    received_counters,
    run,
    serving,
    transfer_image,
)

BOTH = pytest.mark.parametrize("flawed", [False, True], ids=["conformant", "flawed"])


def _profile(flaw: str, flawed: bool) -> str:
    return flaw if flawed else "conformant"


@BOTH
def test_accepts_downgrade(tmp_path: Path, flawed: bool) -> None:
    """An AARQ whose ciphered initiate-request is in suite 0 (the meter runs suite 1), and a
    suite-0 GET on an established association."""
    from metercert.cosem import CosemAttributeDescriptor, GetRequestNormal, ObisCode

    async def scenario() -> tuple[bool, int]:
        async with serving(tmp_path / "m", _profile("accepts-downgrade", flawed)) as bench:
            client = bench.target().client(None)
            try:
                await client.sync_counter()  # before our connection: one connection at a time
                await client.connect()
                await client.associate(suite=0)
                associated = True
            except AssociationRejected:
                associated = False
            finally:
                await client.close()
            async with bench.target().client() as c:
                plain = GetRequestNormal(CosemAttributeDescriptor(8, ObisCode.parse(CLOCK), 2))
                answer = await c.exchange(c.protect_request(plain.to_bytes(), suite=0))
            return associated, answer[0]

    associated, answer_tag = run(scenario)
    assert associated is flawed
    assert answer_tag == (0xCC if flawed else 0xD8)


@BOTH
def test_no_replay_check(tmp_path: Path, flawed: bool) -> None:
    async def scenario() -> bytes:
        async with (serving(tmp_path / "m", _profile("no-replay-check", flawed)) as bench,
                    bench.target().client() as client):
            mark = client.trace.mark()
            await client.get(8, CLOCK, 2)
            captured = client.trace.wires(mark)[0]
            return await client.exchange(captured, note="replay")

    answer = run(scenario)
    if flawed:
        assert answer[0] == 0xCC  # served again
    else:
        assert answer[:3] == bytes([0xD8, 0x01, 0x06])  # exception: invocation-counter error


@BOTH
def test_default_lls_password(tmp_path: Path, flawed: bool) -> None:
    async def scenario() -> bool:
        async with serving(tmp_path / "m", _profile("default-lls-password", flawed)) as bench:
            client = bench.target().client(None, mechanism=Mechanism.LLS, password=b"00000000")
            try:
                async with client:
                    await client.get(8, CLOCK, 2)
                return True
            except AssociationRejected:
                return False

    assert run(scenario) is flawed


@BOTH
def test_ic_reset_on_power_cycle(tmp_path: Path, flawed: bool) -> None:
    async def scenario() -> tuple[list[int], list[int], AARE]:
        prof = _profile("ic-reset-on-power-cycle", flawed)
        async with serving(tmp_path / "m", prof) as bench:
            async with bench.target().client() as before:
                for _ in range(3):
                    await before.get(8, CLOCK, 2)
            # the management AARQ (the first one in the trace is the public counter sync)
            aarq = [e.wire for e in before.trace.entries
                    if e.direction == "->" and e.wire[:1] == b"\x60"][-1]
            assert bytes.fromhex("60857405080205") in aarq  # HLS-GMAC mechanism name
        async with serving(tmp_path / "m", prof) as bench:  # power cycle: same state folder
            target = bench.target()
            replay = target.client(None)
            answer = AARE.from_bytes(await replay.exchange(aarq, note="replayed AARQ"))
            await replay.close()
            after = target.client(None)
            await after.connect()
            await after.associate()  # no sync: the client's own counters persisted
            await after.get(8, CLOCK, 2)
            await after.__aexit__(None, None, None)
        return received_counters(before), received_counters(after), answer

    before, after, replayed = run(scenario)
    if flawed:
        assert replayed.result is AssociationResult.ACCEPTED
        assert min(after) <= max(before)  # the meter reuses its counters
    else:
        assert replayed.result is not AssociationResult.ACCEPTED
        assert min(after) > max(before)


@BOTH
def test_key_wrap_unchecked(tmp_path: Path, flawed: bool) -> None:
    async def scenario() -> tuple[ActionResult, bool]:
        async with serving(tmp_path / "m", _profile("key-wrap-unchecked", flawed)) as bench:
            target = bench.target()
            garbage = bytearray(wrap_key(target.keys.kek, Key(os.urandom(16), "guek")))
            garbage[0] ^= 0xFF  # integrity check value no longer A6A6...
            async with target.client() as admin:
                result, _ = await admin.action(64, "0.0.43.0.6.255", 2,
                                               key_transfer_parameters(0, bytes(garbage)))
            try:
                async with target.client() as again:
                    await again.get(8, CLOCK, 2)
                old_key_works = True
            except AssociationRejected:
                old_key_works = False
            return result, old_key_works

    result, old_key_works = run(scenario)
    assert (result is ActionResult.SUCCESS) is flawed
    assert old_key_works is not flawed  # the flawed meter installed garbage


@BOTH
def test_operator_can_update_firmware(tmp_path: Path, flawed: bool) -> None:
    async def scenario() -> ActionResult:
        async with serving(tmp_path / "m", _profile("operator-can-update-firmware", flawed)) as bench:
            target = bench.target()
            blob = build_signed_image("MCT-9.9.9", os.urandom(200), target.firmware_signing_key)
            async with target.client("OPERATOR") as operator:
                # OPERATOR's own right, in both profiles
                controlled, _ = await operator.action(70, DISCONNECT, 2, None)
                assert controlled is ActionResult.SUCCESS
                started, _ = await transfer_image(operator, blob)
            return started

    started = run(scenario)
    if flawed:
        assert started is ActionResult.SUCCESS
    else:
        assert started is ActionResult(int(DataAccessResult.READ_WRITE_DENIED))


@BOTH
def test_secret_readable(tmp_path: Path, flawed: bool) -> None:
    async def scenario() -> bytes | None:
        async with serving(tmp_path / "m", _profile("secret-readable", flawed)) as bench:
            target = bench.target()
            async with target.client() as admin:
                try:
                    return bytes((await admin.get(15, CURRENT_ASSOCIATION, 7)).value)
                except DataAccessFailed:
                    return None

    leaked = run(scenario)
    if flawed:
        assert leaked is not None and len(leaked) == 16
    else:
        assert leaked is None


@BOTH
def test_unsigned_firmware_accepted(tmp_path: Path, flawed: bool) -> None:
    async def scenario() -> ActionResult | None:
        async with serving(tmp_path / "m", _profile("unsigned-firmware-accepted", flawed)) as bench:
            blob = build_signed_image("EVIL-0.0.1", os.urandom(500), None)  # no signature
            async with bench.target().client() as admin:
                _, verified = await transfer_image(admin, blob)
                activated, _ = await admin.action(18, IMAGE_TRANSFER, 4, None)
            return verified if activated is ActionResult.SUCCESS else None

    outcome = run(scenario)
    assert (outcome is ActionResult.SUCCESS) is flawed


def test_lls_wrong_password_refused_even_when_flawed(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(tmp_path / "m", "default-lls-password") as bench:
            client = bench.target().client(None, mechanism=Mechanism.LLS, password=b"12345678")
            with pytest.raises(AssociationRejected):
                async with client:
                    pass

    run(scenario)

