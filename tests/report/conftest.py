"""A finished campaign run with every verdict, built directly from result values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from metercert.campaign import CampaignRun, Deselected
from metercert.checks.base import (
    CheckOutcome,
    CheckResult,
    CheckSpec,
    Evidence,
    Severity,
    TargetKind,
    Verdict,
)

REPLAY_TRACE = (
    "-> C8 1E 30 01234567 411312FF935A47566827C467BC 7D825C3BE4A77C3FCC056B6B\n"
    "<- CC 14 30 01234568 9F2B... (meter answered the replayed request)"
)
HOSTILE = '<script>alert("x")</script> & <img src=x onerror=alert(1)>'


def _noop(target: object) -> None:  # the runner is not involved here
    return None


def spec(id: str, kind: TargetKind, reqs: list[str], severity: Severity = Severity.HIGH,
         destructive: bool = False, tags: tuple[str, ...] = ()) -> CheckSpec:
    return CheckSpec(id=id, title=f"Title of {id}", severity=severity, target=kind,
                     requirements=tuple(reqs), func=_noop, tags=tags, destructive=destructive)


def make_run() -> CampaignRun:
    start = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
    results = (
        CheckResult(spec("dlms.suite-negotiation", TargetKind.DLMS, ["DLMS:SUITE-NEGOTIATION"]),
                    CheckOutcome(Verdict.PASS, "suite 1 negotiated as configured",
                                 (Evidence("negotiated suite", "1", "value", "AARE"),)), 0.21),
        CheckResult(spec("dlms.ic-replay", TargetKind.DLMS, ["DLMS:IC-REPLAY", "EN303645:5.5-1"],
                         Severity.CRITICAL, tags=("replay",)),
                    CheckOutcome(Verdict.FAIL, "meter accepted a replayed invocation counter 0x01234567",
                                 (Evidence("replayed glo-get-request", REPLAY_TRACE, "apdu-trace",
                                           "association 0.0.40.0.3.255"),)), 1.5),
        CheckResult(spec("dlms.ic-persist", TargetKind.DLMS, ["DLMS:IC-PERSIST"], destructive=True),
                    CheckOutcome(Verdict.INCONCLUSIVE, "timed out: no verdict within the check's limit of 30 s"),
                    30.0),
        CheckResult(spec("dlms.weird-output", TargetKind.DLMS, ["DLMS:ROBUSTNESS"], Severity.LOW),
                    CheckOutcome(Verdict.INCONCLUSIVE, f"check raised ValueError: {HOSTILE}",
                                 (Evidence("raw", "bytes \x01\x02 end", "text", ""),)), 0.01),
        CheckResult(spec("tls.version", TargetKind.TLS, ["IEC62351-3:TLS-VERSION"]),
                    CheckOutcome(Verdict.NOT_APPLICABLE, "no tls target configured"), 0.0),
        CheckResult(spec("dossier.sbom", TargetKind.DOSSIER, ["CRA:II.1", "EN303645:5.3-2"],
                         Severity.MEDIUM),
                    CheckOutcome(Verdict.PASS, "CycloneDX SBOM lists 42 components",
                                 (Evidence("sbom", "bom.json: 42 components", "file", "dossier.yaml:sbom"),)),
                    0.05),
    )
    return CampaignRun(
        results=results,
        started_at=start,
        finished_at=start + timedelta(seconds=95.4),
        targets={"dlms": "reference meter tcp://127.0.0.1:40591 (wrapper)",
                 "dossier": "samples/good/dossier.yaml"},
        meter_profile="replay-accepting",
        deselected=(Deselected("dlms.fw-signed", "excluded by --skip"),),
        notes=(),
    )


@pytest.fixture
def run() -> CampaignRun:
    return make_run()
