"""Errors raised by the framing layers and the asyncio adapters.

Every one of them is a :class:`~metercert.errors.ConnectionFailed`, so the CLI
prints it as one line and exits 2. Messages name the peer and the problem, never
the payload (an APDU may carry an LLS password or key material).
"""

from __future__ import annotations

from metercert.errors import ConnectionFailed


class TransportError(ConnectionFailed):
    """Base of every transport-layer failure."""


class BadFrame(TransportError):
    """Bytes that are not a valid frame: wrong version, format, address or length."""


class BadChecksum(BadFrame):
    """An HDLC frame whose HCS or FCS does not match its contents."""


class FrameTooLarge(TransportError):
    """A frame or reassembled APDU longer than the configured limit."""


class ProtocolViolation(TransportError):
    """A well-formed frame that the link state machine does not allow now."""


class TransportTimeout(TransportError):
    """Nothing (or not a whole APDU) arrived within the allowed time."""


class ConnectionClosed(TransportError):
    """The peer closed the connection or disconnected the link."""
