"""APDU protection throughput: metercert's product path vs raw AESGCM, gurux-dlms, dlms-cosem.

Each implementation protects and unprotects a glo-get-response style APDU with
authenticated encryption (SC 0x30, suite 0) at 64 and 1024 bytes (1- and 3-byte BER
lengths), in the same process and run. The *product path* comes first, and it is the
reference meter's own code: a real ``MeterSession`` (on a stand-in meter object: keys,
titles, the conformant profile) asked for its held ciphers as it is per APDU
(``session._held_ciphers()``, meter/session.py), then ``send.protect(plain, ic)`` as
``_close_response`` does and ``receive.unprotect_counted(apdu)`` as ``_open_request`` does.
The client's per-APDU code is the same two calls (client/session.py ``protect_request`` and
``_open``). ``product`` runs on the OpenSSL helper (security/_gcm_native.c, what
``pip install`` builds); ``product pure-Py`` is the same session with the pure-Python
fallback (``METERCERT_PURE_PYTHON=1``: ``ApduCipher(native=False)``). ``full path`` is what
meter and client do for any other security control, form or framing: ``cipher_for`` lookup,
``parse_ciphered``, ``open_parsed``. The floor is one one-shot ``cryptography``
``AESGCM.encrypt`` of the same plaintext and AAD; in pure Python DLMS's 12-byte tag needs two
GCM passes to verify (security/_gcm.py), OpenSSL's GCM verifies it in one.

Implementations are interleaved: every round measures each of them for a short
slice, in a rotated order, so a busy machine slows all of them alike; a slice counts
its fastest batch of 100 calls. Prints the median microseconds per APDU, the median of the
per-round ratios to the floor, and the product paths' ratios in every round.

Then the general forms (suites 1/2): general-ciphering (0xDD, identified key, SC 0x31) against
the raw AESGCM call with the same AAD length, and general-signing (0xDF) against the raw
``cryptography`` ECDSA sign/verify of the same bytes (P-256/SHA-256, P-384/SHA-384); the
"cost" column is what the framing and checks add to the primitive, per APDU.

    python benchmarks/apdu_throughput.py [--rounds 9] [--slice 0.1] [--seconds 0.5]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import time
from collections.abc import Callable
from types import SimpleNamespace

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from metercert.meter.profile import load_profile
from metercert.meter.session import MeterSession
from metercert.security import (
    ApduCipher,
    CipheringForm,
    Key,
    SecurityControl,
    parse_ciphered,
    protect,
    protection,
    unprotect,
)
from metercert.security import general as gen
from metercert.security.protection import cipher_for

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


def _meter_session(native: bool) -> MeterSession:
    """A reference-meter session in an association with a client of title TITLE: the real
    MeterSession on a stand-in meter (what its cipher call sites read: keys, titles, the
    conformant profile's suite and policy)."""
    profile = load_profile("conformant")
    meter = SimpleNamespace(profile=profile, requires=profile.requires,
                            state=SimpleNamespace(system_title=TITLE))
    session = MeterSession(meter, 1)  # type: ignore[arg-type]
    session.secrets = SimpleNamespace(guek=Key(EK, "guek"), ak=Key(AK, "ak"))  # type: ignore[assignment]
    session.client_title = TITLE
    if not native:  # the fallback: the same session, ciphers without the OpenSSL helper
        suite = profile.security_suite
        session._held = protection.HeldCiphers(lambda: tuple(  # type: ignore[arg-type]
            ApduCipher(encryption_key=EK, authentication_key=AK, own_title=TITLE,
                       peer_title=TITLE, security_control=sc, native=False)
            for sc in (SecurityControl(suite), SecurityControl(suite, *profile.requires))))
    return session


def _product(plain: bytes, native: bool) -> tuple[Callable[[], object], Callable[[], object]]:
    session = _meter_session(native)
    receive, send = session._held_ciphers()
    assert receive is not None and send is not None and receive.native == native
    apdu = send.protect(plain, 1)
    assert receive.unprotect_counted(apdu) == (plain, 1)
    held = session._held_ciphers
    return (lambda: held()[1].protect(plain, 1),  # type: ignore[union-attr]
            lambda: held()[0].unprotect_counted(apdu))  # type: ignore[union-attr]


def product(plain: bytes) -> tuple[Callable[[], object], Callable[[], object]]:
    """What meter (and client) run per APDU, on the OpenSSL helper."""
    if not protection.NATIVE:
        raise RuntimeError(protection.NATIVE_STATUS)
    return _product(plain, True)


def product_pure(plain: bytes) -> tuple[Callable[[], object], Callable[[], object]]:
    """The same, on the pure-Python fallback."""
    return _product(plain, False)


def full_path(plain: bytes) -> tuple[Callable[[], object], Callable[[], object]]:
    """Any other SC, form or framing: cipher_for lookup, parse_ciphered, open_parsed."""
    apdu = cipher_for(EK, AK, TITLE, TITLE, SC).protect(plain, 1)

    def open_request() -> bytes:
        return cipher_for(EK, AK, TITLE, TITLE, SC).open_parsed(parse_ciphered(apdu))

    return (lambda: cipher_for(EK, AK, TITLE, TITLE, SC).protect(plain, 1), open_request)


def floor(plain: bytes) -> tuple[Callable[[], object], Callable[[], object]]:
    """The goal's floor, for both directions: one one-shot AESGCM encrypt."""
    aead = AESGCM(EK)
    nonce = TITLE + (1).to_bytes(4, "big")
    aad = b"\x30" + AK
    call = lambda: aead.encrypt(nonce, plain, aad)
    return call, call


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


RECIPIENT = bytes.fromhex("4D4D4D0000000001")
HEADER = gen.GeneralHeader((1).to_bytes(8, "big"), TITLE, RECIPIENT)


def general_pairs(plain: bytes) -> dict[str, tuple[Callable[[], object], Callable[[], object]]]:
    """name -> (protect, unprotect) for the general forms and the primitives under them."""
    sc = SecurityControl(1)
    apdu = gen.protect_general(plain, header=HEADER, security_control=sc, invocation_counter=1,
                               encryption_key=EK, authentication_key=AK,
                               key_info=gen.IdentifiedKey(0))
    aead = AESGCM(EK)
    nonce = TITLE + (1).to_bytes(4, "big")
    aad = gen.general_ciphering_aad(sc, AK, HEADER.to_bytes())
    sealed = aead.encrypt(nonce, plain, aad)
    out = {
        "raw AESGCM": (lambda: aead.encrypt(nonce, plain, aad),
                       lambda: aead.decrypt(nonce, sealed, aad)),
        "0xDD": (lambda: gen.protect_general(plain, header=HEADER, security_control=sc,
                                             invocation_counter=1, encryption_key=EK,
                                             authentication_key=AK,
                                             key_info=gen.IdentifiedKey(0)),
                 lambda: gen.unprotect_general(apdu, encryption_key=EK, authentication_key=AK)),
    }
    for suite, curve, digest in ((1, ec.SECP256R1(), hashes.SHA256()),
                                 (2, ec.SECP384R1(), hashes.SHA384())):
        key = ec.generate_private_key(curve)
        pub = key.public_key()
        signed = gen.sign_general(plain, header=HEADER, signing_key=key, suite=suite)
        data = gen.parse_general_signing(signed).signed
        der = key.sign(data, ec.ECDSA(digest))
        out[f"raw ECDSA s{suite}"] = (
            lambda key=key, data=data, digest=digest: key.sign(data, ec.ECDSA(digest)),
            lambda pub=pub, data=data, der=der, digest=digest: pub.verify(der, data,
                                                                          ec.ECDSA(digest)))
        out[f"0xDF suite {suite}"] = (
            lambda key=key, suite=suite: gen.sign_general(plain, header=HEADER, signing_key=key,
                                                          suite=suite),
            lambda pub=pub, signed=signed, suite=suite: gen.verify_general(
                signed, public_key=pub, suite=suite))
    return out


def general_table(seconds: float) -> None:
    print(f"\n{'size':>5} {'general form':<16} {'protect/s':>12} {'us':>8} {'open/s':>12} "
          f"{'us':>8}  {'cost over primitive (p/u)':>26}")
    base_of = {"0xDD": "raw AESGCM", "0xDF suite 1": "raw ECDSA s1", "0xDF suite 2": "raw ECDSA s2"}
    for size in (64, 1024):
        plain = b"\xC4\x01\xC1\x00\x09" + os.urandom(size - 5)
        results = {name: (rate(p, seconds), rate(u, seconds))
                   for name, (p, u) in general_pairs(plain).items()}
        for name, (p, u) in results.items():
            line = f"{size:>5} {name:<16} {p:>12,.0f} {1e6 / p:>8.2f} {u:>12,.0f} {1e6 / u:>8.2f}"
            if name in base_of:
                bp, bu = results[base_of[name]]
                line += (f"  {1e6 / p - 1e6 / bp:>+7.2f} us ({bp / p:.2f}x) /"
                         f" {1e6 / u - 1e6 / bu:>+7.2f} us ({bu / u:.2f}x)")
            print(line)


def per_call(fn: Callable[[], object], seconds: float) -> float:
    """Microseconds per call: the fastest batch of 100 calls within about ``seconds`` (a
    batch that another process pre-empted says nothing about the code)."""
    best = float("inf")
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        for _ in range(100):
            fn()
        t1 = time.perf_counter()
        best = min(best, (t1 - t0) / 100)
        if t1 - start >= seconds:
            return best * 1e6


IMPLEMENTATIONS = {
    "floor": floor,                 # one AESGCM.encrypt, the goal's unit
    "product": product,             # meter session: held cipher, protect / unprotect_counted
    "product pure-Py": product_pure,  # the same, pure-Python fallback
    "full path": full_path,         # cipher_for + protect / parse_ciphered + open_parsed
    "free functions": ours,         # protect() / unprotect()
    "AESGCM decrypt": raw,          # full 16-byte tag: not what DLMS can use
    "dlms-cosem": dlms_cosem,
    "gurux-dlms": gurux,
}


def interleaved(size: int, rounds: int, slice_s: float) -> None:
    plain = b"\xC4\x01\xC1\x00\x09" + os.urandom(size - 5)
    pairs: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {}
    for name, factory in IMPLEMENTATIONS.items():
        try:
            pairs[name] = factory(plain)
        except ValueError as exc:  # dlms-cosem encodes lengths in one byte only
            print(f"{size:>5} {name:<15} cannot protect a {size}-byte APDU: {exc}")
        except RuntimeError as exc:  # the OpenSSL helper is not built
            print(f"{size:>5} {name:<15} not measured: {exc}")
    names = list(pairs)
    us: dict[str, tuple[list[float], list[float]]] = {n: ([], []) for n in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            enc, dec = pairs[name]
            us[name][0].append(per_call(enc, slice_s))
            us[name][1].append(per_call(dec, slice_s))
    base_p, base_u = us["floor"]

    def ratios(values: list[float], base: list[float]) -> list[float]:
        return [v / b for v, b in zip(values, base)]

    print(f"{'size':>5} {'implementation':<15} {'protect us':>10} {'x floor':>8} "
          f"{'unprotect us':>12} {'x floor':>8}   (medians of {rounds} interleaved rounds)")
    for name in names:
        p, u = us[name]
        print(f"{size:>5} {name:<15} {statistics.median(p):>10.2f} "
              f"{statistics.median(ratios(p, base_p)):>8.2f} {statistics.median(u):>12.2f} "
              f"{statistics.median(ratios(u, base_u)):>8.2f}")
    for product in ("product", "product pure-Py"):
        if product not in us:
            continue
        pp, pu = (ratios(v, b) for v, b in zip(us[product], (base_p, base_u)))
        print(f"{size:>5} {product}/floor per round: protect "
              + " ".join(f"{x:.2f}" for x in pp) + " | unprotect "
              + " ".join(f"{x:.2f}" for x in pu))
        print(f"{size:>5} {product} goals: protect <= 2.00x -> {statistics.median(pp):.2f}x, "
              f"unprotect <= 2.50x -> {statistics.median(pu):.2f}x")
    main_path = "product" if "product" in us else "product pure-Py"
    for peer in ("gurux-dlms", "dlms-cosem"):
        if peer in us:
            q, m = us[peer], us[main_path]
            print(f"{size:>5} {main_path} vs {peer}: protect "
                  f"{statistics.median(ratios(q[0], m[0])):.1f}x faster, unprotect "
                  f"{statistics.median(ratios(q[1], m[1])):.1f}x faster")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9, help="interleaved rounds (default 9)")
    parser.add_argument("--slice", type=float, default=0.1,
                        help="seconds per implementation and direction in a round")
    parser.add_argument("--seconds", type=float, default=0.5,
                        help="time per measurement of the general-form table")
    args = parser.parse_args()
    print(f"ApduCipher: {protection.NATIVE_STATUS}")
    for size in (64, 1024):
        interleaved(size, args.rounds, args.slice)
    general_table(args.seconds)


if __name__ == "__main__":
    main()
