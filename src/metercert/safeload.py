"""Reading the files users hand us (key files, campaigns, dossiers, profiles) safely.

Every loader of such a file goes through here, so that one crafted file can neither
hang nor mislead metercert:

* only regular files are read (a named pipe would block forever, ``/dev/zero``
  never ends), opened non-blocking so that even the open cannot hang;
* a size cap is checked before reading and enforced while reading;
* YAML aliases and anchors are refused (nested aliases expand exponentially: a
  "billion laughs" file of a dozen lines), as are duplicate mapping keys in YAML and
  JSON (a silently dropped first value is how a reviewed file says one thing and
  loads as another).

Errors are :class:`~metercert.errors.InputFileError` with one line naming the file,
the line when known, and the problem.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import yaml

from metercert.errors import InputFileError

#: default cap for key files, campaign files, profiles (they are a few KiB)
MAX_CONFIG_BYTES = 1 << 20
#: default cap for dossier documents (an SBOM can be large)
MAX_DOCUMENT_BYTES = 32 << 20


def read_bytes(path: str | os.PathLike[str], *, what: str = "file",
               max_bytes: int = MAX_CONFIG_BYTES) -> bytes:
    """The content of a regular file of at most ``max_bytes`` bytes.

    A missing file, a folder or an unreadable one raise the usual OSError subclasses
    (callers word those themselves); a pipe, a device or an oversized file raise
    :class:`InputFileError`."""
    p = Path(path)
    fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(21, "Is a directory", str(p))
        if not stat.S_ISREG(st.st_mode):
            raise InputFileError(f"{what} {p}: not a regular file (pipes, devices and sockets "
                                 "are refused)")
        if st.st_size > max_bytes:
            raise InputFileError(f"{what} {p}: {st.st_size} bytes, over the limit of "
                                 f"{max_bytes} bytes")
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, min(1 << 16, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:  # the file grew while we read it
                raise InputFileError(f"{what} {p}: over the limit of {max_bytes} bytes")
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_text(path: str | os.PathLike[str], *, what: str = "file",
              max_bytes: int = MAX_CONFIG_BYTES) -> str:
    """UTF-8 text of a regular file (UnicodeDecodeError and OSError as from read_text)."""
    return read_bytes(path, what=what, max_bytes=max_bytes).decode("utf-8")


def _read_or_say(path: str | os.PathLike[str], what: str, max_bytes: int) -> str:
    try:
        return read_text(path, what=what, max_bytes=max_bytes)
    except FileNotFoundError:
        raise InputFileError(f"{what} {path}: no such file") from None
    except IsADirectoryError:
        raise InputFileError(f"{what} {path}: is a folder, not a file") from None
    except UnicodeDecodeError as exc:
        raise InputFileError(f"{what} {path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise InputFileError(f"{what} {path}: {exc.strerror or exc}") from None


# -- YAML ----------------------------------------------------------------------------------

class StrictYaml:
    """Mixin for a PyYAML loader: no aliases, no anchors, no duplicate mapping keys."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()  # type: ignore[attr-defined]
        if isinstance(event, yaml.AliasEvent):
            raise yaml.composer.ComposerError(None, None, "YAML aliases (*name) are not allowed",
                                              event.start_mark)
        if getattr(event, "anchor", None) is not None:
            raise yaml.composer.ComposerError(None, None, "YAML anchors (&name) are not allowed",
                                              event.start_mark)
        return super().compose_node(parent, index)  # type: ignore[misc]

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    continue
                key = (key_node.tag, key_node.value)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key_node.value!r} appears twice", key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep=deep)  # type: ignore[misc]


class SafeLoader(StrictYaml, yaml.SafeLoader):
    """yaml.SafeLoader with the :class:`StrictYaml` refusals."""


class BaseLoader(StrictYaml, yaml.BaseLoader):
    """yaml.BaseLoader (every scalar a string) with the :class:`StrictYaml` refusals."""


def yaml_error(where: str, exc: yaml.YAMLError) -> InputFileError:
    """One line from a PyYAML error: where, line, problem."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    line = f": line {mark.line + 1}" if mark is not None else ""
    return InputFileError(f"{where}{line}: {problem}")


def loads_yaml(text: str, *, where: str = "YAML", base: bool = False) -> Any:
    """Parse YAML text with the strict loader (``base``: every scalar stays a string)."""
    try:
        if base:
            return yaml.load(text, Loader=BaseLoader)
        return yaml.load(text, Loader=SafeLoader)
    except yaml.YAMLError as exc:
        raise yaml_error(where, exc) from None
    except RecursionError:
        raise InputFileError(f"{where}: nested too deeply") from None


def load_yaml(path: str | os.PathLike[str], *, what: str = "file",
              max_bytes: int = MAX_CONFIG_BYTES, base: bool = False) -> Any:
    return loads_yaml(_read_or_say(path, what, max_bytes), where=f"{what} {path}", base=base)


# -- JSON ----------------------------------------------------------------------------------

def no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` for json.loads: a key twice in one object is a ValueError."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"key {key!r} appears twice")
        out[key] = value
    return out


def loads_json(text: str | bytes, *, where: str = "JSON") -> Any:
    """Parse JSON, refusing duplicate keys."""
    try:
        return json.loads(text, object_pairs_hook=no_duplicate_keys)
    except json.JSONDecodeError as exc:
        raise InputFileError(f"{where}: line {exc.lineno}: {exc.msg}") from None
    except ValueError as exc:  # duplicate key, or bytes that are not UTF-8
        raise InputFileError(f"{where}: {exc}") from None
    except RecursionError:
        raise InputFileError(f"{where}: nested too deeply") from None


def load_json(path: str | os.PathLike[str], *, what: str = "file",
              max_bytes: int = MAX_CONFIG_BYTES) -> Any:
    return loads_json(_read_or_say(path, what, max_bytes), where=f"{what} {path}")
