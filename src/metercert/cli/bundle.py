"""``metercert bundle create|verify``: the sealed evidence bundle of a run."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "bundle", help="sealed evidence bundle: create one from a results.json, or verify one",
        description="An evidence bundle holds results.json, the HTML, JUnit and OSCAL reports, the "
                    "line capture, the redacted campaign file, the device identity and the tool "
                    "and catalog versions, sealed by a SHA-256 manifest and optionally signed "
                    "with the lab's key. certify and test write one into REPORT/bundle.")
    sub = parser.add_subparsers(dest="bundle_command", metavar="SUBCOMMAND", required=True)

    create = sub.add_parser("create", help="write a bundle for RESULTS.json into DIR")
    create.add_argument("results", type=Path, metavar="RESULTS.json", help="results file of a run")
    create.add_argument("--out", "-o", type=Path, required=True, metavar="DIR",
                        help="bundle folder to write (must not exist or be empty)")
    create.add_argument("--campaign", type=Path, metavar="FILE",
                        help="campaign file of the run (secrets are redacted in the copy)")
    create.add_argument("--pcap", type=Path, metavar="FILE", help="line capture of the run")
    create.add_argument("--sign-key", type=Path, metavar="PEM",
                        help="lab private key (Ed25519 or ECDSA P-256/P-384, unencrypted PEM)")
    create.set_defaults(func=_create)

    verify = sub.add_parser("verify", help="check every file of DIR against its manifest and signature")
    verify.add_argument("directory", type=Path, metavar="DIR", help="bundle folder")
    verify.add_argument("--key", type=Path, metavar="PEM",
                        help="the lab's public key: the signature must be by this key")
    verify.set_defaults(func=_verify)


def _create(args: argparse.Namespace) -> int:
    from metercert.lab.bundle import write_bundle
    from metercert.report import load_results

    doc = load_results(args.results)
    out = write_bundle(args.out, doc, campaign_file=args.campaign, pcap=args.pcap, lab_key=args.sign_key)
    Console().print(f"bundle: {out}" + (" (signed)" if args.sign_key else ""), highlight=False)
    return 0


def _verify(args: argparse.Namespace) -> int:
    from metercert.lab.bundle import verify_bundle

    result = verify_bundle(args.directory, lab_public_key=args.key)
    console = Console()
    if result.ok:
        how = (f"signature by {result.signer} verifies" + ("" if args.key else
               " (key taken from the bundle; pass --key to pin the lab's key)")) if result.signed \
            else "not signed"
        console.print(f"bundle OK: {result.files} files match {args.directory}/MANIFEST.sha256; {how}",
                      highlight=False, markup=False)
        return 0
    for problem in result.problems:
        console.print(f"FAIL {problem}", highlight=False, markup=False)
    console.print(f"bundle {args.directory} does not verify: {len(result.problems)} problem(s)",
                  highlight=False, markup=False)
    return 1
