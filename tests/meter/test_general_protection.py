"""The reference meter in the general forms (issue 16): general-ciphering (0xDD) and
general-signing (0xDF), alone and nested, in suites 1 and 2, over a real loopback socket
with our own client; and each general-protection flaw seen from the outside."""

from __future__ import annotations

from pathlib import Path

import pytest

from metercert.client.errors import ExceptionResponseReceived, ResponseNotTrusted
from metercert.cosem import DataType
from metercert.meter.objects import Event
from metercert.meter.profile import load_profile
from metercert.security import Key, wrap_key
from metercert.security import agreement as agr
from metercert.security import general as g

from ._support import CLOCK, profile, run, serving

LAYERS = {"signed-then-ciphered": (0xDD, 0xDF), "ciphered-then-signed": (0xDF, 0xDD)}


def _layers(apdu: bytes) -> tuple[int, ...]:
    """The tags of the general layers visible without keys, outermost first."""
    out = []
    if apdu[0] == 0xDF:
        out.append(0xDF)
        apdu = g.parse_general_signing(apdu).content
    if apdu[0] == 0xDD:
        out.append(0xDD)
    return tuple(out)


def _visible(tags: tuple[int, ...]) -> tuple[int, ...]:
    return tags if tags[0] == 0xDF else tags[:1]


@pytest.mark.parametrize("name", ["suite1-general", "suite2-general"])
def test_nested_requests_are_answered_in_the_same_layers(tmp_path: Path, name: str) -> None:
    async def scenario() -> None:
        async with serving(tmp_path / "m", name) as bench:
            target = bench.target()
            async with target.client() as c:
                for layering, tags in LAYERS.items():
                    mark = c.trace.mark()
                    value = await c.get(8, CLOCK, 2, general=layering)
                    assert value.type is DataType.OCTET_STRING
                    sent, answer = c.trace.wires(mark)[-2:]
                    assert _layers(sent) == _visible(tags) == _layers(answer)
                    # the meter signed with its own key in the configured suite
                    _, layers = g.open_nested(
                        answer, keys=c.settings.keys,
                        signers={bench.meter.state.system_title: c.settings.keys.server_public_key})
                    assert [la.tag for la in layers] == list(tags)
                    gc = next(la for la in layers if la.tag == 0xDD)
                    assert gc.security_control.suite == load_profile(name).security_suite
                    assert gc.header.recipient_system_title == c.settings.keys.client_system_title

    run(scenario)


def test_unsigned_or_signing_only_requests_are_refused_and_logged(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(tmp_path / "m", "suite1-general") as bench:
            async with bench.target().client() as c:
                for layering in ("ciphering", "signing"):
                    with pytest.raises(ExceptionResponseReceived):
                        await c.get(8, CLOCK, 2, general=layering)
                await c.get(8, CLOCK, 2, general="signed-then-ciphered")  # still associated
            details = [d for _, code, d in bench.meter.log.entries
                       if code == Event.UNPROTECTED_REQUEST]
        assert any("without a signature" in d for d in details)
        assert any("without general-ciphering" in d for d in details)

    run(scenario)


def test_ciphering_profile_serves_unsigned_general_ciphering(tmp_path: Path) -> None:
    async def scenario() -> None:
        prof = profile("suite1-general", general_protection="ciphering")
        async with serving(tmp_path / "m", prof) as bench, bench.target().client() as c:
            await c.get(8, CLOCK, 2, general="ciphering")
            assert _layers(c.trace.wires()[-1]) == (0xDD,)

    run(scenario)


def test_replayed_general_request_and_foreign_recipient_are_refused(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(tmp_path / "m", "suite2-general") as bench:
            async with bench.target().client() as c:
                from metercert.cosem import CosemAttributeDescriptor, GetRequestNormal

                request = GetRequestNormal(CosemAttributeDescriptor(8, c.clock_obis, 2)).to_bytes()
                wire = c.protect_request(request, general="signed-then-ciphered")
                first = await c.exchange(wire)
                assert first[0] == 0xDD
                again = await c.exchange(wire)
                assert again[0] == 0xD8 and again[2] == 0x06  # invocation-counter-error
                elsewhere = c.protect_request(request, general="signed-then-ciphered",
                                              recipient=bytes(8))
                assert (await c.exchange(elsewhere))[0] == 0xD8
            codes = [code for _, code, _ in bench.meter.log.entries]
        assert Event.REPLAY_REJECTED in codes

    run(scenario)


def test_wrapped_key_request_is_served_and_answered_with_a_wrapped_key(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(tmp_path / "m", "suite2-general") as bench, \
                bench.target().client() as c:
            kek = c.settings.keys.kek
            assert kek is not None
            session_key = Key(bytes(range(32)), "session")
            info = g.WrappedKey(wrap_key(kek, session_key))
            value = await c.get(8, CLOCK, 2, general="signed-then-ciphered", key_info=info,
                                encryption_key=session_key)
            assert value.type is DataType.OCTET_STRING
            answer = g.parse_general_ciphering(c.trace.wires()[-1])
            assert isinstance(answer.key_info, g.WrappedKey)
            assert answer.key_info.key_ciphered_data != info.key_ciphered_data  # its own key
            # a wrap that fails RFC 3394's check is refused
            bad = g.WrappedKey(bytes(40))
            with pytest.raises(ExceptionResponseReceived):
                await c.get(8, CLOCK, 2, general="signed-then-ciphered", key_info=bad,
                            encryption_key=session_key)

    run(scenario)


def test_agreed_key_request_is_served_and_answered_with_an_agreed_key(tmp_path: Path) -> None:
    """C(1e, 1s) both ways: our ephemeral key against the meter's key-agreement certificate,
    the meter's against the client's; an ephemeral key signed by another key is refused."""
    async def scenario() -> None:
        async with serving(tmp_path / "m", "suite1-general") as bench, \
                bench.target().client() as c:
            for layering in LAYERS:
                value = await c.get(8, CLOCK, 2, general=layering, agreed=True)
                assert value.type is DataType.OCTET_STRING
                wire = c.trace.wires()[-1]
                if wire[0] == 0xDF:
                    wire = g.parse_general_signing(wire).content
                answer = g.parse_general_ciphering(wire)
                assert isinstance(answer.key_info, g.AgreedKey)
                assert answer.key_info.scheme is agr.KeyAgreementScheme.ONE_PASS_DIFFIE_HELLMAN
            with pytest.raises(ExceptionResponseReceived):
                # the APDU's signature is the client's, the ephemeral key's a stranger's
                await c.get(8, CLOCK, 2, general="ciphered-then-signed", agreed=True,
                            ephemeral_signer=agr.generate_key_pair(1))
            details = [d for _, _, d in bench.meter.log.entries]
        assert any("ephemeral key is not signed by the client" in d for d in details)

    run(scenario)


def test_client_refuses_an_answer_whose_signature_does_not_verify(tmp_path: Path) -> None:
    from dataclasses import replace

    async def scenario() -> None:
        async with serving(tmp_path / "m", "suite1-general") as bench:
            target = bench.target()
            other = agr.generate_key_pair(1).public_key()
            async with target.client() as c:
                c.settings = replace(c.settings, keys=replace(c.settings.keys,
                                                              server_public_key=other))
                with pytest.raises(ResponseNotTrusted):
                    await c.get(8, CLOCK, 2, general="ciphered-then-signed")

    run(scenario)


# flaw -> (profile, the forgery it lets through)
def _forge(c, flaw: str) -> bytes:  # type: ignore[no-untyped-def]
    from metercert.cosem import CosemAttributeDescriptor, GetRequestNormal

    plain = GetRequestNormal(CosemAttributeDescriptor(8, c.clock_obis, 2)).to_bytes()
    if flaw == "general-signature-unchecked":
        return c.protect_request(plain, general="signed-then-ciphered",
                                 signing_key=agr.generate_key_pair(2))
    if flaw == "unsigned-general-accepted":
        return c.protect_request(plain, general="ciphering")
    return c.protect_request(plain, general="signed-then-ciphered", suite=1, sign_suite=2)


@pytest.mark.parametrize("flaw,conformant", [
    ("general-signature-unchecked", "suite2-general"),
    ("unsigned-general-accepted", "suite1-general"),
    ("general-suite-unchecked", "suite2-general"),
])
def test_each_flaw_lets_its_forgery_through_and_the_conformant_meter_does_not(
        tmp_path: Path, flaw: str, conformant: str) -> None:
    async def answer(name: str) -> bytes:
        async with serving(tmp_path / name, name) as bench, bench.target().client() as c:
            return await c.exchange(_forge(c, flaw))

    assert run(lambda: answer(conformant))[0] == 0xD8
    assert run(lambda: answer(flaw))[0] == 0xDD


def test_general_protection_is_a_checked_profile_setting() -> None:
    from metercert.errors import InputFileError
    from metercert.meter.profile import profile_from_mapping

    with pytest.raises(InputFileError, match="general_protection must be one of"):
        profile_from_mapping({"general_protection": "sometimes"})
    with pytest.raises(InputFileError, match="needs security_suite 1 or 2"):
        profile_from_mapping({"general_protection": "signing", "security_suite": 0})
    assert profile_from_mapping({"general_protection": None}).general_protection is None


def test_client_does_not_trust_a_downgraded_general_answer(tmp_path: Path) -> None:
    """A meter that went along with a suite-1 request on a suite-2 association answers in
    suite 1: our client refuses that answer, although it deciphers."""
    async def scenario() -> None:
        async with serving(tmp_path / "m", "general-suite-unchecked") as bench, \
                bench.target().client() as c:
            with pytest.raises(ResponseNotTrusted, match="suite 1 on a suite 2"):
                await c.get(8, CLOCK, 2, general="signed-then-ciphered", suite=1, sign_suite=2)

    run(scenario)
