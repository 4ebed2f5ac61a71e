"""Crash-safety of the invocation-counter store under many SIGKILLs.

A forked child hands out counters as fast as it can and reports each one on a
pipe; the parent kills it with SIGKILL at a random instant, restarts it on the
same folder, and repeats. Afterwards every value ever reported must be distinct
and the sequence strictly increasing across restarts. Prints kills, values handed
out, values skipped by reservation blocks, and the rate.

    python benchmarks/counter_crash.py [--kills 2000] [--block 256]
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import signal
import struct
import tempfile
import time

from metercert.security import InvocationCounterStore

TITLE = bytes.fromhex("4D4D4D0000BC614E")


def child(folder: str, fd: int, block: int) -> None:
    store = InvocationCounterStore(folder, TITLE, "guek", block=block)
    while True:
        os.write(fd, struct.pack(">I", store.next()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=2000)
    parser.add_argument("--block", type=int, default=256)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    folder = tempfile.mkdtemp(prefix="metercert-crash-")
    seen: list[int] = []
    start = time.perf_counter()
    for _ in range(args.kills):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            try:
                child(folder, w, args.block)
            finally:
                os._exit(0)
        os.close(w)
        time.sleep(rng.uniform(0.0002, 0.005))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        chunks = []
        while chunk := os.read(r, 65536):
            chunks.append(chunk)
        os.close(r)
        data = b"".join(chunks)
        values = [v for (v,) in struct.iter_unpack(">I", data[: len(data) // 4 * 4])]
        if values and seen and values[0] <= seen[-1]:
            raise SystemExit(f"FAILED: restart handed out {values[0]} after {seen[-1]}")
        seen.extend(values)
    took = time.perf_counter() - start
    if len(seen) != len(set(seen)) or any(a >= b for a, b in itertools.pairwise(seen)):
        raise SystemExit("FAILED: a counter value was handed out twice or went backwards")
    skipped = (seen[-1] + 1 - len(seen)) if seen else 0
    print(f"kills: {args.kills}  values handed out: {len(seen):,}  never repeated, always increasing")
    print(f"skipped by reservation blocks of {args.block}: {skipped:,} "
          f"({skipped / max(1, seen[-1] + 1):.1%} of the range used)")
    print(f"time: {took:.1f} s ({args.kills / took:.0f} kills/s)")


if __name__ == "__main__":
    main()
