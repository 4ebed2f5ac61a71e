"""A meter built from gurux-dlms's server classes, served over TCP on 127.0.0.1.

Why: the reference meter and our client must talk to a DLMS stack we did not
write. This module wraps gurux-dlms 1.0.203's ``GXDLMSSecureServer`` in a small
threaded socket loop (IEC 62056-47 wrapper framing, one gurux server object per
connection, since gurux keeps the association state in the server object).

Associations the fixture offers (client SAP -> mechanism):

* 16: public client, no authentication, plain APDUs;
* 17: LLS with the password :data:`LLS_PASSWORD`, plain APDUs;
* 1:  HLS-GMAC, suite 0, authenticated+encrypted glo-ciphering with
  :data:`GUEK` / :data:`AK`, client title :data:`CLIENT_TITLE`, meter title
  :data:`SERVER_TITLE`.

gurux's secure server cannot run a ciphered association as shipped (see
STANDARDS.md); the smallest changes that make it work live here and nowhere else:

1. ``settings.cipher``: ``GXDLMSSecureServer.__init__`` stores its GXCiphering in
   ``settings.ciphering`` while every code path that ciphers reads
   ``settings.cipher``. The fixture assigns ``settings.cipher`` itself (no gurux
   code is changed).
2. ``GXServerReply`` in 1.0.203 lacks ``setReply``/``getConnectionInfo``/
   ``setCount``/``getCount``, which ``GXDLMSServer.handleRequest`` calls;
   :class:`_Reply` is a subclass that adds them (no gurux code is changed).
3. see :data:`GURUX_PATCHES` for anything patched at run time in gurux modules
   (applied once by :func:`start_gurux_server`, listed there so a report can
   name them).

Use from a benchmark::

    import sys; sys.path.insert(0, "tests/interop")
    from gurux_server import start_gurux_server
    host, port, stop = start_gurux_server()
    ...
    stop()
"""

from __future__ import annotations

import contextlib
import datetime
import io
import socket
import socketserver
import threading
from dataclasses import dataclass

from gurux_dlms import GXDateTime, GXServerReply
from gurux_dlms.enums import Authentication, InterfaceType, ObjectType, Security, SourceDiagnostic
from gurux_dlms.enums.AccessMode import AccessMode
from gurux_dlms.enums.MethodAccessMode import MethodAccessMode
from gurux_dlms.GXCiphering import GXCiphering
from gurux_dlms.objects import GXDLMSAssociationLogicalName, GXDLMSClock, GXDLMSData
from gurux_dlms.secure import GXDLMSSecureServer

SERVER_TITLE = bytes.fromhex("4758580000000001")   # "GXX" + serial 1
CLIENT_TITLE = bytes.fromhex("4D43430000000001")   # "MCC" + 1 (ours)
GUEK = bytes.fromhex("000102030405060708090A0B0C0D0E0F")
AK = bytes.fromhex("D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF")
KEK = bytes.fromhex("1112131415161718191A1B1C1D1E1F10")
LLS_PASSWORD = b"12345678"
PUBLIC_SAP, LLS_SAP, MANAGEMENT_SAP = 16, 17, 1
SERVER_SAP = 1

#: runtime patches applied to gurux modules (name -> why); empty when none were needed
GURUX_PATCHES: dict[str, str] = {}

_SAP_MECHANISM = {
    PUBLIC_SAP: Authentication.NONE,
    LLS_SAP: Authentication.LOW,
    MANAGEMENT_SAP: Authentication.HIGH_GMAC,
}


class _Reply(GXServerReply):
    """GXServerReply with the accessors GXDLMSServer.handleRequest calls."""

    def setReply(self, value: object) -> None:  # noqa: N802 - gurux's name
        self.reply = value

    def getConnectionInfo(self) -> object:  # noqa: N802
        return self.connectionInfo

    def setCount(self, value: int) -> None:  # noqa: N802
        self.count = value

    def getCount(self) -> int:  # noqa: N802
        return self.count


class GuruxMeter(GXDLMSSecureServer):  # type: ignore[misc]
    """One association's worth of gurux server: a clock, a counter and the association."""

    def __init__(self) -> None:
        association = GXDLMSAssociationLogicalName()
        super().__init__(association, InterfaceType.WRAPPER)
        cipher = GXCiphering(bytearray(SERVER_TITLE))
        cipher.blockCipherKey = bytearray(GUEK)
        cipher.authenticationKey = bytearray(AK)
        cipher.security = Security.NONE
        self.settings.cipher = cipher            # patch 1: gurux reads .cipher, sets .ciphering
        self.kek = bytearray(KEK)
        self.clock = GXDLMSClock("0.0.1.0.0.255")
        self.counter = GXDLMSData("0.0.43.1.0.255")
        self.counter.value = 0
        self.association = association
        self.items.append(association)
        self.items.append(self.clock)
        self.items.append(self.counter)
        for item in (association, self.clock, self.counter):
            # gurux would append the whole collection as one item (a TypeError): list them
            association.objectList.append(item)
        self.initialize()

    # -- who may associate ---------------------------------------------------------------
    def isTarget(self, serverAddress: int, clientAddress: int) -> bool:  # noqa: N802,N803
        if serverAddress != SERVER_SAP or clientAddress not in _SAP_MECHANISM:
            return False
        cipher = self.settings.cipher
        if clientAddress == MANAGEMENT_SAP:
            cipher.security = Security.AUTHENTICATION_ENCRYPTION
        else:
            cipher.security = Security.NONE
        self.association.clientSAP = clientAddress
        self.association.authenticationMechanismName.mechanismId = _SAP_MECHANISM[clientAddress]
        if clientAddress == LLS_SAP:
            self.association.secret = bytearray(LLS_PASSWORD)
        else:
            self.association.secret = None
        return True

    def onValidateAuthentication(self, authentication: int, password: object) -> int:  # noqa: N802
        expected = _SAP_MECHANISM.get(self.settings.clientAddress)
        if expected is None or authentication != expected:
            return SourceDiagnostic.AUTHENTICATION_MECHANISM_NAME_NOT_RECOGNISED
        if authentication == Authentication.LOW:
            if password is None or bytes(password) != LLS_PASSWORD:
                return SourceDiagnostic.AUTHENTICATION_FAILURE
        return SourceDiagnostic.NONE

    # -- object access -----------------------------------------------------------------------
    def onGetAttributeAccess(self, arg: object) -> int:  # noqa: N802
        target = arg.target  # type: ignore[attr-defined]
        if target is self.clock and arg.index == 2:  # type: ignore[attr-defined]
            return AccessMode.READ_WRITE if self.settings.clientAddress == MANAGEMENT_SAP \
                else AccessMode.READ
        return AccessMode.READ

    def onGetMethodAccess(self, arg: object) -> int:  # noqa: N802
        return MethodAccessMode.ACCESS

    def _refresh(self) -> None:
        self.clock.time = GXDateTime(datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0))
        self.counter.value = int(self.settings.cipher.invocationCounter)

    def onPreRead(self, args: list) -> None:  # noqa: N802
        self._refresh()

    def onPostRead(self, args: list | None = None) -> None:  # noqa: N802
        pass

    # gurux's GET handler calls these, which GXDLMSServer 1.0.203 does not define
    def notifyRead(self) -> None:  # noqa: N802
        self._refresh()

    def getTransaction(self) -> object:  # noqa: N802
        return self.transaction

    def setTransaction(self, value: object) -> None:  # noqa: N802
        self.transaction = value

    def notifyConnected(self, connectionInfo: object) -> None:  # noqa: N802,N803
        pass

    def onPreGet(self, args: list) -> None:  # noqa: N802
        pass

    def onPostGet(self, args: list) -> None:  # noqa: N802
        pass

    def onPreWrite(self, args: list) -> None:  # noqa: N802
        pass

    def onPostWrite(self, args: list) -> None:  # noqa: N802
        pass

    def onPreAction(self, args: list) -> None:  # noqa: N802
        pass

    def onPostAction(self, args: list) -> None:  # noqa: N802
        pass

    def onFindObject(self, objectType: int, sn: int, ln: str) -> object:  # noqa: N802,N803
        return None

    def onConnected(self, connectionInfo: object) -> None:  # noqa: N802,N803
        pass

    def onInvalidConnection(self, connectionInfo: object) -> None:  # noqa: N802,N803
        pass

    def onDisconnected(self, connectionInfo: object) -> None:  # noqa: N802,N803
        pass

    def answer(self, frame: bytes) -> bytes | None:
        """Feed one wrapper frame to gurux; its reply frame, or None (gurux stays silent)."""
        sr = _Reply(bytearray(frame))
        with contextlib.redirect_stdout(io.StringIO()):   # gurux prints while ciphering
            self.handleRequest(sr)
        reply = sr.reply
        if not reply:
            return None
        return bytes(reply)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(address, _Connection)
        #: gurux exceptions that ended a connection ("ExcType: message"), newest last
        self.errors: list[str] = []


class _Connection(socketserver.BaseRequestHandler):
    """One TCP connection = one fresh gurux server object (its association state)."""

    server: _Server

    def handle(self) -> None:
        meter = GuruxMeter()
        sock: socket.socket = self.request
        sock.settimeout(30.0)
        while True:
            try:
                header = _recv_exact(sock, 8)
                body = _recv_exact(sock, int.from_bytes(header[6:8], "big"))
            except (EOFError, OSError):
                return
            try:
                reply = meter.answer(header + body)
            except Exception as exc:  # noqa: BLE001 - a gurux defect ends this connection only
                self.server.errors.append(f"{type(exc).__name__}: {exc}")
                return
            if reply is not None:
                try:
                    sock.sendall(reply)
                except OSError:
                    return


@dataclass
class GuruxStopper:
    """Stops the fixture when called; ``errors`` lists gurux exceptions seen so far."""

    _server: _Server
    _thread: threading.Thread

    @property
    def errors(self) -> list[str]:
        return self._server.errors

    def __call__(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def start_gurux_server(port: int = 0) -> tuple[str, int, GuruxStopper]:
    """Serve the gurux meter on 127.0.0.1 in a background thread: (host, port, stop)."""
    server = _Server(("127.0.0.1", port))
    thread = threading.Thread(target=server.serve_forever, name="gurux-meter", daemon=True)
    thread.start()
    host, bound = server.server_address[:2]
    return str(host), int(bound), GuruxStopper(server, thread)
