"""Head-end checks: the client under test against a hostile reference meter.

Each check asks the ``headend`` target for the observation of one scenario (the client
run once while the meter lied in one scripted way) and judges what the client did next:
whether it printed the false value, reported an error, sent its next request, closed,
hung or crashed. A refusal counts only when the same client read the genuine values in
the baseline run (else it might refuse everything); a decision the meter and the output
cannot show is INCONCLUSIVE. The checks import no meter code: they read the target's
records (:mod:`metercert.headend.observation`).
"""

from __future__ import annotations

from typing import Any

from metercert.checks.base import (
    CheckOutcome,
    Evidence,
    Severity,
    TargetKind,
    check,
    fail,
    inconclusive,
    not_applicable,
    passed,
)
from metercert.headend.observation import (
    CIPHERTEXT_MASK,
    Observation,
    forged_value,
    genuine_value,
)

_T = TargetKind.HEADEND
_LIMIT = 120.0   # a check may run the client twice; each run has its own limit (30 s)
PUSH_GENUINE = ("7001", "7004")
#: ded-get/set/action requests and general-ded-ciphering (STANDARDS.md, ciphered APDU tags)
_DEDICATED_TAGS = frozenset({0xD0, 0xD1, 0xD3, 0xDC})
PUSH_FORGED = "907003"


def _evidence(obs: Observation) -> tuple[Evidence, ...]:
    run = obs.run
    output = (run.stdout.strip()[-3000:] or "(nothing on stdout)")
    if run.stderr.strip():
        output += "\n--- stderr ---\n" + run.stderr.strip()[-1500:]
    return (Evidence(f"meter's view ({obs.scenario})", obs.trace(), "apdu-trace", "hostile meter"),
            Evidence("client output", output, "text", run.command),
            Evidence("client process", run.outcome(), "value", run.command))


def _baseline(target: Any) -> CheckOutcome | None:
    if target.baseline_ok:
        return None
    ev = _evidence(target.baseline) if target.baseline is not None else ()
    return inconclusive("the client did not read the genuine values in the baseline run, so a "
                        f"refusal would prove nothing: {target.baseline_problem}", *ev)


def _rejection(obs: Observation, n: int) -> str:
    """How the client showed it refused the response to GET ``n`` ("" if it did not)."""
    run = obs.run
    if n in run.errors:
        return f"reported an error for read {n}: {run.errors[n] or '(no text)'}"
    answer = obs.response_to(n)
    after = obs.requests_after(answer) if answer is not None else []
    if not any(e.read is not None for e in after):
        if run.timed_out:
            return ""
        if run.exit_code not in (0, None):
            return (f"sent no further GET and exited with code {run.exit_code} "
                    f"(connection ended by {obs.ended_by()})")
        if after and after[0].tag == 0x62:
            return "released the association at once instead of going on"
    return ""


def _after_lie(obs: Observation, n: int) -> str:
    """What the client made of the genuine responses that followed the lie at GET ``n``:
    "refused ..." when it printed an error for one of them, else a note for the reason."""
    run, taken = obs.run, []
    for e in obs.management_events():
        if e.direction != "tx" or e.read is None or e.read <= n or e.hostile:
            continue
        if e.read in run.errors and e.read not in run.values:
            return (f"refused the genuine response to GET {e.read} too "
                    f"({run.errors[e.read] or 'no text'})")
        if run.values.get(e.read) == str(genuine_value(e.read)):
            taken.append(e.read)
    return f"; it then accepted the genuine response to GET {taken[0]}" if taken else ""


def _judge_refusal(target: Any, obs: Observation, n: int, what: str,
                   forged: str | None = None) -> CheckOutcome:
    """The response to GET ``n`` was a lie (``what``): the client must not take its value."""
    if (no := _baseline(target)) is not None:
        return no
    ev = _evidence(obs)
    answer = obs.response_to(n)
    if answer is None:
        return inconclusive(f"the client never sent GET {n}, so it was never sent {what}", *ev)
    if not answer.hostile:
        notes = "; ".join(note for c in obs.connections for note in c.notes) or "no reason recorded"
        return inconclusive(f"the meter could not send {what} ({notes})", *ev)
    printed = obs.run.values.get(n)
    if printed is not None:
        if printed == forged:
            return fail(f"the client accepted {what}: it printed read {n} value {printed}, "
                        "the value the lie carried", *ev)
        # a client that refused the lie and asked again numbers the retry as read n
        retried = {str(genuine_value(e.read)): e.read for e in obs.management_events()
                   if e.direction == "tx" and e.read is not None and e.read > n and not e.hostile}
        if printed in retried:
            return passed(f"the client refused {what} and asked again: its read {n} shows "
                          f"{printed}, the genuine answer to GET {retried[printed]}", *ev)
        return fail(f"the client took a value from {what}: it printed read {n} value {printed}, "
                    "which no genuine response carried", *ev)
    how = _rejection(obs, n)
    if how:
        after = _after_lie(obs, n)
        if after.startswith("refused"):
            return fail(f"the client refused {what} but then {after}: a lie spoiled its "
                        "association for genuine responses", *ev)
        return passed(f"the client refused {what}: it {how}{after}", *ev)
    return inconclusive(f"the client printed no value for read {n} but showed no refusal either "
                        f"(no error line, it went on; {obs.run.outcome()})", *ev)


@check("HE-TAG-01", "Client rejects a response whose GCM tag was altered",
       severity=Severity.CRITICAL, target=_T, timeout=_LIMIT,
       requirements=["DLMS:APDU-INTEGRITY", "CRA:I.2f"], tags=["tag", "integrity", "headend"])
async def tag_flipped(target: Any) -> CheckOutcome:
    """GET 1 is answered with a forged value whose tag has one bit flipped (the ciphertext
    decrypts to the forged value: a client that skips the tag check shows it)."""
    obs = await target.observe("flip-tag")
    return _judge_refusal(target, obs, 1, "a response with a flipped tag bit",
                          str(forged_value(1)))


@check("HE-TAG-02", "Client rejects a response whose ciphertext was altered",
       severity=Severity.CRITICAL, target=_T, timeout=_LIMIT,
       requirements=["DLMS:APDU-INTEGRITY", "CRA:I.2f"], tags=["tag", "integrity", "headend"])
async def ciphertext_flipped(target: Any) -> CheckOutcome:
    """GET 1 is answered genuinely but with one bit of the last ciphertext byte flipped: it
    lands in the value, so a client that does not verify the tag prints a changed value."""
    obs = await target.observe("flip-ciphertext")
    return _judge_refusal(target, obs, 1, "a response with a flipped ciphertext bit",
                          str(genuine_value(1) ^ CIPHERTEXT_MASK))


@check("HE-REPLAY-01", "Client rejects a replayed response",
       severity=Severity.CRITICAL, target=_T, timeout=_LIMIT,
       requirements=["DLMS:IC-REPLAY", "CRA:I.2f"], tags=["replay", "invocation-counter", "headend"])
async def response_replayed(target: Any) -> CheckOutcome:
    """GET 2 is answered with the meter's response to GET 1, byte for byte."""
    obs = await target.observe("replay")
    return _judge_refusal(target, obs, 2, "the response to GET 1 replayed", str(genuine_value(1)))


@check("HE-IC-01", "Client rejects a response that reuses the server's last invocation counter",
       severity=Severity.HIGH, target=_T, timeout=_LIMIT,
       requirements=["DLMS:IC-REPLAY"], tags=["replay", "invocation-counter", "headend"])
async def counter_equal(target: Any) -> CheckOutcome:
    """GET 2 is answered with a forged value under a valid tag, reusing the counter of the
    response to GET 1."""
    obs = await target.observe("equal-counter")
    return _judge_refusal(target, obs, 2, "a response reusing the previous counter",
                          str(forged_value(2)))


@check("HE-IC-02", "Client rejects a response with a lower server invocation counter",
       severity=Severity.HIGH, target=_T, timeout=_LIMIT,
       requirements=["DLMS:IC-REPLAY"], tags=["replay", "invocation-counter", "headend"])
async def counter_lower(target: Any) -> CheckOutcome:
    """GET 2 is answered with a forged value under a valid tag and a counter one below the
    response to GET 1."""
    obs = await target.observe("lower-counter")
    return _judge_refusal(target, obs, 2, "a response with a lower counter", str(forged_value(2)))


@check("HE-IC-03", "A forged high counter does not lock the client out of genuine responses",
       severity=Severity.HIGH, target=_T, timeout=_LIMIT,
       requirements=["DLMS:IC-REPLAY", "DLMS:APDU-INTEGRITY", "CRA:I.2h"],
       tags=["tag", "invocation-counter", "headend"])
async def forged_counter_lockout(target: Any) -> CheckOutcome:
    """GET 1 is answered twice: first with a forged value, a counter 1000 ahead and a bad
    tag, then at once genuinely with the right next counter. The client must drop the
    forgery and still take a genuine response: its expected server counter may move only
    after a tag verifies (dlms-cosem 25.1.0 moves it first, STANDARDS.md)."""
    obs = await target.observe("forged-high-counter")
    if (no := _baseline(target)) is not None:
        return no
    ev = _evidence(obs)
    run = obs.run
    answer = obs.response_to(1)
    if answer is None or not answer.hostile:
        return inconclusive("the client never sent GET 1, so it was never sent the forgery", *ev)
    forged, genuine = str(forged_value(1)), str(genuine_value(1))
    if forged in run.values.values():
        return fail(f"the client accepted the forged response with the bad tag (printed {forged})",
                    *ev)
    later = [str(genuine_value(n)) for n in range(1, target.settings.reads + 1)]
    taken = {n: v for n, v in run.values.items() if v in later}
    if taken:
        return passed("the client dropped the forged response and accepted genuine responses "
                      f"after it ({', '.join(f'read {n} value {v}' for n, v in taken.items())}): "
                      "the forged counter did not move its window", *ev)
    if run.errors and not run.timed_out and (len(run.errors) > 1 or obs.requests_after(answer)):
        text = " | ".join(f"read {n}: {t}" for n, t in sorted(run.errors.items()))[:600]
        defect = ""
        if "counter" in text.lower():
            defect = (": it refused the genuine response by its counter, so it had moved its "
                      "expected server counter to the forged response's counter before verifying "
                      "the tag (the dlms-cosem 25.1.0 defect, STANDARDS.md 'known defects')")
        return fail("a forged high counter locked the client out: it took none of the genuine "
                    f"responses ({genuine} came right after the forgery){defect}; client said: "
                    f"{text}", *ev)
    again = await target.observe("genuine-again", fresh=True)
    ev2 = ev + _evidence(again)
    want = {n: str(genuine_value(n)) for n in range(1, target.settings.reads + 1)}
    if again.run.values == want:
        return passed("the client ended the association after the forged response and its next "
                      "run accepted the genuine responses (not locked out)", *ev2)
    return fail("after the forged high counter the client's next run did not accept the "
                f"genuine responses: printed {again.run.values or 'nothing'}", *ev2)


@check("HE-PROT-01", "Client rejects an unprotected response on a ciphered association",
       severity=Severity.CRITICAL, target=_T, timeout=_LIMIT,
       requirements=["DLMS:POLICY-ENFORCED", "CRA:I.2f"], tags=["policy", "headend"])
async def unprotected_response(target: Any) -> CheckOutcome:
    """GET 1 is answered with a plain get-response carrying a forged value."""
    obs = await target.observe("unprotected")
    return _judge_refusal(target, obs, 1, "an unprotected response", str(forged_value(1)))


@check("HE-PROT-02", "Client rejects an under-protected (authenticated-only) response",
       severity=Severity.HIGH, target=_T, timeout=_LIMIT,
       requirements=["DLMS:POLICY-ENFORCED", "CRA:I.2e"], tags=["policy", "headend"])
async def under_protected_response(target: Any) -> CheckOutcome:
    """GET 1 is answered with a forged value authenticated (valid GMAC) but not encrypted,
    while the association's policy asks for both."""
    obs = await target.observe("under-protected")
    return _judge_refusal(target, obs, 1, "an authenticated-only response", str(forged_value(1)))


@check("HE-SUITE-01", "Client rejects a response in a lower security suite",
       severity=Severity.HIGH, target=_T, timeout=_LIMIT,
       requirements=["DLMS:SUITE-DOWNGRADE", "DLMS:SUITE-NEGOTIATION"], tags=["downgrade", "headend"])
async def lower_suite_response(target: Any) -> CheckOutcome:
    """GET 1 is answered with a forged value whose security control byte names suite 0
    (valid tag under the association's keys) on a suite 1 or 2 association."""
    if target.suite == 0:
        return not_applicable("the association is in suite 0: there is no lower suite")
    obs = await target.observe("lower-suite")
    return _judge_refusal(target, obs, 1, "a response in suite 0", str(forged_value(1)))


@check("HE-HLS-01", "Client aborts when the meter's f(CtoS) in HLS pass 4 is wrong",
       severity=Severity.CRITICAL, target=_T, timeout=_LIMIT,
       requirements=["DLMS:HLS-AUTH"], tags=["authentication", "headend"])
async def wrong_f_ctos(target: Any) -> CheckOutcome:
    """The reply_to_HLS_authentication answer carries an f(CtoS) with its last byte
    altered: the meter has not proved it holds the keys, so no request may follow."""
    if (no := _baseline(target)) is not None:
        return no
    obs = await target.observe("wrong-f-ctos")
    ev = _evidence(obs)
    if not any("HLS pass 4" in n for c in obs.connections for n in c.notes):
        return inconclusive("the client never reached HLS pass 4 (no reply_to_HLS_authentication)",
                            *ev)
    gets = obs.gets()
    if gets or obs.run.values:
        return fail(f"the client went on after a wrong f(CtoS): it sent {len(gets)} GET(s) and "
                    f"printed {obs.run.values or 'no value'}", *ev)
    run = obs.run
    if run.timed_out:
        return inconclusive("the client sent no GET but hung until it was killed", *ev)
    if run.exit_code != 0 or "error" in run.stdout:
        return passed("the client sent no request after the wrong f(CtoS) and ended "
                      f"({run.outcome()}; connection ended by {obs.ended_by()})", *ev)
    return inconclusive("the client sent no GET but reported success", *ev)


def _judge_robust(target: Any, obs: Observation, what: str) -> CheckOutcome:
    if (no := _baseline(target)) is not None:
        return no
    ev = _evidence(obs)
    answer = obs.response_to(1)
    if answer is None or not answer.hostile:
        return inconclusive(f"the client never sent GET 1, so it was never sent {what}", *ev)
    run = obs.run
    if run.timed_out:
        return fail(f"the client hung after {what}: still running after "
                    f"{run.duration_s:.0f} s, killed", *ev)
    if run.crashed:
        return fail(f"the client crashed on {what}: {run.crashed}", *ev)
    taken = [n for n in range(1, 4) if n in run.values and (lie := obs.response_to(n))
             and lie.hostile and "genuine" not in lie.hostile]
    if taken:
        return fail(f"the client printed values for {what}: reads {taken}", *ev)
    errors = ", ".join(f"read {n}: {t[:80]}" for n, t in sorted(run.errors.items())) or "no error lines"
    return passed(f"the client ended by itself after {what} ({run.outcome()}; {errors})", *ev)


@check("HE-ROBUST-01", "Client survives malformed responses (no crash, no hang)",
       severity=Severity.HIGH, target=_T, timeout=_LIMIT,
       requirements=["DLMS:ROBUSTNESS", "EN303645:5.13-1", "CRA:I.2h"],
       tags=["robustness", "headend"])
async def malformed_responses(target: Any) -> CheckOutcome:
    """GET 1 gets a ciphered APDU cut short, GET 2 a valid tag over a plaintext that does not
    decode, GET 3 an APDU with an unknown tag."""
    return _judge_robust(target, await target.observe("malformed"), "malformed responses")


@check("HE-ROBUST-02", "Client survives oversized responses (no crash, no hang)",
       severity=Severity.HIGH, target=_T, timeout=_LIMIT,
       requirements=["DLMS:ROBUSTNESS", "EN303645:5.13-1", "CRA:I.2h"],
       tags=["robustness", "headend"])
async def oversized_responses(target: Any) -> CheckOutcome:
    """GET 1 gets a genuine response carrying 60000 bytes (beyond the negotiated PDU size),
    GET 2 a wrapper header announcing 65535 bytes of which 32 ever come."""
    return _judge_robust(target, await target.observe("oversized"), "oversized responses")


async def _push_observation(target: Any) -> tuple[Observation | None, CheckOutcome | None]:
    if not target.settings.pushes:
        return None, inconclusive("the campaign does not say the client takes pushes "
                                  "(pushes: true), so its decision about one cannot be seen")
    if (no := _baseline(target)) is not None:
        return None, no
    obs = await target.observe("push")
    got = list(obs.run.pushes.values())
    if not all(v in got for v in PUSH_GENUINE):
        return obs, inconclusive(f"the client did not print both genuine pushes "
                                 f"{PUSH_GENUINE}: printed {got or 'none'}", *_evidence(obs))
    return obs, None


@check("HE-PUSH-01", "Client rejects a replayed push (DataNotification)",
       severity=Severity.HIGH, target=_T, timeout=_LIMIT,
       requirements=["DLMS:IC-REPLAY"], tags=["replay", "push", "headend"])
async def push_replayed(target: Any) -> CheckOutcome:
    """After association the meter pushes a genuine notification, the same bytes again, a
    badly tagged one and a last genuine one."""
    obs, early = await _push_observation(target)
    if early is not None or obs is None:
        return early  # type: ignore[return-value]
    got = list(obs.run.pushes.values())
    if got.count(PUSH_GENUINE[0]) > 1:
        return fail(f"the client accepted push 1 twice (the replay): printed {got}",
                    *_evidence(obs))
    return passed(f"the client took push 1 once and refused its replay: printed {got}",
                  *_evidence(obs))


@check("HE-PUSH-02", "Client rejects a push whose tag does not verify",
       severity=Severity.HIGH, target=_T, timeout=_LIMIT,
       requirements=["DLMS:APDU-INTEGRITY"], tags=["tag", "push", "headend"])
async def push_bad_tag(target: Any) -> CheckOutcome:
    """The third push carries a forged value with a flipped tag bit."""
    obs, early = await _push_observation(target)
    if early is not None or obs is None:
        return early  # type: ignore[return-value]
    got = list(obs.run.pushes.values())
    if PUSH_FORGED in got:
        return fail(f"the client accepted the badly tagged push: printed {got}", *_evidence(obs))
    return passed(f"the client refused the badly tagged push: printed {got}", *_evidence(obs))


@check("HE-AUTH-01", "Client offers no legacy or missing authentication on management associations",
       severity=Severity.HIGH, target=_T, timeout=_LIMIT,
       requirements=["DLMS:HLS-AUTH"], tags=["authentication", "headend"])
async def no_legacy_mechanism(target: Any) -> CheckOutcome:
    """Every AARQ the client sent in this campaign: the management association must name
    HLS-GMAC, HLS-SHA-256 or HLS-ECDSA; MD5 (3) and SHA-1 (4) are never offered anywhere."""
    if target.baseline is None:
        return inconclusive("no client run was observed")
    aarqs = [(o.scenario, a) for o in target.history for c in o.connections for a in c.aarqs]
    if not aarqs:
        return inconclusive("the client sent no AARQ in this campaign")
    names = {None: "none", 0: "none", 1: "LLS", 2: "HLS (manufacturer)", 3: "HLS-MD5",
             4: "HLS-SHA1", 5: "HLS-GMAC", 6: "HLS-SHA256", 7: "HLS-ECDSA"}
    bad = [(s, a) for s, a in aarqs
           if a.mechanism in (3, 4) or (a.sap == target.management_sap and a.mechanism not in (5, 6, 7))]
    seen = sorted({f"sap {a.sap}: {names.get(a.mechanism, a.mechanism)}" for _, a in aarqs})
    ev = Evidence("AARQs seen", "\n".join(seen), "value", "hostile meter")
    if bad:
        s, a = bad[0]
        return fail(f"the client offered {names.get(a.mechanism, a.mechanism)} on client SAP "
                    f"{a.sap} (scenario {s}); {len(bad)} such AARQ(s) of {len(aarqs)}", ev)
    if not any(a.sap == target.management_sap for _, a in aarqs):
        return inconclusive("the client never opened the management association", ev)
    return passed(f"{len(aarqs)} AARQs in this campaign, each with a current mechanism", ev)


@check("HE-IC-SEND-01", "Client invocation counters strictly increase, also across its restarts",
       severity=Severity.CRITICAL, target=_T, timeout=_LIMIT,
       requirements=["DLMS:IC-UNIQUE", "DLMS:IC-PERSIST"],
       tags=["invocation-counter", "headend"])
async def client_counters_increase(target: Any) -> CheckOutcome:
    """Every counter the client sent under the management keys, in every run of this
    campaign (each run is a fresh start of the client process) plus one more run now."""
    await target.observe("restart", fresh=True)
    # a dedicated key is new in every association, and so is its counter space: only the
    # global-key forms count (service-specific global, general-glo, the AARQ's initiate)
    sequence = [(i, o.scenario, e.invocation_counter, e.summary)
                for i, o in enumerate(target.history, 1) for e in o.management_events()
                if e.direction == "rx" and e.invocation_counter is not None
                and e.tag not in _DEDICATED_TAGS]
    runs = {i for i, *_ in sequence}
    if len(runs) < 2:
        return inconclusive(f"counters were seen in {len(runs)} client run(s); two are needed")
    highest: tuple[int, str, int, str] | None = None
    for item in sequence:
        i, scenario, ic, what = item
        if highest is not None and ic <= highest[2]:
            where = "a later run" if i != highest[0] else "the same run"
            return fail(f"the client reused or lowered its counter: run {i} ({scenario}) sent "
                        f"{what} with IC {ic} after IC {highest[2]} in run {highest[0]} "
                        f"({highest[1]}); {where}",
                        Evidence("counters sent", _counter_lines(sequence), "value", "hostile meter"))
        if highest is None or ic > highest[2]:
            highest = item
    return passed(f"{len(sequence)} counters over {len(runs)} client runs, strictly increasing "
                  f"(last {highest[2] if highest else '?'})",
                  Evidence("counters sent", _counter_lines(sequence), "value", "hostile meter"))


def _counter_lines(sequence: list[tuple[int, str, int, str]]) -> str:
    lines = [f"run {i} ({s}): IC {ic} {what}" for i, s, ic, what in sequence]
    return "\n".join(lines if len(lines) <= 60 else lines[:30] + ["..."] + lines[-30:])


@check("HE-KEY-01", "Client key transfers are wrapped with the KEK (RFC 3394)",
       severity=Severity.HIGH, target=_T, timeout=_LIMIT,
       requirements=["DLMS:KEY-WRAP"], tags=["keys", "headend"])
async def key_transfer_wrapped(target: Any) -> CheckOutcome:
    """The client is asked to transfer a key (METERCERT_ACTION=key-transfer, or the
    campaign's key-transfer command); each key_transfer entry must unwrap under the KEK."""
    obs = await target.observe("key-transfer")
    ev = _evidence(obs)
    transfers = [t for c in obs.connections for t in c.key_transfers]
    if not transfers:
        return inconclusive("the client sent no key_transfer when asked (no key-transfer "
                            "support, or the campaign names no key-transfer command)", *ev)
    bad = [t for t in transfers if not t.unwraps]
    lines = "\n".join(f"key_id {t.key_id}: {t.wrapped_length} bytes, {t.detail}" for t in transfers)
    if bad:
        return fail(f"{len(bad)} of {len(transfers)} transferred keys are not correctly wrapped: "
                    f"{bad[0].detail}", Evidence("key transfers", lines, "value"), *ev)
    return passed(f"{len(transfers)} key transfer(s), each unwraps under the KEK",
                  Evidence("key transfers", lines, "value"), *ev)


@check("HE-KEK-01", "The client never sends the KEK",
       severity=Severity.CRITICAL, target=_T, timeout=_LIMIT,
       requirements=["DLMS:KEK-CONFIDENTIAL"], tags=["keys", "headend"])
async def kek_never_sent(target: Any) -> CheckOutcome:
    """Every byte the client sent in this campaign (and the plaintext of every request the
    meter deciphered), including its key transfer, is searched for the KEK."""
    await target.observe("key-transfer")
    kek = target.kek
    if not kek:
        return inconclusive("the meter has no KEK for the management association")
    apdus = [e for o in target.history for c in o.connections for e in c.events
             if e.direction == "rx"]
    if not any(e.sap == target.management_sap for e in apdus):
        return inconclusive("the client never opened the management association")
    for e in apdus:
        if kek in e.raw or kek in e.plain:
            where = "in clear on the wire" if kek in e.raw else "inside a ciphered request"
            return fail(f"the KEK appears {where}: {e.summary} on client SAP {e.sap}")
    return passed(f"the KEK appears in none of the {len(apdus)} APDUs the client sent "
                  "(raw bytes and deciphered plaintext)")
