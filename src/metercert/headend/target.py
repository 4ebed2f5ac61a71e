"""The head-end campaign's target: a hostile reference meter on 127.0.0.1 and a client
command that the campaign runs once per scenario.

Why one client run per scenario: each check must see the client's decision about one
lie, starting from a clean association, and "what the client did next" is only readable
when nothing else is going on. The meter records every connection of the run; the client
process's exit code and output (read with the campaign's regexes) are its own report.

A baseline run (nothing hostile) happens when the target opens: a client that cannot
read the genuine values cannot show that it refuses false ones, so every check that
judges a refusal needs that baseline first (otherwise INCONCLUSIVE).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import shlex
import signal
import ssl as ssl_module
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metercert.cosem import ObisCode
from metercert.errors import UsageError
from metercert.headend.hostile import SCENARIOS, HostileSession, Plan
from metercert.headend.observation import (
    ClientRun,
    ConnectionLog,
    Observation,
    OutputProtocol,
    genuine_value,
)
from metercert.meter.capture import ConnectionRecorder, PcapRecorder
from metercert.meter.model import Meter
from metercert.meter.profile import MeterProfile, load_profile
from metercert.meter.rbac import load_rbac
from metercert.meter.session import CloseConnection
from metercert.security import write_key_file
from metercert.security.keys import keyset_from_mapping
from metercert.transport.errors import ConnectionClosed, TransportError
from metercert.transport.stream import ApduStream, DlmsServer, serve_dlms
from metercert.transport.wrapper import MAX_PAYLOAD_FIELD

log = logging.getLogger("metercert.headend")

#: flaws the hostile meter always carries: the client under test must always be served
#: (stale client counters are served too: HostileSession._fresh)
SERVE_ANY_CLIENT = frozenset({"no-lockout"})
_OUTPUT_LIMIT = 64 * 1024


def own_client_command() -> str:
    """metercert's own DLMS client, driven by :mod:`metercert.headend.reader`."""
    return f"{shlex.quote(sys.executable)} -m metercert.headend.reader"


@dataclass
class HeadendSettings:
    """What a campaign file (or the command line) says about the client under test."""

    command: str = field(default_factory=own_client_command)
    #: command for the key-transfer scenario; None: the same command with
    #: METERCERT_ACTION=key-transfer
    key_transfer_command: str | None = None
    name: str = "metercert client"
    output: OutputProtocol = field(default_factory=OutputProtocol)
    reads: int = 3
    #: pushes: the client takes DataNotifications on its connection after association
    pushes: bool = False
    #: how long the client may take for one response before it gives up (told to it)
    response_timeout: float = 3.0
    #: how long one client run may take before it counts as hung and is killed
    run_limit: float = 30.0
    framing: str = "wrapper"
    profile: str = "conformant"
    #: serve the meter behind mutual TLS with a fresh operator PKI (METERCERT_CA etc.)
    tls: bool = False
    host: str = "127.0.0.1"
    port: int = 0
    env: dict[str, str] = field(default_factory=dict)
    workdir: Path | None = None
    #: write the hostile meter's traffic (wrapper frames) to a pcap file in this folder
    capture_dir: Path | None = None


class HeadendTarget:
    """A hostile meter plus the client under test (the ``headend`` target kind)."""

    def __init__(self, settings: HeadendSettings) -> None:
        self.settings = settings
        if settings.framing not in ("wrapper", "hdlc"):
            raise UsageError(f"framing must be wrapper or hdlc, got {settings.framing!r}")
        profile = load_profile(settings.profile)
        self.profile: MeterProfile = dataclasses.replace(
            profile, flaws=profile.flaws | SERVE_ANY_CLIENT)
        self.register = ObisCode.parse(self.profile.energy_register)
        self.meter: Meter | None = None
        self.server: DlmsServer | None = None
        self.plan: Plan = SCENARIOS["genuine"]
        self.connections: list[ConnectionLog] = []
        self.observations: dict[str, Observation] = {}
        self.history: list[Observation] = []   # every run, in order (counter checks)
        self.baseline: Observation | None = None
        self.notes: list[str] = []
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.management_sap = 1
        self.kek: bytes = b""
        self.suite = self.profile.security_suite
        self.key_file: Path | None = None
        self.state_dir: Path | None = None
        self.tls_files: dict[str, str] = {}
        self._secrets: list[bytes] = []
        self.pcap: PcapRecorder | None = None
        self._handlers: set[asyncio.Task[Any]] = set()

    # -- runner hooks -----------------------------------------------------------------------
    def describe(self) -> str:
        return (f"client under test: {self.settings.name} ({self.settings.command}) against a "
                f"hostile reference meter ({self.profile.name}, suite {self.suite}, "
                f"{self.settings.framing}{' over TLS' if self.settings.tls else ''})")

    def details(self) -> dict[str, str]:
        return {"client": self.settings.name, "command": self.settings.command,
                "meter profile": self.profile.name, "security suite": str(self.suite),
                "framing": self.settings.framing + (" over TLS" if self.settings.tls else "")}

    async def open(self) -> None:
        base = self.settings.workdir
        if base is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="metercert-headend-")
            base = Path(self._tmp.name)
        base.mkdir(parents=True, exist_ok=True)
        if self.settings.capture_dir is not None:
            if self.settings.framing != "wrapper":
                raise UsageError("--capture records the wrapper framing only")
            self.pcap = PcapRecorder(self.settings.capture_dir)
        self.state_dir = base / "client-state"
        self.state_dir.mkdir(exist_ok=True)
        self.meter = Meter(self.profile, base / "meter", 0, load_rbac(self.profile.rbac))
        management = self.meter.rbac.roles.get("SECADM")
        if management is not None:
            self.management_sap = management.client_sap
            secrets = self.meter.state.secrets.get(management.association)
            self.kek = secrets.kek.secret if secrets is not None else b""
        self._secrets = [k for s in self.meter.state.secrets.values()
                         for k in (s.guek.secret, s.ak.secret, s.kek.secret, s.hls_secret) if k]
        self.server = await serve_dlms(self._serve, self.settings.host, self.settings.port,
                                       framing=self.settings.framing,  # type: ignore[arg-type]
                                       ssl=self._tls_context(base),
                                       idle_timeout=self.settings.run_limit,
                                       max_frame=MAX_PAYLOAD_FIELD)
        entry = self.meter.state.client_entry(self.server.host, self.server.port, key_dir=base)
        self.key_file = write_key_file(base / "keys.yaml",
                                       [keyset_from_mapping(entry, base_dir=base)])
        self.baseline = await self.observe("genuine")
        if not self.baseline_ok:
            self.notes.append("baseline: the client did not read the genuine values: "
                              + self.baseline_problem)

    def _tls_context(self, base: Path) -> ssl_module.SSLContext | None:
        """Mutual TLS as ``meter serve --tls``: a fresh PKI whose head-end certificate, key and
        CA are handed to the client (METERCERT_CA, METERCERT_CLIENT_CERT/KEY)."""
        if not self.settings.tls:
            return None
        from metercert.tlsprobe.contexts import server_context
        from metercert.tlsprobe.pki import write_pki

        pki = write_pki(base / "pki")
        self.tls_files = {"METERCERT_CA": str(pki.ca_cert),
                          "METERCERT_CLIENT_CERT": str(pki.headend_cert),
                          "METERCERT_CLIENT_KEY": str(pki.headend_key)}
        return server_context(pki.meter_cert, pki.meter_key, pki.ca_cert)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
        if self.meter is not None:
            self.meter.close()
            self.meter = None
        if self.pcap is not None:
            self.pcap.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    # -- baseline ---------------------------------------------------------------------------
    @property
    def baseline_problem(self) -> str:
        b = self.baseline
        if b is None:
            return "no baseline run"
        want = {n: str(genuine_value(n)) for n in range(1, self.settings.reads + 1)}
        if b.run.values != want:
            return (f"printed {b.run.values or 'no values'} (errors {b.run.errors or 'none'}), "
                    f"expected {want}; client {b.run.outcome()}")
        return ""

    @property
    def baseline_ok(self) -> bool:
        return not self.baseline_problem

    # -- running the client -----------------------------------------------------------------
    def client_env(self, plan: Plan) -> dict[str, str]:
        assert self.server is not None and self.key_file is not None and self.state_dir
        s = self.settings
        env = dict(os.environ)
        env.update(s.env)
        env.update({
            "METERCERT_HOST": self.server.host, "METERCERT_PORT": str(self.server.port),
            "METERCERT_FRAMING": s.framing, "METERCERT_KEYS": str(self.key_file),
            "METERCERT_CLIENT_SAP": str(self.management_sap), "METERCERT_SERVER_SAP": "1",
            "METERCERT_REGISTER": str(self.register), "METERCERT_READS": str(s.reads),
            "METERCERT_TIMEOUT": f"{s.response_timeout:g}",
            "METERCERT_PUSHES": "4" if plan.pushes and s.pushes else "0",
            "METERCERT_ACTION": plan.action, "METERCERT_STATE_DIR": str(self.state_dir),
            "METERCERT_SECURITY_SUITE": str(self.suite),
            "METERCERT_TLS": "1" if s.tls else "0",
        })
        env.update(self.tls_files)
        return env

    async def observe(self, scenario: str, *, fresh: bool = False) -> Observation:
        """Run the client once against scenario ``scenario`` (cached unless ``fresh``)."""
        if not fresh and scenario in self.observations:
            return self.observations[scenario]
        plan = SCENARIOS[scenario]
        if plan.pushes and not self.settings.pushes:
            plan = dataclasses.replace(plan, pushes=False)
        self.plan, self.connections = plan, []
        command = self.settings.command
        if plan.action == "key-transfer" and self.settings.key_transfer_command:
            command = self.settings.key_transfer_command
        run = self._redacted(await self._run_client(command, self.client_env(plan)))
        await self._settle()
        self.settings.output.parse(run)
        obs = Observation(scenario, run, list(self.connections), self.management_sap)
        self.plan = SCENARIOS["genuine"]
        self.observations[scenario] = obs
        self.history.append(obs)
        return obs

    def _redacted(self, run: ClientRun) -> ClientRun:
        """The client's output without the campaign's key material (a client that prints
        its keys must not put them in the report)."""
        for secret in self._secrets:
            for text in (secret.hex(), secret.hex().upper()):
                run.stdout = run.stdout.replace(text, "<redacted>")
                run.stderr = run.stderr.replace(text, "<redacted>")
        return run

    async def _settle(self) -> None:
        """Let the meter finish the connections of a run that just ended (bounded)."""
        pending = [t for t in self._handlers if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=2.0)

    async def _run_client(self, command: str, env: dict[str, str]) -> ClientRun:
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            raise UsageError(f"client command {command!r}: {exc}") from None
        if not argv:
            raise UsageError("the client command is empty")
        t0 = time.perf_counter()
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, env=env, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                start_new_session=True)
        except OSError as exc:
            raise UsageError(f"cannot start the client command {argv[0]!r}: "
                             f"{exc.strerror or exc}") from None
        timed_out = False
        try:
            out, err = await asyncio.wait_for(proc.communicate(), self.settings.run_limit)
        except TimeoutError:
            timed_out = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            out, err = await proc.communicate()
        return ClientRun(command, None if timed_out else proc.returncode, timed_out,
                         out[:_OUTPUT_LIMIT].decode("utf-8", "replace"),
                         err[-_OUTPUT_LIMIT:].decode("utf-8", "replace"),
                         time.perf_counter() - t0)

    # -- the hostile meter's connections ----------------------------------------------------
    async def _serve(self, stream: ApduStream) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)
        conn = ConnectionLog(stream.peer)
        self.connections.append(conn)
        record = self._recorder(stream)
        plan, meter = self.plan, self.meter
        assert meter is not None
        sessions: dict[int, HostileSession] = {}
        try:
            while not stream.closed:
                try:
                    apdu = await stream.recv(timeout=self.settings.run_limit)
                except ConnectionClosed:
                    conn.ended_by = "client"
                    break
                except TransportError as exc:
                    conn.ended_by = f"transport: {exc}"
                    break
                sap = stream.client_address or 16
                if record is not None:
                    record.from_client(sap, 1, apdu)
                session = sessions.get(sap)
                if session is None:
                    session = sessions[sap] = HostileSession(
                        meter, sap, log=conn, register=self.register,
                        plan=plan if sap == self.management_sap else None)
                try:
                    answer = session.handle(apdu)
                except CloseConnection as close:
                    if close.last:
                        await stream.send(close.last)
                    conn.ended_by = "meter"
                    break
                if answer is None:
                    continue
                if session.short_frame:
                    if stream.framing == "wrapper":
                        await self._short_frame(stream, sap)
                    else:  # HDLC segments and acknowledges: the nearest lie is silence
                        conn.notes.append("HDLC: the response to GET 2 withheld (silence)")
                    continue
                for wire in (answer, *session.extra):
                    if record is not None:
                        record.from_meter(1, sap, wire)
                    await stream.send(wire)
                if session.just_associated:
                    session.just_associated = False
                    for wire, lie in session.pushes():
                        session.record_push(wire, lie)
                        if record is not None:
                            record.from_meter(1, sap, wire)
                        await stream.send(wire)
        except TransportError as exc:
            conn.ended_by = conn.ended_by or f"transport: {exc}"
        finally:
            stream.close()

    def _recorder(self, stream: ApduStream) -> ConnectionRecorder | None:
        peer, local = stream.get_extra_info("peername"), stream.get_extra_info("sockname")
        if self.pcap is None or not (isinstance(peer, tuple) and isinstance(local, tuple)):
            return None
        return self.pcap.connection((peer[0], peer[1]), (local[0], local[1]))

    @staticmethod
    async def _short_frame(stream: ApduStream, sap: int) -> None:
        """A wrapper header announcing 65535 bytes followed by 32 of them, then silence."""
        header = (1).to_bytes(2, "big") + (1).to_bytes(2, "big") + sap.to_bytes(2, "big")
        writer = stream._writer  # the framing must be bypassed on purpose
        writer.write(header + (0xFFFF).to_bytes(2, "big") + bytes(32))
        await writer.drain()
