"""Write the small seed corpora in ``fuzz/corpus/<target>/`` (re-runnable; committed output).

Seeds are valid inputs produced by metercert's own encoders and by an in-process
association with the reference meter, so the fuzzers start from deep states
instead of rediscovering the wire formats. Keys in seeds are the public Green Book
example keys or those of a throw-away meter created here.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import targets

CORPUS = HERE / "corpus"
_TRACE: list = []  # the in-process association's trace, shared by the seed writers
_PUBLIC: list = []  # the same for a public (unauthenticated) association
SRC = HERE.parent / "src" / "metercert"


def _put(target: str, data: bytes) -> None:
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / hashlib.sha1(data).hexdigest()[:16]).write_bytes(data)


def _session_traffic() -> tuple[list[bytes], list[bytes], list[bytes]]:
    """(plaintext APDUs, ciphered APDUs, raw requests) from a real in-process association."""
    from metercert.cosem import ObisCode

    h = targets._SessionHarness()
    client = h.client

    async def talk() -> None:
        await client.get(8, ObisCode.parse("0.0.1.0.0.255"), 2)
        await client.get(15, ObisCode.parse("0.0.40.0.0.255"), 2)
        await client.get(1, ObisCode.parse("0.0.96.1.0.255"), 2)
        await client.get(3, ObisCode.parse("1.0.1.8.0.255"), 2)
        await client.release()

    asyncio.run(talk())

    from metercert.client.session import ClientSettings, DlmsClient

    class PublicClient(DlmsClient):
        async def exchange(self, apdu: bytes, *, plain: bytes | None = None,
                           timeout: float | None = None, note: str = "") -> bytes:
            self.trace.record("->", apdu, plain, note)
            answer = h.public.handle(apdu) or b""
            self.trace.record("<-", answer)
            return answer

    public = PublicClient("127.0.0.1", 0, ClientSettings())

    async def talk_public() -> None:
        await public.associate()
        await public.get(8, ObisCode.parse("0.0.1.0.0.255"), 2)
        await public.get(15, ObisCode.parse("0.0.40.0.0.255"), 2)
        await public.release()

    asyncio.run(talk_public())
    _PUBLIC.extend(public.trace.entries)
    plain, ciphered, requests = [], [], []
    _TRACE.extend(client.trace.entries)
    for e in client.trace.entries:
        if not e.wire:
            continue
        (ciphered if e.wire[0] in (0x21, 0x28) or 0xC8 <= e.wire[0] <= 0xDC else plain).append(e.wire)
        if e.plain:
            plain.append(e.plain)
        if e.direction == "->":
            requests.append(e.plain or e.wire)
    shutil.rmtree(h.dir, ignore_errors=True)
    return plain, ciphered, requests


def main() -> None:
    from metercert.cosem import DlmsData as D
    from metercert.cosem import encode_data
    from metercert.fleet.capture import write_sample_capture
    from metercert.security import CipheringForm, SecurityControl, protect
    from metercert.transport.hdlc import HdlcConnection, Role
    from metercert.transport.wrapper import encode_wrapper

    shutil.rmtree(CORPUS, ignore_errors=True)
    plain, ciphered, requests = _session_traffic()
    green = [bytes.fromhex("C0010000080000010000FF0200"),
             bytes.fromhex("01011000112233445566778899AABBCCDDEEFF0000065F1F0400007E1F04B0"),
             bytes.fromhex("0800065F1F0400007C1F04000007")]
    for apdu in plain + green:
        _put("cosem_apdu", apdu)
    for apdu in ciphered:
        _put("unprotect", apdu)
    _put("apdu_cipher", bytes.fromhex("01234567") + green[0])
    for form in CipheringForm:
        for sc in (0x30, 0x10, 0x20, 0x00):
            _put("unprotect", protect(green[0], security_control=SecurityControl.from_byte(sc),
                                      system_title=targets.TITLE, invocation_counter=0x01234567,
                                      encryption_key=targets.EK, authentication_key=targets.AK,
                                      form=form))
            _put("apdu_cipher", protect(green[0], security_control=SecurityControl.from_byte(sc),
                                        system_title=targets.TITLE, invocation_counter=0x01234567,
                                        encryption_key=targets.EK, authentication_key=targets.AK,
                                        form=form))
    answers = [e.wire for e in _TRACE if e.direction == "<-" and e.wire]
    _put("client_responses", b"\x01" + b"\xff\xfe".join(answers))
    public_answers = [e.wire for e in _PUBLIC if e.direction == "<-" and e.wire]
    _put("client_responses", b"\x00" + b"\xff\xfe".join(public_answers))
    for e in _PUBLIC:
        if e.wire:
            _put("cosem_apdu", e.wire)
    for req in requests:
        _put("meter_session", b"\x00" + req)
        _put("meter_session", b"\x02" + req)
        _put("meter_session", b"\x03" + req)
    values = [D.null(), D.integer(-5), D.long_unsigned(300), D.octet_string(b"\x00\x01"),
              D.visible_string("MCT"), D.array([D.unsigned(1), D.unsigned(2)]),
              D.structure([D.enum(3), D.double_long_unsigned(70000), D.boolean(True)])]
    for v in values:
        _put("axdr_data", encode_data(v))
    for apdu in (plain + ciphered)[:6]:
        frame = encode_wrapper(16, 1, apdu)
        _put("wrapper", b"\x03" + frame + frame)

    client = HdlcConnection(Role.CLIENT)
    server = HdlcConnection(Role.SERVER)
    client.connect()
    stream = client.data_to_send()
    server.receive_data(stream)
    client.receive_data(server.data_to_send())
    while client.next_event() is not None:
        pass
    client.send_apdu(green[0])
    stream += client.data_to_send()
    _put("hdlc_frame", b"\x00" + stream)
    _put("hdlc_connection", b"\x01" + stream)
    _put("hdlc_connection", b"\x00" + server.data_to_send())

    cap = HERE / "_seed.pcap"
    write_sample_capture(cap, meters=1, requests=2)
    _put("pcap", cap.read_bytes())
    cap.unlink()
    cap.with_name(cap.name + ".keys.yaml").unlink(missing_ok=True)

    _put("key_file", (
        b"client_system_title: 4D4D4D0000000001\nserver_system_title: 4D4D4D0000BC614E\n"
        b"guek: 000102030405060708090A0B0C0D0E0F\nak: D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF\n"
        b"kek: 000102030405060708090A0B0C0D0E0F\nsecurity_suite: 0\n"))
    _put("key_file", b'{"meters": [{"guek": "000102030405060708090A0B0C0D0E0F", '
                     b'"client_system_title": "4D4D4D0000000001"}]}')
    _put("campaign", (SRC / "campaign/examples/campaign.yaml").read_bytes())
    _put("campaign", b"target: tcp://127.0.0.1:4059\nonly: [dlms.*]\nno_destructive: true\n")
    for prof in sorted((SRC / "meter/profiles").glob("*.yaml"))[:4]:
        _put("meter_profile", prof.read_bytes())
    _put("dossier", (SRC / "dossier/samples/reference-meter/dossier.yaml").read_bytes())
    _put("dossier", b"allow_absolute_paths: false\nsbom: ../../etc/passwd\n")
    data_dir = SRC / "catalog/data"
    for i, name in enumerate(sorted(targets._CATALOG_FILES)):
        _put("catalog", bytes((i,)) + (data_dir / name).read_bytes()[:4000])
    for target in targets.BUILDERS:
        n = len(list((CORPUS / target).glob("*")))
        print(f"{target:16s} {n} seeds")


if __name__ == "__main__":
    main()
