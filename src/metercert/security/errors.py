"""Errors of the security layer.

``AuthenticationFailed`` is deliberately uninformative: a wrong key, a wrong tag,
a flipped ciphertext bit and a wrong system title all produce the same exception
with the same message, so that neither a log nor a peer learns which check failed.
"""

from metercert.errors import UsageError


class SecurityError(UsageError):
    """Base of the security layer's errors."""


class ApduFormatError(SecurityError):
    """A ciphered APDU whose framing is malformed (truncated, bad length, unknown tag)."""


class AuthenticationFailed(SecurityError):
    """Protection could not be verified. Never says why."""

    def __init__(self) -> None:
        super().__init__("authentication failed: the APDU could not be verified")


class InvalidKey(SecurityError):
    """A key of the wrong length or form (the message never shows key bytes)."""


class KeyUnwrapFailed(SecurityError):
    """An RFC 3394 wrapped key failed its integrity check."""

    def __init__(self) -> None:
        super().__init__("key unwrap failed: integrity check value mismatch")


class MechanismRefused(SecurityError):
    """An authentication mechanism that a secure meter must not accept."""


class CounterExhausted(SecurityError):
    """The 32-bit invocation counter space of a key is used up; the key must change."""


class CounterStoreError(SecurityError):
    """The invocation-counter store cannot persist; callers must fail closed."""
