"""A plain-Python reading of the counter detectors, for differential tests.

It applies each rule to every row, without the watch-list pruning the SQL does
(stage_pairs / stage_suspects / stage_seq_rows), so any row the pruning wrongly
drops shows up as a difference. It covers the kinds whose SQL depends on that
pruning: ic-reuse, replay, ic-regression, ic-gap, ic-exhaustion and
suite-downgrade.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

from metercert.fleet.detectors import DEFAULT_PARAMS

Row = Mapping[str, Any]
Key = tuple[str, str, int | None, int | None, int, tuple[int, ...]]
PRUNED_KINDS = ("ic-reuse", "replay", "ic-regression", "ic-gap", "ic-exhaustion",
                "suite-downgrade")


def expected(rows: Sequence[Row], params: Mapping[str, int] | None = None) -> list[Key]:
    p = {**DEFAULT_PARAMS, **(params or {})}
    gap, limit = p["gap_threshold"], (1 << 32) - p["exhaustion_margin"]
    out: list[Key] = []
    ciphered = [r for r in rows if r["ciphered"]]
    counted = [r for r in ciphered if r["ic"] is not None]

    # replay: one meter, one ciphered APDU (counter and payload), more than once
    copies: dict[tuple[str, int, bytes], list[Row]] = defaultdict(list)
    for r in counted:
        if r["ct_sha256"] is not None:
            copies[(r["meter_id"], r["ic"], r["ct_sha256"])].append(r)
    replayed = {k for k, v in copies.items() if len(v) > 1}
    for k in replayed:
        v = copies[k]
        out.append(("replay", k[0], min(r["ic"] for r in v), max(r["ic"] for r in v), len(v),
                    tuple(sorted(r["id"] for r in v))))

    # regression and gap: per meter, sender, direction and key set, in (ts, id) order
    seqs: dict[tuple[Any, ...], list[Row]] = defaultdict(list)
    for r in counted:
        if (r["meter_id"], r["ic"], r["ct_sha256"]) in replayed:
            continue
        seqs[(r["meter_id"], r["system_title"] or "-", r["direction"], r["key_set"])].append(r)
    for seq in seqs.values():
        seq.sort(key=lambda r: (r["ts"], r["id"]))
        for prev, cur in pairwise(seq):
            if cur["ic"] < prev["ic"]:
                kind = "ic-regression"
            elif cur["ic"] - prev["ic"] > gap:
                kind = "ic-gap"
            else:
                continue
            out.append((kind, cur["meter_id"], cur["ic"], prev["ic"], 2,
                        tuple(sorted({cur["id"], prev["id"]}))))

    # reuse: one sender, key, direction and counter, two ciphertexts; the broadcast
    # key is shared by the fleet, a unicast key belongs to one meter
    groups: dict[tuple[Any, ...], list[Row]] = defaultdict(list)
    for r in counted:
        if r["system_title"] is None or r["ct_sha256"] is None:
            continue
        scope = "*" if r["key_set"] == "broadcast" else r["meter_id"]
        groups[(scope, r["system_title"], r["key_set"], r["direction"], r["ic"])].append(r)
    for (_, _, _, _, ic), v in groups.items():
        if len({r["ct_sha256"] for r in v}) > 1:
            out.append(("ic-reuse", min(r["meter_id"] for r in v), ic, None, len(v),
                        tuple(sorted(r["id"] for r in v))))

    # exhaustion: per meter, direction and key set
    near: dict[tuple[Any, ...], list[Row]] = defaultdict(list)
    for r in counted:
        if r["ic"] >= limit:
            near[(r["meter_id"], r["direction"], r["key_set"])].append(r)
    for (meter, _, _), v in near.items():
        out.append(("ic-exhaustion", meter, max(r["ic"] for r in v), limit, len(v),
                    tuple(sorted(r["id"] for r in v))))

    # downgrade: APDUs under a lower suite than the meter's most used one (ties: higher)
    suites: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for r in ciphered:
        if r["suite"] is not None:
            suites[r["meter_id"]][r["suite"]] += 1
    for meter, counts in suites.items():
        usual = max(counts, key=lambda s: (counts[s], s))
        low = [r for r in ciphered if r["meter_id"] == meter and r["suite"] is not None
               and r["suite"] < usual]
        if low:
            out.append(("suite-downgrade", meter, min(r["suite"] for r in low), usual,
                        len(low), tuple(sorted(r["id"] for r in low))))
    return sorted(out, key=repr)


def found(findings: Sequence[Any]) -> list[Key]:
    keys = [(f.kind, f.meter_id, f.value, f.ref_value if f.kind != "ic-reuse" else None, f.n,
             f.evidence_ids) for f in findings if f.kind in PRUNED_KINDS]
    return sorted(keys, key=repr)


def random_rows(seed: int, *, meters: int = 5, per_meter: int = 24) -> list[dict[str, Any]]:
    """Random small fleets. Each meter behaves in one way, so that every rule is
    also tested on meters that nothing else puts on the watch list:

    * ``clean``: counters rise by one, one sender;
    * ``noisy``: counters that repeat, fall back or jump, resent payloads, ties in
      time, ciphered rows without a counter (head-end logs), a second sender;
    * ``senders``: two client system titles, or one and untitled rows, share one
      rising counter, so the merged sequence is clean but each sender's has gaps;
    * ``ties``: counters rise by two, but for pairs of APDUs with the same
      timestamp whose counters, in id order, fall back by one: only the id order
      shows that regression, a sort on time alone may hide it.

    Independently a meter may run near 2^32 or use other suites now and then;
    broadcast APDUs are sprinkled over all meters, and sometimes two meters share
    a meter_key (a digest collision). The rows come back in random order, as
    rows from several captures would: only (ts, id) orders them."""
    rnd = random.Random(seed)
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    titles = ["4D54520000000001", "4D54520000000002"]
    rows: list[dict[str, Any]] = []
    sent: list[tuple[str, bytes, int]] = []
    forced_key = rnd.random() < 0.3
    bcast_ic = rnd.randrange(1, 50)
    for m in range(meters):
        meter = f"10.0.0.{m}:4059/1"
        mode = rnd.choice(["clean", "noisy", "senders", "ties"])
        f = 1.0 if mode == "noisy" else 0.0
        usual = rnd.choice([0, 0, 1, 2])
        ic = {"c2s": rnd.randrange(1, 1000), "s2c": rnd.randrange(1, 1000)}
        if rnd.random() < 0.2:
            ic["s2c"] = (1 << 32) - rnd.randrange(1, 40)
        mix = rnd.choice([(1.0, 1.0, 0.0), (1.0, 0.0, 0.5), (1.0, 1.0, 0.3)])
        minute, direction = 0, "c2s"
        for _ in range(per_meter):
            tie = rnd.random() < (0.08 if mode == "noisy" else 0.25 if mode == "ties" else 0)
            if not tie:  # a tied APDU goes the same way as the one before it
                direction = rnd.choice(["c2s", "s2c"])
            minute += 0 if tie else rnd.randrange(1, 5)
            step = 2 if mode == "ties" else 1
            roll = rnd.random()
            if tie and (mode == "ties" or roll < 0.5):
                step = -1  # only the id order of the tied rows shows the regression
            elif roll < 0.04 * f:
                step = -rnd.randrange(1, 5)
            elif roll < 0.07 * f:
                step = 0
            elif roll < 0.09 * f:
                step = DEFAULT_PARAMS["gap_threshold"] + rnd.randrange(1, 10)
            ic[direction] = max(0, ic[direction] + step)
            broadcast = rnd.random() < 0.1
            if broadcast:
                bcast_ic += rnd.choice([1, 1, 1, 0])
            ct = bytes(rnd.randrange(256) for _ in range(32))
            copy = None
            if sent and rnd.random() < 0.05 * f:
                # a resent payload: mostly a whole copy (a replay), sometimes with
                # another counter in the header (not a replay: the tag cannot verify)
                copy = rnd.choice(sent)
                ct = copy[1]
            sent.append((direction, ct, ic[direction]))
            suite = usual if rnd.random() > 0.04 else rnd.choice([0, 1, 2])
            if direction == "s2c":
                title: str | None = f"4D4D4D000000000{m}"
            elif mode == "senders":
                title = rnd.choices([titles[0], titles[1], None], list(mix))[0]
            else:
                title = rnd.choices([titles[0], titles[1], None], [1.0, 0.06 * f, 0.03 * f])[0]
            row: dict[str, Any] = {
                "id": len(rows), "ts": t0 + timedelta(minutes=minute), "direction": direction,
                "meter_id": meter, "assoc_id": f"{meter}#{minute // 30}",
                "system_title": title,
                "sc": 0x30 | suite | (0x40 if broadcast else 0), "suite": suite,
                "key_set": "broadcast" if broadcast else "unicast",
                "ic": bcast_ic if broadcast else ic[direction],
                "apdu_tag": 0xDB, "length": 40, "ct_sha256": ct,
                "ciphered": True, "authenticated": True,
            }
            if copy is not None and copy[0] == direction and rnd.random() < 0.7:
                row["ic"] = copy[2]
            if rnd.random() < 0.04 * f:
                row["ic"] = None  # a head-end log without the counter column
            if forced_key and m < 2:
                row["meter_key"] = 12345  # meters 0 and 1 collide on the digest
            rows.append(row)
    rnd.shuffle(rows)
    return rows
