"""The ingest's row builder as it was before the columnar rewrite (issue 15), kept as a
reference: tests/fleet/test_row_builder.py checks that the product's recorder gives the
very same rows on every capture the tests have. Do not optimise this copy."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from metercert.fleet.ingest import AARE_TAG, AARQ_TAG, KeyRing, _ap_title
from metercert.fleet.pcap import WireApdu
from metercert.fleet.schema import space_key
from metercert.security import (
    ApduFormatError,
    AuthenticationFailed,
    SecurityError,
    parse_ciphered,
    select_encryption_key,
    unprotect_parsed,
)
from metercert.security.protection import CIPHERED_TAGS, CipheredApdu


@dataclass
class _Held:
    """A row whose identity waits for the meter's system title (and its parsed APDU)."""

    row: dict[str, Any]
    parsed: CipheredApdu | None
    explicit_title: bytes | None


@dataclass
class _Association:
    """What one stream has told us so far about its current association."""

    stream: str
    number: int = 0
    client_title: bytes | None = None
    meter_title: bytes | None = None
    resolved: bool = False
    held: list[_Held] = field(default_factory=list)


_HOLD_LIMIT = 10_000  # rows held for a title before the endpoint's last title is used


def meter_identity(meter_title: bytes | None, endpoint: str) -> str:
    """A meter is its system title when known, else its network path (``endpoint``)."""
    return f"st:{meter_title.hex().upper()}" if meter_title else endpoint


@dataclass
class LegacyRecorder:
    """Builds schema rows from wire APDUs, tracking associations per stream.

    Rows of an association are held until the meter's system title is known (its
    AARE, or a general-glo APDU it sends), so that every row of the association
    gets the meter's identity and the AARQ's ciphered initiate-request can be
    verified with the meter's keys. Held rows are released in stream order.
    ``flush`` releases what is still held at the end of the ingest.
    """

    keys: KeyRing | None = None
    source: str = ""
    first_id: int = 0
    malformed: int = 0
    unattributed: int = 0
    _assocs: dict[str, _Association] = field(default_factory=dict)
    _endpoint_title: dict[str, bytes] = field(default_factory=dict)
    _last_key: dict[str, int] = field(default_factory=dict)
    _next: int = 0
    _spaces: dict[tuple[str, str], int] = field(default_factory=dict)  # memo: digests
    _ids: dict[tuple[bytes | None, str], str] = field(default_factory=dict)
    _hex: dict[bytes, str] = field(default_factory=dict)

    def record(self, w: WireApdu) -> list[dict[str, Any]]:
        """The rows that are complete after ``w`` (held rows are released in order)."""
        apdu = w.apdu
        tag = apdu[0]
        # one association per client and server address pair on a connection: the
        # wrapper multiplexes by wPort, an HDLC gateway by the meters' addresses
        where = w.endpoint[len(w.server_addr) + 1:] or "-"
        akey = f"{w.stream} {w.client_sap}>{where}"
        assoc = self._assocs.get(akey)
        out: list[dict[str, Any]] = []
        if assoc is None:
            assoc = self._assocs[akey] = _Association(akey)
        protected: bytes | None = None
        if tag == AARQ_TAG:
            out += self._resolve(assoc, w.endpoint)
            title, info = _ap_title(apdu, tag)
            assoc.number += 1
            assoc.client_title, assoc.meter_title, assoc.resolved = title, None, False
            protected = info if info and info[0] in CIPHERED_TAGS else None
        elif tag == AARE_TAG:
            title, info = _ap_title(apdu, tag)
            if title:
                assoc.meter_title = title
            protected = info if info and info[0] in CIPHERED_TAGS else None
        elif tag in CIPHERED_TAGS:
            protected = apdu
        row: dict[str, Any] = {
            "ts": w.ts, "direction": w.direction,
            "client_addr": w.client_addr, "server_addr": w.server_addr,
            "client_sap": w.client_sap, "server_sap": w.server_sap, "link": w.link,
            "endpoint": w.endpoint, "assoc_id": f"{akey}/{assoc.number}",
            "apdu_tag": tag, "length": len(apdu), "ciphered": False, "authenticated": False,
            "source": w.source or self.source,
        }
        parsed: CipheredApdu | None = None
        explicit: bytes | None = None
        if protected is not None:
            row["ciphered"] = True
            try:
                parsed = parse_ciphered(protected)
            except (ApduFormatError, SecurityError):
                self.malformed += 1  # ciphered, but a form we cannot split: no SC claimed
            if parsed is not None:
                sc = parsed.security_control
                explicit = parsed.system_title
                if w.direction == "s2c" and explicit and assoc.meter_title is None:
                    assoc.meter_title = explicit
                row.update({
                    "sc": sc.byte, "suite": sc.suite,
                    "key_set": "broadcast" if sc.broadcast else "unicast",
                    "ic": parsed.invocation_counter,
                    "ct_sha256": hashlib.sha256(parsed.payload).digest(),
                    "authenticated": sc.authenticated,
                })
        if assoc.meter_title is not None and not assoc.held and not out:
            return [self._finish_row(_Held(row, parsed, explicit), assoc, assoc.meter_title)]
        assoc.held.append(_Held(row, parsed, explicit))
        if assoc.meter_title is not None or tag == 0x63 or len(assoc.held) > _HOLD_LIMIT:
            out += self._resolve(assoc, w.endpoint)
        return out

    def _resolve(self, assoc: _Association, endpoint: str) -> list[dict[str, Any]]:
        """Give held rows their identity, counter space and tag verdict, in order."""
        if not assoc.held:
            return []
        if assoc.meter_title is not None:
            self._endpoint_title[endpoint] = assoc.meter_title
        meter_title = assoc.meter_title or self._endpoint_title.get(endpoint)
        out = []
        for h in assoc.held:
            out.append(self._finish_row(h, assoc, meter_title))
        assoc.held.clear()
        return out

    def _finish_row(self, h: _Held, assoc: _Association,
                    meter_title: bytes | None) -> dict[str, Any]:
        row = h.row
        row["id"] = self.first_id + self._next
        self._next += 1
        endpoint = row["endpoint"]
        meter = self._ids.get((meter_title, endpoint))
        if meter is None:
            meter = self._ids[(meter_title, endpoint)] = meter_identity(meter_title, endpoint)
        row["meter_id"] = meter
        parsed = h.parsed
        if parsed is None:
            return row
        c2s = row["direction"] == "c2s"
        sender = h.explicit_title or (assoc.client_title if c2s else meter_title)
        if sender:
            hexed = self._hex.get(sender)
            if hexed is None:
                hexed = self._hex[sender] = sender.hex().upper()
            row["system_title"] = hexed
        else:
            row["system_title"] = None
        if sender is None:
            self.unattributed += 1
        generation = ""
        if self.keys is not None and sender is not None and not parsed.form.dedicated:
            generation = self._verify(row, parsed, sender, endpoint, meter_title,
                                      assoc.client_title)
        sc = parsed.security_control
        if parsed.form.dedicated:
            key_id = f"ded {row['assoc_id']}"
        elif sc.broadcast:
            key_id = f"gbk{generation}"
        else:
            key_id = f"guk {meter}/{row['client_sap']}{generation}"
        who = row["system_title"] or f"?{row['direction']}"
        row["key_id"] = key_id
        sk = self._spaces.get((who, key_id))
        if sk is None:
            sk = self._spaces[(who, key_id)] = space_key(who, key_id)
        row["space_key"] = sk
        return row

    def _verify(self, row: dict[str, Any], parsed: CipheredApdu, sender: bytes, endpoint: str,
                meter_title: bytes | None, client_title: bytes | None) -> str:
        """Check the tag with each candidate key set; return the key generation label."""
        assert self.keys is not None
        cands = self.keys.candidates(endpoint, meter_title, client_title, row["client_sap"])
        if not cands:
            return ""
        memo = f"{endpoint}/{row['client_sap']}"
        first = self._last_key.get(memo, 0)
        order = [first, *(i for i in range(len(cands)) if i != first)] if first < len(
            cands) else list(range(len(cands)))
        sc = parsed.security_control
        failed = False
        for i in order:
            ks = cands[i]
            try:
                plain = unprotect_parsed(
                    parsed, encryption_key=select_encryption_key(ks, parsed),
                    authentication_key=ks.ak, system_title=sender)
            except AuthenticationFailed:
                failed = True
                continue
            except SecurityError:
                continue  # a key is missing or the wrong size: nothing verified
            self._last_key[memo] = i
            row["tag_ok"] = True if sc.authenticated else None
            row["plain_tag"] = plain.plaintext[0] if plain.plaintext else None
            return f"#k{i}" if len(cands) > 1 else ""
        if failed and sc.authenticated:
            row["tag_ok"] = False
        return ""

    def flush(self) -> list[dict[str, Any]]:
        """Release every held row (end of the ingest)."""
        out: list[dict[str, Any]] = []
        for assoc in self._assocs.values():
            if assoc.held:
                out += self._resolve(assoc, assoc.held[0].row["endpoint"])
        return out
