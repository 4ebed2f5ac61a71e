"""DLMS/COSEM security: suites, the security control byte, protect/unprotect of every
ciphered APDU form, HLS mechanisms, AES key wrap, key sets and invocation counters.

Sans-IO except for the counter store, which owns its files. ``protect`` and
``unprotect`` are the safe recipes; ``_gcm`` is the raw primitive layer.
"""

from metercert.security.counters import InvocationCounterStore, ReplayGuard
from metercert.security.errors import (
    ApduFormatError,
    AuthenticationFailed,
    CounterExhausted,
    CounterStoreError,
    InvalidKey,
    KeyUnwrapFailed,
    MechanismRefused,
    SecurityError,
)
from metercert.security.hls import HlsCredentials, Mechanism
from metercert.security.keys import (
    Key,
    KeyId,
    KeySet,
    keyset_from_env,
    load_key_file,
    load_keyset,
    parse_hex,
    parse_system_title,
    write_key_file,
)
from metercert.security.keywrap import unwrap_key, wrap_key
from metercert.security.protection import (
    ApduCipher,
    CipheredApdu,
    CipheringForm,
    Unprotected,
    is_ciphered,
    parse_ciphered,
    protect,
    select_encryption_key,
    tag_name,
    unprotect,
    unprotect_parsed,
)
from metercert.security.suites import SUITES, SecurityControl, SecuritySuite, suite

__all__ = [
    "SUITES", "ApduCipher", "ApduFormatError", "AuthenticationFailed", "CipheredApdu", "CipheringForm",
    "CounterExhausted", "CounterStoreError", "HlsCredentials", "InvalidKey",
    "InvocationCounterStore", "Key", "KeyId", "KeySet", "KeyUnwrapFailed", "Mechanism",
    "MechanismRefused", "ReplayGuard", "SecurityControl", "SecurityError", "SecuritySuite",
    "Unprotected", "is_ciphered", "keyset_from_env", "load_key_file", "load_keyset",
    "parse_ciphered", "parse_hex", "parse_system_title", "protect", "select_encryption_key",
    "suite", "tag_name", "unprotect", "unprotect_parsed", "unwrap_key", "wrap_key",
    "write_key_file",
]
