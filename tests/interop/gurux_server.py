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

gurux's secure server does not run as shipped; for the public and LLS associations the
fixture adapts it in its own subclasses only (no gurux code is patched):

1. ``settings.cipher``: ``GXDLMSSecureServer.__init__`` stores its GXCiphering in
   ``settings.ciphering`` while every ciphering path reads ``settings.cipher``;
   :class:`GuruxMeter` assigns ``settings.cipher``.
2. ``GXServerReply`` lacks ``setReply``/``getConnectionInfo``/``setCount``/``getCount``,
   which ``GXDLMSServer.handleRequest`` calls: :class:`_Reply` adds them.
3. ``GXDLMSLNCommandHandler`` calls ``server.notifyRead()``, ``server.onPostRead()``
   (no argument), ``getTransaction``/``setTransaction`` and ``notifyConnected``, none
   of which ``GXDLMSServer`` defines: :class:`GuruxMeter` defines them.
4. ``GXDLMSServer.initialize`` appends the object collection itself to the
   association's object_list (a TypeError): the fixture fills object_list first.

HLS-GMAC (SAP 1) still fails inside gurux, in code a subclass cannot reach:
``_GXAPDU.generateAARE`` calls ``setUInt8()`` without a value, the method handler
cannot open the f(StoC), and ``handleGloDedRequest`` builds its AES-GCM parameters with
shifted arguments. Without patches any AARQ to SAP 1 ends the connection and
:attr:`GuruxStopper.errors` records gurux's exception. ``start_gurux_server(hls_gmac=True)``
applies the runtime patches listed in :data:`HLS_PATCHES` (docs/interop.md explains
each); the two function replacements act only on servers this fixture flags.

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
import hmac
import io
import socket
import socketserver
import sys
import threading
from dataclasses import dataclass
from typing import Any

from gurux_dlms import GXDateTime, GXDLMSSettings, GXServerReply
from gurux_dlms._GXAPDU import _GXAPDU
from gurux_dlms.AesGcmParameter import AesGcmParameter
from gurux_dlms.enums import Authentication, InterfaceType, Security, SourceDiagnostic
from gurux_dlms.enums.AccessMode import AccessMode
from gurux_dlms.enums.MethodAccessMode import MethodAccessMode
from gurux_dlms.GXCiphering import GXCiphering
from gurux_dlms.GXSecure import GXSecure
from gurux_dlms.objects import (
    GXDLMSAssociationLogicalName,
    GXDLMSClock,
    GXDLMSData,
    GXDLMSSecuritySetup,
)
from gurux_dlms.objects.enums.AssociationStatus import AssociationStatus
from gurux_dlms.objects.enums.SecurityPolicy import SecurityPolicy
from gurux_dlms.objects.enums.SecuritySuite import SecuritySuite
from gurux_dlms.secure import GXDLMSSecureServer
from gurux_dlms.ValueEventArgs import ValueEventArgs

from metercert.cosem import (
    AARE,
    AcseServiceUserDiagnostic,
    ApplicationContextName,
    AssociationResult,
    AuthenticationMechanism,
)

SERVER_TITLE = bytes.fromhex("4758580000000001")   # "GXX" + serial 1
CLIENT_TITLE = bytes.fromhex("4D43430000000001")   # "MCC" + 1 (ours)
GUEK = bytes.fromhex("000102030405060708090A0B0C0D0E0F")
AK = bytes.fromhex("D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF")
KEK = bytes.fromhex("1112131415161718191A1B1C1D1E1F10")
LLS_PASSWORD = b"12345678"
PUBLIC_SAP, LLS_SAP, MANAGEMENT_SAP = 16, 17, 1
SERVER_SAP = 1

_SAP_MECHANISM = {
    PUBLIC_SAP: Authentication.NONE,
    LLS_SAP: Authentication.LOW,
    MANAGEMENT_SAP: Authentication.HIGH_GMAC,
}


# -- runtime patches that let gurux's secure server run HLS-GMAC (opt-in) -----------------
#
# Applied by start_gurux_server(hls_gmac=True). The two function replacements act only
# for a server whose settings carry _HLS_FLAG; everything else in the process (gurux
# clients, an unpatched fixture) keeps gurux's own code path.

_HLS_FLAG = "_metercert_hls_gmac"
_patched = False
_original_generate_aare: Any = None
_original_invoke: Any = None
#: what start_gurux_server(hls_gmac=True) changes in gurux, and why (for reports)
HLS_PATCHES: dict[str, str] = {
    "_GXAPDU.generateAARE":
        "replaced for flagged servers: gurux calls setUInt8() with no value, writes the "
        "responding-AP-title and StoC lengths 2 short and never advances the counter it "
        "used for the ciphered initiate-response (a typo, 'InvocationCounter'); the AARE is "
        "encoded with metercert's codec around gurux's own ciphered initiate-response",
    "GXDLMSAssociationLogicalName.invoke (method 1)":
        "replaced for flagged servers: gurux applies int() to the f(StoC) octet string; the "
        "replacement checks f(StoC) and computes f(CtoS) with gurux's GXSecure.secure",
    "gurux_dlms.GXDLMS.AesGcmParameter":
        "handleGloDedRequest builds AesGcmParameter(title, key, ak) without the tag "
        "argument, shifting every field; the module name now points at a factory that "
        "accepts that three-argument call",
    "ValueEventArgs.__iter__": "the method handler calls list(e) on one event",
    "GXDLMSAssociationLogicalName.getAssociationStatus": "called but not defined",
    "GXDLMSSettings.setConnected": "called but not defined",
}


def _aes_gcm_parameter(*args: Any) -> AesGcmParameter:
    if len(args) == 3:              # gurux's (system title, key, authentication key) call
        return AesGcmParameter(0, *args)
    return AesGcmParameter(*args)


def _generate_aare(cls: Any, settings: Any, data: Any, result: int, diagnostic: int,
                   cipher: Any, error_data: Any, encrypted_data: Any) -> None:
    if not getattr(settings, _HLS_FLAG, False):
        _original_generate_aare(cls, settings, data, result, diagnostic, cipher, error_data,
                                encrypted_data)
        return
    ciphered = cipher is not None and cipher.isCiphered()
    hls = settings.authentication > Authentication.LOW
    user_information: bytes | None = None
    if error_data:
        user_information = bytes(error_data)
    elif result == AssociationResult.ACCEPTED or not ciphered:
        user_information = bytes(_GXAPDU.getUserInformation(settings, cipher))
        if ciphered:
            cipher.invocationCounter += 1     # what gurux meant to do after ciphering
    context = (ApplicationContextName.LOGICAL_NAME_WITH_CIPHERING if ciphered
               else ApplicationContextName.LOGICAL_NAME)
    aare = AARE(result=AssociationResult(int(result)),
                result_source_diagnostic=AcseServiceUserDiagnostic(int(diagnostic)),
                application_context_name=context.oid,
                responding_ap_title=bytes(cipher.systemTitle) if cipher is not None else None,
                responder_acse_requirements=True if hls else None,
                mechanism_name=AuthenticationMechanism(int(settings.authentication)).oid
                if hls else None,
                responding_authentication_value=bytes(settings.stoCChallenge) if hls else None,
                user_information=user_information)
    data.set(aare.to_bytes())


def _invoke(self: Any, settings: Any, e: Any) -> Any:
    if (e.index != 1 or settings.authentication != Authentication.HIGH_GMAC
            or not getattr(settings, _HLS_FLAG, False)):
        return _original_invoke(self, settings, e)
    reply = bytes(e.parameters or b"")        # SC || IC || GMAC tag, from the client
    counter = int.from_bytes(reply[1:5], "big") if len(reply) >= 5 else 0
    expected = GXSecure.secure(settings, settings.cipher, counter, settings.stoCChallenge,
                               settings.sourceSystemTitle)
    if not hmac.compare_digest(bytes(expected), reply):
        self.associationStatus = AssociationStatus.NON_ASSOCIATED
        return None
    self.associationStatus = AssociationStatus.ASSOCIATED
    return GXSecure.secure(settings, settings.cipher, settings.cipher.invocationCounter,
                           settings.ctoSChallenge, settings.cipher.systemTitle)


def enable_hls_gmac_patches() -> None:
    """Apply :data:`HLS_PATCHES` once per process (idempotent)."""
    global _patched, _original_generate_aare, _original_invoke
    if _patched:
        return
    _original_generate_aare = _GXAPDU.generateAARE.__func__
    _GXAPDU.generateAARE = classmethod(_generate_aare)
    _original_invoke = GXDLMSAssociationLogicalName.invoke
    GXDLMSAssociationLogicalName.invoke = _invoke
    # "import gurux_dlms.GXDLMS" yields the class of that name: patch the module itself
    sys.modules["gurux_dlms.GXDLMS"].AesGcmParameter = _aes_gcm_parameter  # type: ignore[attr-defined]
    ValueEventArgs.__iter__ = lambda self: iter([self])
    GXDLMSAssociationLogicalName.getAssociationStatus = lambda self: self.associationStatus
    GXDLMSSettings.setConnected = lambda self, value: setattr(self, "connected", value)
    _patched = True


class _Reply(GXServerReply):
    """GXServerReply with the accessors GXDLMSServer.handleRequest calls."""

    def setReply(self, value: object) -> None:
        self.reply = value

    def getConnectionInfo(self) -> object:
        return self.connectionInfo

    def setCount(self, value: int) -> None:
        self.count = value

    def getCount(self) -> int:
        return self.count


class GuruxMeter(GXDLMSSecureServer):  # type: ignore[misc]
    """One association's worth of gurux server: a clock, a counter and the association."""

    def __init__(self, *, hls_gmac: bool = False) -> None:
        association = GXDLMSAssociationLogicalName()
        super().__init__(association, InterfaceType.WRAPPER)
        if hls_gmac:
            enable_hls_gmac_patches()
            setattr(self.settings, _HLS_FLAG, True)
        cipher = GXCiphering(bytearray(SERVER_TITLE))
        cipher.blockCipherKey = bytearray(GUEK)
        cipher.authenticationKey = bytearray(AK)
        cipher.security = Security.NONE
        self.settings.cipher = cipher            # patch 1: gurux reads .cipher, sets .ciphering
        self.kek = bytearray(KEK)
        self.clock = GXDLMSClock("0.0.1.0.0.255")
        self.counter = GXDLMSData("0.0.43.1.0.255")
        self.counter.value = 0
        self.firmware = GXDLMSData("1.0.0.2.0.255")
        self.firmware.value = "GURUX-1.0.203"
        self.security_setup = GXDLMSSecuritySetup("0.0.43.0.0.255")
        self.security_setup.securitySuite = SecuritySuite.SUITE_0
        self.security_setup.securityPolicy = (SecurityPolicy.AUTHENTICATED_REQUEST
                                              | SecurityPolicy.ENCRYPTED_REQUEST
                                              | SecurityPolicy.AUTHENTICATED_RESPONSE
                                              | SecurityPolicy.ENCRYPTED_RESPONSE)
        self.security_setup.clientSystemTitle = bytearray(CLIENT_TITLE)
        self.security_setup.serverSystemTitle = bytearray(SERVER_TITLE)
        association.securitySetupReference = "0.0.43.0.0.255"
        self.association = association
        objects = (association, self.clock, self.counter, self.firmware, self.security_setup)
        for item in objects:
            self.items.append(item)
            # gurux would append the whole collection as one item (a TypeError): list them
            association.objectList.append(item)
        self.initialize()

    # -- who may associate ---------------------------------------------------------------
    def isTarget(self, serverAddress: int, clientAddress: int) -> bool:
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

    def onValidateAuthentication(self, authentication: int, password: bytes | None) -> int:
        expected = _SAP_MECHANISM.get(self.settings.clientAddress)
        if expected is None or authentication != expected:
            return SourceDiagnostic.AUTHENTICATION_MECHANISM_NAME_NOT_RECOGNISED
        wrong_password = password is None or bytes(password) != LLS_PASSWORD
        if authentication == Authentication.LOW and wrong_password:
            return SourceDiagnostic.AUTHENTICATION_FAILURE
        return SourceDiagnostic.NONE

    # -- object access -----------------------------------------------------------------------
    def onGetAttributeAccess(self, arg: object) -> int:
        target = arg.target  # type: ignore[attr-defined]
        management = self.settings.clientAddress == MANAGEMENT_SAP
        if target is self.association and arg.index == 7:  # type: ignore[attr-defined]
            return AccessMode.NO_ACCESS                     # the secret: never readable
        if target is self.security_setup and not management:
            return AccessMode.NO_ACCESS
        if target is self.clock and arg.index == 2:  # type: ignore[attr-defined]
            return AccessMode.READ_WRITE if management else AccessMode.READ
        return AccessMode.READ

    def onGetMethodAccess(self, arg: object) -> int:
        target = arg.target  # type: ignore[attr-defined]
        if target is self.association and arg.index == 1:  # type: ignore[attr-defined]
            return MethodAccessMode.ACCESS                  # reply_to_HLS_authentication
        if self.settings.clientAddress == MANAGEMENT_SAP:
            return MethodAccessMode.ACCESS
        return MethodAccessMode.NO_ACCESS

    def _refresh(self) -> None:
        self.clock.time = GXDateTime(datetime.datetime.now(datetime.UTC).replace(microsecond=0))
        self.counter.value = int(self.settings.cipher.invocationCounter)

    def onPreRead(self, args: list) -> None:
        self._refresh()

    def onPostRead(self, args: list | None = None) -> None:
        pass

    # gurux's GET handler calls these, which GXDLMSServer 1.0.203 does not define
    def notifyRead(self) -> None:
        self._refresh()

    def getTransaction(self) -> object:
        return self.transaction

    def setTransaction(self, value: object) -> None:
        self.transaction = value

    def notifyConnected(self, connectionInfo: object) -> None:
        pass

    def onPreGet(self, args: list) -> None:
        pass

    def onPostGet(self, args: list) -> None:
        pass

    def onPreWrite(self, args: list) -> None:
        pass

    def onPostWrite(self, args: list) -> None:
        pass

    def onPreAction(self, args: list) -> None:
        pass

    def onPostAction(self, args: list) -> None:
        pass

    def onFindObject(self, objectType: int, sn: int, ln: str) -> object:
        return None

    def onConnected(self, connectionInfo: object) -> None:
        pass

    def onInvalidConnection(self, connectionInfo: object) -> None:
        pass

    def onDisconnected(self, connectionInfo: object) -> None:
        pass

    def answer(self, frame: bytes) -> bytes | None:
        """Feed one wrapper frame to gurux; its reply frame, or None (gurux stays silent)."""
        sr = _Reply(bytearray(frame))
        with contextlib.redirect_stdout(io.StringIO()):   # gurux prints while ciphering
            self.handleRequest(sr)
        reply = sr.reply
        if not reply:
            return None
        return bytes(reply)  # type: ignore[call-overload]  # gurux: a bytearray


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

    def __init__(self, address: tuple[str, int], hls_gmac: bool) -> None:
        super().__init__(address, _Connection)
        self.hls_gmac = hls_gmac
        #: gurux exceptions that ended a connection ("ExcType: message"), newest last
        self.errors: list[str] = []


class _Connection(socketserver.BaseRequestHandler):
    """One TCP connection = one fresh gurux server object (its association state)."""

    server: _Server

    def handle(self) -> None:
        meter = GuruxMeter(hls_gmac=self.server.hls_gmac)
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


def start_gurux_server(port: int = 0, *, hls_gmac: bool = False
                       ) -> tuple[str, int, GuruxStopper]:
    """Serve the gurux meter on 127.0.0.1 in a background thread: (host, port, stop).

    ``hls_gmac=True`` applies :data:`HLS_PATCHES` so that SAP 1 completes HLS-GMAC;
    without it gurux's secure server fails on every AARQ to SAP 1."""
    server = _Server(("127.0.0.1", port), hls_gmac)
    thread = threading.Thread(target=server.serve_forever, name="gurux-meter", daemon=True)
    thread.start()
    host, bound = server.server_address[:2]
    return str(host), int(bound), GuruxStopper(server, thread)
