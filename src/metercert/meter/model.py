"""One reference meter: its objects, RBAC, state, security log and lockout."""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from pathlib import Path
from typing import TYPE_CHECKING

from metercert.cosem import DlmsData, ObisCode
from metercert.meter import objects as o
from metercert.meter.profile import MeterProfile
from metercert.meter.rbac import Rbac, Role, load_rbac
from metercert.meter.state import MeterState

if TYPE_CHECKING:
    from metercert.meter.session import MeterSession

_FAILURE_WINDOW_S = 60.0


class Meter:
    """A reference meter (no I/O of its own: sessions feed it APDUs)."""

    def __init__(self, profile: MeterProfile, state_root: Path, index: int = 0,
                 rbac: Rbac | None = None) -> None:
        self.profile = profile
        self.lock = threading.Lock()  # sessions of one meter are served one request at a time
        self.rbac = rbac or load_rbac(profile.rbac)
        self.state = MeterState(state_root, index, profile, self.rbac)
        self.log = o.SecurityLog()
        self.clock = o.ClockObject()
        self.image_transfer = o.ImageTransfer()
        self.disconnect = o.DisconnectControl()
        serial = f"MCT{index + 1:08d}"
        objects: list[o.CosemObject] = [
            self.clock,
            o.DataObject("0.0.96.1.0.255", lambda s: DlmsData.visible_string(serial)),
            o.DataObject("1.0.0.2.0.255",
                         lambda s: DlmsData.visible_string(s.meter.state.active_firmware)),
            o.RegisterObject("1.0.1.8.0.255", o.energy_counter(), 0, 30),
            o.CurrentAssociation(),
            self.image_transfer,
            self.disconnect,
            o.SecurityEventLog(self.log),
        ]
        for role in self.rbac.roles.values():
            objects.append(o.AssociationInstance(role.association, role.client_sap,
                                                 role.authenticated))
            if role.authenticated:
                objects.append(o.SecuritySetup(role.association))
                objects.append(o.InvocationCounterObject(role.association))
        self.objects: dict[ObisCode, o.CosemObject] = {obj.obis: obj for obj in objects}
        self._failures: dict[int, deque[float]] = defaultdict(deque)
        self._locked_until: dict[int, float] = {}

    # -- access ---------------------------------------------------------------------------
    def grants(self, role: Role, obis: ObisCode, kind: str, index: int) -> bool:
        required = self.rbac.required(obis, role.association, kind, index)
        if required is None:
            # only the secret-readable flaw opens anything the RBAC table leaves out
            return (self.profile.has("secret-readable") and kind == "read" and index == 7
                    and obis == ObisCode(0, 0, 40, 0, 0, 255))
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
        window = self._failures[client_sap]
        window.append(now)
        while window and now - window[0] > _FAILURE_WINDOW_S:
            window.popleft()
        self.log.add(o.Event.AUTH_FAILURE, f"sap {client_sap}: {detail}")
        if len(window) >= self.profile.auth_failures_before_lockout:
            self._locked_until[client_sap] = now + self.profile.lockout_seconds
            window.clear()
            self.log.add(o.Event.LOCKOUT, f"sap {client_sap} locked {self.profile.lockout_seconds}s")

    def close(self) -> None:
        self.state.close()
