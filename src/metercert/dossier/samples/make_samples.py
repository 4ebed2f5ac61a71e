"""Regenerate the two sample dossiers shipped with metercert.

    python3 src/metercert/dossier/samples/make_samples.py

``reference-meter/`` describes metercert's own reference meter and passes every
dossier check; ``flawed-meter/`` plants one defect per check it is meant to
trip: open JTAG port, universal default password, unsigned firmware, an SBOM
component affected by an advisory in its OSV file, a 180-day patch window and
a key-injection audit log with a broken hash chain. Everything else in it is
sound, so each defect fails exactly its own check.

The vendor signing key is generated here and thrown away: only the certificate
and the detached signature are written (ECDSA signatures are randomised, so a
rerun changes those two files and the certificate).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))  # run from a checkout without installing

from metercert.dossier.audit import chain

FW_VERSION = "0.1.0"
RETRIEVED = "2026-12-01"  # when the sample advisory export was (re)written
SERIALS = ("MCR0000001", "MCR0000002", "MCR0000003")
KEYS = ("GUEK", "GBEK", "AK", "KEK")

ADVISORY = {
    "id": "OSV-SAMPLE-0001",
    "summary": "Sample advisory: heap overflow in TLS record parsing (metercert sample data)",
    "details": "Fictitious record shipped with metercert's sample dossiers to exercise matching.",
    "modified": "2026-01-15T00:00:00Z",
    "affected": [
        {
            "package": {"ecosystem": "GIT", "name": "mbedtls", "purl": "pkg:github/mbed-tls/mbedtls"},
            "ranges": [{"type": "SEMVER", "events": [{"introduced": "2.0.0"}, {"fixed": "2.28.8"}]}],
        }
    ],
}


def firmware_image(model: str) -> bytes:
    """Deterministic stand-in for a firmware image (4 KiB)."""
    header = f"METERCERT-FW {model} {FW_VERSION}\n".encode()
    body = b"".join(hashlib.sha256(f"{model}:{i}".encode()).digest() for i in range(128))
    return header + body


def signing_material(image: bytes) -> tuple[bytes, bytes, bytes]:
    """(CA certificate PEM, signing certificate PEM, signature): the vendor's code-signing CA
    is the trust anchor the dossier declares; the signing certificate it issues carries
    digitalSignature and the codeSigning extended key usage."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "metercert sample vendor"),
        x509.NameAttribute(NameOID.COMMON_NAME, "metercert sample vendor code-signing CA"),
    ])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(dt.datetime(2025, 1, 1, tzinfo=dt.UTC))
        .not_valid_after(dt.datetime(2050, 1, 1, tzinfo=dt.UTC))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "metercert sample vendor"),
            x509.NameAttribute(NameOID.COMMON_NAME, "metercert sample firmware signing"),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(dt.datetime(2025, 1, 1, tzinfo=dt.UTC))
        .not_valid_after(dt.datetime(2045, 1, 1, tzinfo=dt.UTC))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    signature = key.sign(image, ec.ECDSA(hashes.SHA256()))
    pem = serialization.Encoding.PEM
    return ca.public_bytes(pem), cert.public_bytes(pem), signature


def sbom(model: str, image: bytes, mbedtls: str) -> dict:
    fw_ref = "firmware"
    return {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": "urn:uuid:" + hashlib.md5(model.encode()).hexdigest()[:8] + "-0000-4000-8000-000000000000",
        "version": 1,
        "metadata": {
            "timestamp": "2026-01-15T00:00:00Z",
            "component": {
                "type": "device",
                "bom-ref": "device",
                "name": model,
                "version": "1.0",
                "cpe": f"cpe:2.3:h:metercert:{model.lower().replace(' ', '_')}:1.0:*:*:*:*:*:*:*",
            },
        },
        "components": [
            {
                "type": "firmware",
                "bom-ref": fw_ref,
                "name": f"{model} firmware",
                "version": FW_VERSION,
                "purl": f"pkg:generic/metercert/{model.lower().replace(' ', '-')}-firmware@{FW_VERSION}",
                "hashes": [{"alg": "SHA-256", "content": hashlib.sha256(image).hexdigest()}],
            },
            {
                "type": "library",
                "bom-ref": "mbedtls",
                "name": "mbedtls",
                "version": mbedtls,
                "purl": f"pkg:github/mbed-tls/mbedtls@{mbedtls}",
            },
            {
                "type": "library",
                "bom-ref": "freertos-kernel",
                "name": "FreeRTOS-Kernel",
                "version": "11.1.0",
                "purl": "pkg:github/freertos/freertos-kernel@11.1.0",
            },
            {
                "type": "library",
                "bom-ref": "zlib",
                "name": "zlib",
                "version": "1.3.1",
                "cpe": "cpe:2.3:a:zlib:zlib:1.3.1:*:*:*:*:*:*:*",
            },
        ],
    }


def audit_log(break_chain: bool) -> str:
    records = []
    moment = dt.datetime(2026, 1, 10, 8, 0, tzinfo=dt.UTC)
    for serial in SERIALS:
        for key_id in KEYS:
            moment += dt.timedelta(seconds=17)
            records.append(
                {
                    "serial": serial,
                    "key_id": key_id,
                    "hsm_attestation": "hsm-att-"
                    + hashlib.sha256(f"{serial}/{key_id}".encode()).hexdigest()[:24],
                    "timestamp": moment.isoformat().replace("+00:00", "Z"),
                }
            )
    chained = chain(records)
    if break_chain:
        # an operator "corrected" an entry afterwards: the content no longer matches its hash
        chained[5]["hsm_attestation"] = "hsm-att-re-entered-by-hand"
    return "".join(json.dumps(r, sort_keys=True) + "\n" for r in chained)


EOL_TEXT = """# End-of-life key destruction

When a meter is decommissioned or returned:

1. The head-end revokes the meter's certificates and removes its keys (GUEK, GBEK, AK, KEK)
   from the key management system; the HSM records the deletion with an attestation.
2. On site, the SECADM role invokes the meter's key erase; the meter overwrites its key
   storage and confirms with a security event.
3. Meters that cannot be reached are physically destroyed with a certificate of
   destruction naming the serial numbers.
"""

DOSSIER = """\
# metercert device dossier -- {title}
# Every file reference is relative to this folder; references that leave it are
# refused unless allow_absolute_paths: true is set.
dossier_version: 1
allow_absolute_paths: false

meter:
  manufacturer: metercert project
  model: {model}
  hardware_version: "1.0"
  firmware_version: "{fw}"

# Software bill of materials: CycloneDX JSON or XML, or SPDX 2.x JSON.
sbom: sbom.cdx.json
# Offline OSV export the SBOM is matched against (list of OSV records), the day it was
# retrieved, and how old it may be. The sample's records are fictitious and never change,
# so the sample allows ten years; a real dossier keeps the default of 30 days.
advisories: advisories/osv.json
advisories_retrieved: {retrieved}
advisories_max_age_days: 3650

# The manufacturer's code-signing CA: firmware signatures must chain to it.
firmware_trust_anchor: certs/vendor-ca.pem

# Firmware images with their detached DER ECDSA signature and the signing certificate
# (issued by the trust anchor); signed_at: when it was signed (validity is judged then).
# sbom_component: bom-ref (or name) of the SBOM component whose SHA-256 must match.
firmware:
  - image: firmware/meter-fw-{fw}.bin
{signature_line}    certificate: certs/vendor-signing.pem
    signed_at: 2026-01-15T00:00:00Z
    sbom_component: firmware

# present (open) | disabled | authentication-gated | absent
debug_interfaces:
  uart: disabled
  jtag: {jtag}
  optical: authentication-gated

credentials:
  default_password: {password}     # none | unique-per-device | universal
  per_device_secrets: true

patch_policy:
  days_disclosure_to_fix: {patch_days}
  limit_days: 90                  # the seed's figure; the CRA itself says "without delay"

support_period:
  end_date: 2041-12-31
  published_at: https://metercert.example/support

cvd:
  policy_url: https://metercert.example/security/disclosure-policy
  contact: security@metercert.example

incident_notification:            # CRA Art. 14 capability
  early_warning_hours: 24
  notification_hours: 72
  final_report_days: 14           # after a corrective measure (exploited vulnerability)
  severe_incident_final_report_days: 30   # after the incident notification (one month)
  contact: psirt@metercert.example

key_injection:
  audit_log: keys/injection-audit.jsonl
  devices: [{serials}]
  required_keys: [GUEK, GBEK, AK, KEK]

end_of_life:
  key_destruction: docs/eol-key-destruction.md

security_logging:
  events: [association-rejected, authentication-failure, key-change, firmware-activation,
           replay-detected, security-policy-change, clock-change]
  retention_days: 730
  log_object: 0.0.99.98.0.255
"""


def write(folder: Path, *, flawed: bool) -> None:
    model = "Flawed Meter" if flawed else "Reference Meter"
    image = firmware_image(model)
    ca_pem, cert_pem, signature = signing_material(image)
    (folder / "firmware").mkdir(parents=True, exist_ok=True)
    (folder / "certs").mkdir(exist_ok=True)
    (folder / "advisories").mkdir(exist_ok=True)
    (folder / "keys").mkdir(exist_ok=True)
    (folder / "docs").mkdir(exist_ok=True)
    (folder / "firmware" / f"meter-fw-{FW_VERSION}.bin").write_bytes(image)
    sig_path = folder / "firmware" / f"meter-fw-{FW_VERSION}.bin.sig"
    if flawed:
        sig_path.unlink(missing_ok=True)  # unsigned firmware
    else:
        sig_path.write_bytes(signature)
    (folder / "certs" / "vendor-signing.pem").write_bytes(cert_pem)
    (folder / "certs" / "vendor-ca.pem").write_bytes(ca_pem)
    bom = sbom(model, image, "2.28.1" if flawed else "3.6.2")
    (folder / "sbom.cdx.json").write_text(json.dumps(bom, indent=2) + "\n")
    (folder / "advisories" / "osv.json").write_text(json.dumps([ADVISORY], indent=2) + "\n")
    (folder / "keys" / "injection-audit.jsonl").write_text(audit_log(break_chain=flawed))
    (folder / "docs" / "eol-key-destruction.md").write_text(EOL_TEXT)
    signature_line = "" if flawed else f"    signature: firmware/meter-fw-{FW_VERSION}.bin.sig\n"
    (folder / "dossier.yaml").write_text(
        DOSSIER.format(
            title="flawed meter with planted defects (see make_samples.py)" if flawed
            else "metercert reference meter (passes every dossier check)",
            model=model,
            fw=FW_VERSION,
            signature_line=signature_line,
            jtag="present" if flawed else "disabled",
            password="universal" if flawed else "unique-per-device",
            patch_days=180 if flawed else 30,
            serials=", ".join(SERIALS),
            retrieved=RETRIEVED,
        )
    )


def main() -> None:
    write(HERE / "reference-meter", flawed=False)
    write(HERE / "flawed-meter", flawed=True)
    print(f"wrote {HERE / 'reference-meter'} and {HERE / 'flawed-meter'}")


if __name__ == "__main__":
    main()
