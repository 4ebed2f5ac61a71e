"""Connection caps for the reference meter: a flood of idle sockets must not lock out the head-end.

Every TCP connection costs a file descriptor, and a process has a fixed number
(``ulimit -n``, often 1024). Without a cap, about a thousand idle connections used
them all up: accept() then failed with EMFILE on every attempt and the good client
was never served. The gate below admits a new connection only within two caps:

* per peer address (``per_peer``): one host cannot take every slot;
* in total (``total``, by default what ``RLIMIT_NOFILE`` leaves after the meters'
  own files), of which ``reserved`` slots are kept for the configured head-end
  addresses only.

At a cap the gate first *sheds* a connection to make room: the one that has never
sent a whole frame and has waited longest, else the one whose last frame is oldest,
but never a head-end connection and never one that sent a frame within
``protect_active`` seconds. Only when nothing can be shed is the newcomer closed.
A slow-loris that never completes a frame is therefore always the first to go, and
a client that talks keeps its connection.

Each condition (cap reached, connection shed, newcomer refused, accept() out of
file descriptors) is logged at most once per ``log_interval`` seconds with a count,
so an attack cannot turn the log into a flood either.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("metercert.meter")

#: file descriptors kept free for the process itself (state files, pcap, imports)
FD_HEADROOM = 48


@dataclass(frozen=True)
class ConnectionLimits:
    """How many connections a fleet process accepts (see the module text)."""

    total: int | None = None     # None: from RLIMIT_NOFILE
    per_peer: int = 512
    head_end: frozenset[str] = frozenset()
    reserved: int = 4
    protect_active: float = 1.0
    log_interval: float = 10.0


def default_total(meters: int, fds_per_meter: int = 4) -> int:
    """Connections that fit under the soft RLIMIT_NOFILE, after the meters' own files."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return max(8, soft - FD_HEADROOM - fds_per_meter * meters)


class RateLog:
    """Log each condition at most once per interval, with how often it happened since."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self._last: dict[str, float] = {}
        self._count: dict[str, int] = {}
        self.lines = 0

    def event(self, condition: str, detail: str = "") -> None:
        now = self.clock()
        self._count[condition] = self._count.get(condition, 0) + 1
        last = self._last.get(condition)
        if last is not None and now - last < self.interval:
            return
        count = self._count.pop(condition)
        self._last[condition] = now
        self.lines += 1
        more = f" ({count} times in the last {self.interval:.0f} s)" if count > 1 else ""
        log.warning("%s%s%s", condition, f": {detail}" if detail else "", more)


@dataclass(eq=False)
class Connection:
    peer: str
    close: Callable[[], None]
    opened: float
    last_frame: float | None = None
    head_end: bool = False

    def touch(self) -> None:
        self.last_frame = time.monotonic()


@dataclass
class ConnectionGate:
    """Admits, sheds and counts connections for every meter of one process."""

    limits: ConnectionLimits
    total: int
    clock: Callable[[], float] = time.monotonic
    open: dict[int, Connection] = field(default_factory=dict)
    by_peer: dict[str, set[int]] = field(default_factory=dict)
    shed: int = 0
    refused: int = 0

    def __post_init__(self) -> None:
        self.log = RateLog(self.limits.log_interval, self.clock)

    def _victim(self, among: list[Connection]) -> Connection | None:
        now = self.clock()
        candidates = [c for c in among if not c.head_end and (
            c.last_frame is None or now - c.last_frame >= self.limits.protect_active)]
        if not candidates:
            return None
        # never-talking connections first (oldest first), then the longest silent
        return min(candidates, key=lambda c: (c.last_frame is not None,
                                              c.last_frame if c.last_frame is not None
                                              else c.opened))

    def _make_room(self, among: list[Connection], condition: str) -> bool:
        victim = self._victim(among)
        if victim is None:
            self.refused += 1
            self.log.event(f"connection refused: {condition}, nothing idle to shed")
            return False
        self.shed += 1
        self.log.event(f"{condition}: shedding idle connections", f"e.g. from {victim.peer}")
        self.release(victim)
        victim.close()
        return True

    def admit(self, peer: str, close: Callable[[], None]) -> Connection | None:
        """A registered connection, or None: the caller must close it at once."""
        head = peer in self.limits.head_end
        if not head:
            mine = [self.open[i] for i in self.by_peer.get(peer, ())]
            if len(mine) >= self.limits.per_peer and not self._make_room(
                    mine, f"per-peer cap of {self.limits.per_peer} reached by {peer}"):
                return None
        cap = self.total if head else max(1, self.total - self.limits.reserved)
        while len(self.open) >= cap:
            if not self._make_room(list(self.open.values()),
                                   f"connection cap of {cap} reached"):
                return None
        conn = Connection(peer, close, self.clock(), head_end=head)
        self.open[id(conn)] = conn
        self.by_peer.setdefault(peer, set()).add(id(conn))
        return conn

    def release(self, conn: Connection) -> None:
        if self.open.pop(id(conn), None) is None:
            return
        peers = self.by_peer.get(conn.peer)
        if peers is not None:
            peers.discard(id(conn))
            if not peers:
                del self.by_peer[conn.peer]


def quiet_accept_errors(loop: asyncio.AbstractEventLoop, rate: RateLog) -> Callable[[], None]:
    """Log accept() failing for want of file descriptors once per interval, no traceback.

    asyncio reports each failed accept() through the loop's exception handler with a
    traceback (about 400 KB/s at EMFILE). Other reports go where they went before.
    Returns a function that restores the previous handler."""
    previous = loop.get_exception_handler()

    def handler(lp: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE,
                                                      errno.ENOBUFS, errno.ENOMEM):
            rate.event("accept() failed: out of file descriptors or memory",
                       f"{errno.errorcode.get(exc.errno or 0, '?')}; new connections wait")
            return
        if previous is not None:
            previous(lp, context)
        else:
            lp.default_exception_handler(context)

    loop.set_exception_handler(handler)
    return lambda: loop.set_exception_handler(previous)
