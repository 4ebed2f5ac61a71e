"""The reference meter's COSEM objects.

Each object answers get / set / action for one association context. Access rights
are checked by the session (from the RBAC data) before an object is called, so the
objects only implement behaviour. Effects that must wait until the response has
been protected (a new key) are queued on the context.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from metercert.cosem import (
    ActionResult,
    AuthenticationMechanism,
    DataAccessResult,
    DataType,
    DlmsData,
    ObisCode,
)
from metercert.cosem.interface_classes import ClassId
from metercert.security import Key, KeyId, KeyUnwrapFailed, unwrap_key
from metercert.security.firmware_image import (
    FirmwareVerificationFailed,
    parse_image,
    verify_signed_image,
)

if TYPE_CHECKING:
    from metercert.meter.session import MeterSession

D = DlmsData


def _structure(params: D | None) -> tuple[D, ...]:
    """The fields of a structure parameter, or () for anything else."""
    if params is not None and params.type is DataType.STRUCTURE:
        return tuple(params.value)
    return ()


class Event:
    """Security event codes written to the security event log (metercert's own list)."""

    AUTH_FAILURE = 1
    REPLAY_REJECTED = 2
    DECIPHERING_ERROR = 3
    KEY_CHANGED = 4
    KEY_TRANSFER_REJECTED = 5
    FIRMWARE_VERIFY_FAILED = 6
    FIRMWARE_ACTIVATED = 7
    LOCKOUT = 8
    SUITE_DOWNGRADE = 9
    MALFORMED_APDU = 10
    UNPROTECTED_REQUEST = 11


@dataclass
class SecurityLog:
    entries: deque[tuple[dt.datetime, int, str]] = field(default_factory=lambda: deque(maxlen=200))

    def add(self, code: int, detail: str) -> None:
        self.entries.append((dt.datetime.now(dt.UTC), code, detail[:64]))


@dataclass
class PendingKey:
    association: int
    key_id: KeyId
    key: Key


class CosemObject:
    class_id: int = 0
    version: int = 0
    obis: ObisCode

    def get(self, attribute: int, session: MeterSession) -> D | DataAccessResult:
        if attribute == 1:
            return D.octet_string(self.obis.to_bytes())
        return DataAccessResult.OBJECT_UNAVAILABLE

    def set(self, attribute: int, value: D, session: MeterSession) -> DataAccessResult:
        return DataAccessResult.READ_WRITE_DENIED

    def action(self, method: int, params: D | None,
               session: MeterSession) -> tuple[ActionResult, D | None]:
        return ActionResult.OBJECT_UNAVAILABLE, None

    def attribute_ids(self) -> range:
        return range(1, 2)

    def method_ids(self) -> range:
        return range(1, 1)


class DataObject(CosemObject):
    class_id = ClassId.DATA

    def __init__(self, obis: str, value: Callable[[MeterSession], D]) -> None:
        self.obis = ObisCode.parse(obis)
        self._value = value

    def get(self, attribute: int, session: MeterSession) -> D | DataAccessResult:
        return self._value(session) if attribute == 2 else super().get(attribute, session)

    def attribute_ids(self) -> range:
        return range(1, 3)


class RegisterObject(CosemObject):
    class_id = ClassId.REGISTER

    def __init__(self, obis: str, value: Callable[[], int], scaler: int, unit: int) -> None:
        self.obis = ObisCode.parse(obis)
        self._value, self._scaler, self._unit = value, scaler, unit

    def get(self, attribute: int, session: MeterSession) -> D | DataAccessResult:
        if attribute == 2:
            return D.double_long_unsigned(self._value())
        if attribute == 3:
            return D.structure([D.integer(self._scaler), D.enum(self._unit)])
        return super().get(attribute, session)

    def attribute_ids(self) -> range:
        return range(1, 4)


class ClockObject(CosemObject):
    class_id = ClassId.CLOCK
    #: the last time value encoded, and its encoding (the value depends on the time only)
    _encoded: tuple[int, dt.timedelta, D] = (-1, dt.timedelta(), D.null())

    def __init__(self) -> None:
        self.obis = ObisCode.parse("0.0.1.0.0.255")
        self.offset = dt.timedelta()
        self.time_zone = 0

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC).replace(microsecond=0) + self.offset

    def get(self, attribute: int, session: MeterSession) -> D | DataAccessResult:
        if attribute == 2:
            # whole seconds: one encoding serves every read of that second and offset,
            # shared by every meter of the process (now() is the same second, offset added)
            second, offset = int(time.time()), self.offset
            at, shift, value = ClockObject._encoded
            if at != second or shift != offset:
                now = dt.datetime.fromtimestamp(second, dt.UTC) + offset
                value = D.octet_string(D.date_time(now).to_bytes()[1:])
                ClockObject._encoded = (second, offset, value)
            return value
        if attribute == 3:
            return D.long(self.time_zone)
        return super().get(attribute, session)

    def set(self, attribute: int, value: D, session: MeterSession) -> DataAccessResult:
        if attribute == 2 and value.type in (DataType.OCTET_STRING, DataType.DATE_TIME):
            from metercert.cosem import CosemDateTime

            try:
                raw = value.value if value.type is DataType.OCTET_STRING else value.value.to_bytes()
                when = CosemDateTime.from_bytes(raw).to_datetime()
            except Exception:  # noqa: BLE001 - any undecodable time is a type mismatch
                return DataAccessResult.TYPE_UNMATCHED
            if when.tzinfo is None:
                when = when.replace(tzinfo=dt.UTC)
            self.offset = when - dt.datetime.now(dt.UTC).replace(microsecond=0)
            return DataAccessResult.SUCCESS
        if attribute == 3 and value.type is DataType.LONG:
            self.time_zone = value.value
            return DataAccessResult.SUCCESS
        return DataAccessResult.TYPE_UNMATCHED

    def attribute_ids(self) -> range:
        return range(1, 4)


class CurrentAssociation(CosemObject):
    """Association LN 0.0.40.0.0.255: always the caller's own association."""

    class_id = ClassId.ASSOCIATION_LN

    def __init__(self, version: int = 2) -> None:
        self.obis = ObisCode.parse("0.0.40.0.0.255")
        self.version = version

    def get(self, attribute: int, session: MeterSession) -> D | DataAccessResult:
        role = session.role
        assert role is not None
        if attribute == 2:
            return session.meter.object_list(session)
        if attribute == 3:
            return D.structure([D.integer(role.client_sap), D.long_unsigned(1)])
        if attribute == 4:
            return D.octet_string(session.context_name.content())
        if attribute == 5:
            return D.structure([D.bit_string(f"{int(session.conformance):024b}"),
                                D.long_unsigned(session.client_max_pdu),
                                D.long_unsigned(session.meter.profile.max_pdu),
                                D.unsigned(6), D.integer(0), D.octet_string(b"")])
        if attribute == 6:
            return D.octet_string(session.mechanism_oid.content())
        if attribute == 7:
            # Only reachable when the rbac data (or a flaw) grants it.
            return D.octet_string(session.secret_for_attribute_7())
        if attribute == 8:
            return D.enum(2 if session.associated else 1)
        if attribute == 9:
            return D.octet_string(ObisCode(0, 0, 43, 0, role.association, 255).to_bytes())
        return super().get(attribute, session)

    def attribute_ids(self) -> range:
        return range(1, 10)

    def method_ids(self) -> range:
        return range(1, 3)

    def action(self, method: int, params: D | None,
               session: MeterSession) -> tuple[ActionResult, D | None]:
        # method 1 (reply_to_HLS_authentication) is handled by the session itself
        if method == 2:
            if params is None or params.type is not DataType.OCTET_STRING or len(params.value) < 8:
                return ActionResult.TYPE_UNMATCHED, None
            secrets = session.secrets
            if secrets is None:
                return ActionResult.READ_WRITE_DENIED, None
            secrets.hls_secret = bytes(params.value)
            session.meter.state.save_keys()
            session.meter.log.add(Event.KEY_CHANGED, f"HLS secret of association {session.e}")
            return ActionResult.SUCCESS, None
        return ActionResult.OBJECT_UNAVAILABLE, None


class AssociationInstance(CosemObject):
    class_id = ClassId.ASSOCIATION_LN

    def __init__(self, e: int, client_sap: int, authenticated: bool, lls: bool = False,
                 version: int = 2) -> None:
        self.obis = ObisCode(0, 0, 40, 0, e, 255)
        self.e = e
        self.client_sap, self.authenticated, self.lls = client_sap, authenticated, lls
        self.version = version

    def get(self, attribute: int, session: MeterSession) -> D | DataAccessResult:
        if attribute == 3:
            return D.structure([D.integer(self.client_sap), D.long_unsigned(1)])
        if attribute == 6:
            if self.lls:
                return D.octet_string(AuthenticationMechanism.LLS.oid.content())
            return D.octet_string(b"" if not self.authenticated else session.mechanism_oid.content())
        if attribute == 7:
            # Only reachable when a flaw grants it (the RBAC table never does).
            return D.octet_string(session.meter.role_secret(self.e))
        if attribute == 8:
            return D.enum(0)
        return super().get(attribute, session)

    def attribute_ids(self) -> range:
        return range(1, 10)


#: Security Setup version 0 security_policy: an enumeration (Blue Book, class 64 v0)
_V0_POLICY = {0: (False, False), 1: (True, False), 2: (False, True), 3: (True, True)}


#: version-1 security_policy bits (Blue Book class 64 v1, as gurux's SecurityPolicy has them):
#: 2/3/4 authenticated/encrypted/signed request, 5/6/7 the same for the response
_V1_AUTH, _V1_ENC, _V1_SIGNED = 0x04 | 0x20, 0x08 | 0x40, 0x10 | 0x80


def _v1_policy_bits(auth: bool, enc: bool) -> int:
    """Version-1 security_policy flags for requests and responses alike."""
    return (_V1_AUTH if auth else 0) | (_V1_ENC if enc else 0)


class SecuritySetup(CosemObject):
    class_id = ClassId.SECURITY_SETUP

    def __init__(self, e: int, version: int = 1, certificates: bool = False) -> None:
        self.obis = ObisCode(0, 0, 43, 0, e, 255)
        self.e = e
        self.version = version
        #: v1 attribute 6 and methods 3-8 (general-protection profiles, meter/pki.py)
        self.with_certificates = certificates and version == 1

    def _policy_value(self, auth: bool, enc: bool) -> int:
        if self.version == 0:
            return {v: k for k, v in _V0_POLICY.items()}[(auth, enc)]
        return _v1_policy_bits(auth, enc)

    def _requested(self, value: int, current: tuple[bool, bool]) -> tuple[bool, bool] | None:
        """The (authenticated, encrypted) policy security_activate asks for, or None when
        this meter cannot take it: a value this version does not define, digital signature
        (not offered), or anything that would drop a protection in force."""
        if self.version == 0:
            requested = _V0_POLICY.get(value)
            if requested is None:
                return None
        else:
            if value & ~(_V1_AUTH | _V1_ENC):  # bits 0/1 reserved, 4/7 signature: not offered
                return None
            if _v1_policy_bits(*current) & ~value:
                return None  # a protection in force would be dropped
            requested = (bool(value & _V1_AUTH), bool(value & _V1_ENC))
        if (current[0] and not requested[0]) or (current[1] and not requested[1]):
            return None
        if requested[1] and not requested[0]:
            return None  # encryption without authentication: not a policy this meter runs
        return requested

    def _any_policy(self, value: int) -> tuple[bool, bool] | None:
        """The policy-can-be-lowered flaw: whatever the value says, lower ones included."""
        if self.version == 0:
            return _V0_POLICY.get(value)
        return bool(value & _V1_AUTH), bool(value & _V1_ENC)

    def get(self, attribute: int, session: MeterSession) -> D | DataAccessResult:
        meter = session.meter
        if attribute == 2:
            return D.enum(self._policy_value(*meter.requires))
        if attribute == 3:
            return D.enum(meter.profile.security_suite)
        if attribute == 4:
            return D.octet_string(session.client_title or b"")
        if attribute == 5:
            return D.octet_string(meter.state.system_title)
        if attribute == 6 and self._pki(session) is not None:
            return self._pki(session).certificates(self.e)
        return super().get(attribute, session)

    def _pki(self, session: MeterSession) -> Any:
        """The certificates of a general-protection meter (v1 only), else None."""
        return session.meter.state.pki if self.with_certificates else None

    def attribute_ids(self) -> range:
        return range(1, 7) if self.with_certificates else range(1, 6)

    def method_ids(self) -> range:
        return range(1, 9) if self.with_certificates else range(1, 3)

    def action(self, method: int, params: D | None,
               session: MeterSession) -> tuple[ActionResult, D | None]:
        meter = session.meter
        if method == 1:  # security_activate: the policy can only be raised, never lowered
            if params is None or params.type is not DataType.ENUM:
                return ActionResult.TYPE_UNMATCHED, None
            requested = self._requested(params.value, meter.requires)
            if meter.profile.has("policy-can-be-lowered"):
                requested = self._any_policy(params.value)
            if requested is None:
                meter.log.add(Event.UNPROTECTED_REQUEST, f"security_activate {params.value} "
                              f"refused for association {self.e}")
                return ActionResult.OTHER_REASON, None
            meter.requires = requested  # in RAM: a power cycle restores the profile's policy
            return ActionResult.SUCCESS, None
        if 3 <= method <= 8 and self._pki(session) is not None:
            return self._pki(session).action(self.e, method, params, session)
        if method != 2:
            return ActionResult.OBJECT_UNAVAILABLE, None
        secrets = meter.state.secrets.get(self.e)
        if secrets is None or params is None or params.type is not DataType.ARRAY:
            return ActionResult.TYPE_UNMATCHED, None
        staged: list[PendingKey] = []
        for item in params.value:
            fields: tuple[D, ...] = item.value if item.type is DataType.STRUCTURE else ()
            if (meter.profile.has("key-id-unchecked") and len(fields) == 2
                    and fields[0].type is DataType.ENUM and fields[0].value > 3):
                continue  # the flaw: an unknown key id is "accepted" and ignored
            if (len(fields) != 2 or fields[0].type is not DataType.ENUM
                    or fields[1].type is not DataType.OCTET_STRING or fields[0].value > 3):
                return ActionResult.TYPE_UNMATCHED, None
            key_id = KeyId(fields[0].value)
            wrapped = bytes(fields[1].value)
            try:
                key = unwrap_key(secrets.kek, wrapped, key_id.name.lower())
            except KeyUnwrapFailed:
                if not meter.profile.has("key-wrap-unchecked"):
                    meter.log.add(Event.KEY_TRANSFER_REJECTED,
                                  f"bad wrap for {key_id.name} in association {self.e}")
                    return ActionResult.OTHER_REASON, None
                # the flaw: no integrity check, the meter installs whatever it got
                key = Key((wrapped[8:] + bytes(32))[: len(secrets.kek)], key_id.name.lower())
            staged.append(PendingKey(self.e, key_id, key))
        try:  # durable before it is answered: a key that cannot be saved is refused here
            meter.state.prepare_keys([(p.association, p.key_id, p.key) for p in staged])
        except OSError as exc:
            meter.log.add(Event.KEY_TRANSFER_REJECTED,
                          f"association {self.e}: the new key cannot be saved ({exc.strerror})")
            return ActionResult.TEMPORARY_FAILURE, None
        session.pending_keys.extend(staged)
        return ActionResult.SUCCESS, None


class InvocationCounterObject(CosemObject):
    """0.0.43.1.e.255: the next invocation counter association e accepts from its client."""

    class_id = ClassId.DATA

    def __init__(self, e: int) -> None:
        self.obis = ObisCode(0, 0, 43, 1, e, 255)
        self.e = e

    def get(self, attribute: int, session: MeterSession) -> D | DataAccessResult:
        if attribute == 2:
            last = session.meter.state.rx_guard(self.e).last_accepted
            return D.double_long_unsigned(0 if last is None else min(last + 1, 0xFFFFFFFF))
        return super().get(attribute, session)

    def attribute_ids(self) -> range:
        return range(1, 3)


class ImageTransfer(CosemObject):
    class_id = ClassId.IMAGE_TRANSFER

    # image_transfer_status values
    NOT_INITIATED, INITIATED, VERIFY_INITIATED, VERIFIED, VERIFY_FAILED = 0, 1, 2, 3, 4
    ACTIVATION_INITIATED, ACTIVATED, ACTIVATION_FAILED = 5, 6, 7
    BLOCK_SIZE = 192
    MAX_IMAGE = 4 * 1024 * 1024

    def __init__(self) -> None:
        self.obis = ObisCode.parse("0.0.44.0.0.255")
        self.enabled = True
        self.reset()

    def reset(self) -> None:
        self.status = self.NOT_INITIATED
        self.identifier = b""
        self.size = 0
        self.blocks: dict[int, bytes] = {}
        self.verified_id: str | None = None
        # background verification: (ready at, status then, verified id then)
        self.pending: tuple[float, int, str | None] | None = None

    def _settle(self) -> None:
        """Publish a background verification's verdict once its time has come."""
        if self.pending is not None and time.monotonic() >= self.pending[0]:
            _, self.status, self.verified_id = self.pending
            self.pending = None

    def _first_missing(self) -> int:
        n = 0
        while n in self.blocks:
            n += 1
        return n

    def get(self, attribute: int, session: MeterSession) -> D | DataAccessResult:
        if attribute == 2:
            return D.double_long_unsigned(self.BLOCK_SIZE)
        if attribute == 3:
            total = (self.size + self.BLOCK_SIZE - 1) // self.BLOCK_SIZE
            return D.bit_string("".join("1" if i in self.blocks else "0" for i in range(total)))
        if attribute == 4:
            return D.double_long_unsigned(self._first_missing())
        if attribute == 5:
            return D.boolean(self.enabled)
        if attribute == 6:
            self._settle()
            return D.enum(self.status)
        if attribute == 7:
            return D.array([D.structure([D.double_long_unsigned(self.size),
                                         D.octet_string(self.identifier), D.octet_string(b"")])])
        return super().get(attribute, session)

    def set(self, attribute: int, value: D, session: MeterSession) -> DataAccessResult:
        if attribute == 5 and value.type is DataType.BOOLEAN:
            self.enabled = value.value
            return DataAccessResult.SUCCESS
        return DataAccessResult.TYPE_UNMATCHED

    def attribute_ids(self) -> range:
        return range(1, 8)

    def method_ids(self) -> range:
        return range(1, 5)

    def action(self, method: int, params: D | None,
               session: MeterSession) -> tuple[ActionResult, D | None]:
        meter = session.meter
        if not self.enabled:
            return ActionResult.TEMPORARY_FAILURE, None
        if method == 1:  # image_transfer_initiate {identifier, size}
            f = _structure(params)
            if (len(f) != 2 or f[0].type is not DataType.OCTET_STRING
                    or f[1].type is not DataType.DOUBLE_LONG_UNSIGNED):
                return ActionResult.TYPE_UNMATCHED, None
            if f[1].value > self.MAX_IMAGE:
                return ActionResult.OTHER_REASON, None
            self.reset()
            self.identifier, self.size, self.status = bytes(f[0].value), f[1].value, self.INITIATED
            return ActionResult.SUCCESS, None
        if method == 2:  # image_block_transfer {block number, block}
            f = _structure(params)
            if (self.status != self.INITIATED or len(f) != 2
                    or f[1].type is not DataType.OCTET_STRING
                    or f[0].type is not DataType.DOUBLE_LONG_UNSIGNED):
                return ActionResult.TYPE_UNMATCHED, None
            number, block = f[0].value, bytes(f[1].value)
            if number * self.BLOCK_SIZE >= max(self.size, 1) or len(block) > self.BLOCK_SIZE:
                return ActionResult.OTHER_REASON, None
            self.blocks[number] = block
            return ActionResult.SUCCESS, None
        if method == 3:  # image_verify
            self._settle()
            if self.status == self.VERIFY_INITIATED:
                return ActionResult.TEMPORARY_FAILURE, None  # still checking
            image = b"".join(self.blocks[i] for i in sorted(self.blocks))[: self.size]
            if self.status not in (self.INITIATED, self.VERIFY_FAILED) or len(image) != self.size:
                self.status = self.VERIFY_FAILED
                return ActionResult.OTHER_REASON, None
            try:
                if meter.profile.has("firmware-size-only"):
                    # the flaw: the size matched above, so the image "verifies"; its
                    # identifier is the one announced at initiate
                    verdict: tuple[int, str | None] = (
                        self.VERIFIED, self.identifier.decode("ascii", "replace") or "unknown")
                elif meter.profile.has("unsigned-firmware-accepted"):
                    parsed, _, _ = parse_image(image)  # the flaw: structure only, no signature
                    verdict = (self.VERIFIED, parsed.identifier)
                else:
                    parsed = verify_signed_image(image, meter.state.vendor_key.public_key())
                    verdict = (self.VERIFIED, parsed.identifier)
            except FirmwareVerificationFailed as exc:
                meter.log.add(Event.FIRMWARE_VERIFY_FAILED, str(exc))
                verdict = (self.VERIFY_FAILED, None)
            delay = meter.profile.image_verify_seconds
            if delay > 0:  # answer now, publish the verdict later in attribute 6
                self.status = self.VERIFY_INITIATED
                self.pending = (time.monotonic() + delay, *verdict)
                return ActionResult.TEMPORARY_FAILURE, None
            self.status, self.verified_id = verdict
            if self.status == self.VERIFY_FAILED:
                return ActionResult.OTHER_REASON, None
            return ActionResult.SUCCESS, None
        if method == 4:  # image_activate
            self._settle()
            if self.status == self.VERIFY_INITIATED:
                return ActionResult.TEMPORARY_FAILURE, None
            if self.status != self.VERIFIED or self.verified_id is None:
                self.status = self.ACTIVATION_FAILED if self.status == self.VERIFY_FAILED else self.status
                return ActionResult.OTHER_REASON, None
            meter.state.set_firmware(self.verified_id)
            meter.log.add(Event.FIRMWARE_ACTIVATED, self.verified_id)
            self.status = self.ACTIVATED
            return ActionResult.SUCCESS, None
        return ActionResult.OBJECT_UNAVAILABLE, None


class DisconnectControl(CosemObject):
    class_id = ClassId.DISCONNECT_CONTROL

    def __init__(self) -> None:
        self.obis = ObisCode.parse("0.0.96.3.10.255")
        self.connected = True

    def get(self, attribute: int, session: MeterSession) -> D | DataAccessResult:
        if attribute == 2:
            return D.boolean(self.connected)
        if attribute == 3:
            return D.enum(1 if self.connected else 0)
        return super().get(attribute, session)

    def attribute_ids(self) -> range:
        return range(1, 4)

    def method_ids(self) -> range:
        return range(1, 3)

    def action(self, method: int, params: D | None,
               session: MeterSession) -> tuple[ActionResult, D | None]:
        if method in (1, 2):
            self.connected = method == 2
            return ActionResult.SUCCESS, None
        return ActionResult.OBJECT_UNAVAILABLE, None


class SecurityEventLog(CosemObject):
    class_id = ClassId.PROFILE_GENERIC
    version = 1

    def __init__(self, log: SecurityLog) -> None:
        self.obis = ObisCode.parse("0.0.99.98.0.255")
        self.log = log

    def get(self, attribute: int, session: MeterSession) -> D | DataAccessResult:
        if attribute == 2:
            return D.array([
                D.structure([D.octet_string(D.date_time(when).to_bytes()[1:]), D.long_unsigned(code),
                             D.visible_string(detail.encode("ascii", "replace").decode("ascii"))])
                for when, code, detail in self.log.entries
            ])
        if attribute == 7:
            return D.double_long_unsigned(len(self.log.entries))
        return super().get(attribute, session)

    def attribute_ids(self) -> range:
        return range(1, 8)


def energy_counter() -> Callable[[], int]:
    start = int.from_bytes(os.urandom(2), "big") * 10

    def value() -> int:
        return start + int(dt.datetime.now(dt.UTC).timestamp()) % 100000

    return value
