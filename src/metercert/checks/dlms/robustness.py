"""DLMS checks. Robustness: malformed frames do not stop the meter."""

from __future__ import annotations

import asyncio
import os
import time

from metercert.checks.base import (
    CheckOutcome,
    Severity,
    TargetKind,
    check,
    fail,
    inconclusive,
    passed,
)
from metercert.checks.dlms._common import (
    _trace,
)
from metercert.client.errors import (
    DlmsError,
    NoResponse,
)
from metercert.client.target import DlmsTarget
from metercert.errors import ConnectionFailed

# -- robustness ------------------------------------------------------------------------------


@check("DLMS-ROBUST-01", "A burst of malformed frames does not stop the meter",
       severity=Severity.HIGH, requirements=["DLMS:ROBUSTNESS", "EN303645:5.13-1", "CRA:I.2h",
                                             "IEC62443-4-2:CR3.5", "IEC62443-4-2:CR7.1",
                                             "EN18031-1:RLM-1"],
       tags=["robustness"], timeout=60.0, target=TargetKind.DLMS)
async def malformed_burst(target: DlmsTarget) -> CheckOutcome:
    """Raw garbage, an oversized wrapper length, truncated and nonsense APDUs on several
    connections; afterwards the public and the management associations still work."""
    try:  # both must work before the burst, or the burst cannot be blamed
        async with target.public() as p0:
            await p0.get(8, p0.clock_obis, 2)
        m0 = await target.management()
        await m0.release()
        await m0.close()
    except (DlmsError, ConnectionFailed) as exc:
        return inconclusive(f"the associations did not work before the burst: {exc}")
    sent = 0
    for payload in (os.urandom(64), b"\x00\x01\x00\x10\x00\x01\xff\xff" + os.urandom(32),
                    b"\x7e\xa0\x07\x03\x21\x93\x0f\x01\x7e" * 3, b"\x00" * 40):
        try:
            if target.transport in ("serial", "optical"):  # the line itself gets the bytes
                from metercert.transport.serial import send_raw

                await send_raw(target.host, target.port, payload,
                               optical=target.transport == "optical")
            elif target.transport == "udp":  # each payload is one datagram
                loop = asyncio.get_running_loop()
                udp, _ = await loop.create_datagram_endpoint(
                    asyncio.DatagramProtocol, remote_addr=(target.host, target.port))
                udp.sendto(payload)
                udp.close()
            else:
                _reader, writer = await asyncio.open_connection(target.host, target.port,
                                                                ssl=target.ssl)
                writer.write(payload)
                await writer.drain()
                writer.close()
            sent += 1
        except OSError:
            pass
    c = target.public()
    silent = 0   # answers that never came (not a closed connection: a time-out)
    for apdu in (b"\x60", b"\x60\x80", b"\xc0\x01", b"\xc8\x05\x30\x00", b"\xdb\x08" + b"A" * 8,
                 b"\x62\xff\x00", os.urandom(300), b"\xd8", b"\x01\x00\x00"):
        if silent >= 2:
            c.trace.note("two time-outs in a row: the meter has gone quiet, the burst stops")
            break
        started = time.monotonic()
        try:
            await c.exchange(apdu, note="malformed", timeout=2.0)
            silent = 0
        except (NoResponse, ConnectionFailed):
            silent = silent + 1 if time.monotonic() - started >= 1.9 else 0
            await c.close()
        sent += 1
    await c.close()
    try:
        async with target.public() as p:
            await p.get(8, p.clock_obis, 2)
        m = await target.management()
        await m.get(8, m.clock_obis, 2)
        await m.release()
        await m.close()
    except (DlmsError, ConnectionFailed) as exc:
        return fail(f"meter stopped answering after {sent} malformed frames: {exc}", _trace(c))
    return passed(f"{sent} malformed frames; public and management associations still work",
                  _trace(c))


