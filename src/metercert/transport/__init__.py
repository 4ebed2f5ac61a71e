"""Framing that carries APDUs: IEC 62056-47 wrapper, IEC 62056-46 HDLC, asyncio adapters.

``wrapper``, ``hdlc_frame``/``hdlc`` and ``fcs`` are sans-IO; ``stream`` moves
their bytes over TCP or TLS with asyncio.
"""

from metercert.transport.errors import (
    BadChecksum,
    BadFrame,
    ConnectionClosed,
    FrameTooLarge,
    ProtocolViolation,
    TransportError,
    TransportTimeout,
)
from metercert.transport.stream import (
    DEFAULT_PORT,
    ApduStream,
    DlmsServer,
    open_dlms_connection,
    serve_dlms,
)

__all__ = [
    "DEFAULT_PORT", "ApduStream", "BadChecksum", "BadFrame", "ConnectionClosed", "DlmsServer",
    "FrameTooLarge", "ProtocolViolation", "TransportError", "TransportTimeout",
    "open_dlms_connection", "serve_dlms",
]
