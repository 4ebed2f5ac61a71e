"""Push Setup (interface class 40, version 0) of the reference meter, and how a push is built.

The object follows the Blue Book's class 40: attribute 2 ``push_object_list`` (what a push
carries: its own logical name first, as the push's identifier, then the clock and the
energy register), attribute 3 ``send_destination_and_method`` (transport service,
destination ``HOST:PORT``, message type), attribute 4 ``communication_window`` (empty:
always), 5 ``randomisation_start_interval``, 6 ``number_of_retries``, 7
``repetition_delay``, and method 1 ``push`` (send one now). The management association
(SECADM) may write the destination and trigger a push; every role that reads may read it.

Every push, scheduled (meter/push.py) or triggered by method 1, is a DataNotification
protected as general-glo-ciphering (authenticated and encrypted, the meter's system title
in the APDU) under the SECADM association's keys and that key's sending counter, the one
its responses use. Two flaws change that: ``push-unprotected`` sends the notification in
the clear; ``push-counter-reset-at-boot`` counts pushes in RAM from 1 at every boot.
"""

from __future__ import annotations

import logging
import socket
import threading
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from metercert.cosem import ActionResult, DataAccessResult, DataType, DlmsData, ObisCode
from metercert.cosem.cosem_time import CosemDateTime
from metercert.cosem.xdlms.notification import DataNotification
from metercert.meter.objects import CosemObject
from metercert.security import SecurityControl
from metercert.security.protection import CipheringForm, protect
from metercert.transport.wrapper import encode_wrapper

if TYPE_CHECKING:
    from metercert.meter.model import Meter
    from metercert.meter.session import MeterSession

__all__ = ["PUSH_SETUP_CLASS", "PUSH_SETUP_OBIS", "PushSetup", "protect_push"]

log = logging.getLogger("metercert.meter.push")
D = DlmsData

PUSH_SETUP_CLASS = 40
#: the Blue Book's push setup instance for on-demand/scheduled pushes (0.0.25.9.0.255)
PUSH_SETUP_OBIS = ObisCode(0, 0, 25, 9, 0, 255)
#: transport_service enum values of send_destination_and_method this meter can use
TRANSPORT_TCP, TRANSPORT_UDP = 0, 1
MESSAGE_AXDR = 0  # A-XDR encoded xDLMS APDU
_SEND_TIMEOUT_S = 5.0


def parse_destination(text: str) -> tuple[str, int] | None:
    """``HOST:PORT`` (an IPv6 host in brackets) -> (host, port), or None."""
    host, colon, port = text.rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host.strip("[]"), int(port)


def protect_push(meter: Meter, note: bytes) -> bytes:
    """A DataNotification as this meter sends it: ciphered under the management keys with
    the next sending counter (the caller holds the meter's lock, or runs in its loop)."""
    if meter.profile.has("push-unprotected"):
        return note  # the flaw: the push goes out as plain A-XDR
    state = meter.state
    role = meter.rbac.roles.get("SECADM")
    if role is None or role.association not in state.secrets:
        raise LookupError("pushes need the management (SECADM) association's keys")
    secrets = state.secrets[role.association]
    if meter.profile.has("push-counter-reset-at-boot"):
        meter.push_setup.boot_counter += 1  # the flaw: a RAM counter, from 1 at each boot
        counter = meter.push_setup.boot_counter
    else:
        counter = state.tx_counter(role.association).next()
    return protect(note, security_control=SecurityControl(meter.profile.security_suite,
                                                          True, True),
                   system_title=state.system_title, invocation_counter=counter,
                   encryption_key=secrets.guek, authentication_key=secrets.ak,
                   form=CipheringForm.GENERAL_GLO)


def _send(transport: int, host: str, port: int, frame: bytes) -> None:
    """Deliver one wrapper frame (blocking, on its own thread: a push never stalls a session)."""
    try:
        if transport == TRANSPORT_UDP:
            with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                               socket.SOCK_DGRAM) as s:
                s.sendto(frame, (host, port))
            return
        with socket.create_connection((host, port), timeout=_SEND_TIMEOUT_S) as s:
            s.sendall(frame)
    except OSError as exc:  # nobody listens: the push is lost, as on a real network
        log.info("push to %s:%d not delivered: %s", host, port, exc.__class__.__name__)


class PushSetup(CosemObject):
    """Class 40 v0 at 0.0.25.9.0.255; ``push`` (method 1) sends to attribute 3's destination."""

    class_id = PUSH_SETUP_CLASS
    version = 0

    def __init__(self, energy_register: str) -> None:
        self.obis = PUSH_SETUP_OBIS
        self.energy = ObisCode.parse(energy_register)
        self.transport = TRANSPORT_TCP
        self.destination = b""  # none configured: a push is refused until one is set
        self.message = MESSAGE_AXDR
        self.sent = 0  # pushes of this boot: their long-invoke-ids
        self.boot_counter = 0  # the push-counter-reset-at-boot flaw's RAM counter

    def _object_list(self) -> list[tuple[int, ObisCode, int]]:
        return [(PUSH_SETUP_CLASS, self.obis, 1), (8, ObisCode(0, 0, 1, 0, 0, 255), 2),
                (3, self.energy, 2)]

    def _destination_value(self) -> D:
        return D.structure([D.enum(self.transport), D.octet_string(self.destination),
                            D.enum(self.message)])

    def get(self, attribute: int, session: MeterSession) -> D | DataAccessResult:
        if attribute == 2:
            return D.array([D.structure([D.long_unsigned(c), D.octet_string(o.to_bytes()),
                                         D.integer(a), D.long_unsigned(0)])
                            for c, o, a in self._object_list()])
        if attribute == 3:
            return self._destination_value()
        if attribute == 4:
            return D.array([])
        if attribute in (5, 7):
            return D.long_unsigned(0)
        if attribute == 6:
            return D.unsigned(0)
        return super().get(attribute, session)

    def set(self, attribute: int, value: D, session: MeterSession) -> DataAccessResult:
        if attribute != 3:
            return DataAccessResult.READ_WRITE_DENIED
        fields = tuple(value.value) if value.type is DataType.STRUCTURE else ()
        if (len(fields) != 3 or fields[0].type is not DataType.ENUM
                or fields[1].type is not DataType.OCTET_STRING
                or fields[2].type is not DataType.ENUM):
            return DataAccessResult.TYPE_UNMATCHED
        transport, destination, message = fields[0].value, bytes(fields[1].value), fields[2].value
        if transport not in (TRANSPORT_TCP, TRANSPORT_UDP) or message != MESSAGE_AXDR:
            return DataAccessResult.OTHER_REASON  # a service this meter does not offer
        if destination:
            try:
                text = destination.decode("ascii")
            except UnicodeDecodeError:
                return DataAccessResult.TYPE_UNMATCHED
            if parse_destination(text) is None:
                return DataAccessResult.TYPE_UNMATCHED
        self.transport, self.destination, self.message = transport, destination, message
        return DataAccessResult.SUCCESS

    def build(self, meter: Meter) -> bytes:
        """The next push: the listed values at this instant, protected as the meter does."""
        self.sent += 1
        now = datetime.now(UTC)
        values = []
        for class_id, obis, _ in self._object_list():
            if class_id == PUSH_SETUP_CLASS:
                values.append(D.octet_string(obis.to_bytes()))
            elif class_id == 8:
                values.append(D.octet_string(CosemDateTime.from_datetime(now).to_bytes()))
            else:
                register = meter.objects.get(obis)
                reading = register.get(2, None) if register is not None else None  # type: ignore[arg-type]
                values.append(reading if isinstance(reading, DlmsData) else D.null())
        # the date-time field carries the push's time: a receiver can tell an old copy
        stamp = CosemDateTime.from_datetime(now).to_bytes()
        note = DataNotification(D.structure(values), self.sent, stamp).to_bytes()
        return protect_push(meter, note)

    def attribute_ids(self) -> range:
        return range(1, 8)

    def method_ids(self) -> range:
        return range(1, 2)

    def action(self, method: int, params: D | None,
               session: MeterSession) -> tuple[ActionResult, D | None]:
        if method != 1:
            return ActionResult.OBJECT_UNAVAILABLE, None
        if params is not None and params.type not in (DataType.INTEGER, DataType.NULL_DATA):
            return ActionResult.TYPE_UNMATCHED, None
        target = parse_destination(self.destination.decode("ascii")) if self.destination \
            else None
        if target is None:
            return ActionResult.TEMPORARY_FAILURE, None  # no destination configured
        meter = session.meter
        try:
            apdu = self.build(meter)
        except LookupError:
            return ActionResult.OTHER_REASON, None
        role = meter.rbac.roles.get("SECADM")
        frame = encode_wrapper(1, role.client_sap if role is not None else 1, apdu)
        threading.Thread(target=_send, args=(self.transport, *target, frame), daemon=True,
                         name="meter-push").start()
        return ActionResult.SUCCESS, None
