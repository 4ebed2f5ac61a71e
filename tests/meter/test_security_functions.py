"""Security functions of the conformant meter: event log for SECAUD, key transfer that
persists across a restart, signed firmware update."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from metercert.client.errors import (
    AssociationRejected,
    DataAccessFailed,
    ExceptionResponseReceived,
)
from metercert.cosem import ActionResult, DataType
from metercert.meter.objects import Event
from metercert.security import Key, wrap_key
from metercert.security.firmware_image import build_signed_image

from ._support import (
    CLOCK,
    FIRMWARE_ID,
    IMAGE_TRANSFER,
    SECURITY_LOG,
    key_transfer_parameters,
    run,
    serving,
    transfer_image,
)


def test_security_log_readable_by_secaud_after_failed_authentication(tmp_path: Path) -> None:
    from dataclasses import replace

    async def scenario() -> None:
        async with serving(tmp_path / "m") as bench:
            target = bench.target()
            bad = target.client(None, keys=replace(target.keys, ak=Key(os.urandom(16), "ak")))
            with pytest.raises(AssociationRejected):
                async with bad:
                    pass
            async with target.client("SECAUD") as auditor:
                entries = await auditor.get(7, SECURITY_LOG, 2)
                count = await auditor.get(7, SECURITY_LOG, 7)
            async with target.client("READER") as reader:
                with pytest.raises(DataAccessFailed):
                    await reader.get(7, SECURITY_LOG, 2)
            async with target.public() as viewer:
                with pytest.raises(DataAccessFailed):
                    await viewer.get(7, SECURITY_LOG, 2)
        codes = [e.value[1].value for e in entries.value]
        details = [e.value[2].value for e in entries.value]
        assert Event.AUTH_FAILURE in codes
        assert any("sap 1" in d and "does not verify" in d for d in details)
        assert count.value == len(entries.value) >= 1
        # each entry is (date-time octet-string, code, text)
        assert entries.value[0].value[0].type is DataType.OCTET_STRING
        assert len(entries.value[0].value[0].value) == 12

    run(scenario)


def test_key_transfer_changes_the_key_and_survives_restart(tmp_path: Path) -> None:
    new_guek = Key(os.urandom(16), "guek")

    async def scenario() -> None:
        async with serving(tmp_path / "m") as bench:
            target = bench.target()
            old_keys = target.keys
            async with target.client() as admin:
                result, _ = await admin.action(64, "0.0.43.0.6.255", 2, key_transfer_parameters(
                    0, wrap_key(old_keys.kek, new_guek)))
                # the answer to the key transfer itself came under the old key (it verified);
                # from now on the meter expects the new one, also in this association
                with pytest.raises(ExceptionResponseReceived):
                    await admin.get(8, CLOCK, 2)
            assert result is ActionResult.SUCCESS
            # the wrapped key, never the key, went over the wire
            assert all(new_guek.secret not in w for w in admin.trace.wires())
            target.replace_key("guek", new_guek)
            async with target.client() as again:
                await again.get(8, CLOCK, 2)
            stale = bench.target()
            stale.keys = old_keys
            with pytest.raises(AssociationRejected):
                await stale.management()
        # power cycle: a new meter process on the same state folder
        async with serving(tmp_path / "m") as bench:
            target = bench.target()
            assert target.keys.guek == new_guek  # the meter's own record
            async with target.client() as after:
                assert (await after.get(8, CLOCK, 2)).type is DataType.OCTET_STRING

    run(scenario)


def test_key_transfer_with_a_bad_wrap_keeps_the_old_key(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(tmp_path / "m") as bench:
            target = bench.target()
            garbage = bytearray(wrap_key(target.keys.kek, Key(os.urandom(16), "guek")))
            garbage[3] ^= 0x01
            async with target.client() as admin:
                result, _ = await admin.action(64, "0.0.43.0.6.255", 2,
                                               key_transfer_parameters(0, bytes(garbage)))
            assert result is not ActionResult.SUCCESS
            async with target.client() as again:  # old key still works
                await again.get(8, CLOCK, 2)
            codes = [c for _, c, _ in bench.meter.log.entries]
            assert Event.KEY_TRANSFER_REJECTED in codes

    run(scenario)


def test_signed_firmware_image_is_verified_and_activated(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(tmp_path / "m") as bench:
            target = bench.target()
            assert target.firmware_signing_key is not None
            blob = build_signed_image("MCT-2.0.0", os.urandom(1000), target.firmware_signing_key)
            async with target.client() as admin:
                started, verified = await transfer_image(admin, blob)
                status = await admin.get(18, IMAGE_TRANSFER, 6)
                activated, _ = await admin.action(18, IMAGE_TRANSFER, 4, None)
                fw = await admin.get(1, FIRMWARE_ID, 2)
            assert (started, verified, status.value) == (ActionResult.SUCCESS,
                                                          ActionResult.SUCCESS, 3)
            assert activated is ActionResult.SUCCESS
            assert fw.value == "MCT-2.0.0"
            # an image signed by someone else is refused and cannot be activated
            other = build_signed_image("EVIL-1.0", os.urandom(300), _other_key(target))
            async with target.client() as admin:
                _, verified = await transfer_image(admin, other)
                status = await admin.get(18, IMAGE_TRANSFER, 6)
                activated, _ = await admin.action(18, IMAGE_TRANSFER, 4, None)
            assert verified is not ActionResult.SUCCESS and status.value == 4
            assert activated is not ActionResult.SUCCESS
        # the active image survives a restart
        async with serving(tmp_path / "m") as bench, bench.target().public() as public:
            assert (await public.get(1, FIRMWARE_ID, 2)).value == "MCT-2.0.0"

    run(scenario)


def _other_key(target):  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(target.firmware_signing_key.curve)
