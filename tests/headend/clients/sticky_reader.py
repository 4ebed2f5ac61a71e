"""A client for the head-end tests that, once it has refused one response, refuses every
later one in the association although it still asks (as a client whose receive state a
refused response corrupts would): metercert's reader with a sticky error."""

from __future__ import annotations

import asyncio
import sys

from metercert.client.errors import ResponseNotTrusted
from metercert.client.session import DlmsClient
from metercert.cosem import ObisCode
from metercert.headend import reader


async def sticky_reads(client: DlmsClient, register: ObisCode, count: int) -> bool:
    spoiled = False
    for n in range(1, count + 1):
        try:
            value = await client.get(3, register, 2)
        except ResponseNotTrusted as exc:
            spoiled = True
            print(f"read {n} error {exc}", flush=True)
            continue
        if spoiled:
            print(f"read {n} error still refusing after an earlier bad response", flush=True)
        else:
            print(f"read {n} value {value.value}", flush=True)
    return not spoiled


if __name__ == "__main__":
    reader._reads = sticky_reads  # type: ignore[assignment]
    sys.exit(asyncio.run(reader.main()))
