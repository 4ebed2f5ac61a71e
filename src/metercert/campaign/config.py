"""Campaign files: what to test, how to reach it, which roles and keys to use.

A campaign file is YAML, read with the safe loader only. It never holds a secret:
keys live in the key file it points to, and role passwords/secrets are named by
environment variable (``password_env`` / ``secret_env``), so the file can be
committed and attached to a report. Every problem is reported as one line naming
the file and the line (``campaign.yaml:12: roles.OPERATOR.client_sap must be ...``).

Relative paths (``keys``, ``dossier``, TLS certificate files) are resolved against
the directory of the campaign file, not the working directory, so a campaign
directory can be moved or checked out anywhere.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

import yaml

from metercert.errors import InputFileError, UsageError
from metercert.safeload import StrictYaml, read_text

#: IEC 62351-8 roles (plus READER, a read-only DLMS client used by many utilities).
ROLE_NAMES = ("VIEWER", "OPERATOR", "ENGINEER", "INSTALLER", "SECADM", "SECAUD", "RBACMNT", "READER")

#: DLMS authentication mechanism names -> mechanism id (2.16.756.5.8.2.N).
MECHANISMS: Mapping[str, int] = MappingProxyType(
    {
        "none": 0,
        "lls": 1,
        "hls": 2,
        "hls-manufacturer": 2,
        "hls-md5": 3,
        "hls-sha1": 4,
        "hls-gmac": 5,
        "hls-sha256": 6,
        "hls-ecdsa": 7,
    }
)
_MECHANISM_NAME = {0: "none", 1: "lls", 2: "hls-manufacturer", 3: "hls-md5", 4: "hls-sha1",
                   5: "hls-gmac", 6: "hls-sha256", 7: "hls-ecdsa"}
#: Mechanisms whose shared secret comes from a role secret (GMAC and ECDSA use the key file).
_NEEDS_SECRET = {2, 3, 4, 6}

DEFAULT_DLMS_PORT = 4059
FRAMINGS = ("wrapper", "hdlc")
POWER_KINDS = ("builtin", "command", "manual")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

_TOP_KEYS = ("name", "target", "framing", "keys", "roles", "power", "tls", "dossier", "firmware",
             "only", "skip", "no_destructive", "probes", "challenge_length", "timeout_s")
#: probe objects a campaign file may name (see metercert.client.discovery)
PROBE_KEYS = ("clock", "register", "firmware_id", "image_transfer", "disconnect", "security_log",
              "logical_device_name", "serial_number", "security_setup")
_ROLE_KEYS = ("client_sap", "mechanism", "password_env", "secret_env")
_POWER_KEYS = ("kind", "on", "off", "cycle", "settle_s")
_TLS_KEYS = ("endpoint", "client_cert", "client_key", "ca", "profile")
_FIRMWARE_KEYS = ("image", "identifier", "verify_timeout_s")


class CampaignFileError(InputFileError):
    """A campaign file is missing, not YAML, or does not describe a valid campaign."""


@dataclass(frozen=True)
class DlmsEndpoint:
    """Where the meter listens (``tcp://HOST:PORT``); UDP is accepted for the wrapper."""

    scheme: str
    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


@dataclass(frozen=True)
class RoleConfig:
    """One client association used to act as an IEC 62351-8 role.

    Holds the *names* of environment variables, never their values; call
    :meth:`credential` at connection time.
    """

    name: str
    client_sap: int
    mechanism: int
    password_env: str | None = None
    secret_env: str | None = None

    @property
    def mechanism_name(self) -> str:
        return _MECHANISM_NAME[self.mechanism]

    def credential(self, environ: Mapping[str, str] | None = None) -> str | None:
        """The role's password or secret from the environment (None when it needs none)."""
        var = self.password_env or self.secret_env
        if var is None:
            return None
        env = os.environ if environ is None else environ
        value = env.get(var)
        if value is None or value == "":
            raise UsageError(f"role {self.name}: environment variable {var} is not set")
        return value


@dataclass(frozen=True)
class PowerConfig:
    """How the campaign power-cycles the meter (for counter-persistence checks).

    ``builtin``: the reference meter restarts itself; ``command``: run shell-free
    commands (split with shlex) for on/off/cycle; ``manual``: ask the operator.
    """

    kind: str = "manual"
    on: str | None = None
    off: str | None = None
    cycle: str | None = None
    settle_s: float = 2.0

    def argv(self, action: str) -> list[str] | None:
        """The command for ``action`` (on/off/cycle) as an argument list, if configured."""
        command = {"on": self.on, "off": self.off, "cycle": self.cycle}[action]
        return shlex.split(command) if command else None


@dataclass(frozen=True)
class FirmwareConfig:
    """A genuine, vendor-signed image the meter accepts: DLMS-FW-01 verifies it (never
    activates it) as its positive control, then sends copies with one byte changed and
    with the end cut off, which the meter must refuse."""

    image: Path
    identifier: str | None = None  # image_identifier for image_transfer_initiate
    verify_timeout_s: float = 60.0  # how long to poll a background verification


@dataclass(frozen=True)
class TlsConfig:
    """An IEC 62351-3 endpoint to probe, and the client credentials to present."""

    host: str
    port: int
    client_cert: Path | None = None
    client_key: Path | None = None
    ca: Path | None = None
    profile: str | None = None

    @property
    def endpoint(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True)
class CampaignConfig:
    """A validated campaign file; the CLI builds its targets from this."""

    source: Path | None
    name: str | None = None
    target: DlmsEndpoint | None = None
    framing: str = "wrapper"
    keys: Path | None = None
    roles: Mapping[str, RoleConfig] = field(default_factory=lambda: MappingProxyType({}))
    power: PowerConfig = field(default_factory=PowerConfig)
    tls: TlsConfig | None = None
    dossier: Path | None = None
    firmware: FirmwareConfig | None = None
    only: tuple[str, ...] = ()
    skip: tuple[str, ...] = ()
    no_destructive: bool = False
    #: probe name -> OBIS text ("0.0.1.0.0.255"), overriding discovery
    probes: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    #: length of the client's HLS challenge (8..64 bytes); None: the client's default
    challenge_length: int | None = None
    #: how long one exchange with the meter may take
    timeout_s: float | None = None

    @property
    def include_destructive(self) -> bool:
        return not self.no_destructive


# ---------------------------------------------------------------------------
# Loading with line numbers: values come from yaml.safe_load, positions from the
# composed node tree of the same text (safe_load drops them).


class _CampaignLoader(StrictYaml, yaml.SafeLoader):  # type: ignore[misc]  # untyped base without stubs
    """Safe loader with YAML 1.2 booleans: ``on``/``off``/``yes``/``no`` stay strings.

    YAML 1.1 reads the ``power`` keys ``on:`` and ``off:`` as booleans; only
    ``true``/``false`` are booleans in a campaign file.
    """


_CampaignLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_CampaignLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


class _Source:
    def __init__(self, text: str, name: str, base_dir: Path, check_files: bool) -> None:
        self.name = name
        self.base_dir = base_dir
        self.check_files = check_files
        try:
            self.root = yaml.compose(text, Loader=_CampaignLoader)
            self.data = yaml.load(text, Loader=_CampaignLoader)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            problem = getattr(exc, "problem", None) or str(exc)
            line = f":{mark.line + 1}" if mark is not None else ""
            raise CampaignFileError(f"{name}{line}: not valid YAML: {' '.join(str(problem).split())}") from None
        except (ValueError, TypeError, AttributeError, RecursionError) as exc:  # a value YAML cannot build (2024-13-01), or nesting too deep
            raise CampaignFileError(f"{name}: not valid YAML: {exc.__class__.__name__}") from None
        if self.root is not None:
            self._reject_duplicates(self.root)

    def _reject_duplicates(self, node: yaml.Node) -> None:
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    if key.value in seen:
                        raise CampaignFileError(
                            f"{self.name}:{key.start_mark.line + 1}: key {key.value!r} appears twice"
                        )
                    seen.add(key.value)
                self._reject_duplicates(value)
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                self._reject_duplicates(item)

    def line(self, path: Sequence[str | int], *, key: bool = False) -> int | None:
        """Line of the value (or, with ``key``, of the key) at ``path``."""
        node = self.root
        if node is None:
            return None
        key_node: yaml.Node | None = None
        for step in path:
            if isinstance(node, yaml.MappingNode):
                for k, v in node.value:
                    if isinstance(k, yaml.ScalarNode) and k.value == str(step):
                        key_node, node = k, v
                        break
                else:
                    break
            elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) and step < len(node.value):
                key_node, node = None, node.value[step]
            else:
                break
        target = key_node if key and key_node is not None else node
        return int(target.start_mark.line) + 1

    def error(self, path: Sequence[str | int], message: str, *, key: bool = False) -> CampaignFileError:
        line = self.line(path, key=key)
        where = f"{self.name}:{line}" if line else self.name
        return CampaignFileError(f"{where}: {message}")

    def path(self, path: Sequence[str | int], value: Any) -> Path:
        dotted = _dotted(path)
        if not isinstance(value, str) or not value.strip():
            raise self.error(path, f"{dotted} must be a file path, got {_show(value)}")
        try:
            resolved = Path(value).expanduser()
        except RuntimeError:  # ~user for a user that does not exist
            raise self.error(path, f"{dotted}: cannot expand {value!r}: no such user") from None
        if not resolved.is_absolute():
            resolved = self.base_dir / resolved
        if self.check_files and not resolved.is_file():
            raise self.error(path, f"{dotted}: file {value!r} does not exist (looked for {resolved})")
        return resolved


def _dotted(path: Sequence[str | int]) -> str:
    return ".".join(str(p) for p in path)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _mapping(src: _Source, path: Sequence[str | int], value: Any, allowed: Sequence[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise src.error(path, f"{_dotted(path) or 'the campaign'} must be a mapping, got {_show(value)}")
    for key in value:
        if not isinstance(key, str) or key not in allowed:
            hint = ""
            if key in ("password", "secret", "key", "hls_secret"):
                hint = " (secrets never go in a campaign file: use password_env / secret_env)"
            where = f"{_dotted(path)}." if path else ""
            raise src.error(
                [*path, str(key)],
                f"unknown key {where}{key}{hint}; expected one of: {', '.join(allowed)}",
                key=True,
            )
    return value


def _string(src: _Source, path: Sequence[str | int], value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise src.error(path, f"{_dotted(path)} must be a non-empty string, got {_show(value)}")
    return value.strip()


def _int(src: _Source, path: Sequence[str | int], value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise src.error(path, f"{_dotted(path)} must be an integer {low}..{high}, got {_show(value)}")
    return value


def _patterns(src: _Source, path: Sequence[str | int], value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise src.error(path, f"{_dotted(path)} must be a list of check ids, globs or tags")
    return tuple(v.strip() for v in value)


def _host_port(src: _Source, path: Sequence[str | int], text: str, default_port: int | None) -> tuple[str, int]:
    try:
        probe = urlsplit("//" + text)
        port = probe.port
    except ValueError:
        raise src.error(path, f"{_dotted(path)}: bad port in {text!r}") from None
    host = probe.hostname
    if not host or probe.path or probe.query or probe.fragment or probe.username:
        raise src.error(path, f"{_dotted(path)} must be HOST:PORT, got {text!r}")
    if port is None:
        if default_port is None:
            raise src.error(path, f"{_dotted(path)} needs a port (HOST:PORT), got {text!r}")
        port = default_port
    if not 1 <= port <= 65535:
        raise src.error(path, f"{_dotted(path)}: port {port} out of range 1..65535")
    return host, port


def _target(src: _Source, value: Any) -> DlmsEndpoint:
    text = _string(src, ["target"], value)
    try:
        parts = urlsplit(text)
    except ValueError:
        raise src.error(["target"], f"target must look like tcp://HOST:PORT, got {text!r}") from None
    if parts.scheme not in ("tcp", "udp"):
        raise src.error(["target"], f"target must look like tcp://HOST:PORT, got {text!r}")
    host, port = _host_port(src, ["target"], parts.netloc + parts.path, DEFAULT_DLMS_PORT)
    return DlmsEndpoint(parts.scheme, host, port)


def _mechanism(src: _Source, path: list[str | int], value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 7:
        return value
    if isinstance(value, str) and value.strip().lower() in MECHANISMS:
        return MECHANISMS[value.strip().lower()]
    names = ", ".join(sorted(set(MECHANISMS) - {"hls"}))
    raise src.error(path, f"{_dotted(path)} must be 0..7 or one of {names}; got {_show(value)}")


def _roles(src: _Source, value: Any) -> Mapping[str, RoleConfig]:
    if not isinstance(value, dict):
        raise src.error(["roles"], f"roles must map role names to settings, got {_show(value)}")
    roles: dict[str, RoleConfig] = {}
    for raw_name, body in value.items():
        name = str(raw_name).upper()
        if name not in ROLE_NAMES:
            raise src.error(
                ["roles", str(raw_name)],
                f"unknown role {raw_name!r}; expected one of: {', '.join(ROLE_NAMES)}",
                key=True,
            )
        if name in roles:
            raise src.error(["roles", str(raw_name)], f"role {name} is defined twice", key=True)
        base: list[str | int] = ["roles", str(raw_name)]
        body = _mapping(src, base, body, _ROLE_KEYS)
        for required in ("client_sap", "mechanism"):
            if required not in body:
                raise src.error(base, f"role {name} needs {required}", key=True)
        sap = _int(src, [*base, "client_sap"], body["client_sap"], 1, 0xFFFF)
        mech = _mechanism(src, [*base, "mechanism"], body["mechanism"])
        envs: dict[str, str | None] = {}
        for key in ("password_env", "secret_env"):
            if key in body:
                var = body[key]
                if not isinstance(var, str) or not _ENV_NAME.match(var):
                    raise src.error(
                        [*base, key],
                        f"{_dotted([*base, key])} must be an environment variable name, not a value",
                    )
                envs[key] = var
            else:
                envs[key] = None
        if envs["password_env"] and envs["secret_env"]:
            raise src.error(base, f"role {name}: give password_env or secret_env, not both", key=True)
        if mech == 0 and (envs["password_env"] or envs["secret_env"]):
            raise src.error([*base, "mechanism"], f"role {name}: mechanism none takes no password or secret")
        if mech == 1 and not envs["password_env"]:
            raise src.error(base, f"role {name}: mechanism lls needs password_env", key=True)
        if mech in _NEEDS_SECRET and not envs["secret_env"]:
            raise src.error(
                base, f"role {name}: mechanism {_MECHANISM_NAME[mech]} needs secret_env", key=True
            )
        if mech not in (1,) and envs["password_env"]:
            raise src.error(
                [*base, "password_env"], f"role {name}: password_env is for mechanism lls; use secret_env"
            )
        roles[name] = RoleConfig(name, sap, mech, envs["password_env"], envs["secret_env"])
    return MappingProxyType(roles)


def _power(src: _Source, value: Any) -> PowerConfig:
    body = _mapping(src, ["power"], value, _POWER_KEYS)
    kind = body.get("kind", "manual")
    if kind not in POWER_KINDS:
        raise src.error(["power", "kind"], f"power.kind must be one of {', '.join(POWER_KINDS)}, got {_show(kind)}")
    commands: dict[str, str | None] = {}
    for key in ("on", "off", "cycle"):
        if key not in body:
            commands[key] = None
            continue
        text = _string(src, ["power", key], body[key])
        try:
            shlex.split(text)
        except ValueError as exc:
            raise src.error(["power", key], f"power.{key}: cannot split command: {exc}") from None
        commands[key] = text
    if kind == "command" and not (commands["cycle"] or (commands["on"] and commands["off"])):
        raise src.error(["power"], "power.kind command needs cycle, or both on and off", key=True)
    if kind != "command" and any(commands.values()):
        raise src.error(["power", "kind"], f"power.on/off/cycle are only used with kind: command (kind is {kind})")
    settle = body.get("settle_s", 2.0)
    if isinstance(settle, bool) or not isinstance(settle, (int, float)) or not 0 <= settle <= 3600:
        raise src.error(["power", "settle_s"], f"power.settle_s must be seconds 0..3600, got {_show(settle)}")
    return PowerConfig(kind, commands["on"], commands["off"], commands["cycle"], float(settle))


def _tls(src: _Source, value: Any) -> TlsConfig:
    body = _mapping(src, ["tls"], value, _TLS_KEYS)
    if "endpoint" not in body:
        raise src.error(["tls"], "tls needs endpoint: HOST:PORT", key=True)
    host, port = _host_port(src, ["tls", "endpoint"], _string(src, ["tls", "endpoint"], body["endpoint"]), None)
    files = {k: src.path(["tls", k], body[k]) if k in body else None for k in ("client_cert", "client_key", "ca")}
    if (files["client_cert"] is None) != (files["client_key"] is None):
        raise src.error(["tls"], "tls: client_cert and client_key go together", key=True)
    profile = _string(src, ["tls", "profile"], body["profile"]) if "profile" in body else None
    return TlsConfig(host, port, files["client_cert"], files["client_key"], files["ca"], profile)


def _firmware(src: _Source, value: Any) -> FirmwareConfig:
    body = _mapping(src, ["firmware"], value, _FIRMWARE_KEYS)
    if "image" not in body:
        raise src.error(["firmware"], "firmware needs image: PATH (a vendor-signed image)", key=True)
    image = src.path(["firmware", "image"], body["image"])
    ident = None
    if "identifier" in body:
        ident = _string(src, ["firmware", "identifier"], body["identifier"])
        if not ident or len(ident.encode()) > 255:
            raise src.error(["firmware", "identifier"], "firmware.identifier must be 1..255 bytes")
    timeout = body.get("verify_timeout_s", 60.0)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 3600:
        raise src.error(["firmware", "verify_timeout_s"],
                        f"firmware.verify_timeout_s must be seconds, above 0 and at most 3600, "
                        f"got {_show(timeout)}")
    return FirmwareConfig(image, ident, float(timeout))


def parse_campaign(text: str, *, name: str = "<campaign>", base_dir: Path | None = None,
                   check_files: bool = True, source: Path | None = None) -> CampaignConfig:
    """Validate campaign YAML ``text``; ``name`` and ``base_dir`` place it for messages and paths."""
    src = _Source(text, name, base_dir or Path.cwd(), check_files)
    if src.data is None:
        raise CampaignFileError(f"{name}: campaign file is empty")
    body = _mapping(src, [], src.data, _TOP_KEYS)
    if not any(k in body for k in ("target", "tls", "dossier")):
        raise CampaignFileError(f"{name}: nothing to test: give at least one of target, tls, dossier")

    target = _target(src, body["target"]) if "target" in body else None
    framing = body.get("framing", "wrapper")
    if framing not in FRAMINGS:
        raise src.error(["framing"], f"framing must be wrapper or hdlc, got {_show(framing)}")
    if framing == "hdlc" and target is not None and target.scheme == "udp":
        raise src.error(["framing"], "hdlc framing runs over tcp, not udp")
    no_destructive = body.get("no_destructive", False)
    if not isinstance(no_destructive, bool):
        raise src.error(["no_destructive"], f"no_destructive must be true or false, got {_show(no_destructive)}")
    probes: dict[str, str] = {}
    if "probes" in body:
        from metercert.cosem import ObisCode
        from metercert.cosem.errors import CosemDecodeError

        raw = _mapping(src, ["probes"], body["probes"], PROBE_KEYS)
        for key, value in raw.items():
            text = _string(src, ["probes", key], value)
            try:
                ObisCode.parse(text)
            except (CosemDecodeError, ValueError):
                raise src.error(["probes", key], f"probes.{key}: {_show(value)} is not an OBIS "
                                "code (A.B.C.D.E.F)") from None
            probes[key] = text
    challenge = (_int(src, ["challenge_length"], body["challenge_length"], 8, 64)
                 if "challenge_length" in body else None)
    timeout_s = body.get("timeout_s")
    if timeout_s is not None and (isinstance(timeout_s, bool) or not isinstance(
            timeout_s, (int, float)) or not 0.1 <= timeout_s <= 600):
        raise src.error(["timeout_s"], f"timeout_s must be seconds from 0.1 to 600, got "
                        f"{_show(timeout_s)}")
    return CampaignConfig(
        source=source,
        probes=MappingProxyType(probes),
        challenge_length=challenge,
        timeout_s=float(timeout_s) if timeout_s is not None else None,
        name=_string(src, ["name"], body["name"]) if "name" in body else None,
        target=target,
        framing=framing,
        keys=src.path(["keys"], body["keys"]) if "keys" in body else None,
        roles=_roles(src, body["roles"]) if "roles" in body else MappingProxyType({}),
        power=_power(src, body["power"]) if "power" in body else PowerConfig(),
        tls=_tls(src, body["tls"]) if "tls" in body else None,
        dossier=src.path(["dossier"], body["dossier"]) if "dossier" in body else None,
        firmware=_firmware(src, body["firmware"]) if "firmware" in body else None,
        only=_patterns(src, ["only"], body["only"]) if "only" in body else (),
        skip=_patterns(src, ["skip"], body["skip"]) if "skip" in body else (),
        no_destructive=no_destructive,
    )


def load_campaign(path: str | Path, *, check_files: bool = True) -> CampaignConfig:
    """Read and validate a campaign file; any problem is one :class:`CampaignFileError` line.

    ``check_files=False`` skips the existence test of referenced files (to lint a
    campaign on a machine that does not hold the keys).
    """
    p = Path(path)
    try:
        text = read_text(p, what="campaign file")  # regular files only, size capped
    except FileNotFoundError:
        raise CampaignFileError(f"{p}: no such campaign file") from None
    except IsADirectoryError:
        raise CampaignFileError(f"{p}: is a directory, expected a campaign YAML file") from None
    except UnicodeDecodeError as exc:
        raise CampaignFileError(f"{p}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise CampaignFileError(f"{p}: cannot read: {exc.strerror or exc}") from None
    resolved = p.resolve()
    return parse_campaign(text, name=str(p), base_dir=resolved.parent, check_files=check_files,
                          source=resolved)
