"""libFuzzer entry for one target: ``python fuzz/_atheris_main.py TARGET [libFuzzer flags] DIRS``.

Run through ``fuzz/run.py``; it picks the flags, corpus folders and time budget.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent))

import targets


def main() -> None:
    name = sys.argv[1]
    with atheris.instrument_imports(include=["metercert"]):
        fn = targets.build(name)
    atheris.Setup([sys.argv[0], *sys.argv[2:]], fn)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
