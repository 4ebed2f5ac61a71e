"""A deliberately fragile client for the head-end tests: metercert's reader, except that any
error while reading escapes as an unhandled exception (a traceback and exit 1), as a
client without error handling would. Baseline reads succeed; malformed responses crash it."""

from __future__ import annotations

import asyncio
import sys

from metercert.headend import reader


def _crash(exc: BaseException) -> str:
    raise exc


if __name__ == "__main__":
    reader._why = _crash  # type: ignore[assignment]
    sys.exit(asyncio.run(reader.main()))
