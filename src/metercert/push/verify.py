"""One push at a time: is it ciphered as required, does its tag verify, is its counter new?

Verdicts (one per push, the worst that applies):

- ``ok``: authenticated (tag verified with the key file), a counter above every one seen
  from that meter under that key;
- ``plaintext``: a DataNotification without protection (a policy that requires
  authenticated pushes is broken by it);
- ``tag-failure``: the tag does not verify with any key set of that meter: forged or
  corrupted, never decrypted content;
- ``unknown-meter``: no key set names the sender's system title;
- ``replay``: the same counter and the same ciphertext as a push seen before (byte for
  byte a copy: the attack a head-end must detect);
- ``counter-reuse``: a counter seen before with *different* ciphertext: the meter reused
  a GCM nonce (the worst case: plaintexts leak, forgeries become possible);
- ``regression``: a new counter, but below the highest seen: the meter's counter went
  back (typically after a power cycle that lost it);
- ``malformed``: not a DataNotification, or a ciphered form that cannot be split.

The counter book persists (``state``) so that a regression across a listener restart
and across the meter's power cycles is still seen.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

from metercert.cosem.errors import CosemDecodeError
from metercert.cosem.xdlms.notification import DataNotification
from metercert.errors import InputFileError
from metercert.security import ApduFormatError, SecurityError
from metercert.security.protection import (
    is_ciphered,
    parse_ciphered,
    select_encryption_key,
    unprotect_parsed,
)

__all__ = ["VERDICTS", "CounterBook", "PushRecord", "PushVerifier"]

VERDICTS = ("ok", "plaintext", "tag-failure", "unknown-meter", "replay", "counter-reuse",
            "regression", "malformed")
_RECENT = 4096  # counters remembered per meter for replay/reuse detection


@dataclass(frozen=True)
class PushRecord:
    """What one push was. ``value`` is the decoded notification body (repr), never keys."""

    verdict: str
    sender: str                  # where it came from (ip:port, or the serial line)
    system_title: str | None     # 16 hex digits, when the push names it
    invocation_counter: int | None
    ciphered: bool
    authenticated: bool
    detail: str = ""
    value: str = field(default="", repr=False)
    #: the push as received (ciphered, or plain as the meter sent it): evidence
    raw: bytes = field(default=b"", repr=False)
    #: the notification's date-time field (12 bytes, or empty when the meter sends none)
    date_time: bytes = field(default=b"", repr=False)

    def line(self) -> str:
        title = self.system_title or "?"
        ic = "-" if self.invocation_counter is None else str(self.invocation_counter)
        return (f"{self.verdict:<13} meter {title} IC {ic} from {self.sender}"
                + (f": {self.detail}" if self.detail else ""))


class CounterBook:
    """Per meter (system title): the highest counter and the recent (counter, digest) pairs."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._book: dict[str, dict[str, object]] = {}
        if path is not None and path.exists():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise InputFileError(f"push counter state {path}: unreadable ({exc}); move "
                                     "it away to start a new one") from None
            if not isinstance(data, dict):
                raise InputFileError(f"push counter state {path}: not a counter book; move "
                                     "it away to start a new one")
            self._book = data

    def judge(self, title: str, ic: int, digest: str) -> tuple[str, str]:
        """The counter verdict for an authenticated push, and the book updated."""
        entry = self._book.setdefault(title, {"max": -1, "recent": {}})
        recent: dict[str, str] = entry["recent"]  # type: ignore[assignment]
        top = int(entry["max"])  # type: ignore[call-overload]
        seen = recent.get(str(ic))
        if seen == digest:
            return "replay", f"counter {ic} and its ciphertext were seen before"
        if seen is not None:
            return "counter-reuse", f"counter {ic} was used before for another push"
        recent[str(ic)] = digest
        if len(recent) > _RECENT:
            for old in sorted(recent, key=int)[:len(recent) - _RECENT]:
                del recent[old]
        if ic <= top:
            return "regression", f"counter {ic} is below the highest seen, {top}"
        entry["max"] = ic
        return "ok", ""

    def save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".push-counters-")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(self._book, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


class PushVerifier:
    """Judges pushes with a key file's key sets (a fleet KeyRing) and a counter book."""

    def __init__(self, keys: object, book: CounterBook | None = None) -> None:
        self.keys = keys  # metercert.fleet.ingest.KeyRing (candidates by system title)
        self.book = book or CounterBook()

    def verify(self, apdu: bytes, sender: str, *, endpoint: str = "",
               client_sap: int | None = None) -> PushRecord:
        return replace(self._verify(apdu, sender, endpoint, client_sap), raw=bytes(apdu))

    def _verify(self, apdu: bytes, sender: str, endpoint: str,
                client_sap: int | None) -> PushRecord:
        if not apdu:
            return PushRecord("malformed", sender, None, None, False, False, "empty APDU")
        if apdu[0] == DataNotification.TAG[0]:
            try:
                body = DataNotification.from_bytes(apdu)
            except (ApduFormatError, CosemDecodeError) as exc:
                return PushRecord("malformed", sender, None, None, False, False, str(exc))
            return PushRecord("plaintext", sender, None, None, False, False,
                              "a DataNotification without protection", repr(body.body),
                              date_time=body.date_time)
        if not is_ciphered(apdu):
            return PushRecord("malformed", sender, None, None, False, False,
                              f"APDU tag 0x{apdu[0]:02X} is not a push")
        try:
            parsed = parse_ciphered(apdu)
        except (ApduFormatError, SecurityError) as exc:
            return PushRecord("malformed", sender, None, None, True, False, str(exc))
        sc = parsed.security_control
        title = parsed.system_title
        hex_title = title.hex().upper() if title else None
        ic = parsed.invocation_counter
        if title is None:
            return PushRecord("malformed", sender, None, ic, True, sc.authenticated,
                              "a ciphered push without the sender's system title "
                              "(service-specific glo form): cannot tell whose keys")
        candidates = self.keys.candidates(endpoint, title, None, client_sap)  # type: ignore[attr-defined]
        known = [k for k in candidates if k.server_system_title == title]
        if not known:
            return PushRecord("unknown-meter", sender, hex_title, ic, True, sc.authenticated,
                              "no key set in the key file names this system title")
        plain: bytes | None = None
        for ks in known:
            try:
                plain = unprotect_parsed(parsed, encryption_key=select_encryption_key(ks, parsed),
                                         authentication_key=ks.ak, system_title=title).plaintext
                break
            except SecurityError:
                continue
        if plain is None:
            return PushRecord("tag-failure", sender, hex_title, ic, True, sc.authenticated,
                              "the tag does not verify with this meter's keys")
        if not sc.authenticated:
            return PushRecord("plaintext", sender, hex_title, ic, True, False,
                              "encrypted without authentication: anyone can alter it")
        try:
            body = DataNotification.from_bytes(plain)
        except (ApduFormatError, CosemDecodeError) as exc:
            return PushRecord("malformed", sender, hex_title, ic, True, True,
                              f"the protected APDU is not a DataNotification ({exc})")
        verdict, detail = self.book.judge(hex_title or "", ic,
                                          hashlib.sha256(parsed.payload).hexdigest())
        return PushRecord(verdict, sender, hex_title, ic, True, True, detail, repr(body.body),
                          date_time=body.date_time)
