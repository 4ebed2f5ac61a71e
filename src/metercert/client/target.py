"""A DLMS meter as the target of a certification campaign.

Holds where the meter is, its keys (from the documented key file, with optional
per-role entries), how to power-cycle it and where the client's own counters
persist; hands out clients for each role and keeps every trace they recorded,
so that campaign-wide checks (no KEK on the wire, no counter reuse) can read them.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from metercert.client.session import ClientSettings, DlmsClient, settings_for_role
from metercert.client.trace import Trace
from metercert.cosem import ObisCode
from metercert.errors import InputFileError
from metercert.lab.power import PowerController
from metercert.security import Key, KeySet, Mechanism
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

    def __post_init__(self) -> None:
        if self.counter_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="metercert-client-")
            self.counter_dir = Path(self._tmp.name)
        for role in (None, *self.roles()):  # a bad mechanism, key or PEM: one error, up front
            settings_for_role(self.keys, role)
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
        return replace(s, **overrides) if overrides else s

    def client(self, role: str | None = None, **overrides: Any) -> DlmsClient:
        c = DlmsClient(self.host, self.port, self.settings(role, **overrides))
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

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None
