"""Roles (IEC 62351-8) as DLMS associations, and the access rights they grant.

Loaded from ``data/rbac.yaml`` (or a user file): see the comments there. The meter
asks :meth:`Rbac.required` which right an attribute or method needs, and grants it
when the association's role holds that right.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from metercert import safeload
from metercert.cosem import ObisCode
from metercert.errors import InputFileError


@dataclass(frozen=True)
class Role:
    name: str
    client_sap: int
    association: int  # the "e" of 0.0.40.0.e.255 / 0.0.43.0.e.255
    rights: frozenset[str]
    authenticated: bool = True


@dataclass(frozen=True)
class ObjectRule:
    name: str
    pattern: str  # dotted OBIS, "*" = any value, "{e}" = the caller's association
    read: dict[int, str] = field(default_factory=dict)
    write: dict[int, str] = field(default_factory=dict)
    methods: dict[int, str] = field(default_factory=dict)

    def matches(self, obis: ObisCode, association: int) -> bool:
        return fnmatch.fnmatchcase(str(obis), self.pattern.replace("{e}", str(association)))


@dataclass(frozen=True)
class Rbac:
    roles: dict[str, Role]
    objects: tuple[ObjectRule, ...]
    source: str = "built-in"

    def role_for_sap(self, client_sap: int) -> Role | None:
        for role in self.roles.values():
            if role.client_sap == client_sap:
                return role
        return None

    def rule_for(self, obis: ObisCode, association: int) -> ObjectRule | None:
        for rule in self.objects:
            if rule.matches(obis, association):
                return rule
        return None

    def grants_any(self, role: Role, kind: str) -> bool:
        """Whether ``role`` may ``kind`` ("read", "write", "methods") anything at all."""
        return any(right in role.rights for rule in self.objects
                   for right in getattr(rule, kind).values())

    def required(self, obis: ObisCode, association: int, kind: str, index: int) -> str | None:
        """The right needed to ``kind`` ("read", "write", "methods") ``index``; None = nobody."""
        rule = self.rule_for(obis, association)
        if rule is None:
            return None
        return getattr(rule, kind).get(index)


def _fail(source: str, node: Any, message: str) -> InputFileError:
    mark = getattr(node, "start_mark", None)
    where = f"{source}, line {mark.line + 1}" if mark is not None else source
    return InputFileError(f"{where}: {message}")


def load_rbac(path: str | Path | None = None) -> Rbac:
    if path is None:
        text = resources.files("metercert.meter").joinpath("data/rbac.yaml").read_text("utf-8")
        source = "built-in rbac.yaml"
    else:
        source = str(path)
        try:
            text = safeload.read_text(path, what="rbac file")
        except OSError as exc:
            raise InputFileError(f"{source}: {exc.strerror}") from None
        except UnicodeDecodeError as exc:
            raise InputFileError(f"{source}: not UTF-8 text (byte {exc.start})") from None
    try:
        data = yaml.load(text, Loader=safeload.SafeLoader)  # no aliases, no duplicate keys
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f", line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise InputFileError(f"{source}{line}: invalid YAML: {problem}") from None
    except (ValueError, TypeError, AttributeError, RecursionError) as exc:
        raise InputFileError(f"{source}: invalid YAML value ({exc.__class__.__name__})") from None
    if not isinstance(data, dict) or "roles" not in data or "objects" not in data:
        raise InputFileError(f"{source}: needs 'roles' and 'objects' sections")
    rights = set(data.get("rights") or [])
    roles: dict[str, Role] = {}
    for name, spec in (data["roles"] or {}).items():
        try:
            role_rights = frozenset(spec.get("rights", []))
            unknown = role_rights - rights if rights else set()
            if unknown:
                raise InputFileError(f"{source}: role {name} has unknown rights {sorted(unknown)}")
            roles[name] = Role(name, int(spec["client_sap"]), int(spec["association"]), role_rights,
                               bool(spec.get("authenticated", True)))
        except (KeyError, TypeError, ValueError, AttributeError):
            raise InputFileError(
                f"{source}: role {name} needs client_sap, association and rights") from None
    saps = [r.client_sap for r in roles.values()]
    if len(saps) != len(set(saps)):
        raise InputFileError(f"{source}: two roles share a client SAP")
    objects = []
    for name, spec in (data["objects"] or {}).items():
        if not isinstance(spec, dict) or "obis" not in spec:
            raise InputFileError(f"{source}: object {name} needs an 'obis'")
        rule = ObjectRule(
            name, str(spec["obis"]),
            {int(k): str(v) for k, v in (spec.get("read") or {}).items()},
            {int(k): str(v) for k, v in (spec.get("write") or {}).items()},
            {int(k): str(v) for k, v in (spec.get("methods") or {}).items()},
        )
        for kind in ("read", "write", "methods"):
            bad = set(getattr(rule, kind).values()) - rights if rights else set()
            if bad:
                raise InputFileError(f"{source}: object {name} uses unknown rights {sorted(bad)}")
        objects.append(rule)
    return Rbac(roles, tuple(objects), source)
