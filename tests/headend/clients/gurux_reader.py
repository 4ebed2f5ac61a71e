"""gurux-dlms 1.0.203's client (GXDLMSSecureClient) as a client under test (the head-end
plug-in protocol of docs/headend.md). The glue moves gurux's frames over a socket and maps
the protocol's variables to gurux settings; gurux decides whether each response is taken.
It keeps no counter between runs (gurux's invocationCounter starts at 0), takes no pushes
and does no key transfer."""

from __future__ import annotations

import contextlib
import io
import os
import socket
import sys
from pathlib import Path
from typing import Any

import yaml
from gurux_dlms import GXByteBuffer, GXReplyData
from gurux_dlms.enums import Authentication, InterfaceType, Security
from gurux_dlms.objects import GXDLMSRegister
from gurux_dlms.objects.enums.SecuritySuite import SecuritySuite
from gurux_dlms.secure import GXDLMSSecureClient


def _why(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:300]


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError("the meter closed the connection")
        data += chunk
    return data


class Link:
    def __init__(self, client: Any, sock: socket.socket) -> None:
        self.client, self.sock = client, sock

    def call(self, method: str, *args: Any) -> Any:
        with contextlib.redirect_stdout(io.StringIO()):   # gurux prints while ciphering
            return getattr(self.client, method)(*args)

    def transfer(self, frames: list[Any]) -> GXReplyData:
        reply = GXReplyData()
        for frame in frames:
            self.sock.sendall(bytes(frame))
            while True:
                header = _recv_exact(self.sock, 8)
                body = _recv_exact(self.sock, int.from_bytes(header[6:8], "big"))
                with contextlib.redirect_stdout(io.StringIO()):
                    if self.client.getData(GXByteBuffer(bytearray(header + body)), reply):
                        break
        return reply


def _show(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        return f"hex:{bytes(value[:16]).hex()}" + (f"...({len(value)}-bytes)" if len(value) > 16 else "")
    return "".join(str(value).split())


def main() -> int:
    if os.environ.get("METERCERT_ACTION", "read") != "read":
        print("key-transfer error this glue does no key transfer", flush=True)
        return 2
    keys = yaml.safe_load(Path(os.environ["METERCERT_KEYS"]).read_text("utf-8"))
    client = GXDLMSSecureClient(True, int(os.environ["METERCERT_CLIENT_SAP"]), 1,
                                Authentication.HIGH_GMAC, None, InterfaceType.WRAPPER)
    client.ciphering.security = Security.AUTHENTICATION_ENCRYPTION
    client.ciphering.securitySuite = SecuritySuite(int(keys["security_suite"]))
    client.ciphering.systemTitle = bytearray(bytes.fromhex(keys["client_system_title"]))
    client.ciphering.blockCipherKey = bytearray(bytes.fromhex(keys["guek"]))
    client.ciphering.authenticationKey = bytearray(bytes.fromhex(keys["ak"]))
    register = GXDLMSRegister(os.environ["METERCERT_REGISTER"])
    timeout = float(os.environ.get("METERCERT_TIMEOUT", "3"))
    ok = True
    with socket.create_connection((os.environ["METERCERT_HOST"],
                                   int(os.environ["METERCERT_PORT"])), timeout=timeout) as sock:
        link = Link(client, sock)
        try:
            reply = link.transfer(link.call("aarqRequest"))
            link.call("parseAareResponse", reply.data)
            if client.getIsAuthenticationRequired():
                reply = link.transfer(link.call("getApplicationAssociationRequest"))
                link.call("parseApplicationAssociationResponse", reply.data)
        except Exception as exc:  # noqa: BLE001 - gurux's own verdict on the association
            print(f"associate error {_why(exc)}", flush=True)
            return 1
        for n in range(1, int(os.environ.get("METERCERT_READS", "3")) + 1):
            try:
                reply = link.transfer(link.call("read", register, 2))
                if reply.error:
                    raise RuntimeError(f"gurux reports error {reply.error}")
                print(f"read {n} value {_show(reply.value)}", flush=True)
            except Exception as exc:  # noqa: BLE001 - a refused response is an error line
                ok = False
                print(f"read {n} error {_why(exc)}", flush=True)
                if isinstance(exc, (OSError, EOFError)):
                    return 1
        try:
            link.transfer(link.call("releaseRequest"))
        except Exception as exc:  # noqa: BLE001
            print(f"release error {_why(exc)}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
