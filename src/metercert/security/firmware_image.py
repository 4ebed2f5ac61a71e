"""metercert's signed firmware image envelope (the image format is companion-specific,
so the project defines its own and documents it here and in docs/meter.md).

Layout (big-endian)::

    "MCFW" | envelope version (1 byte, = 1) | suite (1 byte, 1 or 2)
    | identifier length (1) | identifier | payload length (4) | payload
    | signature: raw r || s (64 bytes for suite 1 / P-256, 96 for suite 2 / P-384)

The signature is ECDSA with SHA-256 (suite 1) or SHA-384 (suite 2) over every byte
before it. A meter verifies it against the vendor's firmware-signing public key
before it may activate the image; a missing or bad signature fails verification.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec

from metercert.errors import UsageError
from metercert.security import AuthenticationFailed
from metercert.security.hls import ecdsa_sign_raw, ecdsa_verify_raw

MAGIC = b"MCFW"
_SIG_BYTES = {1: 64, 2: 96}


class FirmwareVerificationFailed(UsageError):
    """The image is malformed or its signature does not verify."""


@dataclass(frozen=True)
class FirmwareImage:
    identifier: str
    payload: bytes
    suite: int


def _header(identifier: str, payload: bytes, suite: int) -> bytes:
    ident = identifier.encode("utf-8")
    if len(ident) > 255:
        raise UsageError("firmware identifier longer than 255 bytes")
    return MAGIC + bytes((1, suite, len(ident))) + ident + struct.pack(">I", len(payload)) + payload


def build_signed_image(identifier: str, payload: bytes,
                       signing_key: ec.EllipticCurvePrivateKey | None) -> bytes:
    """An envelope signed with ``signing_key`` (None builds an unsigned one, for tests)."""
    suite = 2 if signing_key is not None and isinstance(signing_key.curve, ec.SECP384R1) else 1
    head = _header(identifier, payload, suite)
    if signing_key is None:
        return head
    return head + ecdsa_sign_raw(signing_key, head)


def parse_image(blob: bytes) -> tuple[FirmwareImage, bytes, bytes]:
    """(image, signed part, signature) without verifying anything."""
    if len(blob) < 11 or blob[:4] != MAGIC or blob[4] != 1:
        raise FirmwareVerificationFailed("not a metercert signed image envelope")
    suite, id_len = blob[5], blob[6]
    if suite not in _SIG_BYTES:
        raise FirmwareVerificationFailed(f"envelope names unsupported suite {suite}")
    pos = 7 + id_len
    if pos + 4 > len(blob):
        raise FirmwareVerificationFailed("envelope truncated in its header")
    identifier = blob[7:pos].decode("utf-8", "replace")
    (size,) = struct.unpack(">I", blob[pos:pos + 4])
    end = pos + 4 + size
    if end > len(blob):
        raise FirmwareVerificationFailed("envelope truncated in its payload")
    return FirmwareImage(identifier, blob[pos + 4:end], suite), blob[:end], blob[end:]


def verify_signed_image(blob: bytes, vendor_key: ec.EllipticCurvePublicKey) -> FirmwareImage:
    image, signed, signature = parse_image(blob)
    if len(signature) != _SIG_BYTES[image.suite]:
        raise FirmwareVerificationFailed("signature missing or of the wrong length")
    try:
        ecdsa_verify_raw(vendor_key, signature, signed)
    except AuthenticationFailed:
        raise FirmwareVerificationFailed("signature does not verify") from None
    return image
