"""The IEC 62351-3 thresholds as data.

A TLS profile is a YAML file in which every setting is ``{value, source}``: the
value the checks apply and where it comes from (a clause, or ``[verify]`` when it
is recalled rather than read). The shipped profile is
``profiles/iec62351-3.yaml``; a lab copies it and tightens it. Loading validates
every field and reports the first problem as one line naming the file and line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from metercert.errors import InputFileError

# Families a profile may forbid; checks/tls.py knows how to recognise each one.
CIPHER_FAMILIES = frozenset(
    {
        "NULL",
        "anon",
        "EXPORT",
        "RC4",
        "DES",
        "3DES",
        "MD5",
        "CBC-SHA1",
        "CBC",
        "PSK",
        "IDEA",
        "SEED",
    }
)
# Protocol versions from oldest to newest, labelled as the scan results label them.
TLS_VERSIONS = ("SSL 2.0", "SSL 3.0", "TLS 1.0", "TLS 1.1", "TLS 1.2", "TLS 1.3")
CURVES = frozenset({"P-256", "P-384", "P-521", "Ed25519", "Ed448"})
SIGNATURE_HASHES = frozenset({"md5", "sha1", "sha224", "sha256", "sha384", "sha512"})


class ProfileError(InputFileError):
    """A TLS profile file that is missing, not YAML, or has a bad setting."""


@dataclass(frozen=True)
class TlsProfile:
    """Validated thresholds; ``sources`` maps each setting to its citation."""

    name: str
    min_tls_version: str  # "TLS 1.2"
    recommend_tls13: bool
    require_forward_secrecy: bool
    forbidden_cipher_families: tuple[str, ...]
    min_cipher_bits: int
    min_rsa_bits: int
    min_dh_bits: int
    allowed_curves: tuple[str, ...]
    forbidden_signature_hashes: tuple[str, ...]
    require_client_auth: bool
    require_x509_v3: bool
    require_key_usage: bool
    require_subject_alt_name: bool
    max_certificate_bytes: int
    expiry_warning_days: int
    require_revocation_info: bool
    require_secure_renegotiation: bool
    forbid_compression: bool
    # optional in a profile file (older lab copies lack them): defaults in _OPTIONAL
    max_session_lifetime_s: int = 86400
    min_group_security_bits: int = 128
    require_extended_master_secret: bool = True
    path: str = ""
    sources: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    def source(self, setting: str) -> str:
        return self.sources.get(setting, "")

    def version_rank(self, version: str) -> int:
        return TLS_VERSIONS.index(version)


def _check_bool(v: Any) -> str | None:
    return None if isinstance(v, bool) else "must be true or false"


def _check_int(v: Any) -> str | None:
    ok = isinstance(v, int) and not isinstance(v, bool) and v >= 0
    return None if ok else "must be a non-negative integer"


def _version_label(v: Any) -> str:
    text = str(v).strip() if isinstance(v, (str, float)) else ""
    return text if text.startswith("TLS ") else f"TLS {text}"


def _check_version(v: Any) -> str | None:
    ok = _version_label(v) in TLS_VERSIONS[2:]
    return None if ok else 'must be one of "1.0", "1.1", "1.2", "1.3"'


def _members_of(allowed: frozenset[str], what: str) -> Any:
    def checker(v: Any) -> str | None:
        if isinstance(v, list) and None in v:
            return 'has an empty entry (quote "NULL": bare NULL is YAML\'s null)'
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            return f"must be a list of {what}"
        unknown = sorted(set(v) - allowed)
        if unknown:
            return f"unknown {what} {', '.join(unknown)} (known: {', '.join(sorted(allowed))})"
        return None

    return checker


_FIELDS: dict[str, Any] = {
    "min_tls_version": _check_version,
    "recommend_tls13": _check_bool,
    "require_forward_secrecy": _check_bool,
    "forbidden_cipher_families": _members_of(CIPHER_FAMILIES, "cipher families"),
    "min_cipher_bits": _check_int,
    "min_rsa_bits": _check_int,
    "min_dh_bits": _check_int,
    "allowed_curves": _members_of(CURVES, "curves"),
    "forbidden_signature_hashes": _members_of(SIGNATURE_HASHES, "hash names"),
    "require_client_auth": _check_bool,
    "require_x509_v3": _check_bool,
    "require_key_usage": _check_bool,
    "require_subject_alt_name": _check_bool,
    "max_certificate_bytes": _check_int,
    "expiry_warning_days": _check_int,
    "require_revocation_info": _check_bool,
    "require_secure_renegotiation": _check_bool,
    "forbid_compression": _check_bool,
}
# Settings added after the first profile version: a profile without them gets these.
_OPTIONAL: dict[str, tuple[Any, Any, str]] = {
    "max_session_lifetime_s": (
        _check_int,
        86400,
        "IEC 62351-3 ed.2: session resumption is bounded in time; 24 h [verify] (built-in default)",
    ),
    "min_group_security_bits": (
        _check_int,
        128,
        "BSI TR-02102-2 / NIST SP 800-57: groups of >= 128-bit security [verify] (built-in default)",
    ),
    "require_extended_master_secret": (
        _check_bool,
        True,
        "IEC 62351-3 ed.2 / RFC 7627: extended master secret in TLS 1.2 [verify] (built-in default)",
    ),
}
_META = {"profile", "profile_version"}


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _parse(text: str, where: str) -> dict[str, Any]:
    """Validate ``text`` and return keyword arguments for :class:`TlsProfile`."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise ProfileError(f"{where}{line}: {problem}") from None
    if not isinstance(root, yaml.MappingNode):
        line = f":{_line(root)}" if root is not None else ""
        raise ProfileError(f"{where}{line}: a TLS profile must be a mapping of settings")

    seen: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for key_node, value_node in root.value:
        key, at = key_node.value, f"{where}:{_line(key_node)}"
        if key in _META:
            continue
        if key not in _FIELDS and key not in _OPTIONAL:
            raise ProfileError(f"{at}: unknown setting {key!r}")
        if key in seen:
            raise ProfileError(f"{at}: setting {key!r} given twice")
        setting = yaml.safe_load(yaml.serialize(value_node))
        if not isinstance(setting, dict) or set(setting) != {"value", "source"}:
            raise ProfileError(f"{at}: {key} must be a mapping with exactly 'value' and 'source'")
        if not isinstance(setting["source"], str) or not setting["source"].strip():
            raise ProfileError(f"{at}: {key}.source must cite where the threshold comes from")
        checker = _FIELDS[key] if key in _FIELDS else _OPTIONAL[key][0]
        problem = checker(setting["value"])
        if problem:
            raise ProfileError(f"{at}: {key}: {problem}")
        seen[key] = setting["value"]
        sources[key] = setting["source"].strip()
    missing = sorted(set(_FIELDS) - set(seen))
    if missing:
        raise ProfileError(f"{where}: missing settings: {', '.join(missing)}")
    for key, (_, default, source) in _OPTIONAL.items():
        if key not in seen:
            seen[key], sources[key] = default, source
    name_value = yaml.safe_load(text).get("profile", Path(where).stem)
    values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in seen.items()}
    values["min_tls_version"] = _version_label(values["min_tls_version"])
    return {"name": str(name_value), "sources": sources, **values}


def load_profile(path: str | os.PathLike[str] | None = None) -> TlsProfile:
    """Load and validate a profile file; ``None`` loads the shipped IEC 62351-3 profile."""
    if path is None:
        ref = resources.files("metercert.tlsprobe").joinpath("profiles/iec62351-3.yaml")
        text, where = ref.read_text(encoding="utf-8"), "iec62351-3.yaml (built-in)"
    else:
        where = os.fspath(path)
        try:
            text = Path(where).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ProfileError(f"{where}: TLS profile not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ProfileError(
                f"{where}: cannot read TLS profile ({exc.__class__.__name__})"
            ) from None
    try:
        fields = _parse(text, where)
    except (
        ValueError,
        TypeError,
        AttributeError,
        RecursionError,
    ) as exc:  # a value YAML cannot build, or nesting too deep
        raise ProfileError(f"{where}: invalid YAML value ({exc.__class__.__name__})") from None
    return TlsProfile(path=where, **fields)


def default_profile() -> TlsProfile:
    """The shipped IEC 62351-3 profile (loaded fresh; profiles are immutable values)."""
    return load_profile(None)
