"""metercert's own DLMS client as a client under test (``python -m metercert.headend.reader``).

It follows the plug-in protocol of docs/headend.md: the connection, key file and register
come from ``METERCERT_*`` variables; it associates on the management association, takes
``METERCERT_PUSHES`` pushes, reads the register ``METERCERT_READS`` times and prints one
line per decision (``read N value V`` / ``read N error TEXT``, ``push N value V`` /
``push N error TEXT``). Its sending counters persist in ``METERCERT_STATE_DIR`` (the
client's own store, as a head-end keeps it). With ``METERCERT_ACTION=key-transfer`` it
sends a new unicast key (GUEK) wrapped under the KEK instead of reading.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from metercert.client.errors import DlmsError
from metercert.client.session import DlmsClient, settings_for_role
from metercert.cosem import CosemDecodeError, DlmsData, ObisCode, decode_apdu
from metercert.cosem.xdlms.notification import DataNotification
from metercert.errors import ConnectionFailed, MetercertError
from metercert.security import Key, KeyId, SecurityError, load_keyset, wrap_key


def _env(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if value is None:
        raise SystemExit(f"reader: {name} is not set")
    return value


def make_client() -> DlmsClient:
    keys = load_keyset(_env("METERCERT_KEYS"))
    state = Path(_env("METERCERT_STATE_DIR")) / "metercert-reader"
    state.mkdir(parents=True, exist_ok=True)
    tls = None
    if _env("METERCERT_TLS", "0") == "1":
        from metercert.tlsprobe.contexts import client_context

        tls = client_context(_env("METERCERT_CA"), _env("METERCERT_CLIENT_CERT"),
                             _env("METERCERT_CLIENT_KEY"))
    settings = settings_for_role(keys, framing=_env("METERCERT_FRAMING", "wrapper"), ssl=tls,
                                 timeout=float(_env("METERCERT_TIMEOUT", "3")),
                                 counter_dir=state,
                                 client_sap=int(_env("METERCERT_CLIENT_SAP", "1")))
    return DlmsClient(_env("METERCERT_HOST"), int(_env("METERCERT_PORT")), settings)


def _show(value: object) -> str:
    """A value as one token (the output protocol reads ``\\S+``)."""
    if isinstance(value, (bytes, bytearray)):
        head = bytes(value[:16]).hex()
        return f"hex:{head}" + (f"...({len(value)}-bytes)" if len(value) > 16 else "")
    return "".join(str(value).split())


def _why(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:300]


async def _pushes(client: DlmsClient, count: int) -> None:
    for n in range(1, count + 1):
        try:
            plain = await client.receive_push()
            note = decode_apdu(plain)
            if not isinstance(note, DataNotification):
                raise DlmsError(f"not a data-notification: {type(note).__name__}")
            print(f"push {n} value {_show(note.body.value)}", flush=True)
        except (MetercertError, CosemDecodeError, SecurityError, ValueError) as exc:
            print(f"push {n} error {_why(exc)}", flush=True)


async def _reads(client: DlmsClient, register: ObisCode, count: int) -> bool:
    ok = True
    for n in range(1, count + 1):
        try:
            value = await client.get(3, register, 2)
            print(f"read {n} value {_show(value.value)}", flush=True)
        except (MetercertError, CosemDecodeError, SecurityError, ValueError) as exc:
            ok = False
            print(f"read {n} error {_why(exc)}", flush=True)
            if isinstance(exc, ConnectionFailed):
                client.associated = False  # gone or wedged: no release, just close
                return False
    return ok


async def _key_transfer(client: DlmsClient) -> bool:
    keys = client.settings.keys
    if keys.kek is None:
        print("key-transfer error the key file has no KEK", flush=True)
        return False
    size = 32 if client.settings.suite == 2 else 16
    guek = Key(os.urandom(size), "guek")
    wrapped = wrap_key(keys.kek, guek)
    counter = ObisCode.parse(str(keys.extra.get("invocation_counter_object", "0.0.43.1.1.255")))
    setup = ObisCode(0, 0, 43, 0, counter.e, 255)  # the association's Security Setup
    params = DlmsData.array([DlmsData.structure([DlmsData.enum(int(KeyId.GUEK)),
                                                 DlmsData.octet_string(wrapped)])])
    try:
        result, _ = await client.action(64, setup, 2, params)
    except (MetercertError, CosemDecodeError, SecurityError, ValueError) as exc:
        print(f"key-transfer error {_why(exc)}", flush=True)
        return False
    print(f"key-transfer result {result.name.lower()}", flush=True)
    return True


async def main() -> int:
    client = make_client()
    try:
        try:
            await client.open()
        except (MetercertError, SecurityError, ValueError) as exc:
            print(f"associate error {_why(exc)}", flush=True)
            return 1
        if _env("METERCERT_ACTION", "read") == "key-transfer":
            ok = await _key_transfer(client)
        else:
            await _pushes(client, int(_env("METERCERT_PUSHES", "0")))
            ok = await _reads(client, ObisCode.parse(_env("METERCERT_REGISTER")),
                              int(_env("METERCERT_READS", "3")))
        if client.associated and client.stream is not None and not client.stream.closed:
            await client.release()
        return 0 if ok else 1
    finally:
        await client.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
