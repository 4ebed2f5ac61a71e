"""APDU protection throughput: metercert vs gurux-dlms, dlms-cosem and raw AESGCM.

Each implementation protects and unprotects a glo-get-response style APDU with
authenticated encryption (SC 0x30, suite 0) at 64 and 1024 bytes, in the same
process and run. Prints APDUs/s, microseconds per APDU and ratios against raw
``cryptography`` AESGCM (whose decrypt verifies a full 16-byte tag: DLMS's 12-byte
tag needs a second GCM pass, see security/_gcm.py).

    python benchmarks/apdu_throughput.py [--seconds 0.5]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from metercert.security import ApduCipher, CipheringForm, SecurityControl, protect, unprotect

EK = bytes.fromhex("000102030405060708090A0B0C0D0E0F")
AK = bytes.fromhex("D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF")
TITLE = bytes.fromhex("4D4D4D0000BC614E")
SC = SecurityControl(0)


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second, measured over about ``seconds``."""
    n, batch = 0, 1
    start = time.perf_counter()
    while True:
        for _ in range(batch):
            fn()
        n += batch
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return n / elapsed
        batch = min(batch * 2, 20000)


def ours(plain: bytes) -> tuple[Callable[[], object], Callable[[], object]]:
    apdu = protect(plain, security_control=SC, system_title=TITLE, invocation_counter=1,
                   encryption_key=EK, authentication_key=AK, form=CipheringForm.GLOBAL)
    return (lambda: protect(plain, security_control=SC, system_title=TITLE, invocation_counter=1,
                            encryption_key=EK, authentication_key=AK),
            lambda: unprotect(apdu, encryption_key=EK, authentication_key=AK, system_title=TITLE))


def bound(plain: bytes) -> tuple[Callable[[], object], Callable[[], object]]:
    cipher = ApduCipher(encryption_key=EK, authentication_key=AK, own_title=TITLE,
                        peer_title=TITLE, security_control=SC)
    apdu = cipher.protect(plain, 1)
    return (lambda: cipher.protect(plain, 1), lambda: cipher.unprotect(apdu))


def raw(plain: bytes) -> tuple[Callable[[], object], Callable[[], object]]:
    aead = AESGCM(EK)
    nonce = TITLE + (1).to_bytes(4, "big")
    aad = b"\x30" + AK
    sealed = aead.encrypt(nonce, plain, aad)
    return (lambda: aead.encrypt(nonce, plain, aad), lambda: aead.decrypt(nonce, sealed, aad))


def gurux(plain: bytes) -> tuple[Callable[[], object], Callable[[], object]]:
    from gurux_dlms.AesGcmParameter import AesGcmParameter
    from gurux_dlms.enums import Security
    from gurux_dlms.GXByteBuffer import GXByteBuffer
    from gurux_dlms.GXDLMSChippering import GXDLMSChippering
    from gurux_dlms.GXDLMSSettings import GXDLMSSettings

    def enc() -> bytes:
        p = AesGcmParameter(0xCC, TITLE, EK, AK)
        p.security = Security.AUTHENTICATION_ENCRYPTION
        p.invocationCounter = 1
        return bytes(GXDLMSChippering.encryptAesGcm(p, plain))

    apdu = enc()
    settings = GXDLMSSettings(False, None)

    def dec() -> bytes:
        p = AesGcmParameter(0, TITLE, EK, AK)
        with contextlib.redirect_stdout(io.StringIO()):
            return bytes(GXDLMSChippering.decryptAesGcm(settings, p, GXByteBuffer(apdu)))

    return enc, dec


def dlms_cosem(plain: bytes) -> tuple[Callable[[], object], Callable[[], object]]:
    from dlms_cosem import security as s
    from dlms_cosem.protocol.xdlms.general_global_cipher import GeneralGlobalCipher

    sc = s.SecurityControlField(security_suite=0, authenticated=True, encrypted=True)

    def enc() -> bytes:
        ct = s.encrypt(sc, TITLE, 1, EK, plain, AK)
        return GeneralGlobalCipher(TITLE, sc, 1, ct).to_bytes()

    apdu = enc()

    def dec() -> bytes:
        g = GeneralGlobalCipher.from_bytes(apdu)
        return s.decrypt(g.security_control, g.system_title, g.invocation_counter, EK,
                         g.ciphered_text, AK)

    return enc, dec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.5, help="time per measurement")
    args = parser.parse_args()
    impls = {"raw AESGCM": raw, "metercert": ours, "mc ApduCipher": bound, "dlms-cosem": dlms_cosem, "gurux-dlms": gurux}
    print(f"{'size':>5} {'implementation':<14} {'protect/s':>12} {'us':>7} {'unprotect/s':>12} "
          f"{'us':>7}  {'vs raw (p/u)':>13}")
    for size in (64, 1024):
        plain = b"\xC4\x01\xC1\x00\x09" + os.urandom(size - 5)
        results: dict[str, tuple[float, float]] = {}
        for name, factory in impls.items():
            try:
                enc, dec = factory(plain)
            except ValueError as exc:  # dlms-cosem encodes lengths in one byte only
                print(f"{size:>5} {name:<14} cannot protect a {size}-byte APDU: {exc}")
                continue
            results[name] = (rate(enc, args.seconds), rate(dec, args.seconds))
        base = results["raw AESGCM"]
        for name, (p, u) in results.items():
            print(f"{size:>5} {name:<14} {p:>12,.0f} {1e6 / p:>7.2f} {u:>12,.0f} {1e6 / u:>7.2f}  "
                  f"{base[0] / p:>5.2f}x/{base[1] / u:>5.2f}x")
        m = results["mc ApduCipher"]
        for peer in ("gurux-dlms", "dlms-cosem"):
            if peer not in results:
                continue
            q = results[peer]
            print(f"{size:>5} metercert (ApduCipher) vs {peer}: protect {m[0] / q[0]:.1f}x faster, "
                  f"unprotect {m[1] / q[1]:.1f}x faster")


if __name__ == "__main__":
    main()
