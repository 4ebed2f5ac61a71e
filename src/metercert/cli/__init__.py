"""Command-line entry point.

Every module in this package that defines ``register(subparsers)`` contributes
one or more sub-commands; they are discovered at start-up so that each command
lives in its own module. A command's handler is stored as ``func`` on the parsed
namespace and returns the process exit code.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from collections.abc import Sequence
from typing import NoReturn

from metercert import __version__
from metercert.errors import MetercertError


def _command_modules() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def _register(sub: argparse._SubParsersAction, name: str) -> None:
    module = importlib.import_module(f"{__name__}.{name}")
    register = getattr(module, "register", None)
    if register is not None:
        register(sub)


class _OneLineParser(argparse.ArgumentParser):
    """Argument errors are one line and exit 2, like every other metercert error."""

    def error(self, message: str) -> NoReturn:
        where = self.prog.removeprefix("metercert").strip()
        text = " ".join(message.split())
        self.exit(2, f"metercert: error: {where}: {text}\n" if where else f"metercert: error: {text}\n")


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The full parser; given ``argv`` whose command lives in the module of the same name
    (``meter`` -> ``cli/meter.py``), only that module is imported, so that a command such as
    ``meter serve`` starts without importing every other command's dependencies."""
    parser = _OneLineParser(
        prog="metercert",
        description="Smart-meter security certification: DLMS/COSEM, IEC 62351, ENISA / CRA / EN 303 645.",
    )
    parser.add_argument("--version", action="version", version=f"metercert {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    names = _command_modules()
    command = next((a for a in argv or () if not a.startswith("-")), None)
    if command in names:
        _register(sub, command)
        if command in sub.choices:
            return parser
        names.remove(command)
    for name in names:
        _register(sub, name)
    return parser


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or exc.__class__.__name__
    return " ".join(text.split())


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except MetercertError as exc:
        print(f"metercert: error: {_one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("metercert: interrupted", file=sys.stderr)
        return 130
    except (FileNotFoundError, IsADirectoryError, PermissionError, NotADirectoryError) as exc:
        name = getattr(exc, "filename", None) or ""
        reason = exc.strerror or exc.__class__.__name__
        print(f"metercert: error: {name}: {reason}" if name else f"metercert: error: {reason}",
              file=sys.stderr)
        return 2
    except Exception as exc:  # an internal defect: still one line unless debugging
        if os.environ.get("METERCERT_DEBUG"):
            raise
        print(
            f"metercert: internal error: {exc.__class__.__name__}: {_one_line(exc)} "
            "(set METERCERT_DEBUG=1 for a traceback)",
            file=sys.stderr,
        )
        return 3
