"""What the DLMS checks share: probe objects, the served/refused judgement, client helpers."""


import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from metercert.checks.base import (
    CheckOutcome,
    Evidence,
)
from metercert.client.errors import AssociationRejected, DlmsError, NoResponse
from metercert.client.session import DlmsClient
from metercert.client.target import DlmsTarget
from metercert.client.trace import Trace
from metercert.cosem import (
    ActionResult,
    CosemAttributeDescriptor,
    CosemDecodeError,
    DataAccessResult,
    GetRequestNormal,
    ObisCode,
    decode_apdu,
)
from metercert.errors import ConnectionFailed
from metercert.security import (
    SecurityError,
    is_ciphered,
    parse_ciphered,
    tag_name,
)

CLOCK = ObisCode(0, 0, 1, 0, 0, 255)
ENERGY = ObisCode(1, 0, 1, 8, 0, 255)
FIRMWARE_ID = ObisCode(1, 0, 0, 2, 0, 255)
CURRENT_ASSOCIATION = ObisCode(0, 0, 40, 0, 0, 255)
IMAGE_TRANSFER = ObisCode(0, 0, 44, 0, 0, 255)
DISCONNECT = ObisCode(0, 0, 96, 3, 10, 255)
SECURITY_LOG = ObisCode(0, 0, 99, 98, 0, 255)
DENIED = {ActionResult.READ_WRITE_DENIED, ActionResult.OBJECT_UNDEFINED,
          ActionResult.SCOPE_OF_ACCESS_VIOLATED}
DENIED_DATA = {DataAccessResult.READ_WRITE_DENIED, DataAccessResult.OBJECT_UNDEFINED,
               DataAccessResult.SCOPE_OF_ACCESS_VIOLATED}
WELL_KNOWN_LLS_PASSWORDS = [b"00000000", b"12345678", b"11111111", b"ABCDEFGH", b"Gurux",
                            b"0000000000000000", b"1234567890123456", b"password"]

def _trace(client: DlmsClient, since: int = 0, label: str = "APDU trace") -> Evidence:
    return Evidence(label, client.trace.text(since), "apdu-trace",
                    f"tcp://{client.host}:{client.port} client SAP {client.settings.client_sap}")


def _clock_request(c: DlmsClient) -> bytes:
    """GET of the clock (the meter's own, from discovery): the probe request most checks send."""
    return GetRequestNormal(CosemAttributeDescriptor(8, c.clock_obis, 2)).to_bytes()


def _served(client: DlmsClient, answer: bytes) -> bool:
    """Did the meter execute the request (a response carrying data or success)?"""
    if not answer or answer[0] == 0xD8:
        return False
    plain = client.peek(answer)
    if plain is None or not plain:
        return False
    try:
        decoded = decode_apdu(plain)
    except Exception:  # noqa: BLE001 - an undecodable answer is not a served request
        return False
    result = getattr(decoded, "result", None)
    if isinstance(result, (DataAccessResult, ActionResult)):
        return result in (DataAccessResult.SUCCESS, ActionResult.SUCCESS)
    return result is not None


def _describe(client: DlmsClient, answer: bytes | None) -> str:
    if answer is None:
        return "no answer (connection closed)"
    if not answer:
        return "empty answer"
    if answer[0] == 0xD8:
        return f"exception-response {answer.hex().upper()}"
    plain = client.peek(answer)
    shown = tag_name(plain[0]) if plain else "unverifiable"
    return f"{tag_name(answer[0])} -> {shown}"


async def _try(client: DlmsClient, wire: bytes, note: str) -> bytes | None:
    try:
        return await client.exchange(wire, note=note)
    except NoResponse:
        return None


async def _wait_for_management(target: DlmsTarget, roles: tuple[str | None, ...] = (None,),
                               limit_s: float = 30.0) -> None:
    """After deliberate authentication failures, wait until the meter lets each of the given
    roles (None = the management client) back in, so later checks are not locked out."""
    deadline = time.monotonic() + limit_s
    for role in roles:
        while True:
            c = target.client(role)
            try:
                await c.open()
                await c.release()
                break
            except AssociationRejected:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)
            finally:
                await c.close()


async def _with_management(target: DlmsTarget,
                           body: Callable[[DlmsClient], Awaitable[CheckOutcome]]) -> CheckOutcome:
    c = await target.management()
    try:
        return await body(c)
    finally:
        try:
            if c.associated and c.stream is not None and not c.stream.closed:
                await c.release()
        except (DlmsError, ConnectionFailed):
            pass
        await c.close()


async def _security_setup(client: DlmsClient, target: DlmsTarget | None = None) -> ObisCode:
    """The Security Setup of the association: discovery's (or the campaign file's) when the
    target has one, else attribute 9 of the current association."""
    if target is not None and target.inventory is not None:
        setup = target.inventory.probe("security_setup")
        if setup is not None:
            return setup
    ref = await client.get(15, CURRENT_ASSOCIATION, 9)
    return ObisCode.from_bytes(bytes(ref.value))


async def _probe(target: DlmsTarget, name: str, default: ObisCode) -> ObisCode | None:
    """Probe object ``name`` from discovery, the campaign file's, or None if the meter has
    none; ``default`` when discovery did not run (a check called on its own)."""
    if target.inventory is None:
        return default
    return target.inventory.probe(name)



async def _attempt(target: DlmsTarget, role: str | None, note: str, **settings: Any) -> tuple[bool, DlmsClient]:
    c = target.client(role, **settings)
    try:
        await c.connect()
        c.trace.note(note)
        await c.associate()
        return True, c
    except AssociationRejected:
        return False, c
    except (DlmsError, ConnectionFailed) as exc:
        c.trace.note(f"refused: {exc}")
        return False, c
    finally:
        if c.associated:
            try:
                await c.release()
            except (DlmsError, ConnectionFailed):
                pass
        await c.close()



async def _clock_served(c: DlmsClient, note: str) -> bool:
    """Send a ciphered GET of the clock as this client would; did the meter serve it?"""
    answer = await _try(c, c.protect_request(_clock_request(c)), note)
    return answer is not None and _served(c, answer)




def _meter_counters(trace: Trace, *, global_only: bool = False,
                    with_release: bool = False) -> list[int]:
    """The meter's invocation counters on one trace, in the order received: its ciphered
    answers and the ciphered initiate-response inside an AARE (and an RLRE, with
    ``with_release``); ``global_only`` leaves out dedicated-key answers, whose counters
    belong to a key of their own."""
    from metercert.cosem import AARE, RLRE

    unwrap = {0x61: AARE, 0x63: RLRE} if with_release else {0x61: AARE}
    out = []
    for entry in trace.entries:
        if entry.direction != "<-" or not entry.wire:
            continue
        wire = entry.wire
        if wire[0] in unwrap:
            try:
                wire = unwrap[wire[0]].from_bytes(wire).user_information or b""
            except CosemDecodeError:
                continue  # an answer that does not decode shows no counter
        if not wire or not is_ciphered(wire):
            continue
        try:
            parsed = parse_ciphered(wire)
        except SecurityError:
            continue
        if not (global_only and parsed.form.dedicated):
            out.append(parsed.invocation_counter)
    return out


