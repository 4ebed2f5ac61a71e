"""Edge cases of fleet traffic (issue 15, items 1-6), each a small generated capture with
the findings a correct audit gives. Shared by the DuckDB and the Spark tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .gen import (
    AK,
    EK,
    EK2,
    GET,
    HE,
    T0,
    Pcap,
    Session,
    Tcp,
    cipher,
    client_addr,
    hdlc,
    key_file,
    server_addr,
    wrapper,
)

MT = bytes.fromhex("4D54520000000001")
MT2 = bytes.fromhex("4D54520000000002")
HEAD = ("10.0.0.1", 40001)


def meter(n: int, port: int = 4059) -> tuple[str, int]:
    return (f"10.1.0.{n}", port)


@dataclass
class Case:
    name: str
    files: list[Path]
    kinds: set[str]  # the exact set of finding kinds
    keys: Path | None = None
    ports: list[int] | None = None
    counts: dict[str, int] = field(default_factory=dict)  # findings per kind, where it matters


def _keys(tmp: Path, *entries: tuple[bytes, bytes]) -> Path:
    return key_file(tmp / "keys.yaml", [
        {"client_system_title": HE.hex(), "server_system_title": title.hex(),
         "guek": ek.hex(), "ak": AK.hex()} for title, ek in entries])


# -- item 1: normal operation gives no finding ----------------------------------------

def roles(tmp: Path) -> Case:
    """A reader role (client SAP 3, its own key) beside the management role (SAP 1) on
    one meter, both counting from 1 at the same time."""
    cap = Pcap(tmp / "roles.pcap")
    a = Session(cap, HEAD, meter(1), client_sap=1, meter_title=MT)
    b = Session(cap, ("10.0.0.1", 40002), meter(1), client_sap=3, meter_title=MT,
                isn=(5000, 70000))
    a.open(T0)
    b.open(T0 + 0.3)
    for i in range(5):
        a.reads(T0 + 1 + i, (1 + i, 1 + i), 1)
        b.reads(T0 + 1.5 + i, (1 + i, 1 + i), 1, ek=EK2)
    a.close(T0 + 10)
    b.close(T0 + 10.5)
    cap.close()
    return Case("roles", [cap.path], set(), _keys(tmp, (MT, EK), (MT, EK2)))


def dedicated(tmp: Path) -> Case:
    """Dedicated keys: every association's counters start again at 1."""
    cap = Pcap(tmp / "ded.pcap")
    for n in range(3):
        s = Session(cap, ("10.0.0.1", 40010 + n), meter(2), meter_title=MT,
                    isn=(1000 * n + 7, 50000 + n))
        s.open(T0 + 20 * n)
        s.reads(T0 + 20 * n + 1, (1, 1), 4, tag=(0xD0, 0xD4))
        s.close(T0 + 20 * n + 9)
    cap.close()
    return Case("dedicated", [cap.path], set())


def _rotation(tmp: Path, name: str, sc2: int) -> Path:
    cap = Pcap(tmp / f"{name}.pcap")
    s = Session(cap, HEAD, meter(3), meter_title=MT)
    s.open(T0)
    s.reads(T0 + 1, (100, 200), 4, sc=0x31)
    s.close(T0 + 8)
    s = Session(cap, ("10.0.0.1", 40003), meter(3), meter_title=MT, isn=(3000, 4000))
    s.open(T0 + 60)
    s.reads(T0 + 61, (1, 1), 4, sc=sc2, ek=EK2)  # new key, counters reset
    s.close(T0 + 70)
    cap.close()
    return cap.path


def rotation(tmp: Path) -> Case:
    """A key transfer with a counter reset, the old and new keys in the key file."""
    return Case("rotation", [_rotation(tmp, "rot", 0x31)], set(), _keys(tmp, (MT, EK), (MT, EK2)))


def rotation_no_keys(tmp: Path) -> Case:
    """Without the key file a counter reset cannot be told from a lost counter."""
    return Case("rotation-no-keys", [_rotation(tmp, "rot", 0x31)], {"ic-regression"},
                counts={"ic-regression": 2})


def suite_after_key_change(tmp: Path) -> Case:
    """Suite 1 under the old key, then suite 0 under the new one: a new key, no downgrade."""
    return Case("suite-after-rekey", [_rotation(tmp, "suite", 0x30)], set(),
                _keys(tmp, (MT, EK), (MT, EK2)))


def gateway(tmp: Path) -> Case:
    """Two meters (HDLC 1/17 and 1/18, own titles) behind one HDLC gateway socket; the
    head-end's counters for both start at 1."""
    cap = Pcap(tmp / "gw.pcap")
    tcp = Tcp(cap, HEAD, meter(9))
    tcp.open(T0)
    ns = {17: 0, 18: 0}
    for i in range(8):
        lower = 17 if i % 2 == 0 else 18
        title = MT if lower == 17 else MT2
        k = i // 2
        ctrl = (ns[lower] << 5) | 0x10 | (ns[lower] << 1)
        req = cipher(0xC8, 0x30, HE, 1 + k, GET[:-1] + bytes([k]))
        resp = cipher(0xCC, 0x30, title, 1 + k, bytes.fromhex("C401C10006000000") + bytes([k]))
        if k == 0:
            tcp.send(T0 + i, True, hdlc(server_addr(1, lower), client_addr(1), ctrl,
                                        b"\xe6\xe6\x00" + _aarq(HE)))
            tcp.send(T0 + i + 0.1, False, hdlc(client_addr(1), server_addr(1, lower), ctrl,
                                               b"\xe6\xe7\x00" + _aare(title)))
            ns[lower] += 1
            ctrl = (ns[lower] << 5) | 0x10 | (ns[lower] << 1)
        tcp.send(T0 + i + 0.2, True, hdlc(server_addr(1, lower), client_addr(1), ctrl,
                                          b"\xe6\xe6\x00" + req))
        tcp.send(T0 + i + 0.3, False, hdlc(client_addr(1), server_addr(1, lower), ctrl,
                                           b"\xe6\xe7\x00" + resp))
        ns[lower] = (ns[lower] + 1) % 8
    cap.close()
    return Case("gateway", [cap.path], set())


def _aarq(title: bytes) -> bytes:
    from .gen import aarq
    return aarq(title)


def _aare(title: bytes) -> bytes:
    from .gen import aare
    return aare(title)


# -- item 2: real reuse is found ------------------------------------------------------

def clones(tmp: Path) -> Case:
    """Two devices with one title and key on two addresses, at the same time."""
    cap = Pcap(tmp / "clones.pcap")
    a = Session(cap, HEAD, meter(11), meter_title=MT)
    b = Session(cap, ("10.0.0.1", 40002), meter(12), meter_title=MT, isn=(7, 9))
    a.open(T0)
    b.open(T0 + 0.5)
    for i in range(4):
        a.reads(T0 + 1 + i, (1 + i, 50 + i), 1)
        _clone_read(b, T0 + 1.5 + i, 10 + i, 50 + i)  # the clone: same counters, other data
    cap.close()
    return Case("clones", [cap.path], {"ic-reuse", "ic-regression", "duplicate-title"},
                counts={"ic-reuse": 4, "duplicate-title": 1})


def _clone_read(s: Session, ts: float, c: int, m: int) -> None:
    assert s.mt is not None
    s.req(ts, cipher(0xC8, 0x30, s.ct, c, GET))
    s.resp(ts + 0.1, cipher(0xCC, 0x30, s.mt, m, bytes.fromhex("C401C100060000FFFF")))


def new_ip(tmp: Path) -> Case:
    """A cellular meter comes back on a new address and goes on counting."""
    cap = Pcap(tmp / "newip.pcap")
    s = Session(cap, HEAD, meter(21), meter_title=MT)
    s.open(T0)
    s.reads(T0 + 1, (1, 1), 4)
    s.close(T0 + 6)
    s = Session(cap, HEAD, meter(22), meter_title=MT, isn=(11, 12))
    s.open(T0 + 100)
    s.reads(T0 + 101, (5, 5), 4)
    s.close(T0 + 106)
    cap.close()
    return Case("new-ip", [cap.path], set())


def new_ip_reset(tmp: Path) -> Case:
    """The same meter on a new address with its counters reset: nonce reuse."""
    cap = Pcap(tmp / "newip-reset.pcap")
    s = Session(cap, HEAD, meter(21), meter_title=MT)
    s.open(T0)
    s.reads(T0 + 1, (1, 1), 4)
    s.close(T0 + 6)
    s = Session(cap, HEAD, meter(23), meter_title=MT, isn=(11, 12))
    s.open(T0 + 100)
    for i in range(4):
        _clone_read(s, T0 + 101 + i, 5 + i, 1 + i)  # other responses, same counters
    s.close(T0 + 106)
    cap.close()
    return Case("new-ip-reset", [cap.path], {"ic-reuse", "ic-regression"},
                counts={"ic-reuse": 4, "ic-regression": 1})


def simple_key(tmp: Path) -> Case:
    """Client and meter under one system title and key: one nonce space, two counters."""
    cap = Pcap(tmp / "simple.pcap")
    s = Session(cap, HEAD, meter(31), client_title=MT, meter_title=MT)
    s.open(T0)
    s.reads(T0 + 1, (1, 1), 4)
    cap.close()
    return Case("simple-key", [cap.path], {"shared-space", "ic-reuse"},
                counts={"ic-reuse": 4, "shared-space": 1})


def injected(tmp: Path) -> Case:
    """An APDU the head-end sent to meter A, injected into a session with meter B."""
    cap = Pcap(tmp / "inject.pcap")
    a = Session(cap, HEAD, meter(41), meter_title=MT)
    a.open(T0)
    a.reads(T0 + 1, (1, 1), 4)
    a.close(T0 + 6)
    b = Session(cap, ("10.0.0.1", 40005), meter(42), meter_title=MT2, isn=(3, 4))
    b.open(T0 + 10)
    b.reads(T0 + 11, (100, 100), 2)
    b.req(T0 + 13.5, cipher(0xC8, 0x30, HE, 3, GET[:-1] + bytes([2])))  # A's third request
    b.reads(T0 + 14, (102, 102), 2)
    cap.close()
    return Case("injected", [cap.path], {"replay"}, counts={"replay": 1})


def shared_title_own_keys(tmp: Path) -> Case:
    """Two meters given one system title, each with its own key, on line together. The
    key file names both key sets, so each meter's traffic is its own counter space."""
    cap = Pcap(tmp / "dup.pcap")
    a = Session(cap, HEAD, meter(51), meter_title=MT)
    b = Session(cap, ("10.0.0.1", 40002), meter(52), meter_title=MT, isn=(7, 9))
    a.open(T0)
    b.open(T0 + 0.5)
    a.reads(T0 + 1, (1, 1000), 3)
    b.reads(T0 + 1.5, (500, 3000), 3, ek=EK2)
    cap.close()
    return Case("shared-title", [cap.path], {"duplicate-title"}, _keys(tmp, (MT, EK), (MT, EK2)))


def shared_title_no_keys(tmp: Path) -> Case:
    """The same without keys: the two meters' counters fall in one space and interleave."""
    case = shared_title_own_keys(tmp)
    return Case("shared-title-no-keys", case.files, {"duplicate-title", "ic-regression"})


# -- item 3: long-lived streams ---------------------------------------------------------

def missing_segment(tmp: Path) -> Case:
    """One response segment never reached the probe: the rest of the stream is kept."""
    cap = Pcap(tmp / "gap.pcap")
    s = Session(cap, HEAD, meter(61), meter_title=MT)
    s.open(T0)
    for i in range(6):
        assert s.mt is not None
        s.req(T0 + 1 + i, cipher(0xC8, 0x30, HE, 1 + i, GET))
        s.resp(T0 + 1.1 + i, cipher(0xCC, 0x30, MT, 1 + i, b"\xc4\x01\xc1\x00\x06" + bytes([i])),
               drop=i == 2)
    s.close(T0 + 9)
    cap.close()
    return Case("missing-segment", [cap.path], set())


def mid_frame(tmp: Path) -> Case:
    """The capture starts inside a frame of an established connection."""
    cap = Pcap(tmp / "mid.pcap")
    s = Session(cap, HEAD, meter(62), meter_title=MT)
    frame = wrapper(1, 1, cipher(0xCC, 0x30, MT, 9, b"\xc4\x01\xc1\x00\x06\x00"))
    s.tcp.seq[False] += 5
    s.tcp.send(T0, False, frame[5:])  # the tail of a frame whose head was not captured
    for i in range(3):
        s.req(T0 + 1 + i, cipher(0xC8, 0x30, HE, 20 + i, GET))
        s.resp(T0 + 1.1 + i, cipher(0xCC, 0x30, MT, 10 + i, b"\xc4\x01\xc1\x00\x06\x01"))
    cap.close()
    return Case("mid-frame", [cap.path], set())


def rotated(tmp: Path) -> Case:
    """A session split over two rotated files; the reuse lies in the second one."""
    one, two = Pcap(tmp / "rot-1.pcap"), Pcap(tmp / "rot-2.pcap")
    s = Session(one, HEAD, meter(63), meter_title=MT)
    s.open(T0)
    s.reads(T0 + 1, (1, 1), 3)
    one.close()
    s.tcp.cap = two
    s.reads(T0 + 10, (4, 4), 2)
    s.req(T0 + 20, cipher(0xC8, 0x30, HE, 5, GET[:-1] + b"\x7f"))  # counter 5 again
    two.close()
    return Case("rotated", [one.path, two.path], {"ic-reuse"}, counts={"ic-reuse": 1})


# -- item 4: order and duplicates -------------------------------------------------------

def clock_steps_back(tmp: Path) -> Case:
    """The probe's clock steps back 30 s in the middle of a session."""
    cap = Pcap(tmp / "clock.pcap")
    s = Session(cap, HEAD, meter(71), meter_title=MT)
    s.open(T0)
    s.reads(T0 + 1, (1, 1), 3)
    s.reads(T0 + 4 - 30, (4, 4), 3)
    cap.close()
    return Case("clock-back", [cap.path], set())


def two_probes(tmp: Path) -> Case:
    """The same session recorded by two probes on one link (two files, same packets)."""
    paths = []
    for name in ("probe-a.pcap", "probe-b.pcap"):
        cap = Pcap(tmp / name)
        s = Session(cap, HEAD, meter(72), meter_title=MT)
        s.open(T0)
        s.reads(T0 + 1, (1, 1), 4)
        s.close(T0 + 6)
        cap.close()
        paths.append(cap.path)
    return Case("two-probes", paths, set())


# -- item 5: detectors ------------------------------------------------------------------

def tampered(tmp: Path) -> Case:
    """One response with a flipped ciphertext bit, checked with the right keys."""
    cap = Pcap(tmp / "tamper.pcap")
    s = Session(cap, HEAD, meter(81), meter_title=MT)
    s.open(T0)
    s.reads(T0 + 1, (1, 1), 2)
    bad = bytearray(cipher(0xCC, 0x30, MT, 3, b"\xc4\x01\xc1\x00\x06\x05"))
    bad[9] ^= 0x01
    s.req(T0 + 3, cipher(0xC8, 0x30, HE, 3, GET))
    s.resp(T0 + 3.1, bytes(bad))
    cap.close()
    return Case("tampered", [cap.path], {"tag-failure"}, _keys(tmp, (MT, EK)),
                counts={"tag-failure": 1})


def encryption_only(tmp: Path) -> Case:
    cap = Pcap(tmp / "enc.pcap")
    s = Session(cap, HEAD, meter(82), meter_title=MT)
    s.open(T0)
    s.reads(T0 + 1, (1, 1), 3, sc=0x20)
    cap.close()
    return Case("encryption-only", [cap.path], {"encryption-only"})


def sc_downgrade(tmp: Path) -> Case:
    """Authenticated and encrypted, then authenticated only, under the same suite."""
    cap = Pcap(tmp / "scdown.pcap")
    s = Session(cap, HEAD, meter(83), meter_title=MT)
    s.open(T0)
    s.reads(T0 + 1, (1, 1), 3, sc=0x30)
    s.reads(T0 + 4, (4, 4), 2, sc=0x10)
    cap.close()
    return Case("sc-downgrade", [cap.path], {"sc-downgrade"}, counts={"sc-downgrade": 2})


def ciphered_aarq(tmp: Path) -> Case:
    """The AARQ carries a glo-initiate-request: verified with the key file (the meter's
    title is only known from the AARE that follows)."""
    cap = Pcap(tmp / "aarq.pcap")
    s = Session(cap, HEAD, meter(84), meter_title=MT)
    init = cipher(0x21, 0x30, HE, 7, bytes.fromhex("01000000065F1F0400001E1DFFFF"))
    s.open(T0, aarq_info=init)
    s.reads(T0 + 1, (8, 1), 2)
    cap.close()
    return Case("ciphered-aarq", [cap.path], set(), _keys(tmp, (MT, EK)))


# -- item 6: capture handling -----------------------------------------------------------

def other_ports(tmp: Path) -> Case:
    cap = Pcap(tmp / "ports.pcap")
    for n, port in enumerate((4063, 4064)):
        s = Session(cap, ("10.0.0.1", 40100 + n), meter(90 + n, port),
                    meter_title=bytes([0x4D, 0x54, 0x52, 0, 0, 0, 9, n]), isn=(n, n + 50))
        s.open(T0 + n)
        s.reads(T0 + n + 1, (1, 1), 2)
    cap.close()
    return Case("other-ports", [cap.path], set())


def tcp_push(tmp: Path) -> Case:
    """A meter opens the TCP connection to the head-end's port 4059 and pushes."""
    cap = Pcap(tmp / "push.pcap")
    tcp = Tcp(cap, ("10.1.0.95", 51000), ("10.0.0.1", 4059))
    tcp.open(T0)
    for i in range(3):
        tcp.send(T0 + 1 + i, True, wrapper(1, 102, cipher(0, 0x30, MT, 40 + i,
                                                          b"\x0f\x00\x00\x00\x01\x00\x09\x01",
                                                          general=True)))
    cap.close()
    return Case("tcp-push", [cap.path], set())


def udp_push(tmp: Path) -> Case:
    """A meter pushes over UDP from port 4059 to the head-end's port 4059."""
    cap = Pcap(tmp / "udp.pcap")
    for i in range(3):
        cap.udp(T0 + i, ("10.1.0.96", 4059), ("10.0.0.1", 4059),
                wrapper(1, 102, cipher(0, 0x30, MT2, 70 + i, b"\x0f\x00\x00\x00\x02\x00",
                                       general=True)))
    cap.close()
    return Case("udp-push", [cap.path], set())


def hdlc_ui(tmp: Path) -> Case:
    """HDLC UI frames (unnumbered information) carrying pushed data-notifications."""
    cap = Pcap(tmp / "ui.pcap")
    tcp = Tcp(cap, HEAD, meter(97))
    tcp.open(T0)
    for i in range(3):
        tcp.send(T0 + 1 + i, False, hdlc(client_addr(16), server_addr(1, 17), 0x13,
                                         b"\xe6\xe7\x00\x0f\x00\x00\x00" + bytes([i]) + b"\x00"))
    cap.close()
    return Case("hdlc-ui", [cap.path], set())


def general_ciphering(tmp: Path) -> Case:
    """A general-ciphering APDU (0xDD, a form the ingest cannot split) in a protected
    association is recorded as ciphered, not as unauthenticated plaintext."""
    cap = Pcap(tmp / "gc.pcap")
    s = Session(cap, HEAD, meter(98), meter_title=MT)
    s.open(T0)
    s.reads(T0 + 1, (1, 1), 2)
    s.req(T0 + 3, bytes.fromhex("DD0800080102030405060708") + bytes(24))
    cap.close()
    return Case("general-ciphering", [cap.path], set())


def resent_after_reset(tmp: Path) -> Case:
    """After a reboot that lost its counters the meter sends the very same bytes again:
    nonce reuse by the meter, not a replay by someone else."""
    cap = Pcap(tmp / "resent.pcap")
    for n in range(2):
        s = Session(cap, ("10.0.0.1", 40200 + n), meter(99), meter_title=MT, isn=(n, 100 + n))
        s.open(T0 + 100 * n)
        s.reads(T0 + 100 * n + 1, (1 + 10 * n, 1), 3)  # head-end counters go on; meter's reset
        s.close(T0 + 100 * n + 8)
    cap.close()
    return Case("resent-after-reset", [cap.path], {"ic-reuse", "ic-regression"},
                counts={"ic-reuse": 3, "ic-regression": 1})


CASES: dict[str, Callable[[Path], Case]] = {
    "roles": roles, "dedicated": dedicated, "rotation": rotation,
    "rotation-no-keys": rotation_no_keys, "suite-after-rekey": suite_after_key_change,
    "gateway": gateway, "clones": clones, "new-ip": new_ip, "new-ip-reset": new_ip_reset,
    "simple-key": simple_key, "injected": injected, "shared-title": shared_title_own_keys,
    "shared-title-no-keys": shared_title_no_keys,
    "missing-segment": missing_segment, "mid-frame": mid_frame, "rotated": rotated,
    "clock-back": clock_steps_back, "two-probes": two_probes, "tampered": tampered,
    "encryption-only": encryption_only, "sc-downgrade": sc_downgrade,
    "ciphered-aarq": ciphered_aarq, "other-ports": other_ports, "tcp-push": tcp_push,
    "udp-push": udp_push, "hdlc-ui": hdlc_ui, "general-ciphering": general_ciphering,
    "resent-after-reset": resent_after_reset,
}
