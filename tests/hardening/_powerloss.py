"""A power cut for one folder: os calls wrapped so that unsynced data can be lost.

SIGKILL keeps the page cache: whatever a process wrote reaches the disk sooner or
later. A power cut does not. This module models the page cache for every file under
one root folder and, at a chosen call, cuts the power:

* file data is durable once ``fsync``/``fdatasync`` returned on it; later writes may
  survive or not, independently per 512-byte sector (write-back runs in any order),
  and with ``tear`` the sector being written can be torn byte-wise;
* a folder's entries (a new file, a rename, an unlink, a new folder) are durable
  once the folder was fsync'ed; entries changed since may each survive or not.

The crash is raised as :class:`PowerLoss` (a BaseException, so no ``except OSError``
of the code under test can swallow it) before or after the n-th mutating call.
:func:`run_to_power_loss` runs a workload in a forked child that rebuilds the root as
the disk would hold it after the cut and exits: every fd and lock dies with it, as
with a real power cut, and the parent checks what the next boot sees. Used by
tests/hardening/test_power_loss.py and benchmarks/power_loss.py.
"""

from __future__ import annotations

import os
import random
import shutil
import stat
import struct
from collections.abc import Callable
from pathlib import Path

SECTOR = 512


class PowerLoss(BaseException):
    """The power went off here."""


Entry = tuple[str, int]  # ("f", inode) or ("d", 0)


def _listing(folder: str) -> dict[str, Entry]:
    out: dict[str, Entry] = {}
    with os.scandir(folder) as it:
        for e in it:
            st = e.stat(follow_symlinks=False)
            out[e.name] = ("d", 0) if stat.S_ISDIR(st.st_mode) else ("f", st.st_ino)
    return out


class PageCache:
    """Wraps the os calls metercert's stores use; see the module text."""

    WRAPPED = ("open", "close", "write", "pwrite", "fsync", "fdatasync", "replace", "rename",
               "link", "unlink", "mkdir")

    def __init__(self, root: Path, rng: random.Random, crash_at: int | None,
                 *, tear: bool = True) -> None:
        self.root = str(root.resolve())
        self.rng = rng
        self.crash_at = crash_at
        self.tear = tear
        self.calls = 0
        self.real = {name: getattr(os, name) for name in self.WRAPPED}
        self.fds: dict[int, str] = {}
        self.data: dict[int, bytes] = {}        # inode -> durable content
        self.dirs: dict[str, dict[str, Entry]] = {}  # folder -> durable entries
        self.last_write: tuple[int, int, int] | None = None  # inode, offset, length
        for folder, _, files in os.walk(self.root):
            self.dirs[folder] = _listing(folder)
            for name in files:
                path = os.path.join(folder, name)
                with open(path, "rb") as fh:
                    self.data[os.stat(path).st_ino] = fh.read()

    # -- wrapping --------------------------------------------------------------------------
    def _mine(self, path: str | os.PathLike[str] | int) -> bool:
        if isinstance(path, int):
            return path in self.fds
        p = os.path.abspath(os.fspath(path))
        return p == self.root or p.startswith(self.root + os.sep)

    def _tick(self) -> None:
        self.calls += 1
        if self.crash_at is not None and self.calls == self.crash_at and self.rng.random() < 0.5:
            raise PowerLoss  # before the call

    def _tock(self) -> None:
        if self.crash_at is not None and self.calls == self.crash_at:
            raise PowerLoss  # after the call

    def install(self) -> None:
        real = self.real

        def open_(path, flags, mode=0o777, *, dir_fd=None):  # type: ignore[no-untyped-def]
            if not self._mine(path):
                return real["open"](path, flags, mode, dir_fd=dir_fd)
            creating = bool(flags & os.O_CREAT) and not os.path.exists(path)
            if creating:
                self._tick()
            fd = real["open"](path, flags, mode, dir_fd=dir_fd)
            self.fds[fd] = os.path.abspath(os.fspath(path))
            if creating:
                self._tock()
            return fd

        def close(fd):  # type: ignore[no-untyped-def]
            self.fds.pop(fd, None)
            return real["close"](fd)

        def write(fd, data):  # type: ignore[no-untyped-def]
            if fd not in self.fds:
                return real["write"](fd, data)
            self._tick()
            offset = os.lseek(fd, 0, os.SEEK_CUR)
            n = real["write"](fd, data)
            self.last_write = (os.fstat(fd).st_ino, offset, n)
            self._tock()
            return n

        def pwrite(fd, data, offset):  # type: ignore[no-untyped-def]
            if fd not in self.fds:
                return real["pwrite"](fd, data, offset)
            self._tick()
            n = real["pwrite"](fd, data, offset)
            self.last_write = (os.fstat(fd).st_ino, offset, n)
            self._tock()
            return n

        def sync(name: str):  # type: ignore[no-untyped-def]
            def call(fd):  # type: ignore[no-untyped-def]
                if fd not in self.fds:
                    return real[name](fd)
                self._tick()
                real[name](fd)
                path = self.fds[fd]
                if os.path.isdir(path):
                    self.dirs[path] = _listing(path)
                else:
                    with open(f"/proc/self/fd/{fd}", "rb") as fh:  # also for O_WRONLY fds
                        self.data[os.fstat(fd).st_ino] = fh.read()
                self._tock()
            return call

        def two_paths(name: str):  # type: ignore[no-untyped-def]
            def call(src, dst, **kw):  # type: ignore[no-untyped-def]
                if not (self._mine(src) or self._mine(dst)):
                    return real[name](src, dst, **kw)
                self._tick()
                real[name](src, dst, **kw)
                self._tock()
            return call

        def one_path(name: str):  # type: ignore[no-untyped-def]
            def call(path, *args, **kw):  # type: ignore[no-untyped-def]
                if not self._mine(path):
                    return real[name](path, *args, **kw)
                self._tick()
                real[name](path, *args, **kw)
                self._tock()
            return call

        os.open = open_  # type: ignore[assignment]
        os.close = close  # type: ignore[assignment]
        os.write = write  # type: ignore[assignment]
        os.pwrite = pwrite  # type: ignore[assignment]
        os.fsync = sync("fsync")  # type: ignore[assignment]
        os.fdatasync = sync("fdatasync")  # type: ignore[assignment]
        os.replace = two_paths("replace")  # type: ignore[assignment]
        os.rename = two_paths("rename")  # type: ignore[assignment]
        os.link = two_paths("link")  # type: ignore[assignment]
        os.unlink = one_path("unlink")  # type: ignore[assignment]
        os.mkdir = one_path("mkdir")  # type: ignore[assignment]

    def uninstall(self) -> None:
        for name, fn in self.real.items():
            setattr(os, name, fn)

    # -- the cut ---------------------------------------------------------------------------
    def _mix(self, ino: int, durable: bytes, live: bytes | None) -> bytes:
        if live is None or live == durable:
            return durable
        length = self.rng.choice((len(durable), len(live)))
        out = bytearray()
        for start in range(0, length, SECTOR):
            new = live[start:start + SECTOR].ljust(SECTOR, b"\0")
            old = durable[start:start + SECTOR].ljust(SECTOR, b"\0")
            if new == old:
                out += old
                continue
            last = self.last_write
            torn = (self.tear and last is not None and last[0] == ino
                    and last[1] < start + SECTOR and start < last[1] + last[2])
            if torn and self.rng.random() < 0.5:
                cut = self.rng.randrange(SECTOR)  # a torn sector: a prefix made it
                out += new[:cut] + old[cut:]
            else:
                out += new if self.rng.random() < 0.5 else old
        return bytes(out[:length])

    def cut(self) -> None:
        """Rebuild the root as the disk holds it after the power cut."""
        self.uninstall()
        live_paths: dict[int, str] = {}
        for folder, _, files in os.walk(self.root):
            for name in files:
                path = os.path.join(folder, name)
                live_paths[os.stat(path).st_ino] = path
        live_bytes = {ino: Path(p).read_bytes() for ino, p in live_paths.items()}
        tree: dict[str, bytes | None] = {}  # relative path -> content (None: folder)

        def walk(folder: str, rel: str) -> None:
            durable = self.dirs.get(folder, {})
            live = _listing(folder) if os.path.isdir(folder) else {}
            for name in sorted(set(durable) | set(live)):
                options = [e for e in (durable.get(name), live.get(name)) if e is not None]
                if name not in durable or name not in live:
                    options.append(None)  # a changed entry: it may not have reached the disk
                entry = self.rng.choice(options)
                if entry is None:
                    continue
                path, sub = os.path.join(folder, name), os.path.join(rel, name)
                if entry[0] == "d":
                    tree[sub] = None
                    walk(path, sub)
                else:
                    ino = entry[1]
                    durable_bytes = self.data.get(ino, b"")
                    tree[sub] = self._mix(ino, durable_bytes, live_bytes.get(ino))

        walk(self.root, "")
        for name in os.listdir(self.root):
            p = os.path.join(self.root, name)
            shutil.rmtree(p) if os.path.isdir(p) and not os.path.islink(p) else os.unlink(p)
        for rel, content in sorted(tree.items()):
            p = os.path.join(self.root, rel)
            if content is None:
                os.makedirs(p, exist_ok=True)
            else:
                os.makedirs(os.path.dirname(p), exist_ok=True)
                fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                os.write(fd, content)
                os.close(fd)


Report = Callable[[str, int], None]


def run_to_power_loss(root: Path, workload: Callable[[Report], None], *, seed: int,
                      crash_at: int, tear: bool = True) -> tuple[list[tuple[str, int]], bool]:
    """Run ``workload(report)`` in a child until the power is cut at call ``crash_at``.

    ``report(kind, value)`` tells the parent what left the process (a counter handed out,
    a counter accepted) *before* the cut. Returns those reports and whether the cut
    happened inside the workload (False: it finished first and the cut came after)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: run, cut, die
        code = 0
        try:
            os.close(read_fd)
            model = PageCache(root, random.Random(seed), crash_at, tear=tear)

            def report(kind: str, value: int) -> None:
                tag = kind.encode()[:8].ljust(8)
                model.real["write"](write_fd, tag + struct.pack(">Q", value))
            crashed = b"N"
            model.install()
            try:
                workload(report)
            except PowerLoss:
                crashed = b"Y"
            finally:
                model.uninstall()
            model.cut()
            os.write(write_fd, b"#DONE#" + crashed + b"\0" * 9)
        except BaseException:  # noqa: BLE001 - reported to the parent as a failed run
            import traceback
            traceback.print_exc()
            code = 3
        finally:
            os._exit(code)
    os.close(write_fd)
    chunks = []
    while chunk := os.read(read_fd, 65536):
        chunks.append(chunk)
    os.close(read_fd)
    _, status = os.waitpid(pid, 0)
    data = b"".join(chunks)
    if os.waitstatus_to_exitcode(status) != 0 or not data.endswith(b"\0" * 9):
        raise RuntimeError(f"power-loss child failed (status {status})")
    body, crashed = data[:-16], data[-10:-9] == b"Y"
    reports = [(body[i:i + 8].decode().strip(), struct.unpack(">Q", body[i + 8:i + 16])[0])
               for i in range(0, len(body), 16)]
    return reports, crashed
