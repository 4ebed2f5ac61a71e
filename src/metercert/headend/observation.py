"""What one client run looked like from both ends (pure data: no meter, no I/O).

The hostile meter writes a :class:`ConnectionLog` per TCP connection; the campaign adds
how the client process ended (:class:`ClientRun`). The head-end checks judge these
records only, so that a verdict always rests on something the meter saw the client do.
Raw APDU bytes stay in memory for the KEK scan and never reach a report: the evidence
text names tags, counters and what the meter did, not key material.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

#: genuine register values are GENUINE_BASE + n for the n-th GET of an association
GENUINE_BASE = 4000
#: values the meter never sends genuinely: FORGED_BASE + n for the n-th GET
FORGED_BASE = 900000
#: bit flipped in the last ciphertext byte (lands in the value's low byte)
CIPHERTEXT_MASK = 0x80


def genuine_value(n: int) -> int:
    return GENUINE_BASE + n


def forged_value(n: int) -> int:
    return FORGED_BASE + n


@dataclass
class WireEvent:
    """One APDU seen or sent by the meter. ``raw``/``plain`` are for in-memory scans only."""

    direction: str                  # "rx" (from the client) or "tx" (to the client)
    tag: int
    summary: str
    sap: int = 0
    invocation_counter: int | None = None
    security_control: int | None = None
    read: int | None = None         # the GET number this APDU belongs to
    hostile: str = ""               # what the meter did to it ("" = genuine)
    raw: bytes = field(default=b"", repr=False)
    plain: bytes = field(default=b"", repr=False)

    def line(self) -> str:
        arrow = "client ->" if self.direction == "rx" else "meter  ->"
        extra = f" IC {self.invocation_counter}" if self.invocation_counter is not None else ""
        sc = f" SC 0x{self.security_control:02X}" if self.security_control is not None else ""
        hostile = f"  [{self.hostile}]" if self.hostile else ""
        return f"{arrow} sap {self.sap}: {self.summary}{sc}{extra}{hostile}"


@dataclass
class AarqSeen:
    sap: int
    mechanism: int | None
    context: str
    invocation_counter: int | None
    client_title: str


@dataclass
class KeyTransferSeen:
    """A key_transfer (Security Setup method 2) the client sent, as the meter judged it."""

    sap: int
    key_id: int
    wrapped_length: int
    unwraps: bool
    detail: str


@dataclass
class ConnectionLog:
    peer: str
    events: list[WireEvent] = field(default_factory=list)
    aarqs: list[AarqSeen] = field(default_factory=list)
    key_transfers: list[KeyTransferSeen] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    ended_by: str = ""              # "client", "meter", "idle timeout", "framing error: ..."

    def add(self, event: WireEvent) -> WireEvent:
        self.events.append(event)
        return event


@dataclass
class ClientRun:
    """How the client process ended and what it printed (its own report of its decisions)."""

    command: str
    exit_code: int | None           # None: still running at the limit (killed)
    timed_out: bool
    stdout: str
    stderr: str
    duration_s: float
    values: dict[int, str] = field(default_factory=dict)     # read n -> printed value
    errors: dict[int, str] = field(default_factory=dict)     # read n -> printed error
    pushes: dict[int, str] = field(default_factory=dict)     # push n -> printed value
    push_errors: dict[int, str] = field(default_factory=dict)

    @property
    def crashed(self) -> str:
        """Why the run counts as a crash ("" if it does not): a signal or a traceback."""
        if self.exit_code is not None and self.exit_code < 0:
            return f"killed by signal {-self.exit_code}"
        if "Traceback (most recent call last)" in self.stderr:
            last = [ln for ln in self.stderr.strip().splitlines() if ln.strip()]
            return f"unhandled exception: {last[-1].strip()[:200] if last else '?'}"
        return ""

    def outcome(self) -> str:
        if self.timed_out:
            return f"still running after {self.duration_s:.0f} s (killed)"
        return f"exited with code {self.exit_code} after {self.duration_s:.1f} s"


@dataclass
class Observation:
    """One scenario: the client run and every connection the meter saw meanwhile."""

    scenario: str
    run: ClientRun
    connections: list[ConnectionLog]
    management_sap: int

    def events(self, *, sap: int | None = None) -> list[WireEvent]:
        return [e for c in self.connections for e in c.events if sap is None or e.sap == sap]

    def management_events(self) -> list[WireEvent]:
        return self.events(sap=self.management_sap)

    def gets(self) -> list[WireEvent]:
        """GET requests of the management association, in order."""
        return [e for e in self.management_events() if e.direction == "rx" and e.read is not None]

    def response_to(self, read: int) -> WireEvent | None:
        for e in self.management_events():
            if e.direction == "tx" and e.read == read:
                return e
        return None

    def requests_after(self, event: WireEvent) -> list[WireEvent]:
        """What the client sent on the management association after ``event``."""
        seen, out = False, []
        for e in self.management_events():
            if e is event:
                seen = True
            elif seen and e.direction == "rx":
                out.append(e)
        return out

    def ended_by(self) -> str:
        return ", ".join(c.ended_by or "open" for c in self.connections) or "no connection"

    def trace(self, limit: int = 40) -> str:
        lines = []
        for i, c in enumerate(self.connections, 1):
            lines.append(f"connection {i} from {c.peer}")
            lines.extend("  " + e.line() for e in c.events[:limit])
            if len(c.events) > limit:
                lines.append(f"  ... {len(c.events) - limit} more")
            lines.extend(f"  note: {n}" for n in c.notes)
            lines.append(f"  ended by {c.ended_by or 'nobody (still open)'}")
        return "\n".join(lines) or "the client never connected"


@dataclass(frozen=True)
class OutputProtocol:
    """How to read a client's decisions from its output (regexes with named groups)."""

    value: str = r"^read (?P<n>\d+) value (?P<value>\S+)"
    error: str = r"^read (?P<n>\d+) error\b(?P<text>.*)"
    push_value: str = r"^push (?P<n>\d+) value (?P<value>\S+)"
    push_error: str = r"^push (?P<n>\d+) error\b(?P<text>.*)"

    def compiled(self) -> tuple[re.Pattern[str], ...]:
        return tuple(re.compile(p, re.MULTILINE) for p in
                     (self.value, self.error, self.push_value, self.push_error))

    def parse(self, run: ClientRun) -> None:
        value, error, push_value, push_error = self.compiled()
        text = run.stdout
        for m in value.finditer(text):
            run.values.setdefault(int(m.group("n")), m.group("value"))
        for m in error.finditer(text):
            run.errors.setdefault(int(m.group("n")), (m.groupdict().get("text") or "").strip())
        for m in push_value.finditer(text):
            run.pushes.setdefault(int(m.group("n")), m.group("value"))
        for m in push_error.finditer(text):
            run.push_errors.setdefault(int(m.group("n")),
                                       (m.groupdict().get("text") or "").strip())
