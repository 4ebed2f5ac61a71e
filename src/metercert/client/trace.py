"""The evidence trace: every APDU a client sent and received, protected and plain.

Key material never enters a trace: a dedicated key inside an InitiateRequest is
replaced by ``<redacted>`` before the plaintext is recorded, and wrapped keys are
recorded only in wrapped form.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from metercert.security import tag_name


@dataclass(frozen=True)
class TraceEntry:
    t: float
    direction: str  # "->" client to meter, "<-" meter to client, "!!" a note
    wire: bytes
    plain: bytes | None = None
    note: str = ""
    redact: tuple[bytes, ...] = field(default=(), repr=False)

    def _hex(self, data: bytes) -> str:
        text = data.hex().upper()
        for secret in self.redact:
            if secret:
                text = text.replace(secret.hex().upper(), "<redacted>")
        return text

    def line(self) -> str:
        if self.direction == "!!":
            return f"{self.t:8.3f}    {self.note}"
        name = tag_name(self.wire[0]) if self.wire else "(empty)"
        text = f"{self.t:8.3f} {self.direction} {name:<28} {self._hex(self.wire)}"
        if self.plain is not None and self.plain != self.wire:
            plain_name = tag_name(self.plain[0]) if self.plain else "(empty)"
            text += f"\n{'':13}plain {plain_name:<22} {self._hex(self.plain)}"
        if self.note:
            text += f"\n{'':13}note: {self.note}"
        return text


class Trace:
    """An append-only APDU trace with a start time."""

    def __init__(self, limit: int = 5000) -> None:
        self.start = time.monotonic()
        self.entries: list[TraceEntry] = []
        self.limit = limit
        self._secrets: list[bytes] = []
        #: which counter space the meter's answers on this trace belong to: a fingerprint of
        #: (server title, suite, global key), never the key; "" when not ciphered
        self.counter_space = ""

    def add_secret(self, secret: bytes) -> None:
        """Bytes that must never be shown (e.g. a dedicated key)."""
        self._secrets.append(secret)

    def record(self, direction: str, wire: bytes, plain: bytes | None = None, note: str = "") -> None:
        if len(self.entries) < self.limit:
            self.entries.append(TraceEntry(time.monotonic() - self.start, direction, wire, plain,
                                           note, tuple(self._secrets)))

    def note(self, text: str) -> None:
        self.record("!!", b"", None, text)

    def mark(self) -> int:
        return len(self.entries)

    def text(self, since: int = 0, limit: int = 60) -> str:
        entries = self.entries[since:]
        if len(entries) > limit:
            skipped = len(entries) - limit
            entries = entries[: limit // 2] + entries[-limit // 2:]
            lines = [e.line() for e in entries]
            lines.insert(limit // 2, f"... {skipped} entries omitted ...")
            return "\n".join(lines)
        return "\n".join(e.line() for e in entries)

    def wires(self, since: int = 0) -> list[bytes]:
        return [e.wire for e in self.entries[since:] if e.direction != "!!"]

    def plains(self, since: int = 0) -> list[bytes]:
        return [e.plain for e in self.entries[since:] if e.plain is not None]
