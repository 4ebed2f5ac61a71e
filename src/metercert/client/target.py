"""A DLMS meter as the target of a certification campaign.

Holds where the meter is, its keys (from the documented key file, with optional
per-role entries), how to power-cycle it and where the client's own counters
persist; hands out clients for each role and keeps every trace they recorded,
so that campaign-wide checks (no KEK on the wire, no counter reuse) can read them.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from metercert.client import discovery
from metercert.client.errors import AssociationRejected, DlmsError
from metercert.client.session import ClientSettings, DlmsClient, settings_for_role
from metercert.client.trace import Trace
from metercert.cosem import ObisCode
from metercert.errors import ConnectionFailed, InputFileError, UsageError
from metercert.lab.power import PowerController
from metercert.security import Key, KeySet, Mechanism
from metercert.security.counters import shared_store
from metercert.security.keys import load_pem_key


@dataclass
class DlmsTarget:
    host: str
    port: int
    keys: KeySet
    framing: str = "wrapper"
    transport: str = "tcp"  # "udp": the wrapper over UDP
    power: PowerController | None = None
    counter_dir: Path | None = None
    timeout: float = 5.0
    ssl: Any = None
    invocation_counter_object: ObisCode | None = None
    firmware_signing_key: ec.EllipticCurvePrivateKey | None = field(default=None, repr=False)
    #: a genuine vendor-signed image (campaign ``firmware:``) and its image_identifier
    firmware_image: Path | None = None
    firmware_identifier: str | None = None
    #: how long to poll image_transfer_status when the meter verifies in the background
    firmware_verify_timeout: float = 60.0
    traces: list[Trace] = field(default_factory=list, repr=False)
    label: str = ""
    #: probe objects named by the campaign file (probe name -> logical name)
    probe_overrides: dict[str, ObisCode] = field(default_factory=dict)
    #: HLS challenge length for every association (campaign ``challenge_length``)
    challenge_length: int | None = None
    #: run discovery in open() (reads the object lists); off for tests of single checks
    discover_on_open: bool = True
    inventory: discovery.MeterInventory | None = field(default=None, repr=False)
    #: why the meter cannot be used any more (it stopped answering and was not recovered)
    unavailable: str | None = None
    notes: list[str] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        if self.counter_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="metercert-client-")
            self.counter_dir = Path(self._tmp.name)
        for role in (None, *self.roles()):  # a bad mechanism, key or PEM: one error, up front
            settings_for_role(self.keys, role)
        unknown = set(self.probe_overrides) - set(discovery.PROBE_NAMES)
        if unknown:
            raise UsageError(f"unknown probe objects {sorted(unknown)}; known: "
                             + ", ".join(discovery.PROBE_NAMES))
        #: the key file named the suite (else discovery finds the one the meter takes)
        self.suite_from_key_file = "security_suite" in self.keys.extra
        extra = self.keys.extra
        if self.firmware_signing_key is None and extra.get("firmware_signing_key"):
            self.firmware_signing_key = load_pem_key(extra["firmware_signing_key"],
                                                     self.keys.base_dir, "key file", private=True)

    def read_firmware_image(self) -> tuple[bytes, bytes] | None:
        """The vendor image and the identifier to announce it with, if the campaign gave one."""
        if self.firmware_image is None:
            return None
        try:
            data = self.firmware_image.read_bytes()
        except OSError as exc:
            raise InputFileError(f"firmware image {self.firmware_image}: {exc.strerror}") from None
        if not data:
            raise InputFileError(f"firmware image {self.firmware_image}: the file is empty")
        ident = self.firmware_identifier or self.firmware_image.stem
        return data, ident.encode()[:255]

    def describe(self) -> str:
        title = self.keys.server_system_title.hex().upper() if self.keys.server_system_title else "?"
        return self.label or (f"DLMS meter {self.transport}://{self.host}:{self.port} "
                              f"(system title {title})")

    @property
    def suite(self) -> int:
        return int(self.keys.extra.get("security_suite", 0))

    def roles(self) -> list[str]:
        return [str(r.get("role")) for r in self.keys.extra.get("roles", []) if isinstance(r, dict)]

    def role_sap(self, role: str) -> int | None:
        for r in self.keys.extra.get("roles", []):
            if isinstance(r, dict) and r.get("role") == role:
                return int(r["client_sap"])
        return None

    def settings(self, role: str | None = None, **overrides: Any) -> ClientSettings:
        s = settings_for_role(self.keys, role, framing=self.framing, counter_dir=self.counter_dir,
                              timeout=self.timeout, ssl=self.ssl, transport=self.transport)
        if role is None and self.invocation_counter_object is not None:
            s = replace(s, invocation_counter_object=self.invocation_counter_object)
        if self.challenge_length is not None:
            s = replace(s, challenge_length=self.challenge_length)
        return replace(s, **overrides) if overrides else s

    def client(self, role: str | None = None, **overrides: Any) -> DlmsClient:
        settings = self.settings(role, **overrides)
        title = settings.keys.client_system_title
        if settings.ciphered and settings.counter_dir is not None and title:
            # one head-end, one counter per association: clients of a role that coexist
            # draw from the single store this process keeps for that file (a second
            # store on the same file is refused by the store itself)
            server = settings.keys.server_system_title
            name = f"sap{settings.client_sap}-to-{server.hex().upper() if server else 'unknown'}"
            lent = shared_store(settings.counter_dir, title, name)
            c = DlmsClient(self.host, self.port, replace(settings, counter_dir=None))
            c._counter.store = lent  # type: ignore[assignment]
            c.settings = settings
        else:
            c = DlmsClient(self.host, self.port, settings)
        if self.inventory is not None:
            c.clock_obis = self.inventory.probe("clock") or c.clock_obis
        self.traces.append(c.trace)
        return c

    def public(self) -> DlmsClient:
        return self.client(None, client_sap=16, mechanism=Mechanism.NONE,
                           keys=KeySet(server_system_title=self.keys.server_system_title))

    async def management(self) -> DlmsClient:
        """An associated management client (counter synchronised first)."""
        c = self.client()
        await c.open()
        return c

    def replace_key(self, name: str, key: Key) -> None:
        self.keys = replace(self.keys, **{name: key})  # type: ignore[arg-type]

    # -- discovery --------------------------------------------------------------------------
    async def discover(self) -> discovery.MeterInventory:
        """Read what the meter offers (once); see :mod:`metercert.client.discovery`.

        Raises ConnectionFailed when the meter does not answer at all, and UsageError
        when the key file's management association is refused in every suite its keys
        fit: no check could reach a verdict, so the campaign stops with that one line."""
        if self.inventory is not None:
            return self.inventory
        inv = discovery.MeterInventory(overrides=dict(self.probe_overrides))
        public = self.public()
        try:
            await discovery.probe_public(public)
            await discovery.read_public(inv, public)
        except AssociationRejected as exc:
            inv.notes.append(f"the public association (client SAP 16) was refused: {exc}")
        finally:
            await public.close()
        await self._open_management(inv)
        for role in self.roles():
            if self.settings(role).client_sap in (16, self.settings().client_sap):
                continue
            c = self.client(role)
            try:
                await c.open()
                await discovery.read_role(inv, role, c)
                await c.release()
            except (AssociationRejected, DlmsError, ConnectionFailed) as exc:
                inv.notes.append(f"role {role} did not associate during discovery: {exc}")
            finally:
                await c.close()
        self.inventory = inv
        return inv

    async def _open_management(self, inv: discovery.MeterInventory) -> None:
        size = len(self.keys.guek.secret) if self.keys.guek is not None else 16
        fitting = [0, 1] if size == 16 else [2]
        if self.suite_from_key_file:
            # the key file's suite first; the others its keys fit only to name the mismatch
            suites = [self.suite] + [s for s in fitting if s != self.suite]
        else:
            suites = fitting
        stated = self.suite if self.suite_from_key_file else None
        errors = []
        for suite in suites:
            if suite != self.suite:
                self.keys = replace(self.keys, extra={**self.keys.extra, "security_suite": suite})
            c = self.client()
            try:
                await c.open()
            except AssociationRejected as exc:
                errors.append(f"suite {suite}: {exc}")
                await c.close()
                continue
            except DlmsError as exc:
                errors.append(f"suite {suite}: {exc}")
                await c.close()
                continue
            try:
                await discovery.read_management(inv, c)
                await discovery.read_identity(inv, c)
            finally:
                await c.release()
                await c.close()
            if not self.suite_from_key_file:
                inv.notes.append(f"the key file names no security_suite: the meter took suite "
                                 f"{suite}")
            if inv.security_suite is not None and inv.security_suite != suite:
                inv.notes.append(f"Security Setup says suite {inv.security_suite}, but the "
                                 f"management association was set up in suite {suite}")
            if self.suite_from_key_file and inv.security_suite not in (None, suite):
                inv.notes.append(f"key file says security_suite {suite}; the meter's Security "
                                 f"Setup says {inv.security_suite}")
            if stated is not None and suite != stated:
                inv.notes.append(f"the key file says security_suite {stated}, but the meter "
                                 f"refused that and took suite {suite}: the campaign runs in "
                                 f"suite {suite}; correct the key file")
            return
        raise UsageError("the key file's management association (client SAP "
                         f"{self.settings().client_sap}) was refused: " + "; ".join(errors)
                         + " - wrong key file for this meter?")

    async def probe(self, name: str) -> ObisCode | None:
        return (await self.discover()).probe(name)

    async def open(self) -> None:
        if self.discover_on_open:
            inv = await self.discover()
            self.notes.extend(inv.notes)

    async def close(self) -> None:
        return None

    def details(self) -> dict[str, str]:
        """What the report header and the evidence bundle show of the device (no secrets)."""
        out: dict[str, str] = {}
        if self.keys.server_system_title:
            out["system_title"] = self.keys.server_system_title.hex().upper()
        out["security_suite"] = str(self.suite)
        if self.inventory is not None:
            out.update(self.inventory.identity)
            if self.inventory.security_setup_version is not None:
                out["security_setup_version"] = str(self.inventory.security_setup_version)
        return out

    # -- between checks -----------------------------------------------------------------------
    def evidence_mark(self) -> int:
        return len(self.traces)

    def evidence_since(self, mark: int) -> list[Any]:
        """The traces recorded since ``mark``: kept for a check that raised."""
        from metercert.checks.base import Evidence

        out = []
        for trace in self.traces[mark:]:
            text = trace.text()
            if text.strip():
                out.append(Evidence("APDU trace (before the error)", text, "apdu-trace",
                                    f"{self.transport}://{self.host}:{self.port}"))
        return out

    async def alive(self, timeout: float = 3.0) -> bool:
        """Does the meter still answer a public association?"""
        c = self.public()
        c.settings = replace(c.settings, timeout=min(timeout, self.timeout))
        try:
            await c.open()
            await c.release()
            return True
        except AssociationRejected:
            return True  # it answered
        except (DlmsError, ConnectionFailed, OSError):
            return False
        finally:
            await c.close()

    async def after_check(self, check_id: str) -> str | None:
        """Called by the runner after each check: if the meter stopped answering, power-cycle
        it when a power controller exists (and say so), else mark it unavailable so the
        remaining checks end at once instead of each waiting for its time-outs."""
        if self.unavailable is not None or await self.alive():
            return None
        if self.power is None:
            self.unavailable = (f"the meter stopped answering after {check_id} and there is no "
                                "power controller to recover it")
            return self.unavailable
        start = time.monotonic()
        await self.power.power_cycle()
        for _ in range(20):
            if await self.alive():
                note = (f"the meter stopped answering after {check_id}; recovered by a power "
                        f"cycle ({time.monotonic() - start:.1f} s)")
                self.notes.append(note)
                return note
            await asyncio.sleep(0.5)
        self.unavailable = (f"the meter stopped answering after {check_id} and did not come "
                            "back after a power cycle")
        return self.unavailable
