"""The head-end campaign file: which client to run and how to read its decisions.

Example (every key optional; the defaults run metercert's own client)::

    client:
      name: my head-end
      command: python3 my_reader.py --meter-port $METERCERT_PORT
      key_transfer_command: python3 my_rekey.py   # else command + METERCERT_ACTION
      pushes: false          # true: the client takes pushes after association
      reads: 3
      response_timeout_s: 3  # told to the client (METERCERT_TIMEOUT)
      run_limit_s: 30        # a run still going after this is a hang (killed)
      env: {MY_VAR: value}
    output:                  # regexes with named groups n, value (and text)
      value: '^read (?P<n>\\d+) value (?P<value>\\S+)'
      error: '^read (?P<n>\\d+) error\\b(?P<text>.*)'
    meter:
      profile: conformant    # the reference meter profile the hostile meter starts from
      framing: wrapper       # or hdlc
      tls: false             # true: mutual TLS, a fresh PKI handed to the client

``$VARS`` in a command are left to the shell only if the command runs one (``sh -c``);
metercert passes everything in the environment (docs/headend.md).
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from metercert import safeload
from metercert.errors import InputFileError
from metercert.headend.observation import OutputProtocol
from metercert.headend.target import HeadendSettings

_SECTIONS = {"client": {"name", "command", "key_transfer_command", "pushes", "reads",
                        "response_timeout_s", "run_limit_s", "env"},
             "output": {"value", "error", "push_value", "push_error"},
             "meter": {"profile", "framing", "tls"}}
_GROUPS = {"value": ("n", "value"), "error": ("n",), "push_value": ("n", "value"),
           "push_error": ("n",)}


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InputFileError(f"{where}: expected a mapping")
    return value


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InputFileError(f"{where}: expected a non-empty string")
    return value


def _number(value: Any, where: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise InputFileError(f"{where}: expected a number from {low:g} to {high:g}, got {value!r}")
    return float(value)


def check_regex(pattern: str, name: str, where: str) -> str:
    try:
        compiled = re.compile(pattern, re.MULTILINE)
    except re.error as exc:
        raise InputFileError(f"{where}: output.{name} is not a regular expression: {exc}") from None
    missing = [g for g in _GROUPS[name] if g not in compiled.groupindex]
    if missing:
        raise InputFileError(f"{where}: output.{name} needs the named group(s) "
                             f"{', '.join(missing)}, e.g. (?P<n>\\d+)")
    return pattern


def load_campaign(path: str | Path, base: HeadendSettings | None = None) -> HeadendSettings:
    """Settings from a campaign file over ``base`` (one-line errors for anything wrong)."""
    where = f"campaign file {path}"
    data = _mapping(safeload.load_yaml(path, what="campaign file"), where)
    unknown = set(data) - set(_SECTIONS)
    if unknown:
        raise InputFileError(f"{where}: unknown sections {sorted(map(str, unknown))}; "
                             f"known: {', '.join(_SECTIONS)}")
    sections = {name: _mapping(data.get(name), f"{where}: {name}") for name in _SECTIONS}
    for name, section in sections.items():
        bad = set(section) - _SECTIONS[name]
        if bad:
            raise InputFileError(f"{where}: {name}: unknown keys {sorted(map(str, bad))}; "
                                 f"known: {', '.join(sorted(_SECTIONS[name]))}")
    settings = base or HeadendSettings()
    client, output, meter = sections["client"], sections["output"], sections["meter"]
    changes: dict[str, Any] = {}
    if "command" in client:
        changes["command"] = _text(client["command"], f"{where}: client.command")
        changes["name"] = client["command"].split()[0]
        changes["pushes"] = False   # another client takes pushes only when it says so
    if "name" in client:
        changes["name"] = _text(client["name"], f"{where}: client.name")
    if "key_transfer_command" in client:
        changes["key_transfer_command"] = _text(client["key_transfer_command"],
                                                f"{where}: client.key_transfer_command")
    if "pushes" in client:
        if not isinstance(client["pushes"], bool):
            raise InputFileError(f"{where}: client.pushes: expected true or false")
        changes["pushes"] = client["pushes"]
    if "reads" in client:
        changes["reads"] = int(_number(client["reads"], f"{where}: client.reads", 3, 20))
    if "response_timeout_s" in client:
        changes["response_timeout"] = _number(client["response_timeout_s"],
                                              f"{where}: client.response_timeout_s", 0.1, 300)
    if "run_limit_s" in client:
        changes["run_limit"] = _number(client["run_limit_s"], f"{where}: client.run_limit_s",
                                       1, 600)
    if "env" in client:
        env = _mapping(client["env"], f"{where}: client.env")
        changes["env"] = {str(k): str(v) for k, v in env.items()}
    if output:
        fields = {name: check_regex(_text(value, f"{where}: output.{name}"), name, where)
                  for name, value in output.items()}
        changes["output"] = replace(settings.output, **fields)
    if "profile" in meter:
        changes["profile"] = _text(meter["profile"], f"{where}: meter.profile")
    if "framing" in meter:
        if meter["framing"] not in ("wrapper", "hdlc"):
            raise InputFileError(f"{where}: meter.framing must be wrapper or hdlc")
        changes["framing"] = meter["framing"]
    if "tls" in meter:
        if not isinstance(meter["tls"], bool):
            raise InputFileError(f"{where}: meter.tls: expected true or false")
        changes["tls"] = meter["tls"]
    return replace(settings, **changes)


__all__ = ["OutputProtocol", "check_regex", "load_campaign"]
