"""dlms-cosem 25.1.0's client as a client under test (the head-end plug-in protocol of
docs/headend.md). The glue only maps the protocol to the library: dlms-cosem decides
whether each response is taken. Like the library's own examples it keeps no counter
state between runs; it takes no pushes and has no key-transfer call."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import structlog
import yaml
from dlms_cosem import cosem, enumerations
from dlms_cosem.client import DlmsClient
from dlms_cosem.io import BlockingTcpIO, TcpTransport
from dlms_cosem.security import HighLevelSecurityGmacAuthentication

structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))


def _why(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:300]


def _value(raw: bytes) -> str:
    # display only: dlms-cosem has already taken (or refused) the response
    from metercert.cosem import decode_data

    value, _ = decode_data(raw)
    shown = value.value
    if isinstance(shown, (bytes, bytearray)):
        return f"hex:{bytes(shown[:16]).hex()}" + (f"...({len(shown)}-bytes)" if len(shown) > 16 else "")
    return "".join(str(shown).split())


def _late(client: DlmsClient) -> str:
    """After a refused response, wait once more for the genuine one (a head-end that drops a
    forgery keeps listening); dlms-cosem's state machine is still awaiting the response."""
    try:
        # the refused APDU is still in dlms-cosem's buffer: drop it, read the next frame
        client.dlms_connection.clear_buffer()
        client.dlms_connection.receive_data(client.transport.recv_response())
        event = client.next_event()
    except Exception as exc:  # noqa: BLE001 - its verdict on the late response
        return f"; the response that followed: {_why(exc)}"
    data = getattr(event, "data", None)
    if data is not None:
        return f"; the response that followed: value {_value(bytes(data))}"
    return f"; the response that followed: {type(event).__name__}"


def main() -> int:
    if os.environ.get("METERCERT_ACTION", "read") != "read":
        print("key-transfer error dlms-cosem has no key_transfer call", flush=True)
        return 2
    keys = yaml.safe_load(Path(os.environ["METERCERT_KEYS"]).read_text("utf-8"))
    timeout = float(os.environ.get("METERCERT_TIMEOUT", "3"))
    io = BlockingTcpIO(os.environ["METERCERT_HOST"], int(os.environ["METERCERT_PORT"]),
                       timeout=timeout)
    transport = TcpTransport(client_logical_address=int(os.environ["METERCERT_CLIENT_SAP"]),
                             server_logical_address=1, io=io)
    client = DlmsClient(
        transport=transport, authentication=HighLevelSecurityGmacAuthentication(challenge_length=32),
        encryption_key=bytes.fromhex(keys["guek"]), authentication_key=bytes.fromhex(keys["ak"]),
        client_system_title=bytes.fromhex(keys["client_system_title"]),
        security_suite=int(keys["security_suite"]), meter_initial_invocation_counter=-1)
    a, b, c, d, e, f = (int(x) for x in os.environ["METERCERT_REGISTER"].split("."))
    register = cosem.CosemAttribute(interface=enumerations.CosemInterface.REGISTER,
                                    instance=cosem.Obis(a, b, c, d, e, f), attribute=2)
    ok = True
    try:
        client.connect()
        try:
            client.associate()
        except Exception as exc:  # noqa: BLE001 - the client's own verdict on the association
            print(f"associate error {_why(exc)}", flush=True)
            return 1
        for n in range(1, int(os.environ.get("METERCERT_READS", "3")) + 1):
            try:
                print(f"read {n} value {_value(client.get(register))}", flush=True)
            except Exception as exc:  # noqa: BLE001 - a refused response is an error line
                ok = False
                if isinstance(exc, (OSError, TimeoutError)):
                    print(f"read {n} error {_why(exc)}", flush=True)
                    return 1
                print(f"read {n} error {_why(exc)}{_late(client)}", flush=True)
        try:
            client.release_association()
        except Exception as exc:  # noqa: BLE001
            print(f"release error {_why(exc)}", flush=True)
    finally:
        try:
            client.disconnect()
        except Exception:  # noqa: BLE001, S110 - nothing left to report on
            pass
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
