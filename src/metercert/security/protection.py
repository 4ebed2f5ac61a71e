"""Protect and unprotect xDLMS APDUs: every ciphered form, every protection mode.

Forms (tags in STANDARDS.md):

* service-specific global (``glo-*``, 0xC8-0xCF, initiate 0x21/0x28, confirmed
  service error 0x2E) and dedicated (``ded-*``, 0xD0-0xD7): ``tag, length, SC,
  IC(4), payload``; the system title comes from the association.
* general-glo-ciphering 0xDB and general-ded-ciphering 0xDC: ``tag, system title
  (octet string), length, SC, IC(4), payload``.
* general-ciphering 0xDD and general-signing 0xDF live in :mod:`metercert.security.general`.

Payload by mode: authenticated and encrypted -> ciphertext || tag (AAD = SC || AK);
authenticated only -> plaintext || tag (AAD = SC || AK || plaintext); encrypted
only -> ciphertext; neither -> plaintext (a meter must treat that as unprotected).
IV = system title || invocation counter.
"""

from __future__ import annotations

import enum
import hmac
import importlib
import os
from collections.abc import Callable
from functools import lru_cache
from typing import NamedTuple

from metercert.cosem.reader import encode_length
from metercert.security import _gcm
from metercert.security.errors import ApduFormatError, AuthenticationFailed, InvalidKey
from metercert.security.keys import Key, KeySet
from metercert.security.suites import _BY_BYTE as _SC_TABLE
from metercert.security.suites import SUITES, SecurityControl


class CipheringForm(str, enum.Enum):
    GLOBAL = "global"
    DEDICATED = "dedicated"
    GENERAL_GLO = "general-glo"
    GENERAL_DED = "general-ded"

    @property
    def dedicated(self) -> bool:
        return self in (CipheringForm.DEDICATED, CipheringForm.GENERAL_DED)


# plain tag -> (global tag, dedicated tag or None)
_SERVICE_TAGS: dict[int, tuple[int, int | None]] = {
    0xC0: (0xC8, 0xD0),  # get-request
    0xC1: (0xC9, 0xD1),  # set-request
    0xC2: (0xCA, 0xD2),  # event-notification-request
    0xC3: (0xCB, 0xD3),  # action-request
    0xC4: (0xCC, 0xD4),  # get-response
    0xC5: (0xCD, 0xD5),  # set-response
    0xC7: (0xCF, 0xD7),  # action-response
    0x01: (0x21, None),  # initiate-request
    0x08: (0x28, None),  # initiate-response
    0x0E: (0x2E, None),  # confirmed-service-error
}
GLOBAL_TAGS: dict[int, int] = {g: p for p, (g, _) in _SERVICE_TAGS.items()}
DEDICATED_TAGS: dict[int, int] = {d: p for p, (_, d) in _SERVICE_TAGS.items() if d is not None}
GENERAL_GLO_CIPHERING = 0xDB
GENERAL_DED_CIPHERING = 0xDC
GENERAL_CIPHERING = 0xDD
GENERAL_SIGNING = 0xDF
CIPHERED_TAGS = frozenset(GLOBAL_TAGS) | frozenset(DEDICATED_TAGS) | {
    GENERAL_GLO_CIPHERING, GENERAL_DED_CIPHERING, GENERAL_CIPHERING, GENERAL_SIGNING}

_SPECIFIC_FORM: dict[int, CipheringForm] = {
    **{t: CipheringForm.GLOBAL for t in GLOBAL_TAGS},
    **{t: CipheringForm.DEDICATED for t in DEDICATED_TAGS},
}

_PLAIN_TAG: dict[int, int] = {**GLOBAL_TAGS, **DEDICATED_TAGS}

TAG_NAMES: dict[int, str] = {
    0x01: "initiate-request", 0x08: "initiate-response", 0x0E: "confirmed-service-error",
    0x21: "glo-initiate-request", 0x28: "glo-initiate-response",
    0x2E: "glo-confirmed-service-error",
    0x60: "aarq", 0x61: "aare", 0x62: "rlrq", 0x63: "rlre",
    0xC0: "get-request", 0xC1: "set-request", 0xC2: "event-notification-request",
    0xC3: "action-request", 0xC4: "get-response", 0xC5: "set-response",
    0xC7: "action-response",
    0xC8: "glo-get-request", 0xC9: "glo-set-request", 0xCA: "glo-event-notification-request",
    0xCB: "glo-action-request", 0xCC: "glo-get-response", 0xCD: "glo-set-response",
    0xCF: "glo-action-response",
    0xD0: "ded-get-request", 0xD1: "ded-set-request", 0xD2: "ded-event-notification-request",
    0xD3: "ded-action-request", 0xD4: "ded-get-response", 0xD5: "ded-set-response",
    0xD7: "ded-action-response", 0xD8: "exception-response",
    0xDB: "general-glo-ciphering", 0xDC: "general-ded-ciphering",
    0xDD: "general-ciphering", 0xDF: "general-signing",
}


def tag_name(tag: int) -> str:
    return TAG_NAMES.get(tag, f"unknown-0x{tag:02X}")


def decode_length(data: bytes, offset: int) -> tuple[int, int]:
    if offset >= len(data):
        raise ApduFormatError(f"truncated APDU: length expected at offset {offset}")
    first = data[offset]
    if first < 0x80:
        return first, offset + 1
    size = first & 0x7F
    if size == 0 or size > 4:
        raise ApduFormatError(f"bad length encoding 0x{first:02X} at offset {offset}")
    end = offset + 1 + size
    if end > len(data):
        raise ApduFormatError(f"truncated APDU: {size}-byte length at offset {offset}")
    return int.from_bytes(data[offset + 1:end], "big"), end


class CipheredApdu(NamedTuple):
    """The framing of a ciphered APDU, before any cryptography.

    (A named tuple rather than a dataclass: it is built once per APDU on the hot path.)
    """

    tag: int
    form: CipheringForm
    security_control: SecurityControl
    invocation_counter: int
    payload: bytes
    system_title: bytes | None = None

    @property
    def plain_tag(self) -> int | None:
        """Tag of the protected service (service-specific forms only)."""
        if self.form is CipheringForm.GLOBAL:
            return GLOBAL_TAGS[self.tag]
        if self.form is CipheringForm.DEDICATED:
            return DEDICATED_TAGS[self.tag]
        return None


def is_ciphered(apdu: bytes) -> bool:
    return bool(apdu) and apdu[0] in CIPHERED_TAGS


def specific_start(apdu: bytes) -> int:
    """Offset of the security control byte in a service-specific ciphered APDU whose 1-, 2-
    or 3-byte BER length covers exactly the rest and holds at least SC and counter; 0 for
    any other framing (:func:`parse_ciphered` then reads or refuses it). The tag byte is the
    caller's to check. The one in-place framing reader of the hot paths (parser, bound
    cipher, fleet ingest)."""
    size = len(apdu)
    if size < 7:
        return 0
    first = apdu[1]
    if first < 0x80:
        start, length = 2, first
    elif first == 0x81:
        start, length = 3, apdu[2]
    elif first == 0x82:
        start, length = 4, apdu[2] << 8 | apdu[3]
    else:
        return 0
    return start if length == size - start and length >= 5 else 0


def parse_ciphered(apdu: bytes) -> CipheredApdu:
    """Split a ciphered APDU into its fields. Raises :class:`ApduFormatError`."""
    if not apdu:
        raise ApduFormatError("empty APDU")
    tag = apdu[0]
    system_title: bytes | None = None
    offset = 1
    # fast path: service-specific form whose 1-, 2- or 3-byte length covers the rest
    if tag in _SPECIFIC_FORM:
        start = specific_start(apdu)
        if start:
            return CipheredApdu(tag, _SPECIFIC_FORM[tag], _SC_TABLE[apdu[start]],
                                int.from_bytes(apdu[start + 1:start + 5], "big"),
                                apdu[start + 5:], None)
    if tag in GLOBAL_TAGS:
        form = CipheringForm.GLOBAL
    elif tag in DEDICATED_TAGS:
        form = CipheringForm.DEDICATED
    elif tag in (GENERAL_GLO_CIPHERING, GENERAL_DED_CIPHERING):
        form = CipheringForm.GENERAL_GLO if tag == GENERAL_GLO_CIPHERING else CipheringForm.GENERAL_DED
        st_len, offset = decode_length(apdu, offset)
        if st_len != 8:
            raise ApduFormatError(f"system title must be 8 bytes, the APDU says {st_len}")
        if offset + 8 > len(apdu):
            raise ApduFormatError("truncated APDU: system title cut short")
        system_title = apdu[offset:offset + 8]
        offset += 8
    elif tag in (GENERAL_CIPHERING, GENERAL_SIGNING):
        # they carry their own header (and a signature): see metercert.security.general
        raise ApduFormatError(f"{tag_name(tag)} (0x{tag:02X}) is not a service-ciphered APDU: "
                              "open it with metercert.security.general")
    else:
        raise ApduFormatError(f"0x{tag:02X} ({tag_name(tag)}) is not a ciphered APDU tag")
    length, offset = decode_length(apdu, offset)
    if length < 5:
        raise ApduFormatError(f"ciphered content of {length} bytes cannot hold SC and counter")
    end = offset + length
    if end > len(apdu):
        raise ApduFormatError(
            f"truncated APDU: length says {length} bytes, {len(apdu) - offset} present")
    if end != len(apdu):
        raise ApduFormatError(f"{len(apdu) - end} trailing bytes after the ciphered content")
    sc = SecurityControl.from_byte(apdu[offset])
    ic = int.from_bytes(apdu[offset + 1:offset + 5], "big")
    return CipheredApdu(tag, form, sc, ic, apdu[offset + 5:end], system_title)


def _secret(key: Key | bytes | None, what: str, size: int) -> bytes:
    if key is None:
        raise InvalidKey(f"no {what} available")
    secret = key if type(key) is bytes else key.secret if isinstance(key, Key) else bytes(key)
    if len(secret) != size:
        raise InvalidKey(f"{what} is {len(secret) * 8} bits, the security suite needs {size * 8}")
    return secret


_KEY_SIZE = {n: spec.key_bytes for n, spec in SUITES.items()}


def _key_size(sc: SecurityControl) -> int:
    try:
        return _KEY_SIZE[sc.suite]
    except KeyError:
        raise ApduFormatError(f"security suite {sc.suite} is not defined") from None


def protect(
    plaintext: bytes,
    *,
    security_control: SecurityControl,
    system_title: bytes,
    invocation_counter: int,
    encryption_key: Key | bytes | None,
    authentication_key: Key | bytes | None,
    form: CipheringForm = CipheringForm.GLOBAL,
    key_size: int | None = None,
) -> bytes:
    """Protect one plaintext xDLMS APDU and return the ciphered APDU.

    ``key_size`` (bytes) overrides the size the security suite calls for: a test client
    uses it to claim another suite in the security control byte while ciphering with the
    keys it has, as a downgrade attempt against a meter that ignores the suite would.
    """
    if not plaintext:
        raise ApduFormatError("empty APDU")
    if len(system_title) != 8:
        raise InvalidKey(f"system title must be 8 bytes, got {len(system_title)}")
    if not 0 <= invocation_counter <= 0xFFFFFFFF:
        raise ApduFormatError(f"invocation counter {invocation_counter} does not fit in 32 bits")
    sc = security_control
    if sc.compressed:
        raise ApduFormatError("compression is not supported")
    if form is CipheringForm.GLOBAL or form is CipheringForm.DEDICATED:
        pair = _SERVICE_TAGS.get(plaintext[0])
        tag = None if pair is None else pair[1] if form is CipheringForm.DEDICATED else pair[0]
        if tag is None:
            raise ApduFormatError(
                f"{tag_name(plaintext[0])} has no {form.value} service-specific ciphered form")
    else:
        tag = GENERAL_GLO_CIPHERING if form is CipheringForm.GENERAL_GLO else GENERAL_DED_CIPHERING
    sc_byte = sc.byte
    nonce = system_title + invocation_counter.to_bytes(4, "big")
    size = _key_size(sc) if key_size is None else key_size
    ek = _secret(encryption_key, "encryption key", size) if sc.protected else None
    aad = (bytes((sc_byte,)) + _secret(authentication_key, "authentication key", size)
           if sc.authenticated else b"")
    payload = _gcm.protect_payload(sc.authenticated, sc.encrypted, ek, nonce, plaintext, aad)
    content_len = encode_length(5 + len(payload))
    head = bytes((tag,))
    if tag >= GENERAL_GLO_CIPHERING:
        head += b"\x08" + system_title
    return head + content_len + bytes((sc_byte,)) + nonce[8:] + payload


class Unprotected(NamedTuple):
    """A verified (or, for unauthenticated modes, merely decrypted) APDU."""

    plaintext: bytes
    tag: int
    form: CipheringForm
    security_control: SecurityControl
    invocation_counter: int
    system_title: bytes
    authenticated: bool


def unprotect_parsed(
    parsed: CipheredApdu,
    *,
    encryption_key: Key | bytes | None,
    authentication_key: Key | bytes | None,
    system_title: bytes | None = None,
    key_size: int | None = None,
) -> Unprotected:
    """Verify and decipher a parsed ciphered APDU (``key_size``: as for :func:`protect`)."""
    title = parsed.system_title if parsed.system_title is not None else system_title
    if title is None or len(title) != 8:
        raise ApduFormatError(
            "the sender's system title is needed to unprotect a service-specific ciphered APDU")
    sc = parsed.security_control
    if sc.compressed:
        raise ApduFormatError("compression is not supported")
    nonce = title + parsed.invocation_counter.to_bytes(4, "big")
    size = _key_size(sc) if key_size is None else key_size
    payload = parsed.payload
    for key in (encryption_key, authentication_key if sc.authenticated else None):
        if key is not None and len(key) != size:
            # the APDU names a suite our keys cannot serve: unverifiable, like any forgery
            raise AuthenticationFailed()
    ek = _secret(encryption_key, "encryption key", size) if sc.protected else None
    aad = (bytes((sc.byte,)) + _secret(authentication_key, "authentication key", size)
           if sc.authenticated else b"")
    expected_tag = parsed.plain_tag
    if ek is not None and _NATIVE is not None and type(title) is bytes:
        # the bound cipher of these secrets (cached) on the OpenSSL helper: the same checks,
        # the outer tag's included, in one GCM pass
        plaintext = _cached_cipher(ek, aad[1:] if sc.authenticated else None, title, title,
                                   sc.byte, size)._open(sc.byte, nonce, payload, expected_tag)
    else:
        plaintext = _gcm.unprotect_payload(sc.authenticated, sc.encrypted, ek, nonce, payload,
                                           aad)
        if expected_tag is not None and plaintext[:1] != bytes((expected_tag,)):
            # The outer tag is not covered by the tag: a receiver must check that it
            # matches the protected service, or a glo-get could be relabelled glo-set.
            raise AuthenticationFailed()
    return Unprotected(plaintext, parsed.tag, parsed.form, sc, parsed.invocation_counter, title,
                       sc.authenticated)


def unprotect(
    apdu: bytes,
    *,
    encryption_key: Key | bytes | None,
    authentication_key: Key | bytes | None,
    system_title: bytes | None = None,
) -> Unprotected:
    """Verify and decrypt a ciphered APDU.

    ``system_title`` is the sender's (needed for service-specific forms; the
    general forms carry it). Any verification failure raises the one
    :class:`AuthenticationFailed`.
    """
    return unprotect_parsed(parse_ciphered(apdu), encryption_key=encryption_key,
                            authentication_key=authentication_key, system_title=system_title)


def select_encryption_key(keys: KeySet, parsed: CipheredApdu,
                          dedicated_key: Key | bytes | None = None) -> Key | bytes | None:
    """The key a receiver uses for ``parsed``: dedicated, broadcast (GBEK) or unicast (GUEK)."""
    if parsed.form.dedicated:
        return dedicated_key
    return keys.gbek if parsed.security_control.broadcast else keys.guek


_DEFAULT_SC = SecurityControl(0)  # suite 0, authenticated and encrypted


_NATIVE_ABI = 1  # the interface of _gcm_native.c this module calls (its ABI_VERSION)


def _load_native() -> tuple[object | None, str]:
    """The OpenSSL helper (``_gcm_native.c``) and why it is or is not used."""
    if os.environ.get("METERCERT_PURE_PYTHON") == "1":
        return None, "METERCERT_PURE_PYTHON=1: pure-Python path forced"
    try:
        _gcm_native = importlib.import_module("metercert.security._gcm_native")
    except ImportError as exc:
        return None, f"native AES-GCM helper not built ({exc}): pure-Python path"
    abi = getattr(_gcm_native, "ABI_VERSION", None)
    if abi != _NATIVE_ABI:
        return None, (f"native AES-GCM helper is stale (interface {abi}, this code needs "
                      f"{_NATIVE_ABI}; run the pip install again): pure-Python path")
    return _gcm_native, f"native AES-GCM helper on {_gcm_native.OPENSSL_VERSION}"


_NATIVE, NATIVE_STATUS = _load_native()
#: True when ApduCipher runs on the OpenSSL helper by default (see ``NATIVE_STATUS``)
NATIVE = _NATIVE is not None
# outer service-specific tag -> plain tag, for the helper's in-place framing
_PLAIN_TAG_TABLE = bytes(_PLAIN_TAG.get(t, 0) for t in range(256))


@lru_cache(maxsize=1024)
def _heads(form: CipheringForm, own_title: bytes) -> dict[int, bytes]:
    """Plaintext service tag -> the bytes a ciphered APDU of ``form`` starts with (shared:
    never modified)."""
    if form is CipheringForm.GLOBAL:
        return {p: bytes((g,)) for p, (g, _) in _SERVICE_TAGS.items()}
    if form is CipheringForm.DEDICATED:
        return {p: bytes((d,)) for p, (_, d) in _SERVICE_TAGS.items() if d is not None}
    tag = GENERAL_GLO_CIPHERING if form is CipheringForm.GENERAL_GLO else GENERAL_DED_CIPHERING
    head = bytes((tag, 8)) + own_title
    return {t: head for t in range(256)}


@lru_cache(maxsize=1024)
def _heads_table(form: CipheringForm, own_title: bytes) -> tuple[bytes | None, ...]:
    heads = _heads(form, own_title)
    return tuple(heads.get(t) for t in range(256))


def _length(n: int) -> bytes:
    """BER length, the three forms an APDU of up to 64 KiB needs, without a call chain."""
    if n < 0x80:
        return bytes((n,))
    if n < 0x100:
        return bytes((0x81, n))
    if n < 0x10000:
        return bytes((0x82, n >> 8, n & 0xFF))
    return encode_length(n)


class ApduCipher:
    """Protect and unprotect for one association and key: what client, meter and ingest call.

    Binds the keys, the system titles and the security control once, so that per APDU
    only the GCM call(s) and the framing remain: the per-call key checks, key-size lookups
    and AAD building of :func:`protect` / :func:`unprotect_parsed` are paid at construction.
    Output and checks are those of the free functions (the property tests compare them
    byte for byte). Every protection mode and ciphered form is served; ``key_size`` is the
    downgrade override of :func:`protect`. Framing is read in place for every BER length
    form a service-specific APDU uses (1, 2 and 3 bytes); other framings go through
    :func:`parse_ciphered`.

    With the OpenSSL helper (``_gcm_native``, built by ``pip install``; ``native=False`` or
    ``METERCERT_PURE_PYTHON=1`` turn it off) one C call protects or unprotects an APDU of
    those framings in the bound security control: GCM with the key schedule set once and a
    12-byte tag checked by OpenSSL in one pass. Everything else, and every refusal message
    other than :class:`AuthenticationFailed`, is the pure-Python path's.
    """

    __slots__ = ("_aad", "_authenticated", "_encrypt", "_encrypted", "_form", "_heads",
                 "_native", "_own", "_peer", "_sc1", "_sc_byte", "_sealed", "security_control")

    def __init__(self, *, encryption_key: Key | bytes | None,
                 authentication_key: Key | bytes | None, own_title: bytes,
                 peer_title: bytes | None = None,
                 security_control: SecurityControl = _DEFAULT_SC,
                 form: CipheringForm = CipheringForm.GLOBAL, key_size: int | None = None,
                 native: bool | None = None) -> None:
        sc = security_control
        if sc.compressed:
            raise ApduFormatError("compression is not supported")
        size = _key_size(sc) if key_size is None else key_size
        if len(own_title) != 8 or (peer_title is not None and len(peer_title) != 8):
            raise InvalidKey("system titles must be 8 bytes")
        self.security_control = sc
        self._sc_byte = sc.byte
        self._sc1 = bytes((self._sc_byte,))
        self._authenticated = sc.authenticated
        self._encrypted = sc.encrypted
        self._own, self._peer = own_title, peer_title
        self._aad = (self._sc1 + _secret(authentication_key, "authentication key", size)
                     if sc.authenticated else b"")
        ek = _secret(encryption_key, "encryption key", size) if sc.protected else None
        self._encrypt = _gcm._aead(ek).encrypt if ek is not None else None
        self._form = form
        self._heads = _heads(form, own_title)
        self._sealed = sc.authenticated and sc.encrypted
        self._native = None
        if ek is not None and (NATIVE if native is None else native):
            if _NATIVE is None:
                raise RuntimeError(NATIVE_STATUS)
            self._native = _NATIVE.Gcm(  # type: ignore[attr-defined]
                ek, self._aad, own_title, peer_title, self._sc_byte,
                (1 if sc.authenticated else 0) | (2 if sc.encrypted else 0),
                _heads_table(form, own_title), _PLAIN_TAG_TABLE, AuthenticationFailed)

    @property
    def native(self) -> bool:
        """Whether this cipher runs on the OpenSSL helper."""
        return self._native is not None

    def __repr__(self) -> str:
        return (f"ApduCipher(SC 0x{self._sc_byte:02X}, {self._form.value}, "
                f"{'native' if self._native is not None else 'pure Python'})")

    def protect(self, plaintext: bytes, invocation_counter: int,
                form: CipheringForm | None = None) -> bytes:
        """The ciphered APDU; ``form`` overrides the bound one (a meter answers in the form
        it was asked in)."""
        native = self._native
        if native is not None:
            if form is None or form is self._form:
                out = native.protect(plaintext, invocation_counter)
            else:
                head = _heads(form, self._own).get(plaintext[0]) if plaintext else None
                out = None if head is None else native.protect(plaintext, invocation_counter,
                                                               head)
            if out is not None:
                return out  # type: ignore[no-any-return]
        head = ((self._heads if form is None else _heads(form, self._own)).get(plaintext[0])
                if plaintext else None)
        if head is None:
            raise ApduFormatError(f"{tag_name(plaintext[0]) if plaintext else 'empty APDU'} "
                                  "has no ciphered form here")
        try:
            ic = invocation_counter.to_bytes(4, "big")  # OverflowError: negative or > 32 bits
        except OverflowError:
            raise ApduFormatError(f"invocation counter {invocation_counter} does not fit in "
                                  "32 bits") from None
        encrypt = self._encrypt
        if self._sealed:  # authenticated and encrypted: the common case first
            payload = encrypt(self._own + ic, plaintext, self._aad)[:-4]
        elif encrypt is None:
            payload = plaintext
        elif self._authenticated:
            payload = plaintext + encrypt(self._own + ic, b"", self._aad + plaintext)[:12]
        else:
            payload = encrypt(self._own + ic, plaintext, None)[:-16]
        n = len(payload) + 5
        return b"".join((head, bytes((n,)) if n < 0x80 else _length(n), self._sc1, ic, payload))

    def unprotect(self, apdu: bytes) -> bytes:
        """Plaintext of a verified APDU from the peer; raises AuthenticationFailed otherwise."""
        native = self._native
        if native is not None:
            plaintext = native.unprotect(apdu)
            if plaintext is not None:
                return plaintext  # type: ignore[no-any-return]
        size = len(apdu)
        if size > 21 and self._sealed and self._peer is not None:
            # service-specific form, authenticated and encrypted: framing read in place,
            # whichever of the three length forms it uses
            start = specific_start(apdu)
            plain_tag = _PLAIN_TAG.get(apdu[0])
            if start and plain_tag is not None and apdu[start] == self._sc_byte:
                nonce = self._peer + apdu[start + 1:start + 5]
                payload = apdu[start + 5:]
                encrypt = self._encrypt
                # pass 1 recovers the plaintext (CTR), pass 2 recomputes the tag
                plaintext = encrypt(nonce, payload, None)[:-28]
                if (hmac.compare_digest(encrypt(nonce, plaintext, self._aad)[-16:-4],
                                        payload[-12:])
                        and plaintext[0] == plain_tag):
                    return plaintext
                raise AuthenticationFailed()
        if size > 6 and apdu[0] in _PLAIN_TAG and self._peer is None:
            raise ApduFormatError("the peer's system title is needed for service-specific forms")
        return self.open_parsed(parse_ciphered(apdu))

    def unprotect_counted(self, apdu: bytes) -> tuple[bytes, int] | None:
        """(plaintext, invocation counter) of a service-specific APDU from the peer in this
        cipher's security control, framed with a 1-, 2- or 3-byte length; None for any other
        APDU (another SC byte, tag or framing: the caller's full path then parses, checks and
        refuses it). Raises :class:`AuthenticationFailed` if such an APDU does not verify.

        The fast path of a receiver that has checked this security control once: the meter
        and the client hold the cipher of the SC they accept."""
        native = self._native
        if native is not None:
            return native.unprotect_counted(apdu)  # type: ignore[no-any-return]
        if not apdu or self._peer is None or self._encrypt is None:
            return None
        plain_tag = _PLAIN_TAG.get(apdu[0])
        if plain_tag is None:
            return None
        start = specific_start(apdu)
        if not start or apdu[start] != self._sc_byte:
            return None
        counter = apdu[start + 1:start + 5]
        return (self._open(self._sc_byte, self._peer + counter, apdu[start + 5:], plain_tag),
                int.from_bytes(counter, "big"))

    def open_parsed(self, parsed: CipheredApdu) -> bytes:
        """As :meth:`unprotect`, for an APDU the caller has parsed (and checked) already."""
        title = parsed.system_title or self._peer
        if title is None:
            raise ApduFormatError("the peer's system title is needed for service-specific forms")
        return self._open(parsed.security_control.byte,
                          title + parsed.invocation_counter.to_bytes(4, "big"), parsed.payload,
                          parsed.plain_tag)

    def _open(self, sc_byte: int, nonce: bytes, payload: bytes, plain_tag: int | None) -> bytes:
        if sc_byte != self._sc_byte:
            raise AuthenticationFailed()  # protected otherwise than this association
        native = self._native
        if native is not None and type(payload) is bytes and type(nonce) is bytes:
            return native.open(nonce, payload,  # type: ignore[no-any-return]
                               -1 if plain_tag is None else plain_tag)
        encrypt = self._encrypt
        if encrypt is None:
            plaintext = payload
        elif self._authenticated:
            if len(payload) < 12:
                raise AuthenticationFailed()
            if self._encrypted:
                # pass 1 recovers the plaintext (CTR), pass 2 recomputes the tag
                plaintext = encrypt(nonce, payload[:-12], None)[:-16]
                if not hmac.compare_digest(encrypt(nonce, plaintext, self._aad)[-16:-4],
                                           payload[-12:]):
                    raise AuthenticationFailed()
            else:
                plaintext = payload[:-12]
                if not hmac.compare_digest(encrypt(nonce, b"", self._aad + plaintext)[:12],
                                           payload[-12:]):
                    raise AuthenticationFailed()
        else:
            plaintext = encrypt(nonce, payload, None)[:-16]
        if plain_tag is not None and plaintext[:1] != bytes((plain_tag,)):
            # the outer tag is not covered by the GCM tag: it must match the service
            raise AuthenticationFailed()
        return plaintext


@lru_cache(maxsize=8192)
def _cached_cipher(ek: bytes | None, ak: bytes | None, own: bytes, peer: bytes | None,
                   sc_byte: int, key_size: int | None) -> ApduCipher:
    return ApduCipher(encryption_key=ek, authentication_key=ak, own_title=own, peer_title=peer,
                      security_control=_SC_TABLE[sc_byte], key_size=key_size)


def cipher_for(encryption_key: Key | bytes | None, authentication_key: Key | bytes | None,
               own_title: bytes, peer_title: bytes | None, security_control: SecurityControl,
               key_size: int | None = None) -> ApduCipher:
    """The bound cipher for these keys and titles, made once and reused (an association's
    keys can change under it by a key transfer: looking it up per APDU by the secrets keeps
    it right without invalidation)."""
    ek = encryption_key.secret if isinstance(encryption_key, Key) else encryption_key
    ak = authentication_key.secret if isinstance(authentication_key, Key) else authentication_key
    return _cached_cipher(ek, ak, own_title, peer_title, security_control.byte, key_size)


_UNSET = object()


class HeldCiphers:
    """An association's bound ciphers for its fast path, (receive, send), held by the session
    rather than looked up per APDU, and re-made whenever anything they bind changes.

    ``get(stamp)`` returns the pair ``make()`` built, calling ``make`` again only when
    ``stamp`` differs from the last one. The caller puts in the stamp every object ``make``
    reads (keys, system titles, settings or profile); ``Key`` and ``bytes`` are immutable and a
    key transfer installs new ``Key`` objects, so a new key is a new stamp. (Comparing a
    tuple of the same objects is an identity check per element: a few tens of nanoseconds,
    where :func:`cipher_for`'s lookup by the secrets costs a few hundred.)
    """

    __slots__ = ("_make", "_pair", "_stamp")

    def __init__(self, make: Callable[[], tuple[ApduCipher | None, ApduCipher | None]]) -> None:
        self._make = make
        self._stamp: object = _UNSET
        self._pair: tuple[ApduCipher | None, ApduCipher | None] = (None, None)

    def get(self, stamp: tuple[object, ...]) -> tuple[ApduCipher | None, ApduCipher | None]:
        if stamp == self._stamp:
            return self._pair
        self._pair = self._make()
        self._stamp = stamp
        return self._pair
