"""Slow links: waits scale with the measured round-trip time, and an attempt that runs
out of time is "unknown", never "refused".

A relay on 127.0.0.1 adds 0.6 s each way (RTT 1.2 s) in front of a conformant TLS 1.3
mutual-TLS server. TLS 1.3 sends the server's verdict on the client certificate
after the client's Finished, so a fixed 1 s wait read the late alert as "accepted".
"""

from __future__ import annotations

import dataclasses

from metercert.checks import all_checks
from metercert.checks.base import Verdict
from metercert.tlsprobe import audit
from metercert.tlsprobe import handshake as hs
from metercert.tlsprobe.audit import TlsTarget

from .conftest import DelayRelay

ONE_WAY_S = 0.6


def _rtt(port: int) -> float:
    """As the audit measures it: the larger of TCP connect and ClientHello-to-reply."""
    tcp = hs.measure_rtt("127.0.0.1", port, timeout=5)
    first = hs.handshake("127.0.0.1", port, hs.permissive_context(), deadline_s=10)
    return max(tcp, first.reply_s or 0.0)


def test_mutual_tls13_behind_a_slow_link_passes(tls_server, test_pki, tmp_path) -> None:
    server = tls_server("tls13-only")
    target = TlsTarget(
        "127.0.0.1", server.port, test_pki.client.cert, test_pki.client.key, test_pki.ca_cert
    )
    direct = target.scan()  # suites and chain read directly (a full scan over 1.2 s RTT is slow)
    with DelayRelay(server.port, ONE_WAY_S) as relay:
        rtt = _rtt(relay.port)
        assert rtt >= 2 * ONE_WAY_S * 0.9
        timing = hs.Timing(rtt, timeout_s=1.0)  # a short --timeout must not matter
        peer = audit._Peer("127.0.0.1", "127.0.0.1", relay.port, timing)
        creds = audit._throwaway_client_credentials(tmp_path)

        def probe(what: str, cert: str | None, key: str | None) -> audit.HandshakeProbe:
            return audit._client_auth_probe(peer, what, cert=cert, key=key, max_version="TLS 1.3")

        without = probe("without a certificate", None, None)
        stranger = probe("self-signed certificate", *creds["stranger"])
        control = probe("operator certificate", test_pki.client.cert, test_pki.client.key)
    assert timing.settle_s > 2 * rtt  # the wait covers the alert's round trip
    assert without.outcome == "rejected", without
    assert stranger.outcome == "rejected", stranger
    assert control.outcome == "accepted", control
    slow = dataclasses.replace(
        direct,
        probe_without_cert=without,
        probe_untrusted_cert=stranger,
        probe_with_cert=control,
        extra_probes=(),
        rtt_s=rtt,
    )
    target._result = slow
    outcome = all_checks()["TLS-MUTUAL-01"].func(target)
    assert outcome.verdict == Verdict.PASS, outcome.reason


def test_the_old_fixed_one_second_wait_would_have_read_acceptance(tls_server, test_pki) -> None:
    """Control for the test above: with RTT 1.2 s a 1 s wait sees no alert yet."""
    server = tls_server("tls13-only")
    with DelayRelay(server.port, ONE_WAY_S) as relay:
        ctx = hs.permissive_context(max_version="TLS 1.3")
        got = hs.handshake("127.0.0.1", relay.port, ctx, deadline_s=10, settle_s=1.0)
    assert got.outcome == "accepted" and "still open" in got.detail


def test_a_timed_out_suite_attempt_is_unknown_not_refused(tls_server, test_pki) -> None:
    server = tls_server("tls12-only")
    with DelayRelay(server.port, ONE_WAY_S) as relay:
        tight = audit._Peer("127.0.0.1", "127.0.0.1", relay.port, hs.Timing(0.0, 0.5))
        suites = audit._own_suites("TLS 1.2") & set(audit._suite_universe("TLS 1.2"))
        accepted, unknown, why = audit._own_enumeration(tight, "TLS 1.2", set(suites))
        assert accepted == [] and unknown == set(suites) and "not finished within" in why
        found, gap, _ = audit._enumerate_version(tight, "TLS 1.2", None, "scanner error (test)")
        assert found == [] and gap is not None and "no answer" in gap
        # the same relay with a timing scaled to its RTT gets the answer
        rtt = _rtt(relay.port)
        scaled = audit._Peer("127.0.0.1", "127.0.0.1", relay.port, hs.Timing(rtt, 0.5))
        accepted, unknown, _ = audit._own_enumeration(
            scaled, "TLS 1.2", {"ECDHE-ECDSA-AES128-GCM-SHA256", "AES128-SHA"}
        )
    assert accepted == ["ECDHE-ECDSA-AES128-GCM-SHA256"] and unknown == set()
