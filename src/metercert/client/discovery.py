"""What a meter offers, read from the meter itself before any check runs.

A campaign must not assume the reference meter's object list: real meters name
their register, firmware identifier and logs differently, leave objects out, run
old versions of Security Setup, and have associations the key file does not
mention (a second LLS client, a pre-established association). Discovery reads:

1. the object list of the public association (client SAP 16), if it has one;
2. the object list of the management association the key file opens, the
   Security Setup it references (attribute 9 of the current association) with its
   version, security policy and suite;
3. for every Association LN instance in either list, its associated_partners_id
   (which client SAP it serves) and authentication mechanism, where readable;
4. the device identity: logical device name, serial number, firmware identifiers.

Probe objects (the clock a check reads, the register, the firmware identifier...)
are then taken from what was listed; a campaign file may name any of them. A probe
the meter does not have is ``None``, and a check that needs it is not applicable:
an object that does not exist was never "denied".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from metercert.client.errors import DlmsError, NoResponse
from metercert.cosem import CosemDecodeError, DlmsData, ObisCode
from metercert.errors import ConnectionFailed

if TYPE_CHECKING:
    from metercert.client.session import DlmsClient

CURRENT_ASSOCIATION = ObisCode(0, 0, 40, 0, 0, 255)

#: probe name -> (class id, preferred logical names, predicate on other logical names)
PROBES: dict[str, tuple[tuple[int, ...], tuple[str, ...], Any]] = {
    "clock": ((8,), ("0.0.1.0.0.255",), lambda o: True),
    "register": ((3, 4), ("1.0.1.8.0.255", "1.0.15.8.0.255", "1.0.1.8.1.255"),
                 lambda o: o.a == 1 and o.d == 8),
    "firmware_id": ((1,), ("1.0.0.2.0.255", "1.1.0.2.0.255", "0.0.0.2.0.255"),
                    lambda o: o.c == 0 and o.d == 2 and o.e == 0),
    "image_transfer": ((18,), ("0.0.44.0.0.255",), lambda o: True),
    "disconnect": ((70,), ("0.0.96.3.10.255",), lambda o: True),
    "security_log": ((7,), ("0.0.99.98.0.255",), lambda o: o.c == 99 and o.d == 98),
    "logical_device_name": ((1,), ("0.0.42.0.0.255",), lambda o: o.c == 42),
    "serial_number": ((1,), ("0.0.96.1.0.255",), lambda o: o.c == 96 and o.d == 1),
    "push_setup": ((40,), ("0.0.25.9.0.255",), lambda o: o.c == 25 and o.d == 9),
}
PROBE_NAMES = tuple(PROBES) + ("security_setup",)


@dataclass(frozen=True)
class ListedObject:
    class_id: int
    version: int
    obis: ObisCode
    #: attribute id -> access mode (0 none, 1 read, 2 write, 3 read-write) in that list
    attributes: dict[int, int] = field(default_factory=dict)
    #: method id -> access (0 none, 1 access)
    methods: dict[int, int] = field(default_factory=dict)


@dataclass
class AssociationInfo:
    obis: ObisCode
    client_sap: int | None = None
    mechanism: int | None = None
    version: int = 0
    #: where it was seen: "public", "management"
    seen_in: set[str] = field(default_factory=set)


@dataclass
class MeterInventory:
    """What discovery found. Every list is as the meter reported it."""

    public_objects: dict[ObisCode, ListedObject] = field(default_factory=dict)
    management_objects: dict[ObisCode, ListedObject] = field(default_factory=dict)
    #: object lists of the key file's other roles (role -> list)
    role_objects: dict[str, dict[ObisCode, ListedObject]] = field(default_factory=dict)
    associations: dict[ObisCode, AssociationInfo] = field(default_factory=dict)
    security_setup: ObisCode | None = None
    security_setup_version: int | None = None
    security_policy: int | None = None
    security_suite: int | None = None
    identity: dict[str, str] = field(default_factory=dict)
    overrides: dict[str, ObisCode] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def objects(self) -> dict[ObisCode, ListedObject]:
        merged = dict(self.public_objects)
        for listing in self.role_objects.values():
            merged.update(listing)
        merged.update(self.management_objects)
        return merged

    def has(self, obis: ObisCode) -> bool:
        return obis in self.objects

    def listed(self) -> bool:
        """Did the meter give any object list at all (else probes fall back to defaults)?"""
        return bool(self.public_objects or self.management_objects)

    def probe(self, name: str) -> ObisCode | None:
        """The logical name to use for probe ``name``, or None if the meter has none."""
        if name in self.overrides:
            return self.overrides[name]
        if name == "security_setup":
            return self.security_setup
        classes, preferred, other = PROBES[name]
        objects = self.objects
        if not objects:
            # a meter with no readable object list: the usual names, unverified
            return ObisCode.parse(preferred[0])
        for text in preferred:
            obj = objects.get(ObisCode.parse(text))
            if obj is not None and obj.class_id in classes:
                return obj.obis
        for obj in objects.values():
            if obj.class_id in classes and other(obj.obis):
                return obj.obis
        return None

    def class_of(self, obis: ObisCode, default: int) -> int:
        obj = self.objects.get(obis)
        return obj.class_id if obj is not None else default

    def association_saps(self) -> list[int]:
        return sorted({a.client_sap for a in self.associations.values()
                       if a.client_sap is not None})

    def policy_flags(self) -> tuple[bool, bool] | None:
        """(authenticated, encrypted) the Security Setup demands of requests, read by its
        version: version 0 is an enumeration (0 none, 1 authenticated, 2 encrypted,
        3 both), version 1 a bit string (bit 2 authenticated request, bit 3 encrypted)."""
        if self.security_policy is None:
            return None
        p = self.security_policy
        if (self.security_setup_version or 0) == 0:
            return p in (1, 3), p in (2, 3)
        return bool(p & 0x04), bool(p & 0x08)

    def summary(self) -> str:
        lines = [(f"public object list: {len(self.public_objects)} objects; management "
                  f"object list: {len(self.management_objects)} objects")]
        for role, listing in self.role_objects.items():
            lines.append(f"role {role}: {len(listing)} objects")
        if self.security_setup is not None:
            lines.append(f"Security Setup {self.security_setup} version "
                         f"{self.security_setup_version}, policy {self.security_policy}, "
                         f"suite {self.security_suite}")
        for a in self.associations.values():
            lines.append(f"Association LN {a.obis} v{a.version}: client SAP {a.client_sap}, "
                         f"mechanism {a.mechanism}")
        for name in PROBE_NAMES:
            lines.append(f"probe {name}: {self.probe(name) or 'absent'}"
                         + (" (campaign file)" if name in self.overrides else ""))
        for key, value in self.identity.items():
            lines.append(f"{key}: {value}")
        lines.extend(self.notes)
        return "\n".join(lines)


def parse_object_list(value: DlmsData) -> dict[ObisCode, ListedObject]:
    """object_list (Association LN attribute 2) entries; malformed entries are skipped."""
    out: dict[ObisCode, ListedObject] = {}
    for entry in value.value or ():
        try:
            fields = entry.value
            class_id, version = int(fields[0].value), int(fields[1].value)
            obis = ObisCode.from_bytes(bytes(fields[2].value))
            attributes: dict[int, int] = {}
            methods: dict[int, int] = {}
            if len(fields) > 3 and fields[3].value:
                rights = fields[3].value
                for attr in rights[0].value or ():
                    attributes[int(attr.value[0].value)] = int(attr.value[1].value)
                if len(rights) > 1:
                    for method in rights[1].value or ():
                        methods[int(method.value[0].value)] = int(method.value[1].value)
        except (AttributeError, IndexError, TypeError, ValueError, CosemDecodeError):
            continue
        out[obis] = ListedObject(class_id, version, obis, attributes, methods)
    return out


def _mechanism_id(value: DlmsData) -> int | None:
    """Mechanism id from authentication_mechanism_name: an octet string holding the OID
    (2.16.756.5.8.2.N, last byte N) or a structure of its seven arcs."""
    v = value.value
    if isinstance(v, bytes) and v:
        return v[-1]
    if isinstance(v, tuple) and v:
        try:
            return int(v[-1].value)
        except (TypeError, ValueError):
            return None
    return None


def _partners(value: DlmsData) -> int | None:
    try:
        return int(value.value[0].value)
    except (AttributeError, IndexError, TypeError, ValueError):
        return None


def _text(value: DlmsData) -> str:
    v = value.value
    if isinstance(v, bytes):
        printable = all(32 <= b < 127 for b in v)
        return v.decode("ascii") if printable and v else v.hex().upper()
    return str(v)


async def _read(c: DlmsClient, class_id: int, obis: ObisCode, attribute: int) -> DlmsData | None:
    if c.stream is None or c.stream.closed:
        return None   # the meter closed this connection on an earlier read
    try:
        result = await c.get_result(class_id, obis, attribute)
    except (DlmsError, CosemDecodeError):
        return None
    except ConnectionFailed as exc:
        c.trace.note(f"reading {obis} attribute {attribute} cost the connection: {exc}")
        await c.close()
        return None
    return result if isinstance(result, DlmsData) else None


async def read_public(inv: MeterInventory, c: DlmsClient) -> None:
    listing = await _read(c, 15, CURRENT_ASSOCIATION, 2)
    if listing is None:
        inv.notes.append("the public association gives no object list")
        return
    inv.public_objects = parse_object_list(listing)
    _note_associations(inv, inv.public_objects.values(), "public")


def _note_associations(inv: MeterInventory, objects: Iterable[ListedObject], where: str) -> None:
    for obj in objects:
        if obj.class_id == 15 and obj.obis != CURRENT_ASSOCIATION:
            info = inv.associations.setdefault(obj.obis, AssociationInfo(obj.obis))
            info.version = obj.version
            info.seen_in.add(where)


async def read_role(inv: MeterInventory, role: str, c: DlmsClient) -> None:
    listing = await _read(c, 15, CURRENT_ASSOCIATION, 2)
    if listing is None:
        inv.notes.append(f"role {role}: no object list")
        return
    inv.role_objects[role] = parse_object_list(listing)
    _note_associations(inv, inv.role_objects[role].values(), role)


async def read_management(inv: MeterInventory, c: DlmsClient) -> None:
    listing = await _read(c, 15, CURRENT_ASSOCIATION, 2)
    if listing is not None:
        inv.management_objects = parse_object_list(listing)
        _note_associations(inv, inv.management_objects.values(), "management")
    else:
        inv.notes.append("the management association gives no object list")
    ref = await _read(c, 15, CURRENT_ASSOCIATION, 9)
    if ref is not None and isinstance(ref.value, bytes) and len(ref.value) == 6:
        inv.security_setup = ObisCode.from_bytes(ref.value)
    elif "security_setup" not in inv.overrides:
        setups = [o.obis for o in inv.objects.values() if o.class_id == 64]
        inv.security_setup = setups[0] if setups else None
    setup = inv.overrides.get("security_setup", inv.security_setup)
    if setup is not None:
        listed = inv.objects.get(setup)
        inv.security_setup_version = listed.version if listed is not None else None
        policy = await _read(c, 64, setup, 2)
        suite = await _read(c, 64, setup, 3)
        if policy is not None:
            inv.security_policy = _int_value(policy)
        if suite is not None:
            inv.security_suite = _int_value(suite)
        if inv.security_setup_version is None:
            inv.notes.append(f"Security Setup {setup} is not in the object list: version "
                             "assumed 1")
            inv.security_setup_version = 1
    for info in inv.associations.values():
        partners = await _read(c, 15, info.obis, 3)
        if partners is not None:
            info.client_sap = _partners(partners)
        mech = await _read(c, 15, info.obis, 6)
        if mech is not None:
            info.mechanism = _mechanism_id(mech)


def _int_value(value: DlmsData) -> int | None:
    v = value.value
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v
    if isinstance(v, str) and set(v) <= {"0", "1"} and v:  # a bit-string policy
        return int(v[:8].ljust(8, "0"), 2)
    return None


async def read_identity(inv: MeterInventory, c: DlmsClient) -> None:
    for name in ("logical_device_name", "serial_number", "firmware_id"):
        obis = inv.probe(name)
        if obis is None or (inv.listed() and not inv.has(obis)):
            continue
        value = await _read(c, 1, obis, 2)
        if value is not None:
            inv.identity[name] = _text(value)
    for obj in inv.objects.values():  # further firmware identifiers and signatures
        o = obj.obis
        if obj.class_id == 1 and o.c == 0 and o.d == 2 and o.e in (1, 2, 3, 8) and o.a in (0, 1):
            value = await _read(c, 1, o, 2)
            if value is not None:
                inv.identity[f"firmware {o}"] = _text(value)


async def probe_public(c: DlmsClient) -> None:
    """Open the public association and raise ConnectionFailed when the meter does not
    answer at all (the port accepts, nothing speaks DLMS on it)."""
    try:
        await c.open()
    except NoResponse as exc:
        raise ConnectionFailed(f"the meter at {c.host}:{c.port} accepted the connection but "
                               f"did not answer an AARQ within {c.settings.timeout:g} s "
                               f"(framing {c.settings.framing}): {exc}") from None


__all__ = [
    "PROBE_NAMES",
    "AssociationInfo",
    "ListedObject",
    "MeterInventory",
    "parse_object_list",
    "probe_public",
    "read_identity",
    "read_management",
    "read_public",
]
