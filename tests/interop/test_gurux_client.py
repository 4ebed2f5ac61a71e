"""gurux-dlms 1.0.203's client against our reference meter over 127.0.0.1.

We drive the socket: gurux produces wrapper frames (aarqRequest, read, ...), we
send them and feed the meter's frames back to ``getData``. gurux prints to stdout
while ciphering, hence the redirect around every gurux call.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

pytest.importorskip("gurux_dlms")

from gurux_dlms import GXByteBuffer, GXDLMSClient, GXDLMSException, GXReplyData
from gurux_dlms.enums import Authentication, InterfaceType, Security
from gurux_dlms.objects import GXDLMSClock, GXDLMSData, GXDLMSRegister
from gurux_dlms.objects.enums.SecuritySuite import SecuritySuite
from gurux_dlms.secure import GXDLMSSecureClient
from interop_meters import CLOCK_OBIS, RunningMeter

from metercert.cosem import CosemDateTime


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError("meter closed the connection")
        data += chunk
    return data


@dataclass
class GuruxLink:
    """A TCP connection on which a gurux client's frames go out and replies come back."""

    client: Any
    sock: socket.socket
    sent: list[bytes] = field(default_factory=list)       # APDUs (wrapper header stripped)
    received: list[bytes] = field(default_factory=list)

    def transfer(self, frames: list[Any]) -> GXReplyData:
        reply = GXReplyData()
        for frame in frames:
            raw = bytes(frame)
            self.sent.append(raw[8:])
            self.sock.sendall(raw)
            while True:
                header = _recv_exact(self.sock, 8)
                body = _recv_exact(self.sock, int.from_bytes(header[6:8], "big"))
                self.received.append(body)
                with contextlib.redirect_stdout(io.StringIO()):
                    if self.client.getData(GXByteBuffer(bytearray(header + body)), reply):
                        break
        return reply

    def call(self, method: str, *args: Any) -> Any:
        with contextlib.redirect_stdout(io.StringIO()):
            return getattr(self.client, method)(*args)

    def associate(self) -> None:
        reply = self.transfer(self.call("aarqRequest"))
        self.call("parseAareResponse", reply.data)
        if self.client.getIsAuthenticationRequired():
            reply = self.transfer(self.call("getApplicationAssociationRequest"))
            # raises GXDLMSException unless the meter's f(CtoS) verifies
            self.call("parseApplicationAssociationResponse", reply.data)

    def read(self, obj: Any, attribute: int) -> Any:
        reply = self.transfer(self.call("read", obj, attribute))
        self.call("updateValue", obj, attribute, reply.value)
        return reply.value

    def release(self) -> None:
        self.transfer(self.call("releaseRequest"))


@contextlib.contextmanager
def gurux_link(meter: RunningMeter, client: Any) -> Iterator[GuruxLink]:
    with socket.create_connection((meter.host, meter.port), timeout=5) as sock:
        yield GuruxLink(client, sock)


def _secure_client(meter: RunningMeter, *, suite: int = 0, guek: bytes | None = None) -> Any:
    client = GXDLMSSecureClient(True, meter.keys["client_sap"], 1, Authentication.HIGH_GMAC, None,
                                InterfaceType.WRAPPER)
    client.ciphering.security = Security.AUTHENTICATION_ENCRYPTION
    client.ciphering.securitySuite = SecuritySuite(suite)
    client.ciphering.systemTitle = bytearray(meter.key("client_system_title"))
    client.ciphering.blockCipherKey = bytearray(guek or meter.key("guek"))
    client.ciphering.authenticationKey = bytearray(meter.key("ak"))
    return client


def _assert_clock_is_now(raw: Any) -> None:
    value = CosemDateTime.from_bytes(bytes(raw)).to_datetime()
    assert abs(value - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=2)


def test_gurux_public_client_reads_the_clock(suite0_meter: RunningMeter) -> None:
    client = GXDLMSClient(True, 16, 1, Authentication.NONE, None, InterfaceType.WRAPPER)
    clock = GXDLMSClock(CLOCK_OBIS)
    with gurux_link(suite0_meter, client) as link:
        link.associate()
        raw = link.read(clock, 2)
        link.release()
    _assert_clock_is_now(raw)
    assert link.sent[0][0] == 0x60 and link.received[0][0] == 0x61
    assert link.sent[1][0] == 0xC0 and link.received[1][0] == 0xC4   # plain get


def test_gurux_hls_gmac_suite0_reads_the_clock(suite0_meter: RunningMeter) -> None:
    """Full HLS-GMAC 4-pass exchange (gurux checks the meter's f(CtoS)), then a ciphered GET."""
    client = _secure_client(suite0_meter)
    clock = GXDLMSClock(CLOCK_OBIS)
    with gurux_link(suite0_meter, client) as link:
        link.associate()
        raw = link.read(clock, 2)
        counter = GXDLMSData("0.0.43.1.6.255")
        link.read(counter, 2)
        link.release()
    _assert_clock_is_now(raw)
    # HLS pass 3 goes as glo-action-request (general protection is not yet negotiated); then
    # gurux uses the general-glo-ciphering the meter granted; the meter answers in kind
    assert [apdu[0] for apdu in link.sent[1:-1]] == [0xCB, 0xDB, 0xDB]
    assert [apdu[0] for apdu in link.received[1:-1]] == [0xCF, 0xDB, 0xDB]
    assert isinstance(counter.value, int) and counter.value >= 3   # AARQ, HLS reply, 2 GETs


def test_gurux_hls_gmac_against_the_shipped_suite1_meter(suite1_meter: RunningMeter) -> None:
    client = _secure_client(suite1_meter, suite=1)
    clock = GXDLMSClock(CLOCK_OBIS)
    with gurux_link(suite1_meter, client) as link:
        link.associate()
        raw = link.read(clock, 2)
    _assert_clock_is_now(raw)
    # security control byte of every ciphered request: suite 1, authenticated+encrypted
    # security control byte of the ciphered initiate and requests: suite 1, authenticated+encrypted
    assert link.sent[0].find(bytes([0x21, 0x1F, 0x31])) > 0
    assert [apdu[0] for apdu in link.sent[1:]] == [0xCB, 0xDB]
    assert link.sent[1][2] == 0x31 and link.sent[2][11] == 0x31


def test_gurux_suite0_is_refused_by_the_suite1_meter(suite1_meter: RunningMeter) -> None:
    """A downgrade from a real peer: the conformant meter rejects the association."""
    client = _secure_client(suite1_meter, suite=0)
    with gurux_link(suite1_meter, client) as link, pytest.raises(GXDLMSException):
        link.associate()
    assert link.received[0][0] == 0x61


def test_gurux_with_a_wrong_guek_is_refused(suite0_meter: RunningMeter) -> None:
    client = _secure_client(suite0_meter, guek=bytes(16))
    with gurux_link(suite0_meter, client) as link, pytest.raises(GXDLMSException):
        link.associate()


def test_gurux_public_client_cannot_read_a_reader_only_object(suite0_meter: RunningMeter) -> None:
    """Access rights hold for a foreign client too: energy register needs the READ right."""
    client = GXDLMSClient(True, 16, 1, Authentication.NONE, None, InterfaceType.WRAPPER)
    energy = GXDLMSRegister("1.0.1.8.0.255")
    with gurux_link(suite0_meter, client) as link:
        link.associate()
        reply = link.transfer(link.call("read", energy, 2))
    assert reply.error in (3, 4), reply.error   # gurux reports the data-access-result
    answer = link.received[-1]
    # get-response-normal carrying a data-access-result: read-write-denied or object-undefined
    assert answer[:3] == bytes([0xC4, 0x01, 0xC1]) and answer[3] == 0x01 and answer[4] in (3, 4)


def test_gurux_dedicated_key_uses_general_ded_ciphering(suite0_meter: RunningMeter) -> None:
    """gurux sends a dedicated key in the ciphered initiate-request; after association its
    requests use general-ded-ciphering (0xDC) under that key, and the meter answers in kind."""
    client = _secure_client(suite0_meter)
    client.ciphering.dedicatedKey = bytearray(bytes(range(16)))
    clock = GXDLMSClock(CLOCK_OBIS)
    with gurux_link(suite0_meter, client) as link:
        link.associate()
        raw = link.read(clock, 2)
    _assert_clock_is_now(raw)
    assert [apdu[0] for apdu in link.sent[1:]] == [0xCB, 0xDC]
    assert link.received[-1][0] == 0xDC


def _ecdsa_client(meter: RunningMeter, client_key_file: str) -> Any:
    """gurux's HLS-ECDSA client with the client key pair and meter public key the key file names."""
    from cryptography.hazmat.primitives import serialization
    from gurux_dlms.ecdsa import GXPrivateKey, GXPublicKey

    folder = meter.fleet.state_dir
    own = serialization.load_pem_private_key((folder / client_key_file).read_bytes(), None)
    peer = serialization.load_pem_public_key((folder / meter.keys["server_public_key"]).read_bytes())
    client = _secure_client(meter, suite=1)
    client.authentication = Authentication.HIGH_ECDSA
    raw_peer = peer.public_bytes(serialization.Encoding.X962,  # type: ignore[union-attr]
                                 serialization.PublicFormat.UncompressedPoint)
    client.ciphering.signingKeyPair = (
        GXPublicKey.fromRawBytes(raw_peer),
        GXPrivateKey.fromRawBytes(own.private_numbers().private_value.to_bytes(32, "big")))  # type: ignore[union-attr]
    return client


def test_gurux_hls_ecdsa_client_and_our_meter_verify_each_other(ecdsa_meter: RunningMeter) -> None:
    """HLS mechanism 7: gurux signs (client title || meter title || StoC || CtoS) with its own
    ECDSA code and checks the meter's signature the other way round; a ciphered GET follows."""
    client = _ecdsa_client(ecdsa_meter, ecdsa_meter.keys["client_private_key"])
    clock = GXDLMSClock(CLOCK_OBIS)
    with gurux_link(ecdsa_meter, client) as link:
        link.associate()
        raw = link.read(clock, 2)
    _assert_clock_is_now(raw)
    assert bytes.fromhex("60857405080207") in link.sent[0]   # mechanism name 2.16.756.5.8.2.7
    f_stoc = link.sent[1]
    assert f_stoc[0] == 0xCB   # reply_to_HLS_authentication, ciphered


def test_gurux_hls_ecdsa_with_another_roles_key_is_refused(ecdsa_meter: RunningMeter) -> None:
    """The management association takes only its own client key: a key pair the meter issued
    to another role (READER) signs a valid-looking f(StoC) that must not verify."""
    reader = next(r for r in ecdsa_meter.keys["roles"] if r["role"] == "READER")
    client = _ecdsa_client(ecdsa_meter, reader["client_private_key"])
    log = ecdsa_meter.fleet.meters[0].log.entries
    with gurux_link(ecdsa_meter, client) as link, pytest.raises(Exception, match="do not match"):
        link.associate()   # gurux gets no f(CtoS) back
    assert [detail for _, _, detail in log] == ["sap 1: HLS pass 3 failed"]
    assert link.sent[1][0] == 0xCB and len(link.received) == 2
