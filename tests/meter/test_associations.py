"""Every association type, ciphering form, framing and suite of the reference meter,
exercised with our own client over real loopback sockets."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from metercert.client.errors import AssociationRejected, DataAccessFailed, ResponseNotTrusted
from metercert.cosem import AcseServiceUserDiagnostic, DataAccessResult, DataType
from metercert.security import CipheringForm, Mechanism, is_ciphered

from ._support import (
    CLOCK,
    CURRENT_ASSOCIATION,
    ENERGY,
    FIRMWARE_ID,
    ROLE_ASSOCIATION,
    SERIAL,
    profile,
    received_counters,
    run,
    serving,
)


def test_public_client_reads_without_security(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(tmp_path / "m") as bench:
            client = bench.target().public()
            async with client:
                assert client.aare is not None and client.aare.user_information[0] == 0x08
                clock = await client.get(8, CLOCK, 2)
                serial = await client.get(1, SERIAL, 2)
                energy = await client.get_result(3, ENERGY, 2)
            assert clock.type is DataType.OCTET_STRING and len(clock.value) == 12
            assert serial.value == "MCT00000001"
            # VIEWER holds VIEW only: billing data is not even visible to it
            assert energy is DataAccessResult.OBJECT_UNDEFINED
            assert not any(is_ciphered(w) for w in client.trace.wires())

    run(scenario)


@pytest.mark.parametrize("role", sorted(ROLE_ASSOCIATION))
def test_each_role_associates_with_hls_gmac(tmp_path: Path, role: str) -> None:
    async def scenario() -> None:
        async with serving(tmp_path / "m") as bench:
            client = bench.target().client(role)
            assert client.settings.mechanism is Mechanism.HLS_GMAC
            async with client:
                clock = await client.get(8, CLOCK, 2)
                partners = await client.get(15, CURRENT_ASSOCIATION, 3)
                setup_ref = await client.get(15, CURRENT_ASSOCIATION, 9)
            assert len(clock.value) == 12
            assert partners.value[0].value == client.settings.client_sap
            assert setup_ref.value == bytes([0, 0, 43, 0, ROLE_ASSOCIATION[role], 255])
            # every request after the AARQ went out ciphered (global get-request)
            sent = [e.wire[0] for e in client.trace.entries
                    if e.direction == "->" and e.wire[0] not in (0x60, 0x62)]
            assert sent and all(tag in (0xC8, 0xCB) for tag in sent)
            assert received_counters(client) == sorted(set(received_counters(client)))

    run(scenario)


def test_lls_and_mechanism_none_refused_on_management(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(tmp_path / "m") as bench:
            target = bench.target()
            lls = target.client(None, mechanism=Mechanism.LLS, password=b"00000000")
            with pytest.raises(AssociationRejected) as lls_refused:
                async with lls:
                    pass
            none = target.client(None, mechanism=Mechanism.NONE)
            with pytest.raises(AssociationRejected) as none_refused:
                async with none:
                    pass
            legacy = target.client(None, mechanism=Mechanism.HLS_MD5)
            with pytest.raises(AssociationRejected) as md5_refused:
                async with legacy:
                    pass
        assert lls_refused.value.diagnostic is not AcseServiceUserDiagnostic.NULL
        assert (none_refused.value.diagnostic
                is AcseServiceUserDiagnostic.AUTHENTICATION_MECHANISM_NAME_REQUIRED)
        assert (md5_refused.value.diagnostic
                is AcseServiceUserDiagnostic.AUTHENTICATION_MECHANISM_NAME_NOT_RECOGNISED)

    run(scenario)


def test_hls_sha256_profile(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(tmp_path / "m", profile(mechanism="hls-sha256")) as bench:
            target = bench.target()
            client = target.client("SECADM", mechanism=Mechanism.HLS_SHA256)
            assert client.settings.hls_secret
            async with client:
                mech = await client.get(15, CURRENT_ASSOCIATION, 6)
                assert (await client.get(8, CLOCK, 2)).type is DataType.OCTET_STRING
            assert mech.value == bytes.fromhex("60857405080206")  # ...8.2.6 = HLS-SHA256
            # a wrong secret fails HLS pass 3
            wrong = target.client("SECADM", mechanism=Mechanism.HLS_SHA256, hls_secret=b"x" * 16)
            with pytest.raises(AssociationRejected):
                async with wrong:
                    pass
            # and this meter refuses GMAC, the mechanism it was not configured for
            gmac = target.client("SECADM", mechanism=Mechanism.HLS_GMAC)
            with pytest.raises(AssociationRejected):
                async with gmac:
                    pass
            # the key file the meter wrote names its mechanism: a plain client just works
            for default in (target.client("SECADM"), target.client()):
                assert default.settings.mechanism is Mechanism.HLS_SHA256
                async with default:
                    assert (await default.get(8, CLOCK, 2)).type is DataType.OCTET_STRING

    run(scenario)


# the first byte a meter answers a GET with, per ciphering form
_RESPONSE_TAG = {CipheringForm.GLOBAL: 0xCC, CipheringForm.DEDICATED: 0xD4,
                 CipheringForm.GENERAL_GLO: 0xDB, CipheringForm.GENERAL_DED: 0xDC}
_REQUEST_TAG = {CipheringForm.GLOBAL: 0xC8, CipheringForm.DEDICATED: 0xD0,
                CipheringForm.GENERAL_GLO: 0xDB, CipheringForm.GENERAL_DED: 0xDC}


@pytest.mark.parametrize("form", list(CipheringForm), ids=lambda f: f.value)
def test_every_ciphering_form(tmp_path: Path, form: CipheringForm) -> None:
    async def scenario() -> None:
        async with serving(tmp_path / "m") as bench:
            target = bench.target()
            client = target.client(None, form=form, dedicated_key=form.dedicated)
            await client.sync_counter()  # before our connection: one connection at a time
            await client.connect()
            await client.associate()
            mark = client.trace.mark()
            serial = await client.get(1, SERIAL, 2)
            wires = client.trace.wires(mark)
            await client.__aexit__(None, None, None)
        assert serial.value == "MCT00000001"
        assert wires[0][0] == _REQUEST_TAG[form]
        assert wires[1][0] == _RESPONSE_TAG[form]
        # the serial number never crosses the wire in clear
        assert all(b"MCT00000001" not in w for w in wires)

    run(scenario)


def test_dedicated_form_without_dedicated_key_is_refused(tmp_path: Path) -> None:
    from metercert.client.errors import ExceptionResponseReceived
    from metercert.cosem import CosemAttributeDescriptor, GetRequestNormal, ObisCode
    from metercert.security import Key

    async def scenario() -> None:
        async with serving(tmp_path / "m") as bench:
            client = bench.target().client(None, dedicated_key=True)
            await client.sync_counter()  # before our connection: one connection at a time
            await client.connect()
            await client.associate()
            ok = await client.get(1, SERIAL, 2, form=CipheringForm.DEDICATED)
            assert ok.value == "MCT00000001"
            # a request under another dedicated key than the one agreed does not verify
            client._dedicated = Key(b"\x55" * 16, "dedicated")
            plain = GetRequestNormal(CosemAttributeDescriptor(1, ObisCode.parse(SERIAL), 2)).to_bytes()
            with pytest.raises(ExceptionResponseReceived):
                await client.request(plain, form=CipheringForm.DEDICATED)
            await client.close()

    run(scenario)


def _object_list_blocks(client) -> int:  # type: ignore[no-untyped-def]
    return sum(1 for p in client.trace.plains() if p and p[0] == 0xC4 and p[1] == 0x02)


def test_block_transfer_of_the_object_list(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with (serving(tmp_path / "big") as bench,
                    bench.target().client() as client):
            big = await client.get(15, CURRENT_ASSOCIATION, 2)
            big_blocks = _object_list_blocks(client)
        async with serving(tmp_path / "small", profile(max_pdu=128)) as bench:
            client = await bench.target().management()
            small = await client.get(15, CURRENT_ASSOCIATION, 2)
            small_blocks = _object_list_blocks(client)
            negotiated = client.server_max_pdu
            await client.__aexit__(None, None, None)
        assert negotiated == 128
        # same list, split into more blocks when the meter's PDU is small
        assert len(big.value) == len(small.value) >= 15
        assert big_blocks >= 2, "management object list should exceed one 1024-byte PDU"
        assert small_blocks > 4 * big_blocks
        obis_seen = {bytes(entry.value[2].value) for entry in small.value}
        assert bytes([0, 0, 44, 0, 0, 255]) in obis_seen  # image transfer, SECADM's right

    run(scenario)


def test_hdlc_framing(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(tmp_path / "m", framing="hdlc") as bench:
            target = bench.target()
            assert target.framing == "hdlc"
            async with target.public() as public:
                serial = await public.get(1, SERIAL, 2)
            client = await target.management()
            fw = await client.get(1, FIRMWARE_ID, 2)
            big = await client.get(15, CURRENT_ASSOCIATION, 2)
            await client.__aexit__(None, None, None)
        assert serial.value == "MCT00000001"
        assert fw.value == "MCT-1.0.0"
        assert len(big.value) >= 15

    run(scenario)


@pytest.mark.parametrize("suite", [0, 1, 2])
def test_security_suites(tmp_path: Path, suite: int) -> None:
    from dataclasses import replace

    from metercert.security import Key

    async def scenario() -> None:
        async with serving(tmp_path / "m", profile(security_suite=suite)) as bench:
            keys = bench.keysets[0]
            assert int(keys.extra["security_suite"]) == suite
            assert len(keys.guek.secret) == len(keys.ak.secret) == (32 if suite == 2 else 16)
            client = await bench.target().management()
            got = await client.get(64, "0.0.43.0.6.255", 3)
            sc_bytes = {w[2] for w in client.trace.wires() if w[0] in (0xC8, 0xCC)}
            await client.__aexit__(None, None, None)
            assert got.value == suite
            assert sc_bytes == {0x30 | suite}
            if suite > 0:
                # a client proposing a lower suite is refused (downgrade)
                # (suite 1 takes 128-bit keys: offer the first half of the suite-2 keys)
                size = 16
                low_keys = replace(keys, guek=Key(keys.guek.secret[:size], "guek"),
                                   ak=Key(keys.ak.secret[:size], "ak"))
                low = bench.target().client(None, suite=suite - 1, keys=low_keys)
                with pytest.raises(AssociationRejected):
                    await low.sync_counter()  # before our connection: one connection at a time
                    await low.connect()
                    await low.associate()
                await low.close()

    run(scenario)


def test_wrong_keys_do_not_associate(tmp_path: Path) -> None:
    from dataclasses import replace

    from metercert.security import Key

    async def scenario() -> None:
        async with serving(tmp_path / "m") as bench:
            target = bench.target()
            bad = replace(target.keys, ak=Key(bytes(16), "ak"))
            client = target.client(None, keys=bad)
            with pytest.raises(AssociationRejected) as refused:
                async with client:
                    pass
        assert refused.value.diagnostic is AcseServiceUserDiagnostic.AUTHENTICATION_FAILURE

    run(scenario)


def test_viewer_cannot_read_protected_objects(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(tmp_path / "m") as bench, bench.target().public() as client:
            with pytest.raises(DataAccessFailed):
                await client.get(64, "0.0.43.0.6.255", 2)

    run(scenario)


def test_concurrent_roles_on_many_meters(tmp_path: Path) -> None:
    """Requests of all meters run in worker threads; one meter's sessions stay serialised:
    every role of every meter at once, no error, no response counter used twice."""
    import asyncio

    roles = ["SECADM", "READER", "OPERATOR", "SECAUD"]

    async def scenario() -> dict[tuple[int, str], list[int]]:
        async with serving(tmp_path / "m", count=5) as bench:
            async def one(i: int, role: str) -> tuple[tuple[int, str], list[int]]:
                target = bench.target(i)
                async with target.client(role) as client:
                    for _ in range(5):
                        await client.get(8, CLOCK, 2)
                return (i, role), received_counters(client)

            done = await asyncio.gather(*(one(i, r) for i in range(5) for r in roles))
        return dict(done)

    seen = run(scenario)
    assert len(seen) == 20
    for (i, role), counters in seen.items():
        assert len(counters) >= 6 and counters == sorted(set(counters)), (i, role)


@pytest.mark.parametrize("suite, curve", [(1, "secp256r1"), (2, "secp384r1")])
def test_hls_ecdsa_profile(tmp_path: Path, suite: int, curve: str) -> None:
    """HLS mechanism 7: the meter issues each association a client key pair (in the key file it
    writes, with its own public key); both sides sign and check f(challenge) on the suite's curve."""
    from dataclasses import replace

    prof = profile(mechanism="hls-ecdsa", security_suite=suite)

    async def scenario() -> None:
        async with serving(tmp_path / "m", prof) as bench:
            target = bench.target()
            keys = target.keys
            assert keys.client_private_key is not None and keys.server_public_key is not None
            assert keys.client_private_key.curve.name == curve
            client = target.client()
            assert client.settings.mechanism is Mechanism.HLS_ECDSA
            async with client:
                mech = await client.get(15, CURRENT_ASSOCIATION, 6)
                assert (await client.get(8, CLOCK, 2)).type is DataType.OCTET_STRING
            assert mech.value == bytes.fromhex("60857405080207")  # ...8.2.7 = HLS-ECDSA
            # each role signs with its own key: SECAUD's key pair does not open SECADM
            secaud = target.client("SECAUD").settings.keys.client_private_key
            assert secaud is not None
            impostor = target.client(keys=replace(keys, client_private_key=secaud))
            with pytest.raises(AssociationRejected):
                async with impostor:
                    pass
            # the meter's f(CtoS) is checked too: a wrong meter public key is caught
            wrong_meter = target.client(keys=replace(keys, server_public_key=secaud.public_key()))
            with pytest.raises(ResponseNotTrusted):
                async with wrong_meter:
                    pass
            events = [detail for _, _, detail in bench.meter.log.entries]
            assert events.count("sap 1: HLS pass 3 failed") == 1

    run(scenario)


def test_hls_ecdsa_keys_survive_a_power_cycle(tmp_path: Path) -> None:
    prof = profile(mechanism="hls-ecdsa")

    async def scenario() -> bytes:
        async with serving(tmp_path / "m", prof) as bench:
            async with bench.target().client() as client:
                await client.get(8, CLOCK, 2)
            key = bench.target().keys.server_public_key
            assert key is not None
            return key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)

    assert run(scenario) == run(scenario)   # the second start reads the same meter key


def test_hls_ecdsa_needs_a_suite_with_ecdsa() -> None:
    from metercert.errors import InputFileError
    from metercert.meter.profile import profile_from_mapping

    with pytest.raises(InputFileError, match="hls-ecdsa needs security_suite 1 or 2"):
        profile_from_mapping({"name": "x", "security_suite": 0, "mechanism": "hls-ecdsa"})
