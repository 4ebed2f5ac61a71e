"""Push verification without I/O: tags, decryption, counters per meter.

Keys and system title are the DLMS UA Green Book example inputs (STANDARDS.md:
EK 000102..0F, AK D0..DF, system title 4D4D4D0000BC614E).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from metercert.cosem.axdr import DlmsData
from metercert.cosem.xdlms.notification import DataNotification
from metercert.errors import InputFileError
from metercert.fleet.ingest import KeyRing
from metercert.push.verify import CounterBook, PushVerifier
from metercert.security import Key, KeySet, SecurityControl
from metercert.security.protection import CipheringForm, protect

TITLE = bytes.fromhex("4D4D4D0000BC614E")
EK = Key(bytes.fromhex("000102030405060708090A0B0C0D0E0F"), "guek")
AK = Key(bytes.fromhex("D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF"), "ak")


def _push(ic: int, value: int, *, sc: SecurityControl | None = None,
          title: bytes = TITLE) -> bytes:
    note = DataNotification(DlmsData.double_long_unsigned(value), ic).to_bytes()
    return protect(note, security_control=sc or SecurityControl(0, True, True),
                   system_title=title, invocation_counter=ic, encryption_key=EK,
                   authentication_key=AK, form=CipheringForm.GENERAL_GLO)


def _verifier(state: Path | None = None) -> PushVerifier:
    return PushVerifier(KeyRing([KeySet(server_system_title=TITLE, guek=EK, ak=AK)]),
                        CounterBook(state))


def test_each_verdict() -> None:
    v = _verifier()
    first = _push(5, 100)
    assert v.verify(first, "m").verdict == "ok"
    record = v.verify(_push(6, 101), "m")
    assert (record.verdict, record.system_title, record.invocation_counter) == (
        "ok", TITLE.hex().upper(), 6)
    assert "101" in record.value and record.raw.startswith(b"\xDB")
    assert v.verify(first, "m").verdict == "replay"           # byte for byte again
    assert v.verify(_push(6, 999), "m").verdict == "counter-reuse"  # same IC, new content
    assert v.verify(_push(4, 102), "m").verdict == "regression"     # new IC, below 6
    flipped = bytearray(_push(9, 103))
    flipped[-1] ^= 1
    assert v.verify(bytes(flipped), "m").verdict == "tag-failure"
    assert v.verify(_push(10, 1, title=bytes(8)), "m").verdict == "unknown-meter"
    plain = DataNotification(DlmsData.double_long_unsigned(7), 1).to_bytes()
    assert v.verify(plain, "m").verdict == "plaintext"
    enc_only = v.verify(_push(11, 1, sc=SecurityControl(0, False, True)), "m")
    assert enc_only.verdict == "plaintext" and "without authentication" in enc_only.detail
    assert v.verify(b"\xC4\x01", "m").verdict == "malformed"
    assert v.verify(b"", "m").verdict == "malformed"
    assert v.verify(_push(12, 104), "m").verdict == "ok"  # a tag failure never moved the book


def test_counters_survive_a_listener_restart(tmp_path: Path) -> None:
    state = tmp_path / "push-counters.json"
    v = _verifier(state)
    early = _push(20, 1)
    assert v.verify(early, "m").verdict == "ok"
    assert v.verify(_push(21, 2), "m").verdict == "ok"
    v.book.save()
    again = _verifier(state)
    assert again.verify(early, "m").verdict == "replay"
    assert again.verify(_push(3, 3), "m").verdict == "regression"
    state.write_text("[1, 2]")
    with pytest.raises(InputFileError, match="not a counter book"):
        _verifier(state)


@pytest.mark.parametrize("argv", [
    ["push", "listen", "--keys", "k.yaml"],
    ["push", "listen", "--keys", "k.yaml", "--tcp", "nohostport"],
    ["push", "listen", "--keys", "missing.yaml", "--tcp", "127.0.0.1:0"],
    ["push", "listen", "--keys", "k.yaml", "--serial", "serial:///dev/none-such"],
    ["meter", "serve", "--push-to", "http://x:1", "--port", "0"],
    ["meter", "serve", "--push-interval", "1", "--port", "0"],
])
def test_bad_push_usage_is_one_line(tmp_path: Path, argv: list[str]) -> None:
    import subprocess
    import sys

    (tmp_path / "k.yaml").write_text("guek: " + "00" * 16 + "\n")
    proc = subprocess.run([sys.executable, "-m", "metercert", *argv], capture_output=True,
                          text=True, timeout=60, cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_listener_takes_pushes_over_udp_and_a_serial_line(tmp_path: Path) -> None:
    """UDP: one wrapper frame per datagram; serial: HDLC UI frames (LLC E6 E7 00), a frame
    with a bad FCS dropped as the link layer does. Rows land in a dataset."""
    import asyncio

    from metercert.fleet.schema import dataset_files
    from metercert.push.listener import PushListener
    from metercert.transport.hdlc_frame import (
        LLC_RESPONSE,
        FrameKind,
        HdlcAddress,
        HdlcFrame,
        encode_frame,
    )
    from metercert.transport.rawlink import corrupt_fcs
    from metercert.transport.serial import open_pty_line
    from metercert.transport.wrapper import encode_wrapper

    async def main() -> list[str]:
        keys = KeyRing([KeySet(server_system_title=TITLE, guek=EK, ak=AK)])
        listener = PushListener(keys, out_dir=tmp_path / "ds")
        host, port = await listener.start_udp("127.0.0.1", 0)
        line = open_pty_line(tmp_path / "line.tty")
        await listener.start_serial(str(tmp_path / "line.tty"), 9600)
        loop = asyncio.get_running_loop()
        udp, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol,
                                                     remote_addr=(host, port))
        udp.sendto(encode_wrapper(1, 1, _push(30, 1)))

        def ui(apdu: bytes) -> bytes:
            return encode_frame(HdlcFrame(HdlcAddress(16), HdlcAddress(1), FrameKind.UI,
                                          False, 0, 0, False, LLC_RESPONSE + apdu))

        line.write(corrupt_fcs(ui(_push(31, 2))) + ui(_push(32, 3)) + ui(_push(30, 1)))
        for _ in range(100):
            if len(listener.records) >= 3:
                break
            await asyncio.sleep(0.05)
        udp.close()
        await listener.close()
        line.close()
        assert listener.flush()
        assert dataset_files(tmp_path / "ds")
        return [f"{r.verdict}:{r.invocation_counter}" for r in listener.records]

    assert asyncio.run(asyncio.wait_for(main(), 20)) == ["ok:30", "ok:32", "replay:30"]
