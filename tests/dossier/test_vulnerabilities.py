"""DOSSIER-VULN-01 against real advisory data and per-ecosystem version schemes.

The RustSec records and the crate list are real (see data/SOURCES.md). The OpenSSL case
follows OpenSSL's advisory of 2021-03-25 (CVE-2021-3449: 1.1.1 to 1.1.1j affected, fixed in
1.1.1k); the Alpine case follows the shape of OSV's Alpine records (ALPINE-CVE-2023-5363,
openssl fixed in 3.1.4-r0 on v3.18); both records are written here, not copied.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest

from metercert.checks.base import Verdict
from metercert.dossier.model import AffectedPackage, AffectedRange, Sbom, SbomComponent
from metercert.dossier.osv import in_range, match, parse_version, read_osv
from metercert.dossier.sbom import read_sbom

from ._support import assess

DATA = Path(__file__).parent / "data"
TODAY = dt.date.today().isoformat()


def _dossier_with(reference: Path, sbom: Path | None, records: list | None, retrieved: str | None = TODAY,
                  max_age: int | None = None) -> Path:
    if sbom is not None:
        shutil.copy(sbom, reference / "sbom.cdx.json")
    if records is not None:
        (reference / "advisories" / "osv.json").write_text(json.dumps(records))
    text = (reference / "dossier.yaml").read_text()
    lines = [ln for ln in text.splitlines() if not ln.startswith(("advisories_retrieved:",
                                                                  "advisories_max_age_days:"))]
    if retrieved:
        lines.append(f"advisories_retrieved: {retrieved}")
    if max_age:
        lines.append(f"advisories_max_age_days: {max_age}")
    (reference / "dossier.yaml").write_text("\n".join(lines) + "\n")
    return reference


def test_real_spdx_sbom_against_real_rustsec_finds_time_0_1_45(reference: Path):
    """The old matcher kept only the last interval (0.2.7-0 .. 0.2.23) and missed time 0.1.45."""
    records = json.loads((DATA / "rustsec-subset.osv.json").read_text())
    _dossier_with(reference, DATA / "cargo-hello-world.spdx.json", records)
    outcome = assess(reference)["DOSSIER-VULN-01"]
    assert outcome.verdict is Verdict.FAIL
    assert outcome.reason == "1 affected component(s): time@0.1.45 RUSTSEC-2020-0071"
    facts = " ".join(e.content for e in outcome.evidence)
    assert f"set dated {TODAY}" in facts and "newest record 2023-06-13" in facts
    assert "cargo" in facts  # the version scheme used


def test_every_interval_of_a_multi_interval_range_counts():
    (adv, _) = read_osv(DATA / "rustsec-subset.osv.json")
    rng = adv.affected[0].ranges[0]
    affected = {v: in_range(parse_version("cargo", v), rng, "cargo")
                for v in ("0.1.0", "0.1.45", "0.2.0", "0.2.1", "0.2.6", "0.2.7", "0.2.22", "0.2.23", "0.3.9")}
    assert affected == {"0.1.0": True, "0.1.45": True, "0.2.0": False, "0.2.1": False, "0.2.6": False,
                        "0.2.7": True, "0.2.22": True, "0.2.23": False, "0.3.9": False}


def test_real_sbom_parses_with_purls():
    sbom = read_sbom(DATA / "cargo-hello-world.spdx.json")
    assert sbom.format == "SPDX JSON" and len(sbom.components) == 9
    assert sbom.find("time").purl == "pkg:cargo/time@0.1.45"


def _pkg(name: str, purl: str, ecosystem: str, events: tuple) -> AffectedPackage:
    return AffectedPackage(name=name, ecosystem=ecosystem, purl=purl,
                           ranges=(AffectedRange("ECOSYSTEM", events),))


def _hits(components: list[tuple[str, str, str]], pkg: AffectedPackage) -> set[str]:
    from metercert.dossier.model import Advisory

    sbom = Sbom("test", tuple(SbomComponent(name=n, version=v, purl=p) for n, v, p in components))
    return {c.version for c, _ in match(sbom, [Advisory("X", "", (pkg,))]).affected}


def test_openssl_letter_releases_sort_after_their_base_release():
    pkg = _pkg("openssl", "pkg:generic/openssl", "", (("introduced", "1.1.1"), ("fixed", "1.1.1k")))
    comps = [("openssl", v, f"pkg:generic/openssl@{v}") for v in ("1.1.0l", "1.1.1", "1.1.1j", "1.1.1k", "1.1.1w")]
    assert _hits(comps, pkg) == {"1.1.1", "1.1.1j"}  # 1.1.1k is the fix, 1.1.0l predates the flaw


def test_alpine_package_revisions_are_releases_not_prereleases():
    pkg = _pkg("openssl", "", "Alpine:v3.18", (("introduced", "0"), ("fixed", "3.1.4-r2")))
    comps = [("openssl", v, f"pkg:apk/alpine/openssl@{v}")
             for v in ("3.1.3-r0", "3.1.4-r0", "3.1.4-r1", "3.1.4-r2", "3.1.4-r10")]
    # a text comparator put r10 below r2; apk numbers revisions
    assert _hits(comps, pkg) == {"3.1.3-r0", "3.1.4-r0", "3.1.4-r1"}
    busybox = _pkg("busybox", "", "Alpine:v3.18", (("introduced", "0"), ("fixed", "1.36.1")))
    assert _hits([("busybox", "1.36.1-r0", "")], busybox) == set()  # -r0 is 1.36.1 itself


def test_empty_advisory_export_is_inconclusive(reference: Path):
    _dossier_with(reference, None, [])
    outcome = assess(reference)["DOSSIER-VULN-01"]
    assert outcome.verdict is Verdict.INCONCLUSIVE and "holds no records" in outcome.reason


def test_stale_advisory_set_is_inconclusive_and_names_its_date(reference: Path):
    old = (dt.date.today() - dt.timedelta(days=45)).isoformat()
    _dossier_with(reference, None, None, retrieved=old)
    outcome = assess(reference)["DOSSIER-VULN-01"]
    assert outcome.verdict is Verdict.INCONCLUSIVE
    assert f"dated {old} is 45 days old (limit 3650)" not in outcome.reason  # the sample's limit was dropped
    assert f"dated {old} is 45 days old (limit 30)" in outcome.reason


def test_undated_advisory_set_is_inconclusive(reference: Path):
    records = json.loads((DATA / "rustsec-subset.osv.json").read_text())
    for r in records:
        del r["modified"]
    _dossier_with(reference, None, records, retrieved=None)
    outcome = assess(reference)["DOSSIER-VULN-01"]
    assert outcome.verdict is Verdict.INCONCLUSIVE and "has no date" in outcome.reason


def test_record_dates_date_the_set_when_no_retrieval_date_is_stated(reference: Path):
    records = json.loads((DATA / "rustsec-subset.osv.json").read_text())
    _dossier_with(reference, DATA / "cargo-hello-world.spdx.json", records, retrieved=None)
    outcome = assess(reference)["DOSSIER-VULN-01"]
    assert outcome.verdict is Verdict.INCONCLUSIVE and "dated 2023-06-13" in outcome.reason


def test_a_version_the_scheme_cannot_read_is_inconclusive_not_a_pass(reference: Path):
    records = json.loads((DATA / "rustsec-subset.osv.json").read_text())
    sbom = json.loads((DATA / "cargo-hello-world.spdx.json").read_text())
    for pkg in sbom["packages"]:
        if pkg["name"] == "time":
            pkg["versionInfo"] = "0.1.45.7"
            pkg["externalRefs"][0]["referenceLocator"] = "pkg:cargo/time@0.1.45.7"
    path = reference / "odd.spdx.json"
    path.write_text(json.dumps(sbom))
    _dossier_with(reference, path, records)
    outcome = assess(reference)["DOSSIER-VULN-01"]
    assert outcome.verdict is Verdict.INCONCLUSIVE and "time@0.1.45.7" in outcome.reason


@pytest.mark.parametrize("scheme, low, high", [
    ("pypi", "1.0rc1", "1.0"), ("deb", "1:1.0-1", "1:1.0-2"), ("rpm", "1.0-1.el8", "1.0-2.el8"),
    ("golang", "v1.2.3", "v1.10.0"), ("maven", "1.0-alpha", "1.0"),
])
def test_each_ecosystem_orders_its_own_versions(scheme: str, low: str, high: str):
    assert parse_version(scheme, low) < parse_version(scheme, high)
