"""The reference meter's certificates (Security Setup v1 attribute 6, methods 3-8).

A meter with ``general_protection`` is made at the factory with a DLMS operator CA (P-256 or
P-384 by suite), a digital-signature certificate for its signing key, a key-agreement key
pair with its certificate, and, in every association's Security Setup, the certificate of
that association's client signing key. The CA's private key is the operator's: the meter
keeps it only so that the lab's key file can hand it out (the meter never signs with it).

Everything lives in ``dlms-pki.yaml`` in the meter's folder (mode 0600, replaced atomically),
so imports and removals survive a power cycle.

What the meter does with them:

* key_agreement (3): C(2e, 0s); the client's ephemeral key must be signed by the client's
  installed digital-signature certificate; the meter answers with a fresh ephemeral key
  signed by its own signing key and installs the agreed key (GUEK, GBEK or AK);
* generate_key_pair (4): a new pair of that kind; the private key never leaves the meter;
* generate_certificate_request (5): a PKCS #10 request signed with that new key;
* import_certificate (6): only a certificate that chains to the operator CA, is valid now,
  is on the suite's curve and has a DLMS key usage;
* export_certificate (7) / remove_certificate (8): by entity or by serial and issuer;
* general-signing requests verify with the client's installed digital-signature
  certificate, so a removed certificate stops that client's signed requests.

Flaws, one each: ``untrusted-certificate-accepted`` (import skips the chain, validity and
curve checks), ``private-key-exported`` (generate_key_pair returns the new private key),
``ephemeral-key-reused`` (one ephemeral key for every key_agreement) and
``key-agreement-unverified`` (the client's ephemeral key is used without checking its
signature), ``removed-certificate-still-used`` (a removed certificate's key still verifies).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from metercert.cosem import ActionResult, DataType, DlmsData
from metercert.cosem.errors import InvalidValue
from metercert.cosem.security_setup import (
    CertificateIdentification,
    KeyAgreementItem,
    KeyPairId,
    certificates_attribute,
    key_agreement_data,
    read_key_agreement_data,
)
from metercert.security import AuthenticationFailed, InvalidKey, KeyId
from metercert.security import agreement as agr
from metercert.security import certificates as certs
from metercert.security.certificates import CertificateEntity, CertificateRefused, CertificateType

if TYPE_CHECKING:
    from metercert.meter.objects import PendingKey
    from metercert.meter.session import MeterSession
    from metercert.meter.state import MeterState

PKI_FLAWS = ("untrusted-certificate-accepted", "private-key-exported", "ephemeral-key-reused",
             "key-agreement-unverified", "removed-certificate-still-used")


def _pem_key(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _load_key(text: str) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(text.encode(), None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TypeError("not an EC key")
    return key


def _pem_cert(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


class MeterPki:
    """Keys and installed certificates of one meter, per association (never printed)."""

    def __init__(self, state: MeterState) -> None:
        self.state = state
        self.suite = state.profile.security_suite
        self.path = state.folder / "dlms-pki.yaml"
        self.ca_key: ec.EllipticCurvePrivateKey
        self.ca: x509.Certificate
        self.agreement_key: ec.EllipticCurvePrivateKey
        #: association -> installed certificates, with their entity
        self.installed: dict[int, list[tuple[CertificateEntity, x509.Certificate]]] = {}
        #: key pairs made by generate_key_pair, by kind (never leave the meter)
        self.generated: dict[int, ec.EllipticCurvePrivateKey] = {}
        #: each association's client key-agreement key, made at the factory like the client
        #: signing keys (the meter uses the public half; the key file hands out the private)
        self.client_agreement: dict[int, ec.EllipticCurvePrivateKey] = {}
        self._reused_ephemeral: ec.EllipticCurvePrivateKey | None = None
        #: the removed-certificate-still-used flaw: what it removed, still consulted
        self._retired: dict[int, list[tuple[CertificateEntity, x509.Certificate]]] = {}
        if self.path.exists():
            self._load()
        else:
            self._create()

    def __repr__(self) -> str:
        return f"MeterPki(meter {self.state.index}, <redacted>)"

    # -- persistence ----------------------------------------------------------------------
    def _create(self) -> None:
        from metercert.security.certificates import build_ca

        assert self.state.signing_key is not None
        self.ca_key = agr.generate_key_pair(self.suite)
        self.ca = build_ca(self.ca_key, name=f"metercert DLMS operator CA {self.state.index}")
        self.agreement_key = agr.generate_key_pair(self.suite)
        title = self.state.system_title
        own = [(CertificateEntity.SERVER, self._issue(self.state.signing_key.public_key(), title,
                                                      CertificateType.DIGITAL_SIGNATURE)),
               (CertificateEntity.SERVER, self._issue(self.agreement_key.public_key(), title,
                                                      CertificateType.KEY_AGREEMENT))]
        for e, secrets in self.state.secrets.items():
            entries = list(own)
            if secrets.client_key is not None:
                entries.append((CertificateEntity.CLIENT, self._issue(
                    secrets.client_key.public_key(), self.client_title,
                    CertificateType.DIGITAL_SIGNATURE)))
                agreement = self.client_agreement[e] = agr.generate_key_pair(self.suite)
                entries.append((CertificateEntity.CLIENT, self._issue(
                    agreement.public_key(), self.client_title, CertificateType.KEY_AGREEMENT)))
            self.installed[e] = entries
        self.save()

    def _issue(self, key: ec.EllipticCurvePublicKey, title: bytes,
               kind: CertificateType) -> x509.Certificate:
        return certs.issue(key, system_title=title, kind=kind, issuer=self.ca,
                           issuer_key=self.ca_key)

    @property
    def client_title(self) -> bytes:
        from metercert.meter.state import CLIENT_TITLE_PREFIX

        return CLIENT_TITLE_PREFIX + (self.state.index + 1).to_bytes(5, "big")

    def _load(self) -> None:
        from metercert.errors import InputFileError

        try:
            data = yaml.safe_load(self.path.read_text())
            self.ca_key = _load_key(data["ca_key"])
            self.ca = x509.load_pem_x509_certificate(data["ca_certificate"].encode())
            self.agreement_key = _load_key(data["agreement_key"])
            self.installed = {
                int(e): [(CertificateEntity(int(item["entity"])),
                          x509.load_pem_x509_certificate(item["pem"].encode())) for item in items]
                for e, items in data["installed"].items()}
            self.generated = {int(k): _load_key(v) for k, v in (data.get("generated") or {}).items()}
            self.client_agreement = {int(k): _load_key(v) for k, v in
                                     (data.get("client_agreement") or {}).items()}
        except (OSError, KeyError, TypeError, ValueError, AttributeError, yaml.YAMLError):
            raise InputFileError(f"meter state {self.path} is damaged; remove the state folder "
                                 "to start from factory keys") from None

    def save(self) -> None:
        from metercert.meter.state import _write_private

        data: dict[str, Any] = {
            "ca_key": _pem_key(self.ca_key), "ca_certificate": _pem_cert(self.ca),
            "agreement_key": _pem_key(self.agreement_key),
            "installed": {e: [{"entity": int(ent), "pem": _pem_cert(c)} for ent, c in items]
                          for e, items in sorted(self.installed.items())},
            "generated": {k: _pem_key(v) for k, v in sorted(self.generated.items())},
            "client_agreement": {k: _pem_key(v) for k, v in sorted(self.client_agreement.items())},
        }
        _write_private(self.path, "# reference meter DLMS certificates: secret\n"
                       + yaml.safe_dump(data, sort_keys=False))

    # -- what a client needs ---------------------------------------------------------------
    def client_entry(self, key_dir: Path, association: int) -> dict[str, str]:
        """PEM files for the lab: the operator CA (and its key), the meter's certificates
        and this association's client signing certificate; key-file fields naming them."""
        i = self.state.index
        out: dict[str, str] = {}
        files = {"dlms_ca_certificate": (f"dlms-ca-{i:04d}.pem", _pem_cert(self.ca))}
        for ent, cert in self.installed.get(association, []):
            kind = certs.certificate_type_of(cert)
            if ent is CertificateEntity.SERVER and kind is CertificateType.KEY_AGREEMENT:
                files["server_agreement_certificate"] = (f"meter-agreement-{i:04d}.pem",
                                                         _pem_cert(cert))
            elif ent is CertificateEntity.SERVER:
                files["server_signing_certificate"] = (f"meter-signing-{i:04d}.pem",
                                                       _pem_cert(cert))
            elif kind is CertificateType.DIGITAL_SIGNATURE:
                files["client_signing_certificate"] = (
                    f"client-signing-{i:04d}-a{association}.crt.pem", _pem_cert(cert))
        for field_name, (name, text) in files.items():
            (key_dir / name).write_text(text)
            out[field_name] = name
        from metercert.meter.state import _write_private

        agreement = self.client_agreement.get(association)
        if agreement is not None:
            name = f"client-agreement-{i:04d}-a{association}.pem"
            _write_private(key_dir / name, _pem_key(agreement))
            out["client_agreement_key"] = name

        _write_private(key_dir / f"dlms-ca-{i:04d}.key.pem", _pem_key(self.ca_key))
        out["dlms_ca_key"] = f"dlms-ca-{i:04d}.key.pem"
        return out

    # -- lookups ------------------------------------------------------------------------------
    def client_signing_key(self, association: int,
                           title: bytes | None) -> ec.EllipticCurvePublicKey | None:
        """The public key of the installed digital-signature certificate of ``title``."""
        retired = self._retired.get(association, [])
        for ent, cert in [*self.installed.get(association, []), *retired]:
            if (ent is CertificateEntity.CLIENT
                    and certs.certificate_type_of(cert) is CertificateType.DIGITAL_SIGNATURE):
                try:
                    if certs.system_title_of(cert) == title:
                        key = cert.public_key()
                        return key if isinstance(key, ec.EllipticCurvePublicKey) else None
                except CertificateRefused:
                    continue
        return None

    def client_agreement_key(self, association: int,
                             title: bytes | None) -> ec.EllipticCurvePublicKey | None:
        """The public key of the installed key-agreement certificate of ``title``."""
        for ent, cert in self.installed.get(association, []):
            if (ent is CertificateEntity.CLIENT
                    and certs.certificate_type_of(cert) is CertificateType.KEY_AGREEMENT):
                try:
                    if certs.system_title_of(cert) == title:
                        key = cert.public_key()
                        return key if isinstance(key, ec.EllipticCurvePublicKey) else None
                except CertificateRefused:
                    continue
        return None

    def certificates(self, association: int) -> DlmsData:
        return certificates_attribute([certs.certificate_info(c, ent)
                                       for ent, c in self.installed.get(association, [])])

    # -- methods ----------------------------------------------------------------------------
    def action(self, e: int, method: int, params: DlmsData | None,
               session: MeterSession) -> tuple[ActionResult, DlmsData | None]:
        """Security Setup methods 3-8 of association ``e``."""
        from metercert.meter.objects import Event

        try:
            if method == 3:
                return self._key_agreement(e, params, session)
            if method in (4, 5):
                kind = KeyPairId(_enum(params))
                if method == 4:
                    return self._generate_key_pair(kind)
                return self._certificate_request(kind)
            if method == 6:
                return self._import(e, params, session)
            ident = CertificateIdentification.from_data(params)  # type: ignore[arg-type]
            if method == 7:
                for ent, cert in self.installed.get(e, []):
                    if certs.matches(cert, ident, ent):
                        return ActionResult.SUCCESS, DlmsData.octet_string(certs.der(cert))
                return ActionResult.OBJECT_UNAVAILABLE, None
            items = self.installed.get(e, [])
            kept = [(ent, c) for ent, c in items if not certs.matches(c, ident, ent)]
            if len(kept) == len(items):
                return ActionResult.OBJECT_UNAVAILABLE, None
            self.installed[e] = kept
            if session.meter.profile.has("removed-certificate-still-used"):
                self._retired.setdefault(e, []).extend(i for i in items if i not in kept)
            self.save()
            session.meter.log.add(Event.KEY_CHANGED, f"certificate removed from association {e}")
            return ActionResult.SUCCESS, None
        except (InvalidValue, ValueError, TypeError, AttributeError):
            return ActionResult.TYPE_UNMATCHED, None

    def _generate_key_pair(self, kind: KeyPairId) -> tuple[ActionResult, DlmsData | None]:
        key = agr.generate_key_pair(self.suite)
        self.generated[int(kind)] = key
        self.save()
        if self.state.profile.has("private-key-exported"):
            scalar = key.private_numbers().private_value.to_bytes(
                agr.coordinate_bytes(self.suite), "big")
            return ActionResult.SUCCESS, DlmsData.octet_string(scalar)
        return ActionResult.SUCCESS, None

    def _certificate_request(self, kind: KeyPairId) -> tuple[ActionResult, DlmsData | None]:
        key = self.generated.get(int(kind))
        if key is None:
            return ActionResult.OBJECT_UNAVAILABLE, None  # generate_key_pair first
        csr = certs.certificate_request(key, system_title=self.state.system_title,
                                        kind=CertificateType(int(kind)))
        return ActionResult.SUCCESS, DlmsData.octet_string(
            csr.public_bytes(serialization.Encoding.DER))

    def _import(self, e: int, params: DlmsData | None,
                session: MeterSession) -> tuple[ActionResult, DlmsData | None]:
        from metercert.meter.objects import Event

        if params is None or params.type is not DataType.OCTET_STRING:
            return ActionResult.TYPE_UNMATCHED, None
        meter = session.meter
        try:
            cert = certs.load_certificate(bytes(params.value))
            kind = certs.certificate_type_of(cert)
            if kind is CertificateType.OTHER:
                raise CertificateRefused("key usage is not a DLMS certificate type")
            title = certs.system_title_of(cert)
            if not meter.profile.has("untrusted-certificate-accepted"):
                certs.check_certificate(cert, trust_anchors=[self.ca], kind=kind,
                                        suite=self.suite, now=dt.datetime.now(dt.UTC))
        except CertificateRefused as exc:
            meter.log.add(Event.KEY_TRANSFER_REJECTED, f"import_certificate refused: {exc}")
            return ActionResult.OTHER_REASON, None
        entity = (CertificateEntity.SERVER if title == self.state.system_title
                  else CertificateEntity.CLIENT)
        items = [(ent, c) for ent, c in self.installed.get(e, [])
                 if not (ent is entity and certs.certificate_type_of(c) is kind
                         and certs.system_title_of(c) == title)]
        items.append((entity, cert))
        self.installed[e] = items
        self.save()
        return ActionResult.SUCCESS, None

    def _key_agreement(self, e: int, params: DlmsData | None,
                       session: MeterSession) -> tuple[ActionResult, DlmsData | None]:
        from metercert.meter.objects import Event, PendingKey

        meter = session.meter
        if params is None:
            return ActionResult.TYPE_UNMATCHED, None
        items = read_key_agreement_data(params)
        signer = self.client_signing_key(e, session.client_title)
        if signer is None or session.client_title is None:
            meter.log.add(Event.KEY_TRANSFER_REJECTED, "key_agreement: no client certificate")
            return ActionResult.OTHER_REASON, None
        assert self.state.signing_key is not None
        answers: list[KeyAgreementItem] = []
        staged: list[PendingKey] = []
        for item in items:
            if item.key_id not in (0, 1, 2):
                return ActionResult.TYPE_UNMATCHED, None
            try:
                if meter.profile.has("key-agreement-unverified"):
                    size = 2 * agr.coordinate_bytes(self.suite)
                    peer = agr.public_key_from_bytes(item.key_data[:size], self.suite)
                else:
                    peer = agr.verify_signed_ephemeral_key(item.key_id, item.key_data, signer,
                                                           self.suite)
            except (AuthenticationFailed, InvalidKey):
                meter.log.add(Event.KEY_TRANSFER_REJECTED,
                              f"key_agreement: ephemeral key {item.key_id} not signed by the client")
                return ActionResult.OTHER_REASON, None
            own = self._ephemeral()
            key_id = KeyId(item.key_id)
            key = agr.ephemeral_unified_model(own, peer, suite=self.suite,
                                              party_u=session.client_title,
                                              party_v=self.state.system_title,
                                              role=key_id.name.lower())
            staged.append(PendingKey(e, key_id, key))
            answers.append(KeyAgreementItem(item.key_id, agr.signed_ephemeral_key(
                item.key_id, own, self.state.signing_key, self.suite)))
        try:
            self.state.prepare_keys([(p.association, p.key_id, p.key) for p in staged])
        except OSError:
            return ActionResult.TEMPORARY_FAILURE, None
        session.pending_keys.extend(staged)
        return ActionResult.SUCCESS, key_agreement_data(answers)

    def _ephemeral(self) -> ec.EllipticCurvePrivateKey:
        if self.state.profile.has("ephemeral-key-reused"):
            if self._reused_ephemeral is None:
                self._reused_ephemeral = agr.generate_key_pair(self.suite)
            return self._reused_ephemeral
        return agr.generate_key_pair(self.suite)


def _enum(params: DlmsData | None) -> int:
    if params is None or params.type is not DataType.ENUM:
        raise InvalidValue("expected enum")
    return int(params.value)
