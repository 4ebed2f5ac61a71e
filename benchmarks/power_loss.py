"""Power cuts at random os calls under the page-cache model of tests/hardening/_powerloss.py.

    python benchmarks/power_loss.py                 # 2000 store rounds, 300 meter rounds
    python benchmarks/power_loss.py --store 200 --meter 30

Each round runs the counter store and a replay window (or an in-process reference
meter serving ciphered GETs) in a child process, cuts the power at a random call
(unsynced data lost per sector, the sector being written possibly torn), and the
next boot is checked: a counter handed out twice, or a counter accepted before the
cut accepted again, is counted. Prints the counts as JSON; exits 1 if any is not 0.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "hardening"))

from test_power_loss import meter_rounds, store_rounds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=int, default=2000, help="store rounds (default 2000)")
    parser.add_argument("--meter", type=int, default=300, help="meter rounds (default 300)")
    parser.add_argument("--seed", type=int, default=1, help="random seed")
    args = parser.parse_args(argv)
    out = {}
    with tempfile.TemporaryDirectory(prefix="metercert-powerloss-") as tmp:
        t0 = time.perf_counter()
        # fresh folders every 200 rounds keep the replay-window checks cheap
        total: dict[str, int] = {}
        for i in range(0, args.store, 200):
            counts = store_rounds(Path(tmp) / f"store-{i}", min(200, args.store - i), args.seed + i)
            for k, v in counts.items():
                total[k] = total.get(k, 0) + v
        out["store"] = total | {"seconds": round(time.perf_counter() - t0, 1)}
        t0 = time.perf_counter()
        total = {}
        for i in range(0, args.meter, 50):
            counts = meter_rounds(Path(tmp) / f"meter-{i}", min(50, args.meter - i), args.seed + i)
            for k, v in counts.items():
                total[k] = total.get(k, 0) + v
        out["meter"] = total | {"seconds": round(time.perf_counter() - t0, 1)}
    print(json.dumps(out, indent=2))
    bad = sum(part[k] for part in out.values() for k in ("repeated", "replays_accepted", "refused"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
