"""``ssl.SSLContext`` factories that conform to IEC 62351-3.

What they enforce and why:

* TLS 1.2 is the floor (62351-3 ed.2); TLS 1.3 is offered when OpenSSL has it.
* TLS 1.2 suites are restricted to ECDHE/DHE key exchange with AEAD ciphers
  (AES-GCM, ChaCha20-Poly1305): forward secrecy only, nothing static-RSA, no CBC,
  no SHA-1 MACs. TLS 1.3 suites are all AEAD and forward-secret by design.
* TLS compression is off (CRIME) and renegotiation is refused; session tickets are
  disabled so resumption stays bounded by the server's session cache.
* The server demands and verifies a client certificate from the operator CA
  (mutual authentication); the client verifies the meter's chain and host name.

The asyncio transport takes these contexts through its ``ssl=`` parameter.
"""

from __future__ import annotations

import os
import ssl

from metercert.errors import InputFileError

# OpenSSL cipher string for TLS 1.2: forward-secret key exchange + AEAD only.
TLS12_CIPHERS = (
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES256-GCM-SHA384:DHE-RSA-AES128-GCM-SHA256"
)
_HARDENING_OPTIONS = (
    ssl.OP_NO_COMPRESSION
    | ssl.OP_NO_RENEGOTIATION
    | ssl.OP_NO_TICKET
    | ssl.OP_CIPHER_SERVER_PREFERENCE
    | ssl.OP_SINGLE_ECDH_USE
)


def _harden(ctx: ssl.SSLContext) -> ssl.SSLContext:
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.options |= _HARDENING_OPTIONS
    return ctx


def _path(label: str, path: str | os.PathLike[str]) -> str:
    text = os.fspath(path)
    if not os.path.isfile(text):
        raise InputFileError(f"{text}: {label} file not found")
    return text


def _load_chain(
    ctx: ssl.SSLContext, cert: str | os.PathLike[str], key: str | os.PathLike[str]
) -> None:
    cert_path, key_path = _path("certificate", cert), _path("private key", key)
    try:
        ctx.load_cert_chain(cert_path, key_path)
    except ssl.SSLError as exc:
        # The reason names the OpenSSL failure only; never echo key contents.
        raise InputFileError(
            f"{cert_path} / {key_path}: cannot load certificate and key ({exc.reason or exc})"
        ) from None


def _load_ca(ctx: ssl.SSLContext, ca: str | os.PathLike[str]) -> None:
    ca_path = _path("CA certificate", ca)
    try:
        ctx.load_verify_locations(cafile=ca_path)
    except ssl.SSLError as exc:
        raise InputFileError(f"{ca_path}: not a PEM CA certificate ({exc.reason or exc})") from None


def server_context(
    cert: str | os.PathLike[str],
    key: str | os.PathLike[str],
    ca: str | os.PathLike[str] | None,
    *,
    require_client_cert: bool = True,
    crl: str | os.PathLike[str] | None = None,
) -> ssl.SSLContext:
    """A meter-side context: 62351-3 suites, and a client certificate from ``ca`` required;
    with ``crl`` (PEM, signed by the CA) a revoked client certificate is refused too."""
    ctx = _harden(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    _load_chain(ctx, cert, key)
    if crl is not None:
        crl_path = _path("CRL", crl)
        try:
            ctx.load_verify_locations(cafile=crl_path)
        except ssl.SSLError as exc:
            raise InputFileError(f"{crl_path}: not a PEM CRL ({exc.reason or exc})") from None
        ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    if require_client_cert:
        if ca is None:
            raise InputFileError("mutual TLS needs the operator CA certificate (--ca)")
        _load_ca(ctx, ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:
        if ca is not None:
            _load_ca(ctx, ca)
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def client_context(
    ca: str | os.PathLike[str],
    cert: str | os.PathLike[str] | None = None,
    key: str | os.PathLike[str] | None = None,
    *,
    check_hostname: bool = True,
) -> ssl.SSLContext:
    """A head-end-side context that verifies the meter against ``ca`` and presents ``cert``."""
    ctx = _harden(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
    _load_ca(ctx, ca)
    ctx.check_hostname = check_hostname
    ctx.verify_mode = ssl.CERT_REQUIRED
    if (cert is None) != (key is None):
        raise InputFileError("give both the client certificate and its private key, or neither")
    if cert is not None and key is not None:
        _load_chain(ctx, cert, key)
    return ctx
