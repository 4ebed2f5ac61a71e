"""Meter profiles: how the reference meter behaves, conformant or with one named flaw.

A profile is YAML: the conformant settings, plus ``flaws:`` naming deliberate
defects. Each flawed profile shipped in ``profiles/`` has exactly one flaw, so that
a campaign run against it must fail exactly the check for that flaw.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from metercert.errors import InputFileError, UsageError

FLAWS: dict[str, str] = {
    "ic-reset-on-power-cycle":
        "invocation counters live in RAM: after a power cycle the meter reuses counters "
        "and accepts replays of earlier requests",
    "accepts-downgrade": "accepts an association proposing a lower security suite than configured",
    "no-replay-check": "never checks received invocation counters: replayed APDUs are executed",
    "default-lls-password":
        "the management association also accepts LLS with the factory password 00000000",
    "unsigned-firmware-accepted": "image verify accepts an image whose signature is bad or missing",
    "key-wrap-unchecked": "key_transfer skips the RFC 3394 integrity check and installs garbage",
    "operator-can-update-firmware": "the OPERATOR role may transfer, verify and activate firmware",
    "secret-readable": "the association's secret (attribute 7) can be read",
    "hls-reply-unchecked":
        "HLS pass 3 is not verified: any reply_to_HLS_authentication completes the association",
}

_POLICIES = {"authenticated-encrypted": (True, True), "authenticated": (True, False)}


@dataclass(frozen=True)
class MeterProfile:
    name: str = "conformant"
    description: str = "conformant reference meter"
    security_suite: int = 1
    policy: str = "authenticated-encrypted"
    mechanism: str = "hls-gmac"
    max_pdu: int = 1024
    auth_failures_before_lockout: int = 3
    lockout_seconds: float = 3.0
    rbac: str | None = None
    #: 0: image_verify answers at once; more: it answers temporary-failure and the
    #: verdict shows in image_transfer_status that many seconds later, as on meters
    #: that check the signature in the background
    image_verify_seconds: float = 0.0
    flaws: frozenset[str] = field(default_factory=frozenset)

    def has(self, flaw: str) -> bool:
        return flaw in self.flaws

    @property
    def requires(self) -> tuple[bool, bool]:
        """(authenticated, encrypted) that every request must carry."""
        return _POLICIES[self.policy]


# setting -> (accepted types, lowest, highest): a profile is user input, checked before use
_SETTING_TYPES: dict[str, tuple[tuple[type, ...], float | None, float | None]] = {
    "name": ((str,), None, None),
    "description": ((str,), None, None),
    "security_suite": ((int,), None, None),
    "policy": ((str,), None, None),
    "mechanism": ((str,), None, None),
    "max_pdu": ((int,), 32, 0xFFFF),
    "auth_failures_before_lockout": ((int,), 1, 1_000_000),
    "lockout_seconds": ((int, float), 0, 86_400),
    "rbac": ((str,), None, None),
    "image_verify_seconds": ((int, float), 0, 3600),
}


def builtin_profiles() -> list[str]:
    folder = resources.files("metercert.meter").joinpath("profiles")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_profile(name_or_path: str | None = None) -> MeterProfile:
    name_or_path = name_or_path or "conformant"
    path = Path(name_or_path)
    if name_or_path.endswith((".yaml", ".yml")) or path.exists():
        source = str(path)
        try:
            text = path.read_text("utf-8")
        except OSError as exc:
            raise InputFileError(f"meter profile {source}: {exc.strerror}") from None
        except UnicodeDecodeError as exc:
            raise InputFileError(f"meter profile {source}: not UTF-8 text (byte {exc.start})") from None
    else:
        if name_or_path not in builtin_profiles():
            raise UsageError(f"unknown meter profile {name_or_path!r}; built-in profiles: "
                             + ", ".join(builtin_profiles()))
        source = f"built-in profile {name_or_path}"
        text = resources.files("metercert.meter").joinpath(
            f"profiles/{name_or_path}.yaml").read_text("utf-8")
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f", line {mark.line + 1}" if mark is not None else ""
        raise InputFileError(f"meter profile {source}{line}: invalid YAML") from None
    except (ValueError, TypeError, AttributeError, RecursionError) as exc:
        raise InputFileError(f"meter profile {source}: invalid YAML value ({exc.__class__.__name__})") from None
    return profile_from_mapping(data, source)


def profile_from_mapping(data: Any, source: str = "profile") -> MeterProfile:
    if not isinstance(data, dict):
        raise InputFileError(f"meter profile {source}: expected a mapping")
    known = set(MeterProfile.__dataclass_fields__)
    unknown = set(data) - known
    if unknown:
        raise InputFileError(f"meter profile {source}: unknown settings {sorted(map(str, unknown))}")
    raw_flaws = data.get("flaws") or []
    if not isinstance(raw_flaws, list) or not all(isinstance(f, str) for f in raw_flaws):
        raise InputFileError(f"meter profile {source}: flaws must be a list of flaw names")
    for key, (kinds, low, high) in _SETTING_TYPES.items():
        value = data.get(key)
        if key not in data or (value is None and key == "rbac"):
            continue
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise InputFileError(f"meter profile {source}: {key} has the wrong type "
                                 f"({type(value).__name__})")
        if low is not None and high is not None and not low <= float(value) <= high:  # type: ignore[arg-type]
            raise InputFileError(f"meter profile {source}: {key} must be {low}..{high}")
    flaws = frozenset(raw_flaws)
    bad = flaws - set(FLAWS)
    if bad:
        raise InputFileError(f"meter profile {source}: unknown flaws {sorted(bad)}; "
                             f"known: {', '.join(FLAWS)}")
    profile = replace(MeterProfile(), **{k: v for k, v in data.items() if k != "flaws"},
                      flaws=flaws)
    if profile.security_suite not in (0, 1, 2):
        raise InputFileError(f"meter profile {source}: security_suite must be 0, 1 or 2")
    if profile.policy not in _POLICIES:
        raise InputFileError(f"meter profile {source}: policy must be one of {sorted(_POLICIES)}")
    if profile.mechanism not in ("hls-gmac", "hls-sha256", "hls-ecdsa"):
        raise InputFileError(f"meter profile {source}: mechanism must be hls-gmac, hls-sha256 "
                             "or hls-ecdsa")
    if profile.mechanism == "hls-ecdsa" and profile.security_suite == 0:
        raise InputFileError(f"meter profile {source}: hls-ecdsa needs security_suite 1 or 2 "
                             "(suite 0 has no ECDSA)")
    return profile
