"""A `metercert meter serve` child process for load, fault and soak tests (127.0.0.1 only).

Unlike :class:`metercert.lab.power.MeterProcess` its stderr goes to a file, so a
meter that logs a lot can never block on a full pipe while the test is busy.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path


def raise_fd_limit(wanted: int = 20000) -> int:
    """Raise the soft RLIMIT_NOFILE towards ``wanted`` (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(wanted, hard) if hard != resource.RLIM_INFINITY else wanted
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class ServedMeter:
    def __init__(self, state_dir: Path, profile: str = "conformant", framing: str = "wrapper") -> None:
        self.framing = framing
        self.state_dir = state_dir
        self.keys = state_dir / "client-keys.yaml"
        self.stderr_path = state_dir.parent / f"{state_dir.name}-meter.stderr"
        self.profile = profile
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0

    def start(self, timeout: float = 60.0) -> int:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        err = open(self.stderr_path, "w")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "metercert", "meter", "serve", "--profile", self.profile,
             "--host", "127.0.0.1", "--port", str(self.port), "--state-dir", str(self.state_dir),
             "--keys-out", str(self.keys), "--framing", self.framing, "--ready-line"],
            stdout=subprocess.PIPE, stderr=err, text=True)
        err.close()
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("meter exited: " + self.stderr_path.read_text()[-2000:])
            if line.startswith("READY "):
                self.port = int(line.split()[1].rpartition(":")[2])
                return self.port
        raise RuntimeError("meter did not get ready")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
