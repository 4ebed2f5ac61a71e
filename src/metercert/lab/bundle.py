"""The sealed evidence bundle: one folder a lab hands to a certification body.

What a bundle holds, and why:

* ``results.json`` (the record) and every report rendered from it: ``report.html``,
  ``junit.xml``, the OSCAL ``assessment-plan.json`` / ``assessment-results.json`` /
  ``oscal-catalog.json`` (they reference each other by these names);
* ``traffic.pcap``, the line traffic, when the run captured one;
* ``campaign.yaml``, the campaign file with every secret replaced by ``[REDACTED]``
  (keys, passwords, secrets: by field name, and any long hex or base64 value);
* ``device-identity.json``, what the meter said it is (logical device name, firmware
  identifiers, serial), taken from the results; never read from the meter here;
* ``versions.json``: metercert, the requirement catalog (SHA-256 of its data files),
  Python and the libraries verdicts depend on;
* ``MANIFEST.sha256``: one ``<sha256>  <path>`` line per file (``sha256sum -c`` reads
  it), and optionally ``MANIFEST.sig``, a signature over the manifest's bytes made
  with the lab's key (Ed25519, or ECDSA P-256/P-384 with SHA-256/384), whose public
  key travels as ``lab-key.pub.pem`` (listed in the manifest).

:func:`verify_bundle` fails on any changed byte (hash), a missing or an extra file,
a manifest line that escapes the folder, and a signature that does not verify; a
verifier who knows the lab's key passes it in, so that a bundle re-signed with
another key fails too.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path, PurePosixPath
from typing import Any

import yaml
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from metercert import __version__
from metercert.errors import InputFileError, UsageError

MANIFEST = "MANIFEST.sha256"
SIGNATURE = "MANIFEST.sig"
PUBLIC_KEY = "lab-key.pub.pem"
REDACTED = "[REDACTED]"
#: Field names whose values are secrets wherever they appear in a campaign file
#: (``*_env`` fields name an environment variable, which is not itself a secret).
_SECRET_FIELD = re.compile(
    r"(^|_)(keys?|password|passwd|secret|token|passphrase|credentials?|pin|guek|gbek|kek|ak|ek)(_|$)"
)
#: Values that look like key material even under an innocent name.
_SECRET_VALUE = re.compile(r"^(?:[0-9A-Fa-f]{32,}|[A-Za-z0-9+/]{40,}={0,2})$")
_EMBEDDED_HEX = re.compile(r"\b[0-9A-Fa-f]{32,}\b")
_LIBRARIES = ("cryptography", "sslyze", "univers", "packageurl-python", "cyclonedx-python-lib",
              "jinja2", "pyyaml", "duckdb", "pyarrow", "dpkt")


class BundleError(InputFileError):
    """The bundle folder or one of its inputs cannot be used."""


def redact(value: Any, name: str = "") -> Any:
    """``value`` with every secret replaced by ``[REDACTED]`` (by field name or by shape)."""
    if isinstance(value, Mapping):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, name) for v in value]
    if value is None or isinstance(value, bool):
        return value
    field = name.lower().replace("-", "_")
    if field and not field.endswith("_env") and _SECRET_FIELD.search(field):
        return REDACTED
    if isinstance(value, (str, bytes)):
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        if _SECRET_VALUE.match(text.strip()):
            return REDACTED
        return _EMBEDDED_HEX.sub(REDACTED, text)  # a key pasted into a note
    return value


def catalog_version() -> str:
    """SHA-256 of the requirement catalog data (see :func:`metercert.catalog.load.catalog_digest`)."""
    from metercert.catalog.load import catalog_digest

    return catalog_digest()


def versions() -> dict[str, Any]:
    libs = {}
    for name in _LIBRARIES:
        try:
            libs[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            libs[name] = "not installed"
    return {
        "metercert": __version__,
        "catalog_sha256": catalog_version(),
        "results_schema_sha256": hashlib.sha256(resources.files("metercert.report").joinpath(
            "schema/results.schema.json").read_bytes()).hexdigest(),
        "python": platform.python_version(),
        "libraries": libs,
    }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _load_private_key(path: Path) -> Any:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise BundleError(f"{path}: lab key not found") from None
    except (ValueError, TypeError) as exc:
        raise BundleError(f"{path}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, (ed25519.Ed25519PrivateKey, ec.EllipticCurvePrivateKey)):
        raise BundleError(f"{path}: lab key must be Ed25519 or ECDSA (P-256/P-384)")
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name not in ("secp256r1", "secp384r1"):
        raise BundleError(f"{path}: ECDSA lab key must be on P-256 or P-384")
    return key


def _ec_hash(key: ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) -> hashes.HashAlgorithm:
    return hashes.SHA384() if key.curve.name == "secp384r1" else hashes.SHA256()


def sign_manifest(data: bytes, key: Any) -> bytes:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    return key.sign(data, ec.ECDSA(_ec_hash(key)))


def write_bundle(
    out_dir: Path,
    results: Mapping[str, Any],
    *,
    campaign_file: Path | None = None,
    pcap: Path | None = None,
    lab_key: Path | None = None,
) -> Path:
    """Write the bundle of the run ``results`` (a results.json document) into ``out_dir``.

    ``out_dir`` must not exist or be empty: a bundle is written once, never merged.
    """
    from metercert.report import render_documents

    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise UsageError(f"{out_dir}: exists and is not an empty folder (a bundle is written once)")
    key = _load_private_key(lab_key) if lab_key is not None else None
    if pcap is not None and not Path(pcap).is_file():
        raise BundleError(f"{pcap}: capture file not found")
    campaign_text = None
    if campaign_file is not None:
        try:
            campaign = yaml.safe_load(Path(campaign_file).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise BundleError(f"{campaign_file}: campaign file not found") from None
        except (yaml.YAMLError, UnicodeDecodeError, OSError) as exc:
            raise BundleError(f"{campaign_file}: cannot read the campaign file ({exc.__class__.__name__})") from None
        campaign_text = ("# campaign file, secrets replaced by [REDACTED] for the evidence bundle\n"
                         + yaml.safe_dump(redact(campaign), sort_keys=False, allow_unicode=True))
    out_dir.mkdir(parents=True, exist_ok=True)
    render_documents(results, out_dir, ["json", "html", "junit", "oscal"])
    if pcap is not None:
        shutil.copyfile(pcap, out_dir / "traffic.pcap")
    if campaign_text is not None:
        (out_dir / "campaign.yaml").write_text(campaign_text, encoding="utf-8")
    identity = dict((results.get("run") or {}).get("device_identity") or {})
    (out_dir / "device-identity.json").write_text(
        json.dumps(identity or {"note": "the run recorded no device identity"}, indent=2, sort_keys=True)
        + "\n", encoding="utf-8")
    (out_dir / "versions.json").write_text(json.dumps(versions(), indent=2) + "\n", encoding="utf-8")
    if key is not None:
        (out_dir / PUBLIC_KEY).write_bytes(key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    files = sorted(p for p in out_dir.rglob("*") if p.is_file() and p.name not in (MANIFEST, SIGNATURE))
    manifest = "".join(f"{_sha256(p)}  {p.relative_to(out_dir).as_posix()}\n" for p in files).encode()
    (out_dir / MANIFEST).write_bytes(manifest)
    if key is not None:
        (out_dir / SIGNATURE).write_bytes(sign_manifest(manifest, key))
    return out_dir


@dataclass(frozen=True)
class BundleCheck:
    """What verifying a bundle showed; ``ok`` is the verdict."""

    files: int
    problems: tuple[str, ...]
    signed: bool
    signer: str

    @property
    def ok(self) -> bool:
        return not self.problems


def _public_key(pem: bytes, what: str) -> Any:
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError as exc:
        raise BundleError(f"{what}: not a PEM public key ({exc})") from None
    if not isinstance(key, (ed25519.Ed25519PublicKey, ec.EllipticCurvePublicKey)):
        raise BundleError(f"{what}: not an Ed25519 or ECDSA public key")
    return key


def _fingerprint(key: Any) -> str:
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "SHA256:" + hashlib.sha256(der).hexdigest()[:32]


def verify_bundle(folder: Path, *, lab_public_key: Path | None = None) -> BundleCheck:
    """Check every byte of the bundle against its manifest, and the manifest's signature."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BundleError(f"{folder}: not a folder")
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise BundleError(f"{folder}: no {MANIFEST}: not an evidence bundle")
    manifest = manifest_path.read_bytes()
    problems: list[str] = []
    listed: dict[str, str] = {}
    for number, line in enumerate(manifest.decode("utf-8", errors="replace").splitlines(), 1):
        match = re.fullmatch(r"([0-9a-f]{64})  (.+)", line)
        if not match:
            problems.append(f"{MANIFEST}:{number}: not a '<sha256>  <path>' line")
            continue
        digest, name = match.groups()
        rel = PurePosixPath(name)
        if rel.is_absolute() or ".." in rel.parts or name in (MANIFEST, SIGNATURE):
            problems.append(f"{MANIFEST}:{number}: path {name!r} is not a bundle member")
            continue
        if name in listed:
            problems.append(f"{MANIFEST}:{number}: {name} listed twice")
        listed[name] = digest
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    for name, digest in listed.items():
        path = folder / name
        if name not in present:
            problems.append(f"missing file: {name}")
        elif _sha256(path) != digest:
            problems.append(f"changed file: {name} (SHA-256 differs from the manifest)")
    for name in sorted(present - set(listed) - {MANIFEST, SIGNATURE}):
        problems.append(f"extra file not in the manifest: {name}")

    signed = (folder / SIGNATURE).is_file()
    signer = ""
    if lab_public_key is not None:
        try:
            pem = Path(lab_public_key).read_bytes()
        except OSError as exc:
            raise BundleError(f"{lab_public_key}: cannot read the lab key ({exc.__class__.__name__})") from None
        key = _public_key(pem, str(lab_public_key))
        if not signed:
            problems.append(f"bundle is not signed ({SIGNATURE} missing) but a lab key was given")
    elif signed:
        if PUBLIC_KEY not in present:
            problems.append(f"{SIGNATURE} present but no {PUBLIC_KEY} to verify it with")
            key = None
        else:
            key = _public_key((folder / PUBLIC_KEY).read_bytes(), PUBLIC_KEY)
    else:
        key = None
    if signed and key is not None:
        signer = _fingerprint(key)
        signature = (folder / SIGNATURE).read_bytes()
        try:
            if isinstance(key, ed25519.Ed25519PublicKey):
                key.verify(signature, manifest)
            else:
                key.verify(signature, manifest, ec.ECDSA(_ec_hash(key)))
        except InvalidSignature:
            problems.append(f"bad signature: {SIGNATURE} does not verify over {MANIFEST} with key {signer}")
    return BundleCheck(len(listed), tuple(problems), signed, signer)


#: Environment variable naming the lab's private key file for signing run bundles.
LAB_KEY_ENV = "METERCERT_LAB_KEY"


def bundle_run(report_dir: Path, *, campaign_file: str | Path | None = None,
               pcap: str | Path | None = None) -> Path:
    """Write ``report_dir/bundle`` from ``report_dir/results.json`` (what certify/test call).

    A bundle left there by an earlier run into the same folder is replaced as a
    whole; the lab key, when set, comes from ``$METERCERT_LAB_KEY``.
    """
    from metercert.report import load_results

    target = Path(report_dir) / "bundle"
    if target.is_dir() and (target / MANIFEST).is_file():
        shutil.rmtree(target)
    key = os.environ.get(LAB_KEY_ENV)
    return write_bundle(target, load_results(Path(report_dir) / "results.json"),
                        campaign_file=Path(campaign_file) if campaign_file else None,
                        pcap=Path(pcap) if pcap else None, lab_key=Path(key) if key else None)
