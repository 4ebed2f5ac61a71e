"""The reference meter over the UDP wrapper: associations follow the client SAP."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from metercert.client.session import ClientSettings, DlmsClient
from metercert.cosem import AARE
from metercert.cosem.acse import AssociationResult
from metercert.transport.wrapper import decode_datagram, encode_wrapper

from ._support import run, serving


def test_a_new_client_sap_from_the_same_address_is_a_new_association(tmp_path: Path) -> None:
    # A client socket's port is soon reused by the next client, maybe with another SAP:
    # the meter must judge each AARQ by the SAP it comes from, not by the first one seen.
    aarq, _ = DlmsClient("127.0.0.1", 1, ClientSettings()).build_aarq()  # no authentication

    def exchange(host: str, port: int) -> list[AssociationResult]:
        results = []
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # one address throughout
            s.settimeout(5)
            for sap in (16, 1, 16):  # public, management (needs HLS), public again
                s.sendto(encode_wrapper(sap, 1, aarq), (host, port))
                frame = decode_datagram(s.recv(65535))
                assert (frame.source_wport, frame.dest_wport) == (1, sap)
                results.append(AARE.from_bytes(frame.payload).result)
        return results

    async def scenario() -> list[AssociationResult]:
        async with serving(tmp_path / "m", transport="udp") as bench:
            return await asyncio.to_thread(exchange, *bench.fleet.endpoints[0])

    assert run(scenario) == [AssociationResult.ACCEPTED, AssociationResult.REJECTED_PERMANENT,
                             AssociationResult.ACCEPTED]
