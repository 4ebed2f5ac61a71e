"""Security suites and the security control byte (IEC 62056-5-3).

Suite table (see ../shared/design/STANDARDS.md; the seed article gets it wrong):

====== ============ ======================= ======= ===============
suite  AEAD         signature / agreement   hash    key wrap
====== ============ ======================= ======= ===============
0      AES-GCM-128  none                    none    AES-128 (3394)
1      AES-GCM-128  ECDSA / ECDH P-256      SHA-256 AES-128 (3394)
2      AES-GCM-256  ECDSA / ECDH P-384      SHA-384 AES-256 (3394)
====== ============ ======================= ======= ===============
"""

from __future__ import annotations

from dataclasses import dataclass, field

from metercert.security.errors import ApduFormatError, SecurityError


@dataclass(frozen=True)
class SecuritySuite:
    number: int
    key_bytes: int
    curve: str | None
    hash_name: str | None

    @property
    def key_bits(self) -> int:
        return self.key_bytes * 8

    @property
    def signature_bytes(self) -> int:
        """Length of a raw r||s ECDSA signature for this suite (0 without ECDSA)."""
        return {None: 0, "P-256": 64, "P-384": 96}[self.curve]


SUITES: dict[int, SecuritySuite] = {
    0: SecuritySuite(0, 16, None, None),
    1: SecuritySuite(1, 16, "P-256", "SHA-256"),
    2: SecuritySuite(2, 32, "P-384", "SHA-384"),
}


def suite(number: int) -> SecuritySuite:
    try:
        return SUITES[number]
    except KeyError:
        raise SecurityError(f"security suite {number} is not defined (0, 1 or 2)") from None


_AUTH = 0x10
_ENC = 0x20
_BROADCAST = 0x40
_COMPRESSED = 0x80


@dataclass(frozen=True)
class SecurityControl:
    """The security control byte: suite id in bits 0-3, then A, E, key set, compression."""

    suite: int = 0
    authenticated: bool = True
    encrypted: bool = True
    broadcast: bool = False
    compressed: bool = False
    byte: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 0 <= self.suite <= 15:
            raise SecurityError(f"security suite id {self.suite} does not fit in 4 bits")
        object.__setattr__(self, "byte", (
            self.suite
            | (_AUTH if self.authenticated else 0)
            | (_ENC if self.encrypted else 0)
            | (_BROADCAST if self.broadcast else 0)
            | (_COMPRESSED if self.compressed else 0)
        ))

    @classmethod
    def from_byte(cls, value: int) -> SecurityControl:
        try:
            return _BY_BYTE[value]
        except (KeyError, IndexError, TypeError):
            raise ApduFormatError(f"security control {value} is not a byte") from None

    @property
    def protected(self) -> bool:
        return self.authenticated or self.encrypted

    def describe(self) -> str:
        parts = []
        if self.authenticated:
            parts.append("authenticated")
        if self.encrypted:
            parts.append("encrypted")
        if not parts:
            parts.append("no protection")
        parts.append("broadcast key" if self.broadcast else "unicast key")
        if self.compressed:
            parts.append("compressed")
        return f"suite {self.suite}, " + ", ".join(parts)


# All 256 values, built once: parsing a security control is a table lookup.
_BY_BYTE: list[SecurityControl] = [
    SecurityControl(suite=v & 0x0F, authenticated=bool(v & _AUTH), encrypted=bool(v & _ENC),
                    broadcast=bool(v & _BROADCAST), compressed=bool(v & _COMPRESSED))
    for v in range(256)
]
