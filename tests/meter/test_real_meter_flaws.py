"""Flaws seen on meters metercert did not build, each shown by its own reference profile.

Every test runs the same attack against the flawed profile (it works) and against the
conformant one (it fails), over a real loopback socket. The power cuts are real: the
meter runs in a child process and is killed with SIGKILL (no clean shutdown runs).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from metercert.client.errors import AssociationRejected, DataAccessFailed, DlmsError
from metercert.client.session import DlmsClient
from metercert.client.target import DlmsTarget
from metercert.cosem import (
    AARE,
    ActionResult,
    AssociationResult,
    CosemAttributeDescriptor,
    GetRequestNormal,
    ObisCode,
)
from metercert.errors import ConnectionFailed
from metercert.lab.power import MeterProcess
from metercert.security import load_keyset
from metercert.transport.errors import TransportTimeout
from metercert.transport.stream import open_dlms_connection

from ._support import CLOCK, FIRMWARE_ID, IMAGE_TRANSFER, received_counters, run, serving
from ._support import transfer_image as _transfer_image
from .test_awkward_profiles import associated, object_list, public_aarq

BOTH = pytest.mark.parametrize("flawed", [False, True], ids=["conformant", "flawed"])


def _last_aarq(client: DlmsClient) -> bytes:
    return [e.wire for e in client.trace.entries
            if e.direction == "->" and e.wire[:1] == b"\x60"][-1]


async def _public_read(target: DlmsTarget, class_id: int, obis: str, attribute: int):  # type: ignore[no-untyped-def]
    public = target.public()
    await public.connect()
    await public.associate()
    try:
        return await public.get(class_id, obis, attribute)
    finally:
        await public.close()


# -- replay-window-in-ram -----------------------------------------------------------------------
@BOTH
def test_replay_window_in_ram_is_lost_at_a_power_cut(tmp_path: Path, flawed: bool) -> None:
    """A clean disconnect saves the window; requests after it are above the saved value, so
    after a SIGKILL the flawed meter takes them again (here: the AARQ of the killed session)
    and reports an expected counter at or below the captured one."""
    profile = "replay-window-in-ram" if flawed else "conformant"

    async def scenario() -> tuple[int, int, int, AARE]:
        meter = MeterProcess(tmp_path / "state", profile=profile, port=0)
        host, port = await asyncio.to_thread(meter.start)
        target = DlmsTarget(host, port, load_keyset(meter.keys_out),
                            counter_dir=tmp_path / "client", timeout=5.0)
        try:
            clean = await associated(target)
            await clean.get(8, CLOCK, 2)
            saved = clean.last_sent_counter or 0
            await clean.close()  # a clean disconnect: the flawed meter saves its window here
            killed = await associated(target)
            aarq = _last_aarq(killed)
            captured = killed.last_sent_counter or 0
            await killed.get(8, CLOCK, 2)
            meter.kill()  # the supply goes: nothing is saved
            await killed.close()
            await asyncio.to_thread(meter.start)
            expected = int((await _public_read(target, 1, "0.0.43.1.6.255", 2)).value)
            replay = target.client(None)
            answer = AARE.from_bytes(await replay.exchange(aarq, note="replayed AARQ"))
            await replay.close()
            return saved, captured, expected, answer
        finally:
            meter.stop()

    saved, captured, expected, replayed = run(scenario, timeout=90)
    assert expected > saved  # what the clean disconnect saved survives in both
    if flawed:
        assert expected <= captured
        assert replayed.result is AssociationResult.ACCEPTED
    else:
        assert expected > captured
        assert replayed.result is not AssociationResult.ACCEPTED


# -- own-ic-reset-at-boot -----------------------------------------------------------------------
@BOTH
def test_own_counter_reset_at_boot(tmp_path: Path, flawed: bool) -> None:
    """The flawed meter's responses after a restart reuse its own counters (AES-GCM nonce
    reuse) while its receive window survives: a replayed AARQ is still refused."""
    profile = "own-ic-reset-at-boot" if flawed else "conformant"

    async def scenario() -> tuple[list[int], list[int], AARE]:
        async with serving(tmp_path / "m", profile) as bench:
            before = await associated(bench.target())
            for _ in range(3):
                await before.get(8, CLOCK, 2)
            aarq = _last_aarq(before)
            await before.close()
        async with serving(tmp_path / "m", profile) as bench:  # the meter boots again
            target = bench.target()
            replay = target.client(None)
            answer = AARE.from_bytes(await replay.exchange(aarq, note="replayed AARQ"))
            await replay.close()
            after = await associated(target)
            await after.get(8, CLOCK, 2)
            await after.close()
        return received_counters(before), received_counters(after), answer

    before, after, replayed = run(scenario)
    assert replayed.result is not AssociationResult.ACCEPTED  # windows persist in both
    if flawed:
        assert min(after) <= max(before)
    else:
        assert min(after) > max(before)


def test_own_counter_reset_survives_a_sigkill_too(tmp_path: Path) -> None:
    """The same after a real power cut: the first response after the restart carries a
    counter the meter already used."""
    async def scenario() -> tuple[list[int], list[int]]:
        meter = MeterProcess(tmp_path / "state", profile="own-ic-reset-at-boot", port=0)
        host, port = await asyncio.to_thread(meter.start)
        target = DlmsTarget(host, port, load_keyset(meter.keys_out),
                            counter_dir=tmp_path / "client", timeout=5.0)
        try:
            before = await associated(target)
            await before.get(8, CLOCK, 2)
            meter.kill()
            await before.close()
            await asyncio.to_thread(meter.start)
            after = await associated(target)
            await after.get(8, CLOCK, 2)
            await after.close()
            return received_counters(before), received_counters(after)
        finally:
            meter.stop()

    before, after = run(scenario, timeout=60)
    assert set(after) & set(before)


# -- public-reads-secrets -----------------------------------------------------------------------
@BOTH
def test_public_client_reads_every_secret(tmp_path: Path, flawed: bool) -> None:
    profile = "public-reads-secrets" if flawed else "conformant"

    async def scenario() -> tuple[dict[str, bytes | None], dict[str, tuple[int, int]]]:
        async with serving(tmp_path / "m", profile) as bench:
            target = bench.target()
            public = target.public()
            await public.connect()
            await public.associate()
            listed = object_list(await public.get(15, "0.0.40.0.0.255", 2))
            secrets: dict[str, bytes | None] = {}
            for e in (2, 3, 6):
                try:
                    secrets[f"0.0.40.0.{e}.255"] = bytes(
                        (await public.get(15, f"0.0.40.0.{e}.255", 7)).value)
                except DataAccessFailed:
                    secrets[f"0.0.40.0.{e}.255"] = None
            await public.close()
            return secrets, listed

    secrets, listed = run(scenario)
    keys = load_keyset(tmp_path / "m" / "client-keys.yaml")
    by_role = {r["role"]: r for r in keys.extra["roles"]}
    expected = {"0.0.40.0.2.255": by_role["READER"]["hls_secret"],
                "0.0.40.0.3.255": by_role["OPERATOR"]["hls_secret"],
                "0.0.40.0.6.255": keys.extra["hls_secret"]}
    if flawed:
        assert {k: v.hex().upper() if v else v for k, v in secrets.items()} == expected
        assert set(expected) <= set(listed)  # the object list shows them to the public client
    else:
        assert secrets == dict.fromkeys(expected)
        assert not set(expected) & set(listed)


# -- firmware-size-only -------------------------------------------------------------------------
@BOTH
def test_firmware_verified_by_size_only(tmp_path: Path, flawed: bool) -> None:
    """500 random bytes (no envelope, no signature) announced as 500 bytes."""
    profile = "firmware-size-only" if flawed else "conformant"

    async def scenario() -> tuple[ActionResult | None, ActionResult, str]:
        async with serving(tmp_path / "m", profile) as bench:
            admin = await associated(bench.target())
            _, verified = await _transfer_image(admin, os.urandom(500), b"EVIL-6.6.6")
            activated, _ = await admin.action(18, IMAGE_TRANSFER, 4, None)
            firmware = str((await admin.get(1, FIRMWARE_ID, 2)).value)
            await admin.close()
            return verified, activated, firmware

    verified, activated, firmware = run(scenario)
    assert (verified is ActionResult.SUCCESS) is flawed
    assert (activated is ActionResult.SUCCESS) is flawed
    assert ("EVIL-6.6.6" in firmware) is flawed


# -- no-lockout ---------------------------------------------------------------------------------
@BOTH
def test_no_lockout_after_failed_authentications(tmp_path: Path, flawed: bool) -> None:
    """Three wrong HLS replies (the profile's auth_failures_before_lockout), then the right
    one: the conformant meter is locked for lockout_seconds, the flawed one lets it in."""
    profile = "no-lockout" if flawed else "conformant"

    def flip(reply: bytes) -> bytes:
        return reply[:-1] + bytes([reply[-1] ^ 0x01])

    async def scenario() -> tuple[int, bool]:
        async with serving(tmp_path / "m", profile) as bench:
            target = bench.target()
            failures = 0
            for _ in range(bench.meter.profile.auth_failures_before_lockout):
                client = target.client()
                try:
                    await client.sync_counter()
                    await client.connect()
                    await client.associate(tamper_hls_reply=flip)
                except DlmsError:
                    failures += 1
                finally:
                    await client.close()
            try:
                good = await associated(target)
                await good.get(8, CLOCK, 2)
                await good.close()
                let_in = True
            except AssociationRejected:
                let_in = False
            return failures, let_in

    failures, let_in = run(scenario)
    assert failures == 3
    assert let_in is flawed


# -- wedged-by-oversized-frame ------------------------------------------------------------------
_HUGE_HEADER = bytes.fromhex("0001" "0010" "0001" "FFFF")  # version 1, SAP 16 -> 1, 65535 bytes


@BOTH
def test_oversized_frame_wedges_the_meter_until_restart(tmp_path: Path, flawed: bool) -> None:
    profile = "wedged-by-oversized-frame" if flawed else "conformant"

    async def answers(host: str, port: int, aarq: bytes) -> bool:
        stream = await open_dlms_connection(host, port, client_address=16, server_address=1,
                                            timeout=5.0)
        try:
            await stream.send(aarq)
            await stream.recv(timeout=0.5)
            return True
        except TransportTimeout:
            return False
        finally:
            await stream.aclose()

    async def scenario() -> tuple[bool, bool, bool, bool]:
        async with serving(tmp_path / "m", profile) as bench:
            host, port = bench.fleet.endpoints[0]
            aarq = public_aarq(bench.target())
            healthy = await answers(host, port, aarq)
            _, writer = await asyncio.open_connection(host, port)
            writer.write(_HUGE_HEADER)  # and nothing else
            await writer.drain()
            await asyncio.sleep(0.2)
            after = await answers(host, port, aarq)
            again = await answers(host, port, aarq)  # it stays deaf
            writer.close()
        async with serving(tmp_path / "m", profile) as bench:  # power cycle
            host, port = bench.fleet.endpoints[0]
            restarted = await answers(host, port, public_aarq(bench.target()))
        return healthy, after, again, restarted

    healthy, after, again, restarted = run(scenario)
    assert healthy and restarted
    assert after is (not flawed) and again is (not flawed)


def test_wedged_meter_is_deaf_on_an_open_association_too(tmp_path: Path) -> None:
    async def scenario() -> bool:
        async with serving(tmp_path / "m", "wedged-by-oversized-frame") as bench:
            client = await associated(bench.target())
            await client.get(8, CLOCK, 2)
            host, port = bench.fleet.endpoints[0]
            _, writer = await asyncio.open_connection(host, port)
            writer.write(_HUGE_HEADER)
            await writer.drain()
            await asyncio.sleep(0.2)
            get = GetRequestNormal(CosemAttributeDescriptor(8, ObisCode.parse(CLOCK), 2))
            try:
                await client.exchange(client.protect_request(get.to_bytes()), timeout=0.5)
                answered = True
            except ConnectionFailed:  # NoResponse: nothing came back
                answered = False
            writer.close()
            await client.close()
            return answered

    assert run(scenario) is False
