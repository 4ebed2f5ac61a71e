"""general-ciphering (0xDD) and general-signing (0xDF): the self-describing protected APDUs.

Both start with the same five A-XDR octet strings, the *general header*::

    transaction-id, originator-system-title, recipient-system-title, date-time,
    other-information

general-ciphering then carries ``key-info`` (OPTIONAL CHOICE: identified-key [0] with a
one-byte key id, 0 GUEK / 1 GBEK; wrapped-key [1] with a one-byte KEK id and the RFC 3394
wrapped key; agreed-key [2] with key-parameters = the scheme as a one-byte octet string and
the key-ciphered-data) and the ciphered content ``SC || IC(4) || payload``; general-signing
carries ``content`` and ``signature`` (raw ``r || s``), both octet strings.

IV: originator-system-title || IC, as for every other form.

What is authenticated, and what is signed, is written in exactly two functions below,
:func:`general_ciphering_aad` and :func:`signed_data`. The stacks disagree on the AAD; the
choice, with who does what, is in docs/ciphering.md:

* gurux (Python, Java): for suites 1/2, SC || AK || transaction-id || originator title ||
  recipient title || date-time || other-information, each field as length and value (gurux
  writes the date-time and other-information as empty whatever the APDU carries, and uses the
  invocation counter as the transaction-id). For suite 0 it falls back to SC || AK.
* The text of the Green Book figure for general-ciphering, as quoted in public notes:
  "the length and the value of each field is included in the AAD", for every suite.
* dlms-cosem (parser only; its decryption path calls the general-glo routine, SC || AK)
  and spodes-rs (framing only, key-info absent) do not apply a header AAD.

metercert follows the Green Book text and gurux: the header, exactly as it is on the wire,
enters the AAD after SC || AK, whatever the suite. A receiver takes the header as the slice of
the received APDU, never a re-encoding, so that a non-minimal length cannot make sender and
receiver disagree.

The signature covers the header and the content (length and value of each), not the tag and
not the signature field.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import NamedTuple

from cryptography.hazmat.primitives.asymmetric import ec

from metercert.cosem.reader import encode_length
from metercert.security import _gcm
from metercert.security import agreement as _agreement
from metercert.security.errors import ApduFormatError, AuthenticationFailed, InvalidKey
from metercert.security.keys import Key, KeyId, KeySet
from metercert.security.keywrap import unwrap_key
from metercert.security.protection import _secret, decode_length
from metercert.security.suites import SUITES, SecurityControl

GENERAL_CIPHERING = 0xDD
GENERAL_SIGNING = 0xDF


class KeyInfoChoice(enum.IntEnum):
    IDENTIFIED_KEY = 0
    WRAPPED_KEY = 1
    AGREED_KEY = 2


class IdentifiedKey(NamedTuple):
    """The encryption key is a global key both sides hold: 0 GUEK, 1 GBEK."""

    key_id: int = 0


class WrappedKey(NamedTuple):
    """The encryption key travels wrapped (RFC 3394) under the KEK (kek id 0 = master key)."""

    key_ciphered_data: bytes
    kek_id: int = 0


class AgreedKey(NamedTuple):
    """The encryption key is agreed: key-parameters 0x01 C(1e, 1s), 0x02 C(0e, 2s)."""

    key_parameters: bytes
    key_ciphered_data: bytes = b""

    @property
    def scheme(self) -> _agreement.KeyAgreementScheme | None:
        if len(self.key_parameters) != 1:
            return None
        try:
            return _agreement.KeyAgreementScheme(self.key_parameters[0])
        except ValueError:
            return None


KeyInfo = IdentifiedKey | WrappedKey | AgreedKey


def _read_octets(data: bytes, offset: int, what: str) -> tuple[bytes, int]:
    try:
        length, offset = decode_length(data, offset)
    except ApduFormatError as exc:
        raise ApduFormatError(f"{what}: {exc}") from None
    end = offset + length
    if end > len(data):
        raise ApduFormatError(f"{what}: length says {length} bytes, {len(data) - offset} present")
    return data[offset:end], end


def _octets(value: bytes) -> bytes:
    return encode_length(len(value)) + value


@dataclass(frozen=True)
class GeneralHeader:
    """The five fields general-ciphering and general-signing share."""

    transaction_id: bytes
    originator_system_title: bytes
    recipient_system_title: bytes = b""
    date_time: bytes = b""
    other_information: bytes = b""

    def __post_init__(self) -> None:
        if len(self.originator_system_title) != 8:
            raise InvalidKey("originator system title must be 8 bytes, got "
                             f"{len(self.originator_system_title)}")
        if len(self.recipient_system_title) not in (0, 8):
            raise InvalidKey("recipient system title must be 8 bytes (or empty for broadcast), "
                             f"got {len(self.recipient_system_title)}")
        if not self.transaction_id:
            raise ApduFormatError("transaction-id must not be empty")

    def to_bytes(self) -> bytes:
        return b"".join(_octets(v) for v in (self.transaction_id, self.originator_system_title,
                                              self.recipient_system_title, self.date_time,
                                              self.other_information))

    @classmethod
    def read(cls, data: bytes, offset: int) -> tuple[GeneralHeader, int]:
        values = []
        for what in ("transaction-id", "originator-system-title", "recipient-system-title",
                     "date-time", "other-information"):
            value, offset = _read_octets(data, offset, what)
            values.append(value)
        try:
            return cls(*values), offset
        except InvalidKey as exc:
            raise ApduFormatError(str(exc)) from None


# --- the two documented choices -------------------------------------------------------------

def general_ciphering_aad(security_control: SecurityControl, authentication_key: bytes,
                          header: bytes) -> bytes:
    """AAD of general-ciphering: SC || AK || header (wire bytes). See the module text."""
    return bytes((security_control.byte,)) + authentication_key + header


def signed_data(header: bytes, content: bytes) -> bytes:
    """What general-signing signs: the header and the content, length and value of each."""
    return header + _octets(content)


# --- key-info --------------------------------------------------------------------------------

def _encode_key_info(key_info: KeyInfo | None) -> bytes:
    if key_info is None:
        return b"\x00"
    if isinstance(key_info, IdentifiedKey):
        if key_info.key_id not in (0, 1):
            raise ApduFormatError(f"identified key id {key_info.key_id}: 0 (GUEK) or 1 (GBEK)")
        return bytes((1, KeyInfoChoice.IDENTIFIED_KEY, key_info.key_id))
    if isinstance(key_info, WrappedKey):
        if key_info.kek_id != 0:
            raise ApduFormatError(f"kek id {key_info.kek_id}: only 0 (master key) is defined")
        return bytes((1, KeyInfoChoice.WRAPPED_KEY, key_info.kek_id)) + _octets(
            key_info.key_ciphered_data)
    if isinstance(key_info, AgreedKey):
        return bytes((1, KeyInfoChoice.AGREED_KEY)) + _octets(key_info.key_parameters) + _octets(
            key_info.key_ciphered_data)
    raise ApduFormatError(f"unknown key-info {type(key_info).__name__}")


def _read_key_info(data: bytes, offset: int) -> tuple[KeyInfo | None, int]:
    if offset >= len(data):
        raise ApduFormatError("truncated APDU: key-info presence byte expected")
    present = data[offset]
    offset += 1
    if present == 0:
        return None, offset
    if present != 1:
        raise ApduFormatError(f"key-info presence byte 0x{present:02X} is neither 0 nor 1")
    if offset >= len(data):
        raise ApduFormatError("truncated APDU: key-info choice expected")
    choice = data[offset]
    offset += 1
    if choice in (KeyInfoChoice.IDENTIFIED_KEY, KeyInfoChoice.WRAPPED_KEY):
        if offset >= len(data):
            raise ApduFormatError("truncated APDU: key id expected")
        key_id = data[offset]
        offset += 1
        if choice == KeyInfoChoice.IDENTIFIED_KEY:
            if key_id not in (0, 1):
                raise ApduFormatError(f"identified key id {key_id}: 0 (GUEK) or 1 (GBEK)")
            return IdentifiedKey(key_id), offset
        if key_id != 0:
            raise ApduFormatError(f"kek id {key_id}: only 0 (master key) is defined")
        wrapped, offset = _read_octets(data, offset, "wrapped key-ciphered-data")
        return WrappedKey(wrapped, key_id), offset
    if choice == KeyInfoChoice.AGREED_KEY:
        params, offset = _read_octets(data, offset, "agreed-key key-parameters")
        ciphered, offset = _read_octets(data, offset, "agreed-key key-ciphered-data")
        key = AgreedKey(params, ciphered)
        if key.scheme not in (_agreement.KeyAgreementScheme.ONE_PASS_DIFFIE_HELLMAN,
                              _agreement.KeyAgreementScheme.STATIC_UNIFIED_MODEL):
            raise ApduFormatError(f"agreed-key key-parameters {params.hex().upper()}: "
                                  "01 (C(1e, 1s)) or 02 (C(0e, 2s))")
        return key, offset
    raise ApduFormatError(f"key-info choice {choice} is not 0, 1 or 2")


# --- general-ciphering ------------------------------------------------------------------------

@dataclass(frozen=True)
class GeneralCiphering:
    """A framed general-ciphering APDU, before any cryptography."""

    header: GeneralHeader
    key_info: KeyInfo | None
    security_control: SecurityControl
    invocation_counter: int
    payload: bytes = field(repr=False)
    header_bytes: bytes = field(default=b"", repr=False, compare=False)  # as received

    @property
    def tag(self) -> int:
        return GENERAL_CIPHERING

    @property
    def wire_header(self) -> bytes:
        return self.header_bytes or self.header.to_bytes()

    def to_bytes(self) -> bytes:
        content = bytes((self.security_control.byte,)) + self.invocation_counter.to_bytes(
            4, "big") + self.payload
        return (bytes((GENERAL_CIPHERING,)) + self.wire_header + _encode_key_info(self.key_info)
                + _octets(content))


def parse_general_ciphering(apdu: bytes) -> GeneralCiphering:
    """Split a general-ciphering APDU into its fields. Raises :class:`ApduFormatError`."""
    if not apdu or apdu[0] != GENERAL_CIPHERING:
        raise ApduFormatError("not a general-ciphering APDU (tag 0xDD expected)")
    header, offset = GeneralHeader.read(apdu, 1)
    header_bytes = apdu[1:offset]
    key_info, offset = _read_key_info(apdu, offset)
    content, end = _read_octets(apdu, offset, "ciphered-content")
    if end != len(apdu):
        raise ApduFormatError(f"{len(apdu) - end} trailing bytes after the ciphered content")
    if len(content) < 5:
        raise ApduFormatError(
            f"ciphered content of {len(content)} bytes cannot hold SC and counter")
    return GeneralCiphering(header, key_info, SecurityControl.from_byte(content[0]),
                            int.from_bytes(content[1:5], "big"), content[5:], header_bytes)


def _size(sc: SecurityControl, key_size: int | None) -> int:
    if key_size is not None:
        return key_size
    spec = SUITES.get(sc.suite)
    if spec is None:
        raise ApduFormatError(f"security suite {sc.suite} is not defined")
    return spec.key_bytes


def protect_general(
    plaintext: bytes,
    *,
    header: GeneralHeader,
    security_control: SecurityControl,
    invocation_counter: int,
    encryption_key: Key | bytes | None,
    authentication_key: Key | bytes | None,
    key_info: KeyInfo | None = None,
    key_size: int | None = None,
) -> bytes:
    """Build a general-ciphering APDU around ``plaintext`` (any xDLMS APDU, also a 0xDF)."""
    if not plaintext:
        raise ApduFormatError("empty APDU")
    if not 0 <= invocation_counter <= 0xFFFFFFFF:
        raise ApduFormatError(f"invocation counter {invocation_counter} does not fit in 32 bits")
    sc = security_control
    if sc.compressed:
        raise ApduFormatError("compression is not supported")
    if sc.broadcast:
        raise ApduFormatError(
            "the key-set bit must be 0 in general-ciphering (key-info names the key)")
    size = _size(sc, key_size)
    head = header.to_bytes()
    nonce = _gcm.iv(header.originator_system_title, invocation_counter)
    ek = _secret(encryption_key, "encryption key", size) if sc.protected else None
    aad = (general_ciphering_aad(sc, _secret(authentication_key, "authentication key", size),
                                 head) if sc.authenticated else b"")
    payload = _gcm.protect_payload(sc.authenticated, sc.encrypted, ek, nonce, plaintext, aad)
    return GeneralCiphering(header, key_info, sc, invocation_counter, payload, head).to_bytes()


class OpenedGeneral(NamedTuple):
    plaintext: bytes
    apdu: GeneralCiphering
    authenticated: bool


def unprotect_general(
    apdu: bytes | GeneralCiphering,
    *,
    encryption_key: Key | bytes | None,
    authentication_key: Key | bytes | None,
    key_size: int | None = None,
) -> OpenedGeneral:
    """Verify and decipher a general-ciphering APDU; every failure is AuthenticationFailed."""
    parsed = parse_general_ciphering(apdu) if isinstance(apdu, (bytes, bytearray)) else apdu
    sc = parsed.security_control
    if sc.compressed:
        raise ApduFormatError("compression is not supported")
    size = _size(sc, key_size)
    for key in (encryption_key, authentication_key if sc.authenticated else None):
        if key is not None and len(key) != size:
            raise AuthenticationFailed()
    nonce = _gcm.iv(parsed.header.originator_system_title, parsed.invocation_counter)
    ek = _secret(encryption_key, "encryption key", size) if sc.protected else None
    aad = (general_ciphering_aad(sc, _secret(authentication_key, "authentication key", size),
                                 parsed.wire_header) if sc.authenticated else b"")
    plaintext = _gcm.unprotect_payload(sc.authenticated, sc.encrypted, ek, nonce,
                                       parsed.payload, aad)
    return OpenedGeneral(plaintext, parsed, sc.authenticated)


@dataclass(frozen=True, repr=False)
class AgreementKeys:
    """The asymmetric keys a receiver may need to resolve an agreed key (never printed)."""

    own_agreement_key: ec.EllipticCurvePrivateKey | None = None  # static, party V
    peer_signing_key: ec.EllipticCurvePublicKey | None = None  # party U's, for C(1e, 1s)
    peer_agreement_key: ec.EllipticCurvePublicKey | None = None  # party U's static, C(0e, 2s)

    def __repr__(self) -> str:
        return "AgreementKeys(<redacted>)"


def receiver_key(parsed: GeneralCiphering, *, keys: KeySet | None = None,
                 agreement: AgreementKeys | None = None,
                 default_key: Key | None = None) -> Key | None:
    """The encryption key the recipient uses, from key-info.

    identified-key: the GUEK or GBEK of ``keys``; wrapped-key: unwrapped with the KEK (a
    failed unwrap is KeyUnwrapFailed); agreed-key: derived with the scheme it names, the
    originator as party U; no key-info: ``default_key`` (or the GUEK).
    """
    info = parsed.key_info
    ks = keys or KeySet()
    suite = parsed.security_control.suite
    if info is None:
        return default_key if default_key is not None else ks.guek
    if isinstance(info, IdentifiedKey):
        return ks.key(KeyId.GBEK if info.key_id == 1 else KeyId.GUEK)
    if isinstance(info, WrappedKey):
        if ks.kek is None:
            raise InvalidKey("the APDU carries a wrapped key: the KEK is needed")
        return unwrap_key(ks.kek, info.key_ciphered_data, "wrapped key")
    agr = agreement or AgreementKeys()
    if agr.own_agreement_key is None:
        raise InvalidKey("the APDU carries an agreed key: our key-agreement private key is needed")
    u = parsed.header.originator_system_title
    v = parsed.header.recipient_system_title
    if info.scheme is _agreement.KeyAgreementScheme.ONE_PASS_DIFFIE_HELLMAN:
        if agr.peer_signing_key is None:
            raise InvalidKey("C(1e, 1s): the originator's signing public key is needed")
        return _agreement.one_pass_receive(
            suite=suite, own_static=agr.own_agreement_key, key_ciphered_data=info.key_ciphered_data,
            originator_signing_key=agr.peer_signing_key, party_u=u, party_v=v)
    if agr.peer_agreement_key is None:
        raise InvalidKey("C(0e, 2s): the originator's key-agreement public key is needed")
    return _agreement.static_unified_model(
        agr.own_agreement_key, agr.peer_agreement_key, suite=suite, party_u=u, party_v=v,
        transaction_id=parsed.header.transaction_id)


# --- general-signing --------------------------------------------------------------------------

@dataclass(frozen=True)
class GeneralSigning:
    header: GeneralHeader
    content: bytes = field(repr=False)
    signature: bytes = field(repr=False)
    header_bytes: bytes = field(default=b"", repr=False, compare=False)

    @property
    def tag(self) -> int:
        return GENERAL_SIGNING

    @property
    def wire_header(self) -> bytes:
        return self.header_bytes or self.header.to_bytes()

    @property
    def signed(self) -> bytes:
        return signed_data(self.wire_header, self.content)

    def to_bytes(self) -> bytes:
        return bytes((GENERAL_SIGNING,)) + self.signed + _octets(self.signature)


def parse_general_signing(apdu: bytes) -> GeneralSigning:
    """Split a general-signing APDU. Raises :class:`ApduFormatError`."""
    if not apdu or apdu[0] != GENERAL_SIGNING:
        raise ApduFormatError("not a general-signing APDU (tag 0xDF expected)")
    header, offset = GeneralHeader.read(apdu, 1)
    header_bytes = apdu[1:offset]
    content, offset = _read_octets(apdu, offset, "content")
    signature, end = _read_octets(apdu, offset, "signature")
    if end != len(apdu):
        raise ApduFormatError(f"{len(apdu) - end} trailing bytes after the signature")
    if not content:
        raise ApduFormatError("general-signing content is empty")
    return GeneralSigning(header, content, signature, header_bytes)


def sign_general(content: bytes, *, header: GeneralHeader, signing_key: ec.EllipticCurvePrivateKey,
                 suite: int) -> bytes:
    """Build a general-signing APDU: ECDSA of the suite (P-256/SHA-256, P-384/SHA-384)."""
    if not content:
        raise ApduFormatError("empty APDU")
    head = header.to_bytes()
    signature = _agreement.sign(signing_key, signed_data(head, content), suite)
    return GeneralSigning(header, content, signature, head).to_bytes()


def verify_general(apdu: bytes | GeneralSigning, *, public_key: ec.EllipticCurvePublicKey,
                   suite: int) -> GeneralSigning:
    """Check the signature with the originator's key; AuthenticationFailed on any mismatch."""
    parsed = parse_general_signing(apdu) if isinstance(apdu, (bytes, bytearray)) else apdu
    _agreement.verify(public_key, parsed.signed, parsed.signature, suite)
    return parsed


# --- the receiver's recipe ---------------------------------------------------------------------

def open_general(apdu: bytes | GeneralCiphering, *, keys: KeySet | None = None,
                 agreement: AgreementKeys | None = None, default_key: Key | None = None,
                 require_authenticated: bool = True,
                 expected_suite: int | None = None) -> OpenedGeneral:
    """Resolve the key from key-info, verify and decipher; refuse what is not authenticated.

    key-info is outside the AAD, so a receiver must take the key it names (a relabelled key
    id then fails the tag) rather than a key it assumed. Unauthenticated content (SC without
    the A bit) is refused unless ``require_authenticated`` is False (a viewer). A receiver
    configured for one suite passes ``expected_suite``: an APDU claiming another (a downgrade)
    is refused like any forgery.
    """
    parsed = parse_general_ciphering(apdu) if isinstance(apdu, (bytes, bytearray)) else apdu
    if expected_suite is not None and not _same_suite(parsed.security_control.suite,
                                                      expected_suite):
        raise AuthenticationFailed()
    key = receiver_key(parsed, keys=keys, agreement=agreement, default_key=default_key)
    opened = unprotect_general(parsed, encryption_key=key,
                               authentication_key=keys.ak if keys is not None else None)
    if require_authenticated and not opened.authenticated:
        raise AuthenticationFailed()
    return opened


class Layer(NamedTuple):
    """One protection layer removed by :func:`open_nested`."""

    tag: int
    header: GeneralHeader
    security_control: SecurityControl | None  # general-ciphering only
    invocation_counter: int | None
    key_info: KeyInfo | None
    verified: bool


def suite_of_key(key: ec.EllipticCurvePublicKey) -> int:
    """The suite whose curve ``key`` is on (1 for P-256, 2 for P-384)."""
    if isinstance(key.curve, ec.SECP256R1):
        return 1
    if isinstance(key.curve, ec.SECP384R1):
        return 2
    raise InvalidKey(f"curve {key.curve.name} is not used by DLMS suites 1 or 2")


def open_nested(apdu: bytes, *, keys: KeySet | None = None,
                agreement: AgreementKeys | None = None,
                signers: dict[bytes, ec.EllipticCurvePublicKey] | None = None,
                suite: int | None = None, max_depth: int = 4) -> tuple[bytes, list[Layer]]:
    """Remove general-ciphering and general-signing layers, outermost first.

    ``signers`` maps an originator system title to its signing public key. A general-signing
    layer is verified with the suite of the enclosing general-ciphering layer, else ``suite``,
    else the suite of the signer's curve. Any failure raises; the layers are all verified.
    """
    layers: list[Layer] = []
    data = apdu
    current_suite = suite
    for _ in range(max_depth):
        if not data or data[0] not in (GENERAL_CIPHERING, GENERAL_SIGNING):
            return data, layers
        if data[0] == GENERAL_CIPHERING:
            opened = open_general(data, keys=keys, agreement=agreement)
            gc = opened.apdu
            layers.append(Layer(GENERAL_CIPHERING, gc.header, gc.security_control,
                                gc.invocation_counter, gc.key_info, True))
            current_suite = gc.security_control.suite
            data = opened.plaintext
            continue
        gs = parse_general_signing(data)
        key = (signers or {}).get(gs.header.originator_system_title)
        if key is None:
            raise InvalidKey("general-signing from "
                             f"{gs.header.originator_system_title.hex().upper()}: "
                             "no public key for that originator")
        verify_general(gs, public_key=key,
                       suite=current_suite if current_suite else suite_of_key(key))
        layers.append(Layer(GENERAL_SIGNING, gs.header, None, None, None, True))
        data = gs.content
    raise ApduFormatError(f"more than {max_depth} nested protection layers")


def _same_suite(claimed: int, configured: int) -> bool:
    """A suite number (public framing, not a secret: a plain comparison is right here)."""
    return int(claimed) == int(configured)
