"""Capture ingest: hand-built pcaps (dpkt) with TCP segmentation, HDLC, keys."""

from __future__ import annotations

import hashlib
import itertools
from datetime import UTC, datetime
from pathlib import Path

import dpkt
import pytest

from metercert.fleet.ingest import ingest, ingest_pcap
from metercert.fleet.pcap import CaptureStats
from metercert.fleet.schema import APDU_SCHEMA

# Green Book example (STANDARDS.md, reference vector V1)
TITLE = bytes.fromhex("4D4D4D0000BC614E")
METER_TITLE = bytes.fromhex("4D4D4D0000000001")
V1 = bytes.fromhex("C81E3001234567411312FF935A47566827C467BC7D825C3BE4A77C3FCC056B6B")
EK = "000102030405060708090A0B0C0D0E0F"
AK = "D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF"
T0 = 1767571200.0  # 2026-01-05T00:00:00Z
CLIENT, METER = bytes([192, 0, 2, 10]), bytes([192, 0, 2, 20])


def aarq(title: bytes) -> bytes:
    body = (bytes.fromhex("A109060760857405080101")  # LN referencing, no ciphering
            + bytes([0xA6, 10, 0x04, 8]) + title
            + bytes.fromhex("BE10040E01000000065F1F0400001E1DFFFF"))
    return bytes([0x60, len(body)]) + body


def aare(title: bytes) -> bytes:
    body = (bytes.fromhex("A109060760857405080101") + bytes.fromhex("A203020100")
            + bytes.fromhex("A305A103020100") + bytes([0xA4, 10, 0x04, 8]) + title
            + bytes.fromhex("BE10040E0800065F1F040000101D04000007"))
    return bytes([0x61, len(body)]) + body


def wrapper(payload: bytes, src: int = 1, dst: int = 1) -> bytes:
    return (1).to_bytes(2, "big") + src.to_bytes(2, "big") + dst.to_bytes(2, "big") \
        + len(payload).to_bytes(2, "big") + payload


class Tcp:
    def __init__(self, writer: dpkt.pcap.Writer, port: int = 4059) -> None:
        self.w, self.port = writer, port
        self.seq = {True: 1000, False: 5000}

    def pkt(self, ts: float, c2s: bool, data: bytes, flags: int = dpkt.tcp.TH_ACK,
            seq: int | None = None) -> None:
        src, dst = (CLIENT, METER) if c2s else (METER, CLIENT)
        sport, dport = (50123, self.port) if c2s else (self.port, 50123)
        tcp = dpkt.tcp.TCP(sport=sport, dport=dport, flags=flags, win=8192,
                           seq=self.seq[c2s] if seq is None else seq, data=data)
        ip = dpkt.ip.IP(src=src, dst=dst, p=dpkt.ip.IP_PROTO_TCP, data=tcp)
        ip.len = len(bytes(ip))
        eth = dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6,
                                     type=dpkt.ethernet.ETH_TYPE_IP, data=ip)
        self.w.writepkt(bytes(eth), ts=ts)

    def syn(self, ts: float) -> None:
        self.pkt(ts, True, b"", dpkt.tcp.TH_SYN)
        self.seq[True] += 1
        self.pkt(ts, False, b"", dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK)
        self.seq[False] += 1

    def send(self, ts: float, c2s: bool, data: bytes, cuts: tuple[int, ...] = ()) -> None:
        edges = (0, *cuts, len(data))
        for i, (a, b) in enumerate(itertools.pairwise(edges)):
            self.pkt(ts + i * 0.001, c2s, data[a:b], seq=self.seq[c2s] + a)
        self.seq[c2s] += len(data)


def build_capture(path: Path) -> None:
    with open(path, "wb") as fh:
        tcp = Tcp(dpkt.pcap.Writer(fh))
        tcp.syn(T0)
        tcp.send(T0 + 1, True, wrapper(aarq(TITLE), 16, 1), cuts=(5, 30))
        tcp.send(T0 + 2, False, wrapper(aare(METER_TITLE), 1, 16))
        # the Green Book APDU cut in three: header | part | rest
        tcp.send(T0 + 3, True, wrapper(V1, 16, 1), cuts=(4, 20))
        # the tampered copy (last tag byte flipped), then a replay of the original
        tampered = V1[:-1] + bytes([V1[-1] ^ 1])
        tcp.send(T0 + 4, True, wrapper(tampered, 16, 1), cuts=(11,))
        # out of order: second half first
        frame = wrapper(V1, 16, 1)
        base = tcp.seq[True]
        tcp.pkt(T0 + 5, True, frame[17:], seq=base + 17)
        tcp.pkt(T0 + 5.001, True, frame[:17], seq=base)
        tcp.seq[True] += len(frame)
        tcp.send(T0 + 6, True, wrapper(bytes.fromhex("62038001 00".replace(" ", "")), 16, 1))


@pytest.fixture
def capture(tmp_path: Path) -> Path:
    p = tmp_path / "session.pcap"
    build_capture(p)
    return p


def keyfile(tmp_path: Path) -> Path:
    p = tmp_path / "keys.yaml"
    p.write_text(f"meters:\n- server_system_title: {METER_TITLE.hex()}\n"
                 f"  client_system_title: {TITLE.hex()}\n  guek: {EK}\n  ak: {AK}\n")
    return p


def test_segmented_wrapper_frames_become_rows(capture: Path) -> None:
    stats = CaptureStats()
    rows = ingest_pcap(capture, stats=stats).to_pylist()
    assert stats.bad_frames == 0 and stats.streams == 1
    assert [r["apdu_tag"] for r in rows] == [0x60, 0x61, 0xC8, 0xC8, 0xC8, 0x62]
    assert [r["direction"] for r in rows] == ["c2s", "s2c", "c2s", "c2s", "c2s", "c2s"]
    glo = rows[2]
    assert glo["system_title"] == TITLE.hex().upper()  # from the AARQ's calling-AP-title
    assert glo["sc"] == 0x30 and glo["suite"] == 0 and glo["key_set"] == "unicast"
    assert glo["ic"] == 0x01234567 and glo["length"] == len(V1)
    assert glo["ct_sha256"] == hashlib.sha256(V1[7:]).digest()
    assert glo["ciphered"] and glo["authenticated"]
    assert glo["client_addr"] == "192.0.2.10:50123" and glo["server_addr"] == "192.0.2.20:4059"
    assert glo["client_sap"] == 16 and glo["server_sap"] == 1
    # the meter is its system title (from the AARE), its network path is the endpoint
    assert glo["meter_id"] == "st:4D4D4D0000000001" and glo["link"] == "wrapper"
    assert glo["endpoint"] == "192.0.2.20:4059/1"
    assert glo["ts"] == datetime.fromtimestamp(T0 + 3.002, UTC)  # the completing segment
    assert glo["tag_ok"] is None and glo["plain_tag"] is None  # no keys given
    assert rows[4]["ct_sha256"] == glo["ct_sha256"]  # reordered segments reassembled
    assert rows[4]["ts"] == datetime.fromtimestamp(T0 + 5.001, UTC)
    assert len({r["assoc_id"] for r in rows}) == 1
    assert rows[1]["system_title"] is None  # plain AARE: no counter of its own


def test_keys_verify_tags_and_reveal_the_service(capture: Path, tmp_path: Path) -> None:
    rows = ingest_pcap(capture, keys=keyfile(tmp_path)).to_pylist()
    assert [r["tag_ok"] for r in rows if r["ciphered"]] == [True, False, True]
    assert rows[2]["plain_tag"] == 0xC0  # get-request
    assert rows[3]["plain_tag"] is None


def test_hdlc_over_tcp(tmp_path: Path) -> None:
    from metercert.transport.hdlc_frame import FrameKind, HdlcAddress, HdlcFrame, encode_frame

    p = tmp_path / "hdlc.pcap"
    info = b"\xe6\xe6\x00" + V1
    first = encode_frame(HdlcFrame(HdlcAddress(1, 17), HdlcAddress(16), FrameKind.I,
                                   segmented=True, info=info[:15]))
    second = encode_frame(HdlcFrame(HdlcAddress(1, 17), HdlcAddress(16), FrameKind.I,
                                    info=info[15:]))
    with open(p, "wb") as fh:
        tcp = Tcp(dpkt.pcap.Writer(fh), port=4060)
        tcp.syn(T0)
        tcp.send(T0 + 1, True, first + second, cuts=(7,))
    rows = ingest_pcap(p, port=4060).to_pylist()
    assert len(rows) == 1
    assert rows[0]["link"] == "hdlc" and rows[0]["ic"] == 0x01234567
    assert rows[0]["client_sap"] == 16 and rows[0]["server_sap"] == 1
    assert rows[0]["endpoint"] == "192.0.2.20:4060/hdlc 1/17"  # the lower address is kept
    assert ingest_pcap(p).num_rows == 1  # DLMS is found on any port by default
    assert ingest_pcap(p, port=4059).num_rows == 0  # but --port restricts


def test_pcapng_and_dataset_layout(capture: Path, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    ng = tmp_path / "session.pcapng"
    with open(capture, "rb") as src, open(ng, "wb") as dst:
        w = dpkt.pcapng.Writer(dst)
        for ts, buf in dpkt.pcap.Reader(src):
            w.writepkt(buf, ts=ts)
    out = tmp_path / "ds"
    first = ingest([capture], out)
    second = ingest([ng], out)
    assert first.rows == second.rows == 6
    files = sorted(out.glob("day=2026-01-05/*.parquet"))
    assert len(files) == 2
    table = pq.read_table(files[0]).cast(APDU_SCHEMA)  # partition column lives in the path
    assert table.schema.names == APDU_SCHEMA.names
    ids = sorted(pq.read_table(files[0])["id"].to_pylist()
                 + pq.read_table(files[1])["id"].to_pylist())
    assert ids == list(range(12))  # the second ingest continues the row ids


def test_sample_capture_round_trip_finds_the_planted_reuse(tmp_path: Path) -> None:
    from metercert.fleet.capture import write_sample_capture
    from metercert.fleet.engines import DuckDbEngine, run_detectors

    sample = write_sample_capture(tmp_path / "s.pcap", meters=3, requests=3)
    out = tmp_path / "d"
    result = ingest([sample.pcap], out, keys=sample.keys)
    assert result.rows == sample.apdus and result.stats["bad_frames"] == 0
    engine = DuckDbEngine(memory_limit="512MB")
    try:
        found = run_detectors(engine, out).findings
    finally:
        engine.close()
    assert [(f.kind, f.meter_id, f.n) for f in found] == [("ic-reuse", "st:4D4D4D0000000000", 2)]
    assert sample.keys.stat().st_mode & 0o777 == 0o600


def test_loopback_capture_on_any_interface(capture: Path, tmp_path: Path) -> None:
    """`tcpdump -i any` writes Linux cooked v2 frames; the reference meter runs on 127.0.0.1."""
    p = tmp_path / "any.pcap"
    with open(capture, "rb") as src, open(p, "wb") as dst:
        w = dpkt.pcap.Writer(dst, linktype=276)
        for ts, buf in dpkt.pcap.Reader(src):
            ip = dpkt.ethernet.Ethernet(buf).data
            ip.src, ip.dst = (b"\x7f\x00\x00\x01" if ip.src == CLIENT else b"\x7f\x00\x00\x02",
                              b"\x7f\x00\x00\x01" if ip.dst == CLIENT else b"\x7f\x00\x00\x02")
            ip.sum = 0
            sll2 = dpkt.sll2.SLL2(protocol=dpkt.ethernet.ETH_TYPE_IP, data=ip)
            w.writepkt(bytes(sll2), ts=ts)
    rows = ingest_pcap(p).to_pylist()
    assert [r["apdu_tag"] for r in rows] == [0x60, 0x61, 0xC8, 0xC8, 0xC8, 0x62]
    assert rows[2]["endpoint"] == "127.0.0.2:4059/1" and rows[2]["ic"] == 0x01234567


def test_garbage_on_the_dlms_port_never_crashes_the_ingest(tmp_path: Path) -> None:
    import random

    rng = random.Random(4059)
    prefixes = [b"", b"\x00\x01\x00\x10\x00\x01", b"\x7e\xa0", b"\x00\x01\x00\x10\x00\x01\x00\x05"]
    for n in range(40):
        p = tmp_path / f"g{n}.pcap"
        with open(p, "wb") as fh:
            tcp = Tcp(dpkt.pcap.Writer(fh))
            if n % 2:
                tcp.syn(T0)
            for k in range(rng.randrange(1, 6)):
                body = rng.choice(prefixes) + rng.randbytes(rng.randrange(0, 80))
                if rng.random() < 0.5:
                    body = wrapper(bytes([rng.choice([0x60, 0x61, 0xC8, 0xDB, 0xCC])])
                                   + rng.randbytes(rng.randrange(0, 60)), 16, 1)
                tcp.send(T0 + k, rng.random() < 0.6, body,
                         cuts=tuple(sorted(rng.sample(range(1, max(2, len(body))),
                                                      min(2, max(0, len(body) - 1))))))
        table = ingest_pcap(p, keys=None)
        assert set(table.column("direction").to_pylist()) <= {"c2s", "s2c"}


def test_udp_wrapper_datagrams(tmp_path: Path) -> None:
    p = tmp_path / "udp.pcap"
    with open(p, "wb") as fh:
        w = dpkt.pcap.Writer(fh)
        for i, (c2s, payload) in enumerate([(True, V1), (False, V1), (True, b"")]):
            src, dst = (CLIENT, METER) if c2s else (METER, CLIENT)
            udp = dpkt.udp.UDP(sport=40001 if c2s else 4059, dport=4059 if c2s else 40001,
                               data=(wrapper(payload, 16, 1) if c2s else wrapper(payload, 1, 16))
                               if payload else b"\x00\x01")
            udp.ulen = len(bytes(udp))
            ip = dpkt.ip.IP(src=src, dst=dst, p=dpkt.ip.IP_PROTO_UDP, data=udp)
            ip.len = len(bytes(ip))
            w.writepkt(bytes(dpkt.ethernet.Ethernet(type=dpkt.ethernet.ETH_TYPE_IP, data=ip)),
                       ts=T0 + i)
    stats = CaptureStats()
    rows = ingest_pcap(p, stats=stats).to_pylist()
    assert [(r["direction"], r["client_sap"], r["server_sap"]) for r in rows] == [
        ("c2s", 16, 1), ("s2c", 16, 1)]
    assert stats.bad_frames == 1  # the truncated header
    assert all(r["system_title"] is None and r["ic"] == 0x01234567 for r in rows)
