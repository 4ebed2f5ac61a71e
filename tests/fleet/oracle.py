"""A plain-Python reading of the counter detectors, for differential tests.

It applies each rule to every row, without the watch-list pruning the SQL does
(stage_pairs / stage_suspects / stage_seq_rows), so any row the pruning wrongly
drops shows up as a difference. It covers the kinds whose SQL depends on that
pruning: ic-reuse, replay, ic-regression, ic-gap, ic-exhaustion, suite-downgrade
and sc-downgrade, all judged per counter space (sender system title, key).
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

from metercert.fleet.detectors import DEFAULT_PARAMS

Row = Mapping[str, Any]
Key = tuple[str, str, int | None, int | None, int, tuple[int, ...]]
PRUNED_KINDS = ("ic-reuse", "replay", "ic-regression", "ic-gap", "ic-exhaustion",
                "suite-downgrade", "sc-downgrade")


def space(r: Row) -> tuple[str, str]:
    """The counter space as the schema defines it: (sender or ?direction, key id)."""
    key_id = r.get("key_id") or ("gbk" if r["key_set"] == "broadcast"
                                 else f"guk {r['meter_id']}/{r.get('client_sap')}")
    return (r["system_title"] or f"?{r['direction']}", key_id)


def _order(r: Row) -> tuple[Any, int]:
    return (r["ts"], r["id"])


def _steps(run: Sequence[Row], gap: int) -> list[Key]:
    out: list[Key] = []
    for prev, cur in pairwise(run):
        if cur["ic"] < prev["ic"]:
            kind = "ic-regression"
        elif cur["ic"] - prev["ic"] > gap:
            kind = "ic-gap"
        else:
            continue
        out.append((kind, cur["meter_id"], cur["ic"], prev["ic"], 2,
                    tuple(sorted({cur["id"], prev["id"]}))))
    return out


def expected(rows: Sequence[Row], params: Mapping[str, int] | None = None) -> list[Key]:
    p = {**DEFAULT_PARAMS, **(params or {})}
    gap, limit = p["gap_threshold"], (1 << 32) - p["exhaustion_margin"]
    out: list[Key] = []
    ciphered = [r for r in rows if r["ciphered"]]
    counted = [r for r in ciphered if r["ic"] is not None]
    by_space: dict[tuple[str, str], list[Row]] = defaultdict(list)
    for r in ciphered:
        by_space[space(r)].append(r)
    for seq in by_space.values():
        seq.sort(key=_order)

    # copies: one ciphered APDU (counter and payload) more than once; broadcast
    # copies count per meter, any other copy anywhere
    copies: dict[tuple[Any, ...], list[Row]] = defaultdict(list)
    for r in counted:
        if r["ct_sha256"] is not None:
            scope = r["meter_id"] if r["key_set"] == "broadcast" else "*"
            copies[(scope, r["ic"], r["ct_sha256"])].append(r)
    copies = {k: v for k, v in copies.items() if len(v) > 1}
    copy_keys = {(k[1], k[2]) for k in copies}
    # the sender restarted in (space, association): a non-copy APDU there whose
    # counter is at or below one the space had already used
    restarted_at: set[tuple[Any, ...]] = set()
    echoed: set[tuple[Any, ...]] = set()
    for sp, seq in by_space.items():
        top: dict[str, int] = {}
        for r in seq:
            if r["ic"] is None:
                continue
            d = r["direction"]
            if d in top and (r["ic"], r["ct_sha256"]) not in copy_keys and r["ic"] <= top[d]:
                restarted_at.add((sp, d, r["assoc_id"]))
            top[d] = max(top.get(d, r["ic"]), r["ic"])
    # or: every APDU of one direction of an association is a copy while the other
    # direction of it is live
    all_copies = [r for v in copies.values() for r in v]
    per_dir = Counter((r["assoc_id"], r["direction"]) for r in counted)
    copied = Counter((r["assoc_id"], r["direction"]) for r in all_copies)
    live = {k for k, n in per_dir.items() if n > copied.get(k, 0)}
    for (assoc, d) in copied:
        other = "s2c" if d == "c2s" else "c2s"
        if (assoc, d) not in live and (assoc, other) in live:
            echoed.add((assoc, d))
    replay_rows: set[int] = set()
    restart_pairs: set[tuple[Any, ...]] = set()
    for v in copies.values():
        first = min(r["id"] for r in v)
        later = [r for r in v if r["id"] != first]
        def restarted(r: Row) -> bool:
            return ((space(r), r["direction"], r["assoc_id"]) in restarted_at
                    or (r["assoc_id"], r["direction"]) in echoed)

        again = [r for r in later if restarted(r)]
        fresh = [r for r in later if not restarted(r)]
        restart_pairs |= {(space(r), r["ic"]) for r in again}
        replay_rows |= {r["id"] for r in fresh}
        if fresh:
            out.append(("replay", min(r["meter_id"] for r in v), min(r["ic"] for r in v),
                        len({r["meter_id"] for r in v}), len(v),
                        tuple(sorted(r["id"] for r in v))))

    # regression and gap: per space and sender in (ts, id) order, replays left out
    for seq in by_space.values():
        for way in ("c2s", "s2c"):
            run = [r for r in seq if r["ic"] is not None and r["id"] not in replay_rows
                   and r["direction"] == way]
            out += _steps(run, gap)

    # reuse: one space and counter, two ciphertexts, or a copy after a restart
    groups: dict[tuple[Any, ...], set[int]] = defaultdict(set)
    meters: dict[tuple[Any, ...], set[str]] = defaultdict(set)
    cts: dict[tuple[Any, ...], set[bytes]] = defaultdict(set)
    rows_of: dict[tuple[Any, ...], list[Row]] = defaultdict(list)
    for r in counted:
        if r["ct_sha256"] is not None:
            key = (space(r), r["ic"])
            cts[key].add(r["ct_sha256"])
            rows_of[key].append(r)
    for key, v in rows_of.items():
        if len(cts[key]) > 1:
            groups[key] |= {r["id"] for r in v}
            meters[key] |= {r["meter_id"] for r in v}
    for v in copies.values():
        for r in v:
            if (space(r), r["ic"]) in restart_pairs:
                groups[(space(r), r["ic"])].add(r["id"])
                meters[(space(r), r["ic"])].add(r["meter_id"])
    for (_, ic), ids in groups.items():
        out.append(("ic-reuse", min(meters[(_, ic)]), ic, None, len(ids), tuple(sorted(ids))))

    # exhaustion: per space
    for seq in by_space.values():
        near = [r for r in seq if r["ic"] is not None and r["ic"] >= limit]
        if near:
            out.append(("ic-exhaustion", min(r["meter_id"] for r in near),
                        max(r["ic"] for r in near), limit, len(near),
                        tuple(sorted(r["id"] for r in near))))

    # downgrade: per space in (ts, id) order, below what the space used before
    for seq in by_space.values():
        hits: dict[str, list[tuple[Row, int, int]]] = defaultdict(list)
        top_suite = top_au = top_en = None
        for r in seq:
            if r["sc"] is None:
                continue
            au, en = int(bool(r["authenticated"])), (r["sc"] >> 5) & 1
            if top_suite is not None:
                if r["suite"] < top_suite:
                    hits["suite-downgrade"].append((r, r["suite"], top_suite))
                elif r["suite"] == top_suite and (au < top_au or en < top_en):
                    hits["sc-downgrade"].append((r, au * 16 + en * 32,
                                                 top_au * 16 + top_en * 32))
                top_suite, top_au, top_en = (max(top_suite, r["suite"]), max(top_au, au),
                                             max(top_en, en))
            else:
                top_suite, top_au, top_en = r["suite"], au, en
        for kind, hs in hits.items():
            out.append((kind, min(h[0]["meter_id"] for h in hs), min(h[1] for h in hs),
                        max(h[2] for h in hs), len(hs), tuple(sorted(h[0]["id"] for h in hs))))
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
            level = 0x30 if rnd.random() > 0.04 else rnd.choice([0x10, 0x20])
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
                "sc": level | suite | (0x40 if broadcast else 0), "suite": suite,
                "key_set": "broadcast" if broadcast else "unicast",
                "ic": bcast_ic if broadcast else ic[direction],
                "apdu_tag": 0xDB, "length": 40, "ct_sha256": ct,
                "ciphered": True, "authenticated": bool(level & 0x10),
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
