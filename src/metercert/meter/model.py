"""One reference meter: its objects, RBAC, state, security log and lockout."""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from pathlib import Path
from typing import TYPE_CHECKING

from metercert.cosem import DataAccessResult, DlmsData, ObisCode
from metercert.meter import objects as o
from metercert.meter.profile import LlsAssociation, MeterProfile
from metercert.meter.push_setup import PushSetup
from metercert.meter.rbac import ObjectRule, Rbac, Role, load_rbac
from metercert.meter.state import MeterState

if TYPE_CHECKING:
    from metercert.meter.session import MeterSession

_FAILURE_WINDOW_S = 60.0
_LOOKUPS = 4096  # object lookups remembered per meter (requests may name any OBIS code)


class Meter:
    """A reference meter (no I/O of its own: sessions feed it APDUs)."""

    def __init__(self, profile: MeterProfile, state_root: Path, index: int = 0,
                 rbac: Rbac | None = None) -> None:
        self.profile = profile
        self.lock = threading.Lock()  # sessions of one meter are served one request at a time
        #: LLS associations by client SAP (each opened with a password, not HLS)
        self.lls: dict[int, LlsAssociation] = {
            a.client_sap: a for a in profile.all_lls_associations()}
        self.rbac = _with_profile_objects(rbac or load_rbac(profile.rbac), profile, self.lls)
        self.state = MeterState(state_root, index, profile, self.rbac)
        #: (authenticated, encrypted) every request must carry; security_activate raises it
        self.requires: tuple[bool, bool] = profile.requires
        #: the wedged-by-oversized-frame flaw has struck: nothing is answered until restart
        self.wedged = False
        self.log = o.SecurityLog()
        self.clock = o.ClockObject()
        self.image_transfer = o.ImageTransfer()
        self.disconnect = o.DisconnectControl()
        self.push_setup = PushSetup(profile.energy_register)
        serial = f"MCT{index + 1:08d}"
        objects: list[o.CosemObject] = [
            self.clock,
            o.DataObject("0.0.96.1.0.255", lambda s: DlmsData.visible_string(serial)),
            o.DataObject("1.0.0.2.0.255",
                         lambda s: DlmsData.visible_string(s.meter.state.active_firmware)),
            o.RegisterObject(profile.energy_register, o.energy_counter(), 0, 30),
            o.CurrentAssociation(profile.association_version),
            self.image_transfer,
            self.disconnect,
            o.SecurityEventLog(self.log),
            self.push_setup,
        ]
        for role in self.rbac.roles.values():
            lls = self.lls.get(role.client_sap)
            objects.append(o.AssociationInstance(role.association, role.client_sap,
                                                 role.authenticated, lls is not None,
                                                 profile.association_version))
            if role.authenticated:
                objects.append(o.SecuritySetup(role.association, profile.security_setup_version,
                                               bool(profile.general_protection)))
                objects.append(o.InvocationCounterObject(role.association))
        omitted = {ObisCode.parse(code) for code in profile.omit_objects}
        self.objects: dict[ObisCode, o.CosemObject] = {
            obj.obis: obj for obj in objects if obj.obis not in omitted}
        self._failures: dict[int, deque[float]] = defaultdict(deque)
        self._lookups: dict[tuple[Role, int, ObisCode, str, int],
                            tuple[o.CosemObject | None, DataAccessResult]] = {}
        self._locked_until: dict[int, float] = {}

    # -- access ---------------------------------------------------------------------------
    def lookup(self, role: Role, class_id: int, obis: ObisCode, kind: str,
               index: int) -> tuple[o.CosemObject | None, DataAccessResult]:
        """The object a request names, or None and why it may not be used (undefined /
        denied). The answer depends only on the role, the RBAC table, the profile and the
        objects, none of which change while the meter runs: it is worked out once."""
        key = (role, class_id, obis, kind, index)
        found = self._lookups.get(key)
        if found is None:
            obj = self.objects.get(obis)
            if obj is None or int(obj.class_id) != class_id or not self.visible(role, obj):
                found = (None, DataAccessResult.OBJECT_UNDEFINED)
            elif not self.grants(role, obis, kind, index):
                found = (None, DataAccessResult.READ_WRITE_DENIED)
            else:
                found = (obj, DataAccessResult.SUCCESS)
            if len(self._lookups) < _LOOKUPS:
                self._lookups[key] = found
        return found

    def grants(self, role: Role, obis: ObisCode, kind: str, index: int) -> bool:
        required = self.rbac.required(obis, role.association, kind, index)
        if required is None:
            # only the secret-readable flaws open anything the RBAC table leaves out
            if (kind != "read" or index != 7
                    or (obis.a, obis.b, obis.c, obis.d, obis.f) != (0, 0, 40, 0, 255)):
                return False
            if self.profile.has("secret-readable") and obis.e == 0:
                return True
            return (self.profile.has("public-reads-secrets") and not role.authenticated
                    and role.client_sap not in self.lls and obis.e != 0)
        if (self.profile.has("operator-can-update-firmware") and role.name == "OPERATOR"
                and obis == self.image_transfer.obis and kind in ("methods", "write")):
            return True
        return required in role.rights

    def visible(self, role: Role, obj: o.CosemObject) -> bool:
        return any(self.grants(role, obj.obis, "read", a) for a in obj.attribute_ids()) or any(
            self.grants(role, obj.obis, "methods", m) for m in obj.method_ids())

    def object_list(self, session: MeterSession) -> DlmsData:
        role = session.role
        assert role is not None
        D = DlmsData
        entries = []
        for obj in self.objects.values():
            if not self.visible(role, obj):
                continue
            attrs = []
            for a in obj.attribute_ids():
                mode = ((1 if self.grants(role, obj.obis, "read", a) else 0)
                        | (2 if self.grants(role, obj.obis, "write", a) else 0))
                attrs.append(D.structure([D.integer(a), D.enum(mode), D.null()]))
            methods = [D.structure([D.integer(m), D.enum(1 if self.grants(role, obj.obis, "methods", m) else 0)])
                       for m in obj.method_ids()]
            entries.append(D.structure([
                D.long_unsigned(int(obj.class_id)), D.unsigned(obj.version),
                D.octet_string(obj.obis.to_bytes()),
                D.structure([D.array(attrs), D.array(methods)]),
            ]))
        return D.array(entries)

    # -- authentication throttling ----------------------------------------------------------
    def locked(self, client_sap: int) -> bool:
        return time.monotonic() < self._locked_until.get(client_sap, 0.0)

    def auth_failure(self, client_sap: int, detail: str) -> None:
        now = time.monotonic()
        if self.profile.has("no-lockout"):  # the flaw: failures are logged, never throttled
            self.log.add(o.Event.AUTH_FAILURE, f"sap {client_sap}: {detail}")
            return
        window = self._failures[client_sap]
        window.append(now)
        while window and now - window[0] > _FAILURE_WINDOW_S:
            window.popleft()
        self.log.add(o.Event.AUTH_FAILURE, f"sap {client_sap}: {detail}")
        if len(window) >= self.profile.auth_failures_before_lockout:
            self._locked_until[client_sap] = now + self.profile.lockout_seconds
            window.clear()
            self.log.add(o.Event.LOCKOUT, f"sap {client_sap} locked {self.profile.lockout_seconds}s")

    def role_secret(self, association: int) -> bytes:
        """The secret of association instance ``association`` (what attribute 7 holds)."""
        for lls in self.lls.values():
            if lls.association == association:
                return lls.password
        secrets = self.state.secrets.get(association)
        return secrets.hls_secret if secrets is not None else b""

    def close(self) -> None:
        self.state.save_volatile_counters()
        self.state.close()


def _with_profile_objects(rbac: Rbac, profile: MeterProfile,
                          lls: dict[int, LlsAssociation]) -> Rbac:
    """The RBAC table plus what the profile adds: LLS roles, a moved energy register."""
    roles = dict(rbac.roles)
    for a in lls.values():
        if rbac.role_for_sap(a.client_sap) is not None:
            continue  # the RBAC file already has a role on that SAP: it keeps it
        # an LLS association reads what the READER reads (unauthenticated: no HLS keys)
        reader = roles.get("READER")
        rights = reader.rights if reader is not None else frozenset({"VIEW"})
        roles[f"LLS-{a.client_sap}"] = Role(f"LLS-{a.client_sap}", a.client_sap, a.association,
                                            rights, authenticated=False)
    objects = rbac.objects
    energy = ObisCode.parse(profile.energy_register)
    default = ObisCode.parse("1.0.1.8.0.255")
    if energy != default:
        rule = rbac.rule_for(default, 0)
        if rule is not None:
            objects = (ObjectRule(rule.name, str(energy), rule.read, rule.write, rule.methods),
                       *objects)
    if roles == rbac.roles and objects is rbac.objects:
        return rbac
    return Rbac(roles, objects, rbac.source)
