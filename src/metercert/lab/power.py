"""Power cycling: the built-in meter as a separate process, a user command, or a person.

A campaign's persistence checks need a *real* power cycle: the meter loses
everything that is not on its non-volatile storage. For the built-in meter that
is a SIGKILL of its process and a restart on the same state folder.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from pathlib import Path

from metercert.errors import ConnectionFailed, UsageError


async def wait_for_port(host: str, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection(host, port)
            writer.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise ConnectionFailed(f"meter at {host}:{port} did not come back "
                                       f"within {timeout:.0f} s") from None
            await asyncio.sleep(0.05)


class PowerController(ABC):
    """Turns a meter's supply off and on again."""

    description = "power controller"

    @abstractmethod
    async def power_cycle(self) -> None: ...

    async def close(self) -> None:
        return None


class MeterProcess:
    """``metercert meter serve`` in a child process, killable with SIGKILL."""

    def __init__(self, state_dir: Path, *, profile: str = "conformant", port: int = 0,
                 host: str = "127.0.0.1", keys_out: Path | None = None, count: int = 1,
                 extra_args: tuple[str, ...] = ()) -> None:
        self.state_dir = Path(state_dir)
        self.profile, self.host, self.port, self.count = profile, host, port, count
        self.keys_out = keys_out or self.state_dir / "client-keys.yaml"
        self.extra_args = extra_args
        self.proc: subprocess.Popen[str] | None = None
        self.kills = 0
        self.log_path = self.state_dir / "meter.log"  # the meter's stderr: nobody must block on it

    def _command(self) -> list[str]:
        return [sys.executable, "-m", "metercert", "meter", "serve", "--profile", self.profile,
                "--host", self.host, "--port", str(self.port), "--count", str(self.count),
                "--state-dir", str(self.state_dir), "--keys-out", str(self.keys_out),
                "--ready-line", *self.extra_args]

    def start(self, timeout: float = 30.0) -> tuple[str, int]:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "a", encoding="utf-8") as log:
            self.proc = subprocess.Popen(self._command(), stdout=subprocess.PIPE, stderr=log,
                                         text=True, start_new_session=True)
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                self.proc.wait()
                err = self.log_path.read_text(encoding="utf-8", errors="replace").strip()
                last = err.splitlines()[-1] if err else "no message"
                raise ConnectionFailed(f"reference meter failed to start: {last[-300:]}")
            if line.startswith("READY "):
                host, _, port = line.split()[1].rpartition(":")
                self.host, self.port = host, int(port)
                return self.host, self.port
        raise ConnectionFailed("reference meter did not report ready in time")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.kills += 1
        self._drain()

    def _drain(self) -> None:
        if self.proc is not None:
            for stream in (self.proc.stdout, self.proc.stderr):
                if stream is not None:
                    stream.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._drain()


class BuiltinPowerController(PowerController):
    """Power-cycles a :class:`MeterProcess`: SIGKILL, then restart on the same state."""

    description = "built-in meter: SIGKILL and restart on the same state folder"

    def __init__(self, process: MeterProcess) -> None:
        self.process = process

    async def power_cycle(self) -> None:
        port = self.process.port
        self.process.kill()
        self.process.port = port  # come back on the same port
        await asyncio.to_thread(self.process.start)


class CommandPowerController(PowerController):
    """Runs the user's commands, e.g. for a switchable lab supply or a smart plug."""

    def __init__(self, *, cycle: str | None = None, off: str | None = None, on: str | None = None,
                 settle_s: float = 5.0, host: str | None = None, port: int | None = None) -> None:
        if not cycle and not (off and on):
            raise UsageError("power controller 'command' needs 'cycle', or both 'off' and 'on'")
        self.cycle, self.off, self.on, self.settle_s = cycle, off, on, settle_s
        self.host, self.port = host, port
        self.description = f"command: {cycle or f'{off} ; {on}'}"

    async def _run(self, command: str) -> None:
        proc = await asyncio.create_subprocess_exec(*shlex.split(command))
        if await proc.wait() != 0:
            raise ConnectionFailed(f"power command failed: {command}")

    async def power_cycle(self) -> None:
        if self.cycle:
            await self._run(self.cycle)
        else:
            assert self.off and self.on
            await self._run(self.off)
            await asyncio.sleep(1.0)
            await self._run(self.on)
        await asyncio.sleep(self.settle_s)
        if self.host and self.port:
            await wait_for_port(self.host, self.port, 120.0)


class ManualPowerController(PowerController):
    """Asks a person at the bench to cycle the supply."""

    description = "manual: the operator cycles the supply when asked"

    def __init__(self, settle_s: float = 5.0) -> None:
        self.settle_s = settle_s

    async def power_cycle(self) -> None:
        if not sys.stdin.isatty():
            raise UsageError("manual power cycling needs an interactive terminal")
        await asyncio.to_thread(input, "Cut the meter's supply, restore it, then press Enter: ")
        await asyncio.sleep(self.settle_s)
