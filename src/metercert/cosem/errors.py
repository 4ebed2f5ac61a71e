"""Errors raised by the COSEM codec.

Every malformed input ends in a :class:`CosemDecodeError` subclass whose message
names the field that is wrong and the byte offset where decoding stopped, so a
user looking at a captured APDU can find the fault. They derive from
:class:`metercert.errors.UsageError`, which the CLI prints as one line.
"""

from __future__ import annotations

from metercert.errors import UsageError


class CosemDecodeError(UsageError):
    """Bytes that are not a valid encoding of what the caller asked for."""

    def __init__(self, message: str, offset: int | None = None) -> None:
        self.offset = offset
        if offset is not None:
            message = f"{message} (at offset {offset})"
        super().__init__(message)


class TruncatedData(CosemDecodeError):
    """The input ended before the field being read was complete."""


class BadLength(CosemDecodeError):
    """A length or count is impossible: larger than the data left, or bytes left over."""


class UnknownTag(CosemDecodeError):
    """A tag, choice or type byte that this codec does not know."""


class InvalidValue(CosemDecodeError):
    """A field is well framed but its value is outside what the standard allows."""


class UnsupportedEncoding(CosemDecodeError):
    """A valid but deliberately unsupported encoding (e.g. compact-array)."""


class CosemEncodeError(UsageError):
    """A value cannot be encoded: out of range for its DLMS type or field."""
