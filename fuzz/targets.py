"""Fuzz targets: one function per parser or state machine that meets untrusted bytes.

Every target states its contract: which exceptions are an *answer* (the code
noticed bad input and said so with a :class:`metercert.errors.MetercertError`,
or the meter asked to close the connection) and which are a *finding*. Anything
else escaping a target is a defect: the runner (atheris/libFuzzer, or the
hypothesis fallback) records the input as a crash.

Targets are built lazily by :func:`build` so that the runner can wrap the imports
in atheris' coverage instrumentation first. Each builder returns a callable
taking the raw fuzz input. Nothing here opens a socket; file-based targets write
into a private temporary folder (on /dev/shm when available, so fsync is cheap).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

FuzzFn = Callable[[bytes], None]

#: Fixed keys for the unprotect target (Green Book example keys, public test data).
EK = bytes.fromhex("000102030405060708090A0B0C0D0E0F")
AK = bytes.fromhex("D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF")
TITLE = bytes.fromhex("4D4D4D0000BC614E")


class ContractViolation(AssertionError):
    """A target returned something its contract forbids (not an exception it raised)."""


def _scratch(name: str) -> Path:
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix=f"metercert-fuzz-{name}-", dir=base))


# --- codec ------------------------------------------------------------------------------

def _cosem_apdu() -> FuzzFn:
    from metercert.cosem import decode_apdu
    from metercert.errors import MetercertError

    def run(data: bytes) -> None:
        try:
            apdu = decode_apdu(data)
        except MetercertError:
            return
        # what decodes must re-encode without raising anything unexpected
        to_bytes = getattr(apdu, "to_bytes", None)
        if to_bytes is not None:
            try:
                to_bytes()
            except MetercertError:
                pass
    return run


def _axdr_data() -> FuzzFn:
    from metercert.cosem import decode_data, encode_data
    from metercert.errors import MetercertError

    def run(data: bytes) -> None:
        try:
            value, end = decode_data(data)
        except MetercertError:
            return
        if not 0 < end <= len(data):
            raise ContractViolation(f"decode_data ended at {end} of {len(data)}")
        # what decodes must encode, and that encoding must be a fixed point
        # (compared as bytes: a NaN float is not equal to itself)
        again = encode_data(value)
        value2, end2 = decode_data(again)
        if end2 != len(again) or encode_data(value2) != again:
            raise ContractViolation("encode(decode(x)) is not stable under decode/encode")
    return run


# --- security ---------------------------------------------------------------------------

def _unprotect() -> FuzzFn:
    from metercert.errors import MetercertError
    from metercert.security import unprotect

    def run(data: bytes) -> None:
        for title in (TITLE, None):
            try:
                out = unprotect(data, encryption_key=EK, authentication_key=AK, system_title=title)
            except MetercertError:
                continue
            if not isinstance(out.plaintext, bytes):
                raise ContractViolation("unprotect returned non-bytes plaintext")
    return run


def _apdu_cipher() -> FuzzFn:
    """Differential: the hot-path :class:`ApduCipher` must agree with ``protect``/``unprotect``."""
    from metercert.errors import MetercertError
    from metercert.security import ApduCipher, CipheringForm, SecurityControl, protect, unprotect

    ciphers = []
    for sc_byte in (0x30, 0x10):
        for form in (CipheringForm.GLOBAL, CipheringForm.GENERAL_GLO):
            sc = SecurityControl.from_byte(sc_byte)
            ciphers.append((sc, form, ApduCipher(encryption_key=EK, authentication_key=AK,
                                                 own_title=TITLE, peer_title=TITLE,
                                                 security_control=sc, form=form)))

    def run(data: bytes) -> None:
        for sc, form, cipher in ciphers:
            try:
                fast: bytes | None = cipher.unprotect(data)
            except MetercertError:
                fast = None
            try:
                ref = unprotect(data, encryption_key=EK, authentication_key=AK, system_title=TITLE)
                slow = ref.plaintext if ref.security_control.byte == sc.byte else None
            except MetercertError:
                slow = None
            if fast != slow:
                raise ContractViolation(f"ApduCipher.unprotect and unprotect disagree (SC {sc.byte:02X})")
            if len(data) < 5:
                continue
            counter, plain = int.from_bytes(data[:4], "big"), data[4:]
            try:
                mine: bytes | None = cipher.protect(plain, counter)
            except MetercertError:
                mine = None
            try:
                theirs: bytes | None = protect(plain, security_control=sc, system_title=TITLE,
                                               invocation_counter=counter, encryption_key=EK,
                                               authentication_key=AK, form=form)
            except MetercertError:
                theirs = None
            if mine is not None and mine != theirs:
                raise ContractViolation(f"ApduCipher.protect differs from protect (SC {sc.byte:02X})")
    return run


# --- transport --------------------------------------------------------------------------

def _split(data: bytes) -> list[bytes]:
    """Cut the input into chunks at positions chosen by its first byte (stream arrival)."""
    if not data:
        return [b""]
    step = (data[0] % 13) + 1
    body = data[1:]
    return [body[i:i + step] for i in range(0, len(body), step)] or [b""]


def _wrapper() -> FuzzFn:
    from metercert.errors import MetercertError
    from metercert.transport.wrapper import WrapperDecoder, decode_datagram

    def run(data: bytes) -> None:
        dec = WrapperDecoder(max_payload=(data[0] * 257) if data else 0)
        try:
            for chunk in _split(data):
                dec.feed(chunk)
                for frame in dec:
                    if frame.to_bytes()[8:] != frame.payload:
                        raise ContractViolation("wrapper frame does not re-encode")
        except MetercertError:
            pass
        if dec.buffered > len(data):
            raise ContractViolation("decoder holds more bytes than it was fed")
        try:
            decode_datagram(data)
        except MetercertError:
            pass
    return run


def _hdlc_frame() -> FuzzFn:
    from metercert.errors import MetercertError
    from metercert.transport.hdlc_frame import HdlcFrameDecoder

    def run(data: bytes) -> None:
        dec = HdlcFrameDecoder()
        errors = 0
        for chunk in _split(data):
            dec.feed(chunk)
            while True:
                try:
                    frame = dec.next_frame()
                except MetercertError:
                    errors += 1
                    if errors > len(data) + 2:
                        raise ContractViolation("HDLC decoder raises forever on one input") from None
                    continue
                if frame is None:
                    break
                frame.to_bytes()
    return run


def _hdlc_connection() -> FuzzFn:
    from metercert.errors import MetercertError
    from metercert.transport.hdlc import HdlcConnection, Role

    def run(data: bytes) -> None:
        role = Role.SERVER if not data or data[0] & 1 else Role.CLIENT
        conn = HdlcConnection(role, drop_bad_frames=bool(data and data[0] & 2))
        if role is Role.CLIENT:
            conn.connect()
            conn.data_to_send()
        for chunk in _split(data):
            try:
                conn.receive_data(chunk)
            except MetercertError:
                return  # a raising link is dead; the stream adapter closes it
            for _ in range(1000):
                if conn.next_event() is None:
                    break
            else:
                raise ContractViolation("HDLC connection produced 1000 events from one chunk")
            conn.data_to_send()
    return run


# --- the reference meter ----------------------------------------------------------------

class _SessionHarness:
    """One meter, a public session and an HLS-associated management session.

    Input byte 0 picks the path: 0 = raw APDU to the public session, 1 = raw APDU to
    the protected session, 2/3 = the rest ciphered with the right keys and a fresh
    counter (global / general-glo form) so the fuzzer reaches the request handlers
    behind the cryptography.
    """

    def __init__(self) -> None:
        from metercert.client.session import DlmsClient, settings_for_role
        from metercert.meter.model import Meter
        from metercert.meter.profile import load_profile
        from metercert.meter.session import MeterSession
        from metercert.security.keys import keyset_from_mapping

        self.Session = MeterSession
        self.dir = _scratch("meter")
        profile = load_profile("conformant")
        self.meter = Meter(profile, self.dir)
        entry = self.meter.state.client_entry("127.0.0.1", 4059)
        self.keys = keyset_from_mapping(entry)
        meter = self.meter
        harness = self

        class InProcessClient(DlmsClient):
            async def exchange(self, apdu: bytes, *, plain: bytes | None = None,
                               timeout: float | None = None, note: str = "") -> bytes:
                self.trace.record("->", apdu, plain, note)
                answer = harness.protected.handle(apdu) or b""
                self.trace.record("<-", answer)
                return answer

        self.settings = settings_for_role(self.keys)
        self.client_cls = InProcessClient
        self.public = MeterSession(meter, 16)
        self._associate()

    def _associate(self) -> None:
        self.meter._locked_until.clear()
        self.protected = self.Session(self.meter, self.settings.client_sap)
        previous = getattr(self, "client", None)
        self.client = self.client_cls("127.0.0.1", 0, self.settings)
        if previous is not None:  # the meter remembers our last counter: keep counting up
            self.client._counter = previous._counter
        asyncio.run(self.client.associate())
        if not self.protected.associated:
            raise RuntimeError("harness could not associate with its own meter")

    def __call__(self, data: bytes) -> None:
        from metercert.errors import MetercertError
        from metercert.meter.session import CloseConnection
        from metercert.security import CipheringForm

        if not data:
            data = b"\0"
        mode, body = data[0] % 4, data[1:]
        if not self.protected.associated:
            self._associate()
        session = self.public if mode == 0 else self.protected
        if mode >= 2 and body:
            form = CipheringForm.GLOBAL if mode == 2 else CipheringForm.GENERAL_GLO
            with contextlib.suppress(MetercertError):  # no ciphered form for it: send raw
                body = self.client.protect_request(body, form=form)
        try:
            out = session.handle(body)
        except CloseConnection as close:
            if close.last is not None and not isinstance(close.last, bytes):
                raise ContractViolation("CloseConnection carries a non-bytes APDU") from None
            if session is self.public:
                self.public = self.Session(self.meter, 16)
            else:
                self._associate()
            return
        if out is not None and not isinstance(out, bytes):
            raise ContractViolation(f"handle returned {type(out).__name__}")


def _meter_session() -> FuzzFn:
    return _SessionHarness()


class _ClientHarness:
    """metercert's DLMS client facing a hostile meter: every answer comes from the input.

    The input is cut at ``FF FE`` into the answers to: AARQ, HLS pass 3 (if asked),
    GET clock, GET object list, RLRQ. The first half of the inputs talk to a public
    client, the rest to an HLS-GMAC client with real keys (so ciphered answers that
    the fuzzer builds from seeds get as far as the tag check). A campaign against a
    real meter must turn any answer into a verdict, so only MetercertError may escape.
    """

    def __init__(self) -> None:
        from metercert.client.session import ClientSettings, DlmsClient, settings_for_role
        from metercert.meter.model import Meter
        from metercert.meter.profile import load_profile
        from metercert.security.keys import keyset_from_mapping

        folder = _scratch("client")
        meter = Meter(load_profile("conformant"), folder)
        keys = keyset_from_mapping(meter.state.client_entry("127.0.0.1", 4059))
        meter.close()
        self.settings = [ClientSettings(), settings_for_role(keys)]
        harness = self
        self.answers: list[bytes] = []

        class HostileMeter(DlmsClient):
            async def exchange(self, apdu: bytes, *, plain: bytes | None = None,
                               timeout: float | None = None, note: str = "") -> bytes:
                from metercert.client.errors import NoResponse
                self.trace.record("->", apdu, plain, note)
                if not harness.answers:
                    raise NoResponse("no more answers")
                answer = harness.answers.pop(0)
                self.trace.record("<-", answer)
                return answer
        self.client_cls = HostileMeter

    def __call__(self, data: bytes) -> None:
        from metercert.cosem import ObisCode
        from metercert.errors import MetercertError

        settings = self.settings[data[0] & 1] if data else self.settings[0]
        self.answers = data[1:].split(b"\xff\xfe")[:6]
        client = self.client_cls("127.0.0.1", 0, settings)

        async def talk() -> None:
            await client.associate()
            await client.get(8, ObisCode.parse("0.0.1.0.0.255"), 2)
            await client.get(15, ObisCode.parse("0.0.40.0.0.255"), 2)
            await client.release()
        try:
            asyncio.run(talk())
        except MetercertError:
            pass


def _client_responses() -> FuzzFn:
    return _ClientHarness()


# --- traffic captures -------------------------------------------------------------------

def _pcap() -> FuzzFn:
    from metercert.errors import MetercertError
    from metercert.fleet.ingest import ingest_pcap

    folder = _scratch("pcap")
    path = folder / "capture.pcap"

    def run(data: bytes) -> None:
        path.write_bytes(data)
        try:
            ingest_pcap(path)
        except MetercertError:
            pass
    return run


# --- files a user hands us --------------------------------------------------------------

def _key_file() -> FuzzFn:
    from metercert.errors import MetercertError
    from metercert.security import load_key_file

    folder = _scratch("keys")

    def run(data: bytes) -> None:
        name = "keys.json" if data[:1] == b"{" else "keys.yaml"
        path = folder / name
        path.write_bytes(data)
        try:
            load_key_file(path)
        except MetercertError:
            pass
        finally:
            path.unlink()
    return run


def _campaign() -> FuzzFn:
    from metercert.campaign.config import load_campaign
    from metercert.errors import MetercertError

    folder = _scratch("campaign")
    path = folder / "campaign.yaml"

    def run(data: bytes) -> None:
        path.write_bytes(data)
        try:
            load_campaign(path, check_files=False)
        except MetercertError:
            pass
    return run


def _meter_profile() -> FuzzFn:
    from metercert.errors import MetercertError
    from metercert.meter.profile import load_profile

    folder = _scratch("profile")
    path = folder / "profile.yaml"

    def run(data: bytes) -> None:
        path.write_bytes(data)
        try:
            load_profile(str(path))
        except MetercertError:
            pass
    return run


def _dossier() -> FuzzFn:
    from metercert.dossier.load import load_dossier
    from metercert.errors import MetercertError

    folder = _scratch("dossier")
    sample = Path(__file__).resolve().parent.parent / "src/metercert/dossier/samples/reference-meter"
    if sample.is_dir():
        shutil.copytree(sample, folder, dirs_exist_ok=True)
    path = folder / "dossier.yaml"

    def run(data: bytes) -> None:
        path.write_bytes(data)
        try:
            load_dossier(path)
        except MetercertError:
            pass
    return run


_CATALOG_FILES = ("threats.yaml", "coverage.yaml", "misstatements.yaml", "frameworks/10-dlms.yaml")


def _catalog() -> FuzzFn:
    from metercert.catalog import load as catalog_load
    from metercert.errors import MetercertError

    folder = _scratch("catalog")
    shutil.copytree(catalog_load.default_data_dir(), folder, dirs_exist_ok=True)
    originals = {name: (folder / name).read_bytes() for name in _CATALOG_FILES
                 if (folder / name).exists()}
    names = sorted(originals)

    def run(data: bytes) -> None:
        name = names[data[0] % len(names)] if data else names[0]
        target = folder / name
        target.write_bytes(data[1:])
        os.environ[catalog_load.CATALOG_DIR_ENV] = str(folder)
        try:
            catalog_load._load_cached.cache_clear()
            catalog_load.load_catalog()
        except MetercertError:
            pass
        finally:
            target.write_bytes(originals[name])
            del os.environ[catalog_load.CATALOG_DIR_ENV]
    return run


BUILDERS: dict[str, Callable[[], FuzzFn]] = {
    "cosem_apdu": _cosem_apdu,
    "axdr_data": _axdr_data,
    "unprotect": _unprotect,
    "apdu_cipher": _apdu_cipher,
    "wrapper": _wrapper,
    "hdlc_frame": _hdlc_frame,
    "hdlc_connection": _hdlc_connection,
    "meter_session": _meter_session,
    "client_responses": _client_responses,
    "pcap": _pcap,
    "key_file": _key_file,
    "campaign": _campaign,
    "meter_profile": _meter_profile,
    "dossier": _dossier,
    "catalog": _catalog,
}


def _with_injected_fault(fn: FuzzFn) -> FuzzFn:
    """Self-test of the harness: raise a non-metercert error on inputs starting 00 01."""
    def run(data: bytes) -> None:
        if data[:2] == b"\x00\x01":
            raise RuntimeError("injected fault")
        fn(data)
    return run


def build(name: str) -> FuzzFn:
    try:
        fn = BUILDERS[name]()
    except KeyError:
        raise SystemExit(f"unknown fuzz target {name!r}; known: {', '.join(BUILDERS)}") from None
    if os.environ.get("METERCERT_FUZZ_INJECT_FAULT"):
        fn = _with_injected_fault(fn)
    return fn
