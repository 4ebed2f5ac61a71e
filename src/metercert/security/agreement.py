"""Elliptic-curve key agreement for suites 1 and 2, and the KDF that turns its secret into a key.

What the public stacks agree on (vectors in tests/security/test_agreement_vectors.py):

* ``Z`` is the x-coordinate of the ECDH point (what ``cryptography``'s ``exchange`` returns).
* The KDF is the single-step concatenation KDF of NIST SP 800-56A with the suite's hash
  (SHA-256 for suite 1, SHA-384 for suite 2): ``H(counter || Z || OtherInfo)``, taken to
  the key length of the suite (``cryptography``'s ``ConcatKDFHash``).
* ``OtherInfo = AlgorithmID || PartyUInfo || PartyVInfo``, fixed-length fields with no
  length prefixes: AlgorithmID is the value of the OID 2.16.756.5.8.3.N (N = 0 AES-GCM-128,
  1 AES-GCM-256, 2 AES-wrap-128, 3 AES-wrap-256), PartyUInfo the system title of party U
  (the originator), PartyVInfo the system title of party V. For the Static Unified Model
  party U also gives a nonce, the transaction-id; it travels as ``len || transaction-id``
  between the two titles. See :func:`other_info`, the one place this layout is written.
* Public keys travel as ``x || y`` (no 0x04 prefix); signatures as raw ``r || s``.

Schemes (party U sends, party V receives):

* Ephemeral Unified Model C(2e, 0s): both sides bring an ephemeral pair, each signs its
  ephemeral public key (Security Setup key_agreement, where the signed data is
  ``key_id || x || y``). Both derive the same key.
* One-Pass Diffie-Hellman C(1e, 1s): U brings an ephemeral pair, V its static
  key-agreement key; U sends ``x || y || signature(x || y)`` as the agreed-key
  key-ciphered-data of a general-ciphering APDU. V must verify that signature with U's
  signing key before using the point: an unverified ephemeral key is a man in the middle.
* Static Unified Model C(0e, 2s): both static keys; the key-ciphered-data is empty and the
  transaction-id is the nonce that makes the key differ per exchange.

Keys come back as :class:`Key` objects; private keys stay ``cryptography`` objects. Nothing
here prints or returns secret bytes except as a ``Key``.
"""

from __future__ import annotations

import enum

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.concatkdf import ConcatKDFHash

from metercert.security.errors import AuthenticationFailed, InvalidKey
from metercert.security.hls import ecdsa_sign_raw, ecdsa_verify_raw
from metercert.security.keys import Key

_OID_PREFIX = bytes.fromhex("608574050803")  # 2.16.756.5.8.3, the DLMS UA algorithm arc


class AlgorithmId(enum.IntEnum):
    """The last arc of the cryptographic algorithm OID 2.16.756.5.8.3.N."""

    AES_GCM_128 = 0
    AES_GCM_256 = 1
    AES_WRAP_128 = 2
    AES_WRAP_256 = 3

    @property
    def value_bytes(self) -> bytes:
        """The OID's content octets, as they enter OtherInfo (no tag, no length)."""
        return _OID_PREFIX + bytes((self.value,))


class KeyAgreementScheme(enum.IntEnum):
    """Scheme numbers of Security Setup key_agreement and of agreed-key key-parameters."""

    EPHEMERAL_UNIFIED_MODEL = 0  # C(2e, 0s): key_agreement method only
    ONE_PASS_DIFFIE_HELLMAN = 1  # C(1e, 1s)
    STATIC_UNIFIED_MODEL = 2  # C(0e, 2s)


_CURVES: dict[int, tuple[type[ec.EllipticCurve], hashes.HashAlgorithm, int]] = {
    1: (ec.SECP256R1, hashes.SHA256(), 16),
    2: (ec.SECP384R1, hashes.SHA384(), 32),
}


def _suite(suite: int) -> tuple[type[ec.EllipticCurve], hashes.HashAlgorithm, int]:
    try:
        return _CURVES[suite]
    except KeyError:
        raise InvalidKey(
            f"security suite {suite} has no key agreement (suites 1 and 2 do)") from None


def curve_for(suite: int) -> ec.EllipticCurve:
    return _suite(suite)[0]()


def coordinate_bytes(suite: int) -> int:
    return (curve_for(suite).key_size + 7) // 8


def gcm_algorithm(suite: int) -> AlgorithmId:
    return AlgorithmId.AES_GCM_256 if _suite(suite)[2] == 32 else AlgorithmId.AES_GCM_128


def _check_curve(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey, suite: int,
                 what: str) -> None:
    if not isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        raise InvalidKey(f"{what} must be an elliptic-curve key")
    if not isinstance(key.curve, _suite(suite)[0]):
        raise InvalidKey(f"{what} is on {key.curve.name}; suite {suite} uses "
                         f"{_suite(suite)[0].name}")


def public_key_bytes(key: ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) -> bytes:
    """``x || y`` as DLMS carries a public key."""
    pub = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    size = (pub.curve.key_size + 7) // 8
    numbers = pub.public_numbers()
    return numbers.x.to_bytes(size, "big") + numbers.y.to_bytes(size, "big")


def public_key_from_bytes(data: bytes, suite: int,
                          what: str = "public key") -> ec.EllipticCurvePublicKey:
    """A point from ``x || y`` on the suite's curve; a point off the curve is refused."""
    size = coordinate_bytes(suite)
    if len(data) != 2 * size:
        raise InvalidKey(f"{what}: {len(data)} bytes, suite {suite} needs {2 * size} (x || y)")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(curve_for(suite), b"\x04" + bytes(data))
    except ValueError:
        raise InvalidKey(f"{what}: not a point on {curve_for(suite).name}") from None


def sign(private_key: ec.EllipticCurvePrivateKey, data: bytes, suite: int) -> bytes:
    """Raw ``r || s`` ECDSA signature with the suite's curve and hash."""
    _check_curve(private_key, suite, "signing key")
    return ecdsa_sign_raw(private_key, data)


def verify(public_key: ec.EllipticCurvePublicKey, data: bytes, signature: bytes,
           suite: int) -> None:
    """Raise :class:`AuthenticationFailed` unless ``signature`` is the suite's ECDSA over ``data``.

    A key of the other suite's curve (a P-256 signer on a suite-2 exchange) fails the same way:
    a receiver must not fall back to whatever curve the signer happens to use.
    """
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or \
            not isinstance(public_key.curve, _suite(suite)[0]):
        raise AuthenticationFailed()
    ecdsa_verify_raw(public_key, signature, data)


def other_info(algorithm: AlgorithmId, party_u: bytes, party_v: bytes,
               transaction_id: bytes | None = None) -> bytes:
    """OtherInfo of the KDF (the one place its layout is written; see the module text).

    ``transaction_id`` is party U's nonce in the Static Unified Model; gurux (Java, .NET)
    puts it, length-prefixed, between the two system titles.
    """
    for title, name in ((party_u, "party U system title"), (party_v, "party V system title")):
        if len(title) != 8:
            raise InvalidKey(f"{name} must be 8 bytes, got {len(title)}")
    nonce = b"" if transaction_id is None else bytes((len(transaction_id),)) + transaction_id
    return algorithm.value_bytes + party_u + nonce + party_v


def kdf(shared_secret: bytes, *, suite: int, party_u: bytes, party_v: bytes,
        algorithm: AlgorithmId | None = None, transaction_id: bytes | None = None,
        role: str = "agreed key") -> Key:
    """NIST SP 800-56A concatenation KDF as DLMS uses it; returns the suite's AES key."""
    _, hash_algorithm, size = _suite(suite)
    alg = gcm_algorithm(suite) if algorithm is None else algorithm
    info = other_info(alg, party_u, party_v, transaction_id)
    return Key(ConcatKDFHash(hash_algorithm, size, info).derive(shared_secret), role)


def shared_secret(own: ec.EllipticCurvePrivateKey, peer: ec.EllipticCurvePublicKey,
                  suite: int) -> bytes:
    """``Z``: the ECDH x-coordinate, both keys on the suite's curve."""
    _check_curve(own, suite, "own key-agreement key")
    _check_curve(peer, suite, "peer key-agreement key")
    return own.exchange(ec.ECDH(), peer)


def generate_key_pair(suite: int) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(curve_for(suite))


# --- C(2e, 0s): Security Setup key_agreement -------------------------------------------

def key_agreement_signed_data(key_id: int, ephemeral_public: bytes) -> bytes:
    """What each party signs in key_agreement: ``key_id || x || y`` (Green Book Table C.1)."""
    if not 0 <= key_id <= 255:
        raise InvalidKey(f"key id {key_id} does not fit in one byte")
    return bytes((key_id,)) + ephemeral_public


def ephemeral_unified_model(own_ephemeral: ec.EllipticCurvePrivateKey,
                            peer_ephemeral: ec.EllipticCurvePublicKey, *, suite: int,
                            party_u: bytes, party_v: bytes, role: str = "agreed key") -> Key:
    """C(2e, 0s): the key both sides derive once each has verified the other's signature."""
    return kdf(shared_secret(own_ephemeral, peer_ephemeral, suite), suite=suite,
               party_u=party_u, party_v=party_v, role=role)


# --- C(1e, 1s): agreed-key in general-ciphering ----------------------------------------

def one_pass_originate(*, suite: int, recipient_static: ec.EllipticCurvePublicKey,
                       signing_key: ec.EllipticCurvePrivateKey, party_u: bytes, party_v: bytes,
                       ephemeral: ec.EllipticCurvePrivateKey | None = None) -> tuple[Key, bytes]:
    """Party U: a fresh ephemeral pair (unless given), the key, and the key-ciphered-data."""
    eph = generate_key_pair(suite) if ephemeral is None else ephemeral
    point = public_key_bytes(eph)
    key = kdf(shared_secret(eph, recipient_static, suite), suite=suite, party_u=party_u,
              party_v=party_v)
    return key, point + sign(signing_key, point, suite)


def one_pass_receive(*, suite: int, own_static: ec.EllipticCurvePrivateKey,
                     key_ciphered_data: bytes, originator_signing_key: ec.EllipticCurvePublicKey,
                     party_u: bytes, party_v: bytes) -> Key:
    """Party V: verify U's signature on its ephemeral point, then derive the key.

    Any fault in the key-ciphered-data (length, point, signature) is
    :class:`AuthenticationFailed`: the point is not known to come from U.
    """
    size = 2 * coordinate_bytes(suite)
    if len(key_ciphered_data) != 2 * size:
        raise AuthenticationFailed()
    point, signature = key_ciphered_data[:size], key_ciphered_data[size:]
    verify(originator_signing_key, point, signature, suite)
    try:
        peer = public_key_from_bytes(point, suite, "ephemeral public key")
    except InvalidKey:
        raise AuthenticationFailed() from None
    return kdf(shared_secret(own_static, peer, suite), suite=suite, party_u=party_u,
               party_v=party_v)


# --- C(0e, 2s) ------------------------------------------------------------------------------

def static_unified_model(own_static: ec.EllipticCurvePrivateKey,
                         peer_static: ec.EllipticCurvePublicKey, *, suite: int, party_u: bytes,
                         party_v: bytes, transaction_id: bytes) -> Key:
    """C(0e, 2s): both static keys; the transaction-id is U's nonce, so keys differ per exchange."""
    if not transaction_id:
        raise InvalidKey("the Static Unified Model needs a transaction-id as party U's nonce")
    return kdf(shared_secret(own_static, peer_static, suite), suite=suite, party_u=party_u,
               party_v=party_v, transaction_id=transaction_id)


def signed_ephemeral_key(key_id: int, ephemeral: ec.EllipticCurvePrivateKey,
                         signing_key: ec.EllipticCurvePrivateKey, suite: int) -> bytes:
    """key-data of one key_agreement element: ``x || y || signature(key_id || x || y)``."""
    _check_curve(ephemeral, suite, "ephemeral key")
    point = public_key_bytes(ephemeral)
    return point + sign(signing_key, key_agreement_signed_data(key_id, point), suite)


def verify_signed_ephemeral_key(key_id: int, key_data: bytes,
                                signer: ec.EllipticCurvePublicKey,
                                suite: int) -> ec.EllipticCurvePublicKey:
    """The peer's ephemeral public key once its signature verifies; AuthenticationFailed else.

    An unsigned key, a key signed by anyone but ``signer``, a key of the other suite's size:
    all refused the same way, before any Diffie-Hellman.
    """
    size = 2 * coordinate_bytes(suite)
    if len(key_data) != 2 * size:
        raise AuthenticationFailed()
    point, signature = key_data[:size], key_data[size:]
    verify(signer, key_agreement_signed_data(key_id, point), signature, suite)
    try:
        return public_key_from_bytes(point, suite, "ephemeral public key")
    except InvalidKey:
        raise AuthenticationFailed() from None
