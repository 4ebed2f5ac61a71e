"""Key material: keys as objects whose repr never shows their bytes, key sets, and
the key file.

Key file (YAML or JSON), hex strings, one meter per file or a list under ``meters``::

    client_system_title: 4D4D4D0000000001
    server_system_title: 4D4D4D0000BC614E
    guek: 000102030405060708090A0B0C0D0E0F        # alias encryption_key
    gbek: ...                                     # alias broadcast_key (optional)
    ak: D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF          # alias authentication_key
    kek: ...                                      # alias master_key
    client_private_key: client-key.pem            # optional, ECDSA (suites 1/2)
    server_public_key: server-pub.pem             # optional

Relative PEM paths are resolved against the key file's folder. The same names in
upper case with a ``METERCERT_`` prefix (``METERCERT_GUEK``...) form a key set from
the environment.
"""

from __future__ import annotations

import enum
import hmac
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from metercert import safeload
from metercert.errors import InputFileError
from metercert.security.errors import InvalidKey


class KeyId(enum.IntEnum):
    """key_id of the Security Setup key_transfer method."""

    GUEK = 0
    GBEK = 1
    AK = 2
    KEK = 3


class Key:
    """A symmetric key. ``repr``/``str`` show only the role and length."""

    __slots__ = ("_secret", "role")

    def __init__(self, secret: bytes, role: str = "key") -> None:
        if not isinstance(secret, (bytes, bytearray)):
            raise InvalidKey(f"{role}: a key must be bytes")
        if len(secret) not in (16, 32):
            raise InvalidKey(f"{role}: key must be 16 or 32 bytes, got {len(secret)}")
        self._secret = bytes(secret)
        self.role = role

    @classmethod
    def from_hex(cls, text: str, role: str = "key") -> Key:
        return cls(parse_hex(text, role), role)

    @property
    def secret(self) -> bytes:
        """The key bytes. Handle with care: never log or print them."""
        return self._secret

    def __len__(self) -> int:
        return len(self._secret)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Key):
            return NotImplemented
        return hmac.compare_digest(self._secret, other._secret)

    def __hash__(self) -> int:
        return hash((self.role, len(self._secret)))

    def __repr__(self) -> str:
        return f"Key({self.role}, {len(self._secret) * 8} bits, <redacted>)"

    __str__ = __repr__

    def __reduce__(self) -> Any:  # pickling keeps working (multiprocessing), repr stays safe
        return (Key, (self._secret, self.role))


def parse_hex(text: str, what: str) -> bytes:
    """Parse hex allowing spaces, colons and a 0x prefix; error names ``what``, never the value."""
    if not isinstance(text, str):
        raise InvalidKey(f"{what}: expected a hex string")
    cleaned = text.strip().replace(" ", "").replace(":", "")
    if cleaned[:2].lower() == "0x":
        cleaned = cleaned[2:]
    try:
        return bytes.fromhex(cleaned)
    except ValueError:
        raise InvalidKey(f"{what}: not valid hex") from None


def parse_system_title(text: str | bytes, what: str = "system title") -> bytes:
    value = parse_hex(text, what) if isinstance(text, str) else bytes(text)
    if len(value) != 8:
        raise InvalidKey(f"{what}: must be 8 bytes, got {len(value)}")
    return value


_ALIASES = {
    "guek": ("guek", "encryption_key"),
    "gbek": ("gbek", "broadcast_key"),
    "ak": ("ak", "authentication_key"),
    "kek": ("kek", "master_key"),
}


@dataclass(frozen=True)
class KeySet:
    """The keys of one client/meter pair. Missing keys are ``None``."""

    client_system_title: bytes | None = None
    server_system_title: bytes | None = None
    guek: Key | None = None
    gbek: Key | None = None
    ak: Key | None = None
    kek: Key | None = None
    client_private_key: ec.EllipticCurvePrivateKey | None = field(default=None, repr=False)
    server_public_key: ec.EllipticCurvePublicKey | None = field(default=None, repr=False)
    extra: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    base_dir: Path | None = field(default=None, repr=False, compare=False)  # of the key file

    def __repr__(self) -> str:
        present = [n for n in ("guek", "gbek", "ak", "kek") if getattr(self, n) is not None]
        titles = (
            f"client={self.client_system_title.hex().upper() if self.client_system_title else '-'}, "
            f"server={self.server_system_title.hex().upper() if self.server_system_title else '-'}"
        )
        return f"KeySet({titles}, keys={'+'.join(present) or 'none'}, <redacted>)"

    def key(self, key_id: KeyId) -> Key | None:
        return getattr(self, key_id.name.lower())

    def with_key(self, key_id: KeyId, key: Key) -> KeySet:
        return replace(self, **{key_id.name.lower(): Key(key.secret, key_id.name)})  # type: ignore[arg-type]

    def secrets(self) -> Iterator[bytes]:
        """Every secret byte string in the set (used by the redaction tests and scrubbers)."""
        for name in ("guek", "gbek", "ak", "kek"):
            k = getattr(self, name)
            if k is not None:
                yield k.secret

    def to_mapping(self) -> dict[str, str]:
        """Serialisable form for writing a key file (the only place key bytes leave)."""
        out: dict[str, str] = {}
        if self.client_system_title:
            out["client_system_title"] = self.client_system_title.hex().upper()
        if self.server_system_title:
            out["server_system_title"] = self.server_system_title.hex().upper()
        for name in ("guek", "gbek", "ak", "kek"):
            k = getattr(self, name)
            if k is not None:
                out[name] = k.secret.hex().upper()
        return out


def keyset_from_mapping(data: Mapping[str, Any], *, base_dir: Path | None = None,
                        where: str = "key file") -> KeySet:
    if not isinstance(data, Mapping):
        raise InputFileError(f"{where}: expected a mapping of key names to hex strings")
    known = {a for names in _ALIASES.values() for a in names} | {
        "client_system_title", "server_system_title", "client_private_key", "server_public_key",
    }
    values: dict[str, Any] = {}
    for name, aliases in _ALIASES.items():
        found = [a for a in aliases if data.get(a) not in (None, "")]
        if len(found) > 1:
            raise InputFileError(f"{where}: both {found[0]} and {found[1]} given")
        if found:
            values[name] = Key.from_hex(str(data[found[0]]), f"{where}: {name}")
    for title in ("client_system_title", "server_system_title"):
        if data.get(title) not in (None, ""):
            values[title] = parse_system_title(str(data[title]), f"{where}: {title}")
    if data.get("client_private_key"):
        values["client_private_key"] = load_pem_key(data["client_private_key"], base_dir, where,
                                                     private=True)
    if data.get("server_public_key"):
        values["server_public_key"] = load_pem_key(data["server_public_key"], base_dir, where,
                                                    private=False)
    _check_extras(data, where)
    extra = {k: v for k, v in data.items() if k not in known}
    for ref in ("client_private_key", "server_public_key"):
        if data.get(ref):  # the file name, so that a key file written back still names it
            extra[ref] = str(data[ref])
    return KeySet(**values, extra=extra, base_dir=base_dir)


def _int_field(value: Any, where: str, name: str, low: int, high: int) -> int:
    try:
        number = int(str(value), 10)
    except ValueError:
        number = -1
    if not low <= number <= high:
        raise InputFileError(f"{where}: {name} must be a whole number {low}-{high}, not {value!r}")
    return number


def _check_extras(data: Mapping[str, Any], where: str) -> None:
    """The documented non-key fields have the right form (checked here, used much later)."""
    if data.get("security_suite") not in (None, ""):
        _int_field(data["security_suite"], where, "security_suite", 0, 2)
    if data.get("client_sap") not in (None, ""):
        _int_field(data["client_sap"], where, "client_sap", 0, 0xFFFF)
    roles = data.get("roles")
    if roles is None:
        return
    if not isinstance(roles, list):
        raise InputFileError(f"{where}: roles must be a list of role entries")
    for i, role in enumerate(roles):
        if not isinstance(role, Mapping) or not role.get("role"):
            raise InputFileError(f"{where}: roles[{i}] needs a 'role' name")
        if role.get("client_sap") in (None, ""):
            raise InputFileError(f"{where}: role {role['role']} has no client_sap")
        _int_field(role["client_sap"], where, f"role {role['role']}: client_sap", 0, 0xFFFF)


def load_pem_key(ref: Any, base_dir: Path | None, where: str, *, private: bool) -> Any:
    """An EC key from a PEM file (relative paths against ``base_dir``); one-line errors."""
    path = Path(str(ref))
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise InputFileError(f"{where}: cannot read {path}: {exc.strerror}") from None
    key: Any
    try:
        if private:
            key = serialization.load_pem_private_key(pem, password=None)
        else:
            try:
                key = serialization.load_pem_public_key(pem)
            except ValueError:
                from cryptography import x509

                key = x509.load_pem_x509_certificate(pem).public_key()
    except (ValueError, TypeError):
        raise InputFileError(f"{where}: {path} is not a PEM {'private' if private else 'public'} key") from None
    wanted = ec.EllipticCurvePrivateKey if private else ec.EllipticCurvePublicKey
    if not isinstance(key, wanted):
        raise InputFileError(f"{where}: {path} is not an elliptic-curve key")
    return key


MAX_KEY_FILE_BYTES = 16 << 20


def load_key_file(path: str | os.PathLike[str]) -> list[KeySet]:
    """Load every key set in a key file (one, or a list under ``meters``)."""
    p = Path(path)
    try:
        # a fleet's key file (meter serve --count 1000 writes about 2.2 MB) is bigger than a
        # config file; still bounded
        text = safeload.read_text(p, what="key file", max_bytes=MAX_KEY_FILE_BYTES)
    except FileNotFoundError:
        raise InputFileError(f"key file {p}: no such file") from None
    except OSError as exc:
        raise InputFileError(f"key file {p}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise InputFileError(f"key file {p}: not UTF-8 text (byte {exc.start})") from None
    try:
        # BaseLoader keeps every scalar a string: an all-digit hex key such as
        # 0011... must not turn into a (possibly octal) integer. It builds no objects.
        # (the strict loaders refuse aliases, anchors and duplicate keys)
        data = (safeload.loads_json(text, where=f"key file {p}") if p.suffix.lower() == ".json"
                else yaml.load(text, safeload.BaseLoader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise InputFileError(f"key file {p}: invalid YAML{line}: {problem}") from None
    except (ValueError, TypeError, AttributeError, RecursionError) as exc:  # values PyYAML/json cannot build, or nesting too deep
        raise InputFileError(f"key file {p}: unusable content ({exc.__class__.__name__})") from None
    if isinstance(data, Mapping) and "meters" in data:
        entries = data["meters"]
        if not isinstance(entries, list) or not entries:
            raise InputFileError(f"key file {p}: 'meters' must be a non-empty list")
        return [keyset_from_mapping(e, base_dir=p.parent, where=f"key file {p}, meter {i}")
                for i, e in enumerate(entries)]
    return [keyset_from_mapping(data, base_dir=p.parent, where=f"key file {p}")]


def load_keyset(path: str | os.PathLike[str], index: int = 0) -> KeySet:
    sets = load_key_file(path)
    if not 0 <= index < len(sets):
        raise InputFileError(f"key file {path}: has {len(sets)} meter entries, no entry {index}")
    return sets[index]


def keyset_from_env(environ: Mapping[str, str] | None = None) -> KeySet | None:
    """A key set from ``METERCERT_GUEK`` etc., or None when no such variable is set."""
    env = os.environ if environ is None else environ
    data = {
        name: env[f"METERCERT_{name.upper()}"]
        for name in ("client_system_title", "server_system_title", "guek", "gbek", "ak", "kek",
                     "client_private_key", "server_public_key")
        if env.get(f"METERCERT_{name.upper()}")
    }
    if not data:
        return None
    return keyset_from_mapping(data, where="environment")


def write_key_file(path: str | os.PathLike[str], keysets: list[KeySet]) -> Path:
    """Write a key file readable only by its owner (0600)."""
    p = Path(path)

    def entry(ks: KeySet) -> dict[str, Any]:
        out: dict[str, Any] = {k: v for k, v in ks.extra.items()
                               if isinstance(v, (str, int, list, dict))}
        out.update(ks.to_mapping())
        return out

    body: Any = entry(keysets[0]) if len(keysets) == 1 else {"meters": [entry(k) for k in keysets]}
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write("# metercert key file: secret, keep it 0600\n")
        yaml.safe_dump(body, fh, sort_keys=False)
    os.chmod(p, 0o600)
    return p
