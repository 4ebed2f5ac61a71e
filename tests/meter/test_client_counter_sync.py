"""A client that lost its counters can only associate again after reading the meter's
expected counter through the public client (the meter refuses a stale initiate-request)."""

import asyncio
from dataclasses import replace

import pytest

from metercert.client.errors import AssociationRejected
from metercert.client.session import DlmsClient, settings_for_role
from metercert.meter.profile import load_profile
from metercert.meter.server import MeterFleet
from metercert.security import load_keyset


async def _scenario(tmp_path):
    fleet = MeterFleet(load_profile("conformant"), tmp_path / "state", port=0)
    await fleet.start()
    try:
        keys = load_keyset(fleet.write_key_file(tmp_path / "keys.yaml"))
        host, port = fleet.endpoints[0]
        first = settings_for_role(keys, counter_dir=tmp_path / "c1")
        for _ in range(2):  # move the meter's window forward
            async with DlmsClient(host, port, first) as c:
                await c.get(8, "0.0.1.0.0.255", 2)
        lost = replace(first, counter_dir=tmp_path / "c2", invocation_counter_object=None)
        blind = DlmsClient(host, port, lost)
        synced = await blind.sync_counter()  # before our connection: one connection at a time
        await blind.connect()
        with pytest.raises(AssociationRejected):
            await blind.associate()
        await blind.close()
        note = blind.trace.text()
        resynced = DlmsClient(host, port, replace(first, counter_dir=tmp_path / "c3"))
        async with resynced as c:
            await c.get(8, "0.0.1.0.0.255", 2)
        return synced, note
    finally:
        await fleet.stop()


def test_counter_sync_through_the_public_client(tmp_path):
    synced, note = asyncio.run(_scenario(tmp_path))
    assert synced is None
    assert "no invocation counter object at 0.0.43.1.0.255" in note
