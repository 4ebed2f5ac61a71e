"""A server restricted to its upper HDLC address (the reference meter: logical device 1)
answers SNRM to that address at any physical address it has not been given, ignores
every other upper address (HDLC_1 Subtest_4), and the hdlc-any-address flaw answers all."""

from __future__ import annotations

from metercert.transport.hdlc import (
    FrameDropped,
    FrameKind,
    HdlcAddress,
    HdlcConnection,
    HdlcFrameDecoder,
    LinkState,
    Role,
)
from metercert.transport.hdlc_frame import HdlcFrame, encode_frame


def _snrm(server: HdlcConnection, dest: HdlcAddress) -> list[FrameKind]:
    server.receive_data(encode_frame(HdlcFrame(dest, HdlcAddress(16), FrameKind.SNRM)))
    decoder = HdlcFrameDecoder()
    decoder.feed(server.data_to_send())
    kinds = []
    while (frame := decoder.next_frame()) is not None:
        kinds.append(frame.kind)
    return kinds


def test_own_upper_address_is_answered_at_any_physical_address() -> None:
    for dest in (HdlcAddress(1), HdlcAddress(1, 17), HdlcAddress(1, 0x3FF0, size=4)):
        server = HdlcConnection(Role.SERVER, server_address=1)
        assert _snrm(server, dest) == [FrameKind.UA], dest
        assert server.server_address == dest and server.state is LinkState.IDLE


def test_other_upper_addresses_are_ignored() -> None:
    for dest in (HdlcAddress(0x0F), HdlcAddress(0x66, 17), HdlcAddress(2)):
        server = HdlcConnection(Role.SERVER, server_address=1)
        assert _snrm(server, dest) == [], dest
        assert server.state is LinkState.DISCONNECTED
        assert isinstance(server.next_event(), FrameDropped)


def test_a_configured_physical_address_must_match() -> None:
    server = HdlcConnection(Role.SERVER, server_address=HdlcAddress(1, 17))
    assert _snrm(server, HdlcAddress(1, 18)) == []
    assert _snrm(server, HdlcAddress(1, 17)) == [FrameKind.UA]


def test_the_any_address_flaw_answers_every_address() -> None:
    server = HdlcConnection(Role.SERVER, server_address=1, flaws=frozenset({"hdlc-any-address"}))
    assert _snrm(server, HdlcAddress(0x66)) == [FrameKind.UA]
