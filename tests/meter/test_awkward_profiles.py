"""Conformant-but-awkward reference meters behave like the real meters they stand for.

Each profile here is conformant (the campaign must PASS everything against it) but does
one thing the way some real meters do: one wrapper connection at a time, a release that
must be protected, a version-0 Security Setup, a sparse object list, exception-responses
for services it lacks, 16-byte HLS challenges only, an old Association LN version, an
extra LLS association. Every test also runs the same probe against the conformant
profile, so that it can tell the two apart (it could fail).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from metercert.client.errors import AssociationRejected, DataAccessFailed
from metercert.client.session import DlmsClient
from metercert.client.target import DlmsTarget
from metercert.cosem import (
    AARE,
    RLRE,
    RLRQ,
    ActionResult,
    AssociationResult,
    CosemAttributeDescriptor,
    DataAccessResult,
    InitiateRequest,
    InitiateResponse,
    ObisCode,
    ReleaseResponseReason,
    SetRequestNormal,
)
from metercert.cosem import DlmsData as D
from metercert.security import CipheringForm, KeySet, Mechanism
from metercert.transport.errors import TransportTimeout
from metercert.transport.stream import ApduStream, open_dlms_connection

from ._support import CLOCK, CURRENT_ASSOCIATION, ENERGY, FIRMWARE_ID, profile, run, serving


async def associated(target: DlmsTarget, role: str | None = None, **kw: object) -> DlmsClient:
    """A ciphered association, the counter read before our connection opens (works on a
    meter that serves one connection at a time)."""
    client = target.client(role)
    await client.sync_counter()
    await client.connect()
    await client.associate(**kw)  # type: ignore[arg-type]
    return client


def object_list(value: D) -> dict[str, tuple[int, int]]:
    """OBIS -> (class id, version) from an object_list attribute."""
    out = {}
    for entry in value.value:
        class_id, version, obis = (f.value for f in entry.value[:3])
        out[str(ObisCode.from_bytes(bytes(obis)))] = (class_id, version)
    return out


async def public_stream(host: str, port: int) -> ApduStream:
    return await open_dlms_connection(host, port, client_address=16, server_address=1,
                                      timeout=5.0)


def public_aarq(target: DlmsTarget) -> bytes:
    return target.public().build_aarq()[0]


# -- one-connection -------------------------------------------------------------------------
@pytest.mark.parametrize("prof", ["one-connection", "conformant"])
def test_one_connection_at_a_time(tmp_path: Path, prof: str) -> None:
    """A second connection is accepted but gets nothing while the first is open, and is
    served once the first closes; the conformant meter serves both at once."""
    async def scenario() -> bool:
        async with serving(tmp_path / "m", prof) as bench:
            host, port = bench.fleet.endpoints[0]
            aarq = public_aarq(bench.target())
            first = await public_stream(host, port)
            await first.send(aarq)
            assert (await first.recv())[0] == 0x61
            second = await public_stream(host, port)  # the OS accepts it
            await second.send(aarq)
            try:
                await second.recv(timeout=0.5)
                answered_while_first_open = True
            except TransportTimeout:
                answered_while_first_open = False
            await first.aclose()
            if not answered_while_first_open:
                later = await second.recv(timeout=5.0)  # served once the first has gone
                assert AARE.from_bytes(later).result is AssociationResult.ACCEPTED
            await second.aclose()
            return answered_while_first_open

    assert run(scenario) is (prof == "conformant")


def test_one_connection_meter_serves_a_client_that_syncs_first(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(tmp_path / "m", "one-connection") as bench:
            client = await associated(bench.target())
            assert (await client.get(8, CLOCK, 2)).value
            await client.close()

    run(scenario)


# -- strict-release / protected release --------------------------------------------------------
def _protected_rlrq(client: DlmsClient, **protect: object) -> bytes:
    initiate = InitiateRequest(client.negotiated_conformance, 0xFFFF).to_bytes()
    return RLRQ(user_information=client.protect_request(initiate, **protect)).to_bytes()  # type: ignore[arg-type]


@pytest.mark.parametrize("prof", ["strict-release", "conformant"])
def test_bare_release_on_a_ciphered_association(tmp_path: Path, prof: str) -> None:
    async def scenario() -> tuple[RLRE, bytes, list[str]]:
        async with serving(tmp_path / "m", prof) as bench:
            client = await associated(bench.target())
            rlre = RLRE.from_bytes(await client.exchange(RLRQ().to_bytes(), note="bare RLRQ"))
            after = await client.exchange(client.protect_request(
                b"\xc0\x01\xc1" + CosemAttributeDescriptor(8, ObisCode.parse(CLOCK), 2).to_bytes()
                + b"\x00"))
            await client.close()
            log = [d for _, _, d in bench.meter.log.entries]
            return rlre, after, log

    rlre, after, log = run(scenario)
    if prof == "strict-release":
        assert rlre.reason is ReleaseResponseReason.NOT_FINISHED
        assert after[0] != 0xD8  # still associated: the GET is served (ciphered)
        assert any("unprotected release refused" in d for d in log)
    else:
        assert rlre.reason is ReleaseResponseReason.NORMAL
        assert after[:1] == b"\xd8"  # released: nothing is served any more


@pytest.mark.parametrize("prof", ["strict-release", "conformant", "security-setup-v0"])
def test_protected_release_is_verified_and_answered_ciphered(tmp_path: Path, prof: str) -> None:
    """RLRQ carrying glo-initiate-request (0x21) -> RLRE carrying glo-initiate-response (0x28),
    the layout of Gurux's C stack (client.c cl_releaseRequest2, server.c
    svr_handleReleaseRequest); a tampered one is refused and the association stays."""
    async def scenario() -> tuple[bytes, RLRE, RLRE, bytes, bytes | None]:
        async with serving(tmp_path / "m", prof) as bench:
            client = await associated(bench.target())
            tampered = bytearray(_protected_rlrq(client))
            tampered[-1] ^= 0x01  # last byte of the GMAC tag
            refused = RLRE.from_bytes(await client.exchange(bytes(tampered), note="bad tag"))
            rlrq = _protected_rlrq(client)
            accepted = RLRE.from_bytes(await client.exchange(rlrq, note="protected RLRQ"))
            info = accepted.user_information or b""
            after = await client.exchange(client.protect_request(
                b"\xc0\x01\xc1" + CosemAttributeDescriptor(8, ObisCode.parse(CLOCK), 2).to_bytes()
                + b"\x00"))
            plain = client.peek(info)
            await client.close()
            return RLRQ.from_bytes(rlrq).user_information or b"", refused, accepted, after, plain

    sent, refused, accepted, after, plain = run(scenario)
    assert sent[0] == 0x21
    assert refused.reason is ReleaseResponseReason.NOT_FINISHED
    assert accepted.reason is ReleaseResponseReason.NORMAL
    assert (accepted.user_information or b"")[:1] == b"\x28"
    assert plain is not None and InitiateResponse.from_bytes(plain).server_max_receive_pdu_size
    assert after[:1] == b"\xd8"  # released


def test_replayed_protected_release_is_refused(tmp_path: Path) -> None:
    async def scenario() -> RLRE:
        async with serving(tmp_path / "m", "strict-release") as bench:
            target = bench.target()
            first = await associated(target)
            rlrq = _protected_rlrq(first)
            assert RLRE.from_bytes(await first.exchange(rlrq)).reason is ReleaseResponseReason.NORMAL
            await first.close()
            second = await associated(target)
            replayed = RLRE.from_bytes(await second.exchange(rlrq, note="replayed RLRQ"))
            await second.close()
            return replayed

    assert run(scenario).reason is ReleaseResponseReason.NOT_FINISHED


# -- security-setup-v0 ------------------------------------------------------------------------
@pytest.mark.parametrize("prof", ["security-setup-v0", "conformant"])
def test_security_setup_version(tmp_path: Path, prof: str) -> None:
    """Version 0: security_policy is the enumeration (3 = authenticated and encrypted);
    version 1: bit flags (0x6C = requests and responses authenticated and encrypted: bits
    2/3 and 5/6, as gurux-dlms's SecurityPolicy has them).
    security_activate takes the version's own values and never lowers the policy."""
    async def scenario() -> tuple[int, int, list[ActionResult], int]:
        async with serving(tmp_path / "m", prof) as bench:
            client = await associated(bench.target())
            setup = "0.0.43.0.6.255"
            policy = (await client.get(64, setup, 2)).value
            version = object_list(await client.get(15, CURRENT_ASSOCIATION, 2))[setup][1]
            v0 = prof == "security-setup-v0"
            results = []
            # lower, the other version's "authenticated and encrypted", the same policy
            for value in ((1, 0x6C, 3) if v0 else (0x24, 3, 0x6C)):
                results.append((await client.action(64, setup, 1, D.enum(value)))[0])
            after = (await client.get(64, setup, 2)).value
            await client.close()
            return policy, version, results, after

    policy, version, results, after = run(scenario)
    if prof == "security-setup-v0":
        assert (policy, version) == (3, 0)
    else:
        assert (policy, version) == (0x6C, 1)
    assert results == [ActionResult.OTHER_REASON, ActionResult.OTHER_REASON,
                       ActionResult.SUCCESS]
    assert after == policy


def test_security_activate_raises_an_authenticated_only_policy(tmp_path: Path) -> None:
    """Policy "authenticated" (v0 value 1): security_activate 3 raises it to authenticated and
    encrypted; from then on a request that is authenticated only is refused."""
    async def scenario() -> tuple[int, ActionResult, int, bytes]:
        prof = profile("security-setup-v0", policy="authenticated")
        async with serving(tmp_path / "m", prof) as bench:
            target = bench.target()
            client = target.client(None, encrypted=False)
            await client.sync_counter()
            await client.connect()
            await client.associate()
            setup = "0.0.43.0.6.255"
            before = (await client.get(64, setup, 2)).value
            raised, _ = await client.action(64, setup, 1, D.enum(3))
            get = b"\xc0\x01\xc1" + CosemAttributeDescriptor(
                8, ObisCode.parse(CLOCK), 2).to_bytes() + b"\x00"
            refused = await client.exchange(client.protect_request(get, encrypted=False))
            await client.close()
            strong = await associated(target)
            after = (await strong.get(64, setup, 2)).value
            await strong.close()
            return before, raised, after, refused

    before, raised, after, refused = run(scenario)
    assert (before, raised, after) == (1, ActionResult.SUCCESS, 3)
    assert refused[:1] == b"\xd8"


# -- sparse-objects ----------------------------------------------------------------------------
@pytest.mark.parametrize("prof", ["sparse-objects", "conformant"])
def test_sparse_object_list(tmp_path: Path, prof: str) -> None:
    async def scenario() -> tuple[dict[str, tuple[int, int]], DataAccessResult | None]:
        async with serving(tmp_path / "m", prof) as bench:
            client = await associated(bench.target())
            objects = object_list(await client.get(15, CURRENT_ASSOCIATION, 2))
            try:
                await client.get(1, FIRMWARE_ID, 2)
                missing = None
            except DataAccessFailed as exc:
                missing = exc.result  # type: ignore[assignment]
            await client.close()
            auditor = await associated(bench.target(), "SECAUD")  # the one who sees the log
            objects.update(object_list(await auditor.get(15, CURRENT_ASSOCIATION, 2)))
            await auditor.close()
            return objects, missing

    objects, missing = run(scenario)
    absent = {"1.0.0.2.0.255", "0.0.96.3.10.255", "0.0.99.98.0.255"}
    if prof == "sparse-objects":
        assert not absent & set(objects)
        assert objects["1.0.15.8.0.255"] == (3, 0) and ENERGY not in objects
        assert missing is DataAccessResult.OBJECT_UNDEFINED
    else:
        assert absent <= set(objects) and ENERGY in objects
        assert missing is None


# -- exception-response ------------------------------------------------------------------------
_GET_WITH_LIST = (b"\xc0\x03\xc1\x01"
                  + CosemAttributeDescriptor(8, ObisCode.parse(CLOCK), 2).to_bytes() + b"\x00")


@pytest.mark.parametrize("prof", ["exception-response", "conformant"])
def test_exception_response_for_unsupported_services(tmp_path: Path, prof: str) -> None:
    """GET-with-list (not offered) and SET by a role that holds no write right: the
    exception-response meter answers an ExceptionResponse (0xD8, state-error 1
    service-not-allowed, service-error 2 service-not-supported). xDLMS has no glo-/ded-
    tag for it (security/protection.py's service table, as in the Green Book's list of
    ciphered APDUs), so to a glo- request it goes plain; to a general-glo request it is
    ciphered like every other answer."""
    clock = SetRequestNormal(CosemAttributeDescriptor(8, ObisCode.parse(CLOCK), 3),
                             D.long(60)).to_bytes()

    async def scenario() -> list[tuple[bytes, bytes | None]]:
        async with serving(tmp_path / "m", prof) as bench:
            reader = await associated(bench.target(), "READER")
            out = []
            for plain in (_GET_WITH_LIST, clock):
                for form in (CipheringForm.GLOBAL, CipheringForm.GENERAL_GLO):
                    wire = await reader.exchange(reader.protect_request(plain, form=form))
                    out.append((wire, reader.peek(wire)))
            await reader.close()
            return out

    (list_glo, _), (list_gen, list_gen_plain), (set_glo, set_glo_plain), (set_gen, set_gen_plain) \
        = run(scenario)
    refusal = bytes([0xD8, 0x01, 0x02])
    if prof == "exception-response":
        assert list_glo == refusal and set_glo == refusal
        assert list_gen[0] == 0xDB and list_gen_plain == refusal  # general-glo-ciphering
        assert set_gen[0] == 0xDB and set_gen_plain == refusal
    else:
        # access-result meters: an unknown service is an exception too, service-unknown
        assert list_glo == bytes([0xD8, 0x02, 0x02])
        assert list_gen[0] == 0xDB and list_gen_plain == bytes([0xD8, 0x02, 0x02])
        for plain in (set_glo_plain, set_gen_plain):
            assert plain is not None and plain[:2] == b"\xc5\x01"  # set-response-normal
            assert plain[-1] == int(DataAccessResult.READ_WRITE_DENIED)


# -- short-challenge ---------------------------------------------------------------------------
@pytest.mark.parametrize("prof", ["short-challenge", "conformant"])
def test_hls_challenge_lengths(tmp_path: Path, prof: str) -> None:
    async def scenario() -> tuple[int, bool]:
        async with serving(tmp_path / "m", prof) as bench:
            target = bench.target()
            ok = await associated(target, ctos=os.urandom(16))
            assert ok.aare is not None
            stoc = len(ok.aare.responding_authentication_value or b"")
            await ok.close()
            try:
                other = await associated(target, ctos=os.urandom(32))
                await other.close()
                long_accepted = True
            except AssociationRejected:
                long_accepted = False
            return stoc, long_accepted

    stoc, long_accepted = run(scenario)
    if prof == "short-challenge":
        assert (stoc, long_accepted) == (16, False)
    else:
        assert (stoc, long_accepted) == (32, True)


# -- old-association-version -------------------------------------------------------------------
@pytest.mark.parametrize("prof", ["old-association-version", "conformant"])
def test_association_ln_version(tmp_path: Path, prof: str) -> None:
    async def scenario() -> int:
        async with serving(tmp_path / "m", prof) as bench:
            client = await associated(bench.target())
            objects = object_list(await client.get(15, CURRENT_ASSOCIATION, 2))
            await client.close()
            return objects[CURRENT_ASSOCIATION][1]

    assert run(scenario) == (1 if prof == "old-association-version" else 2)


# -- lls-second-association (and the flaw on the same association) -----------------------------
def _lls(target: DlmsTarget, password: bytes) -> DlmsClient:
    return target.client(None, client_sap=17, mechanism=Mechanism.LLS, password=password,
                         keys=KeySet(server_system_title=target.keys.server_system_title))


async def _lls_opens(target: DlmsTarget, password: bytes) -> bool:
    client = _lls(target, password)
    try:
        await client.connect()
        await client.associate()
    except AssociationRejected:
        return False
    finally:
        await client.close()
    return True


@pytest.mark.parametrize("prof", ["lls-second-association", "default-password-second-lls",
                                  "conformant"])
def test_second_lls_association(tmp_path: Path, prof: str) -> None:
    """SAP 17 is not in the key file; the object list of the management association lists
    its Association LN with SAP 17 in associated_partners_id. Only the flawed profile
    takes the well-known passwords."""
    strong = b"v9#Tq2!mZr7$Lw4p"  # the password in lls-second-association.yaml

    async def scenario() -> tuple[list[int], dict[str, bool], int | None]:
        async with serving(tmp_path / "m", prof) as bench:
            target = bench.target()
            saps = [int(r["client_sap"]) for r in target.keys.extra["roles"]]
            opens = {p.decode(): await _lls_opens(target, p)
                     for p in (strong, b"Gurux", b"00000000", b"wrong")}
            admin = await associated(target)
            objects = object_list(await admin.get(15, CURRENT_ASSOCIATION, 2))
            partner = None
            if "0.0.40.0.8.255" in objects:
                partner = int((await admin.get(15, "0.0.40.0.8.255", 3)).value[0].value)
            await admin.close()
            return saps, opens, partner

    saps, opens, partner = run(scenario)
    assert 17 not in saps
    if prof == "conformant":
        assert partner is None and not any(opens.values())
        return
    assert partner == 17
    assert opens["wrong"] is False
    flawed = prof == "default-password-second-lls"
    assert opens["Gurux"] is flawed and opens["00000000"] is flawed
    assert opens["v9#Tq2!mZr7$Lw4p"] is (not flawed)  # the flaw's own password is random


def test_lls_association_reads_like_a_reader(tmp_path: Path) -> None:
    async def scenario() -> tuple[int, bool]:
        async with serving(tmp_path / "m", "default-password-second-lls") as bench:
            client = _lls(bench.target(), b"Gurux")
            await client.connect()
            await client.associate()
            energy = int((await client.get(3, ENERGY, 2)).value)
            try:
                wrote = (await client.set(8, CLOCK, 3, D.long(60))) is DataAccessResult.SUCCESS
            except DataAccessFailed:
                wrote = False
            await client.close()
            return energy, wrote

    energy, wrote = run(scenario)
    assert energy > 0 and wrote is False


def test_public_association_still_served_alongside(tmp_path: Path) -> None:
    """Guard: the extra association does not disturb the public client."""
    async def scenario() -> bytes:
        async with serving(tmp_path / "m", "lls-second-association") as bench:
            host, port = bench.fleet.endpoints[0]
            stream = await public_stream(host, port)
            await stream.send(public_aarq(bench.target()))
            answer = await asyncio.wait_for(stream.recv(), 5)
            await stream.aclose()
            return answer

    assert AARE.from_bytes(run(scenario)).result is AssociationResult.ACCEPTED


# -- bad release frames never take the meter down ---------------------------------------------
@pytest.mark.parametrize("prof", ["strict-release", "conformant"])
def test_malformed_releases_are_answered_and_the_meter_goes_on(tmp_path: Path, prof: str) -> None:
    bad = [
        b"\x62",                                        # truncated
        b"\x62\x03\x80\x01",                            # length beyond the data
        RLRQ(user_information=b"\x21").to_bytes(),      # glo-initiate-request, no body
        RLRQ(user_information=b"\x21\x05\x30\x00\x00\x00\x01").to_bytes(),  # no tag room
        RLRQ(user_information=b"\xdb\x08" + bytes(8)).to_bytes(),  # general-glo, cut short
        RLRQ(user_information=os.urandom(40)).to_bytes(),
    ]

    async def scenario() -> list[bytes]:
        async with serving(tmp_path / "m", prof) as bench:
            client = await associated(bench.target())
            answers = [await client.exchange(frame, note="bad RLRQ") for frame in bad[:2]]
            for frame in bad[2:]:
                answers.append(await client.exchange(frame, note="bad RLRQ"))
                if prof == "conformant" and answers[-1][:1] == b"\x63":
                    await client.close()  # a bare-looking release was taken: associate again
                    client = await associated(bench.target())
            assert (await client.get(8, CLOCK, 2)).value  # still serving
            await client.close()
            return answers

    answers = run(scenario)
    assert all(answers)
    if prof == "strict-release":
        for answer in answers[2:]:
            assert answer[:1] != b"\x63" or RLRE.from_bytes(answer).reason is not \
                ReleaseResponseReason.NORMAL


# -- legacy-hls-pending ---------------------------------------------------------------------
@pytest.mark.parametrize("prof", ["legacy-hls-pending", "conformant"])
@pytest.mark.parametrize("mechanism", [Mechanism.HLS_MD5, Mechanism.HLS_SHA1],
                         ids=["md5", "sha1"])
def test_legacy_mechanism_accepted_but_never_completed(tmp_path: Path, prof: str,
                                                       mechanism: Mechanism) -> None:
    """The pending meter answers the legacy AARQ "accepted, authentication required", serves
    nothing before pass 3 and refuses every pass 3; the conformant meter rejects the AARQ."""
    async def scenario() -> tuple[AARE | None, bytes, ActionResult | None]:
        async with serving(tmp_path / "m", prof) as bench:
            client = bench.target().client()
            await client.sync_counter()
            await client.connect()
            try:
                aare = await client.associate(mechanism=mechanism, hls_reply=False)
            except AssociationRejected:
                await client.close()
                return None, b"", None
            get = b"\xc0\x01\xc1" + CosemAttributeDescriptor(
                8, ObisCode.parse(CLOCK), 2).to_bytes() + b"\x00"
            served = await client.exchange(client.protect_request(get))
            reply, _ = await client.action(15, CURRENT_ASSOCIATION, 1,
                                           D.octet_string(os.urandom(16)))
            await client.close()
            return aare, served, reply

    aare, served, reply = run(scenario)
    if prof == "conformant":
        assert aare is None
        return
    assert aare is not None and aare.result is AssociationResult.ACCEPTED
    assert served[:1] == b"\xd8"  # nothing served before pass 3
    assert reply is ActionResult.OTHER_REASON
