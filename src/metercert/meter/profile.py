"""Meter profiles: how the reference meter behaves, conformant or with one named flaw.

A profile is YAML: the conformant settings, plus ``flaws:`` naming deliberate
defects. Each flawed profile shipped in ``profiles/`` has exactly one flaw, so that
a campaign run against it must fail exactly the check for that flaw.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from metercert import safeload
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
    "replay-window-in-ram":
        "received-counter windows live in RAM and reach the disk only at a clean release or "
        "disconnect: after a power cut the meter accepts replays of requests it had served",
    "own-ic-reset-at-boot":
        "the meter's own sending invocation counter restarts at 0 after every boot "
        "(AES-GCM nonce reuse); its replay windows stay persistent",
    "public-reads-secrets":
        "the public client may read attribute 7 (secret) of every Association LN instance",
    "firmware-size-only":
        "image_verify checks only the image size: any image of the announced size passes",
    "no-lockout": "authentication failures are never throttled",
    "general-signature-unchecked":
        "general-signing signatures are not verified: a tampered request, one signed by "
        "another key or with the other suite's curve is executed",
    "unsigned-general-accepted":
        "a general request without a general-signing layer is executed although the meter "
        "requires signed requests",
    "general-suite-unchecked":
        "general-ciphering in a lower suite than configured is deciphered with the keys the "
        "meter has and executed (downgrade)",
    "untrusted-certificate-accepted":
        "import_certificate takes a certificate that does not chain to the operator CA, or has "
        "expired",
    "private-key-exported": "generate_key_pair returns the new private key in its answer",
    "ephemeral-key-reused": "key_agreement answers every time with the same ephemeral key",
    "key-agreement-unverified":
        "key_agreement and agreed keys in general-ciphering use the client's ephemeral key "
        "without checking its signature",
    "removed-certificate-still-used":
        "remove_certificate answers success and drops the certificate from attribute 6, but "
        "signatures by its key are still accepted",
    "wedged-by-oversized-frame":
        "a wrapper frame announcing 65535 bytes makes the meter deaf on every connection "
        "until it is power cycled",
    "default-password-second-lls":
        "a second LLS association (client SAP 17) accepts the well-known passwords "
        "Gurux and 00000000",
    "ic-per-association":
        "the meter's own sending counter starts again at 0 in every association, under the "
        "same key (what gurux-dlms's server does): AES-GCM nonce reuse within one boot",
    "policy-can-be-lowered": "security_activate takes any policy, lower ones included",
    "key-id-unchecked": "key_transfer answers success for a key id that does not exist",
    "release-ignored": "a release is answered RLRE normal but the association stays open",
    "push-unprotected":
        "pushes (DataNotification) go out in the clear although the policy requires "
        "authenticated and encrypted traffic",
    "push-counter-reset-at-boot":
        "pushes are counted in RAM from 1 at every boot: after a power cycle their "
        "invocation counters repeat under the same key",
    # HDLC link-layer flaws (transport.hdlc.LINK_FLAWS carries the same names)
    "hdlc-bad-fcs-accepted":
        "HDLC frames are taken whatever their HCS/FCS say: a corrupted command is executed",
    "hdlc-sequence-unchecked":
        "an HDLC I-frame whose N(S) is not the expected one is taken: a repeated frame "
        "executes its request again",
    "hdlc-info-length-unchecked":
        "an HDLC information field longer than the negotiated maximum is taken",
    "hdlc-any-address":
        "the meter answers an SNRM whatever HDLC server address it names, not only its own "
        "(upper address 1, the management logical device)",
}

_POLICIES = {"authenticated-encrypted": (True, True), "authenticated": (True, False)}

#: the SAP and association instance the default-password-second-lls flaw adds when the
#: profile names no LLS association of its own
SECOND_LLS_SAP, SECOND_LLS_ASSOCIATION = 17, 8
WELL_KNOWN_LLS_PASSWORDS = (b"Gurux", b"00000000")


@dataclass(frozen=True)
class LlsAssociation:
    """An association opened with LLS (a password), like many meters' SAP 17."""

    client_sap: int
    association: int
    password: bytes = field(repr=False)


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
    #: wrapper connections served at a time (None: no limit); further ones are accepted by
    #: the OS but not read until a served one closes, like a meter with one wrapper socket
    max_connections: int | None = None
    #: "accepted": a bare or a protected RLRQ releases a ciphered association; "required":
    #: only a protected one (a bare RLRQ is answered not-finished and the association stays)
    protected_release: str = "accepted"
    #: Security Setup (class 64) version: 0 has the enumerated security_policy, 1 bit flags
    security_setup_version: int = 1
    #: Association LN (class 15) version reported in the object list
    association_version: int = 2
    #: OBIS codes of the standard objects this meter does not have
    omit_objects: tuple[str, ...] = ()
    #: where the active energy import register lives
    energy_register: str = "1.0.1.8.0.255"
    #: "access-result" (a refusal is the result code of the normal response; only what the
    #: meter cannot decode gets an ExceptionResponse) or "exception-response": list services,
    #: selective access and services outside an association's conformance get an
    #: ExceptionResponse (ciphered on a ciphered association)
    unsupported_service: str = "access-result"
    #: CtoS lengths accepted in an AARQ (None: 8..64)
    hls_challenge_lengths: tuple[int, ...] | None = None
    #: length of the StoC challenge the meter sends
    server_challenge_length: int = 32
    #: "refused": an AARQ naming HLS-MD5 or HLS-SHA1 is rejected; "pending": it is answered
    #: accepted / authentication-required (as some meters do), then pass 3 always fails
    #: and nothing is served
    legacy_hls: str = "refused"
    #: extra LLS associations: (client SAP, association instance e, password)
    lls_associations: tuple[LlsAssociation, ...] = ()
    #: general-ciphering / general-signing (suites 1 and 2): None: not offered; "ciphering":
    #: 0xDD served (a 0xDF layer inside or around it is verified); "signing": every general
    #: request must also carry a general-signing layer (see meter/general.py)
    general_protection: str | None = None
    flaws: frozenset[str] = field(default_factory=frozenset)

    def has(self, flaw: str) -> bool:
        return flaw in self.flaws

    def all_lls_associations(self) -> tuple[LlsAssociation, ...]:
        """The configured LLS associations, plus the one the default-password flaw adds."""
        if self.has("default-password-second-lls") and not self.lls_associations:
            # a factory LLS association whose own password nobody knows: only the
            # well-known defaults (the flaw) open it
            return (LlsAssociation(SECOND_LLS_SAP, SECOND_LLS_ASSOCIATION,
                                   os.urandom(16).hex().encode()),)
        return self.lls_associations

    def lls_passwords(self, association: LlsAssociation) -> tuple[bytes, ...]:
        """Every password that opens ``association``."""
        if self.has("default-password-second-lls"):
            return (association.password, *WELL_KNOWN_LLS_PASSWORDS)
        return (association.password,)

    @property
    def challenge_lengths(self) -> tuple[int, ...]:
        return self.hls_challenge_lengths or tuple(range(8, 65))

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
    "max_connections": ((int,), 1, 10_000),
    "protected_release": ((str,), None, None),
    "security_setup_version": ((int,), 0, 1),
    "association_version": ((int,), 1, 3),
    "energy_register": ((str,), None, None),
    "unsupported_service": ((str,), None, None),
    "server_challenge_length": ((int,), 8, 64),
    "legacy_hls": ((str,), None, None),
    "general_protection": ((str,), None, None),
}
_CHOICES = {"protected_release": ("accepted", "required"), "legacy_hls": ("refused", "pending"),
            "unsupported_service": ("access-result", "exception-response"),
            "general_protection": ("ciphering", "signing")}


def _obis(value: Any, source: str, key: str) -> str:
    from metercert.cosem import ObisCode
    from metercert.cosem.errors import InvalidValue

    try:
        return str(ObisCode.parse(str(value)))
    except (InvalidValue, ValueError, TypeError):
        raise InputFileError(f"meter profile {source}: {key}: {value!r} is not an OBIS code "
                             "like 1.0.1.8.0.255") from None


def _list_settings(data: dict[str, Any], source: str) -> dict[str, Any]:
    """The list-valued settings, checked and made immutable."""
    out: dict[str, Any] = {}
    if data.get("omit_objects") is not None:
        items = data["omit_objects"]
        if not isinstance(items, list):
            raise InputFileError(f"meter profile {source}: omit_objects must be a list of OBIS")
        out["omit_objects"] = tuple(_obis(v, source, "omit_objects") for v in items)
    if "energy_register" in data:
        out["energy_register"] = _obis(data["energy_register"], source, "energy_register")
    if data.get("hls_challenge_lengths") is not None:
        items = data["hls_challenge_lengths"]
        if (not isinstance(items, list) or not items
                or not all(isinstance(v, int) and not isinstance(v, bool) and 8 <= v <= 64
                           for v in items)):
            raise InputFileError(f"meter profile {source}: hls_challenge_lengths must be a "
                                 "non-empty list of lengths 8..64")
        out["hls_challenge_lengths"] = tuple(items)
    if data.get("lls_associations") is not None:
        items = data["lls_associations"]
        if not isinstance(items, list):
            raise InputFileError(f"meter profile {source}: lls_associations must be a list")
        entries = []
        for item in items:
            ok = (isinstance(item, dict) and set(item) == {"client_sap", "association", "password"}
                  and all(isinstance(item[k], int) and not isinstance(item[k], bool)
                          for k in ("client_sap", "association"))
                  and isinstance(item["password"], str) and 1 <= len(item["password"]) <= 64)
            if not ok or not (1 <= item["client_sap"] <= 0x7F and 1 <= item["association"] <= 254):
                raise InputFileError(f"meter profile {source}: each lls_associations entry needs "
                                     "client_sap (1..127), association (1..254) and a password "
                                     "(1..64 characters)")
            entries.append(LlsAssociation(item["client_sap"], item["association"],
                                          item["password"].encode("utf-8")))
        out["lls_associations"] = tuple(entries)
    return out


def builtin_profiles() -> list[str]:
    folder = resources.files("metercert.meter").joinpath("profiles")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_profile(name_or_path: str | None = None) -> MeterProfile:
    name_or_path = name_or_path or "conformant"
    path = Path(name_or_path)
    # only a name that looks like a path is a file: a file in the working folder named
    # like a built-in profile must not shadow it
    if name_or_path.endswith((".yaml", ".yml")) or "/" in name_or_path or os.sep in name_or_path:
        source = str(path)
        try:
            text = safeload.read_text(path, what="meter profile")
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
        data = yaml.load(text, Loader=safeload.SafeLoader) or {}  # no aliases, no duplicate keys
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f", line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise InputFileError(f"meter profile {source}{line}: invalid YAML: {problem}") from None
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
        if key not in data or (value is None
                               and key in ("rbac", "max_connections", "general_protection")):
            continue
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise InputFileError(f"meter profile {source}: {key} has the wrong type "
                                 f"({type(value).__name__})")
        if low is not None and high is not None and not low <= float(value) <= high:  # type: ignore[arg-type]
            raise InputFileError(f"meter profile {source}: {key} must be {low}..{high}")
        if key in _CHOICES and value not in _CHOICES[key]:
            raise InputFileError(f"meter profile {source}: {key} must be one of "
                                 f"{', '.join(_CHOICES[key])}")
    lists = _list_settings(data, source)
    flaws = frozenset(raw_flaws)
    bad = flaws - set(FLAWS)
    if bad:
        raise InputFileError(f"meter profile {source}: unknown flaws {sorted(bad)}; "
                             f"known: {', '.join(FLAWS)}")
    profile = replace(MeterProfile(), **{k: v for k, v in data.items()
                                         if k != "flaws" and k not in lists},
                      **lists, flaws=flaws)
    saps = [a.client_sap for a in profile.all_lls_associations()]
    if len(saps) != len(set(saps)):
        raise InputFileError(f"meter profile {source}: two LLS associations share a client SAP")
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
    if profile.general_protection and profile.security_suite == 0:
        raise InputFileError(f"meter profile {source}: general_protection needs security_suite "
                             "1 or 2 (suite 0 has no signatures)")
    return profile
