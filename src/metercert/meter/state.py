"""What a reference meter keeps across power cycles: keys, counters, firmware.

Each meter owns ``<state dir>/meter-NNNN/``: ``keys.yaml`` (0600; per-association
GUEK/AK/KEK, HLS secret, the vendor firmware-signing key and, for HLS-ECDSA profiles,
the meter's signing key and each association's client key pair), ``counters/`` (the
crash-safe invocation-counter files) and ``firmware.txt`` (the active image id).
Restarting a meter process on the same folder is a real power cycle: only what is
on disk survives. The ``ic-reset-on-power-cycle`` flaw keeps counters in a folder
that is wiped at every start, as a meter with counters in RAM would.

Failing closed: the counter files of fresh keys are made (and synced) *before*
``keys.yaml`` is written, so a key file on disk means every association's counter
files exist; a missing or damaged one then stops the meter from starting (one line
naming the file) instead of restarting its counters at 0 under the same keys.
``keys.yaml`` is replaced atomically (file and folder synced); a key transfer first
writes the new key file next to it and answers success only once that is durable.
One process per meter folder: ``lock`` is held with ``flock`` while it runs.

Replay windows: every meter of a process appends its accepted counters to one journal,
``<state dir>/replay.journal.0``/``.1`` (:mod:`metercert.security.journal`): one fsync serves a
batch of requests across all meters, and no response leaves before the window that
accepted its request is durable (the server awaits the journal; used without the
server, ``accept`` syncs before it returns). Before a key or firmware file is written the
journal is synced, so no effect of a request reaches the disk before its window.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from metercert.errors import InputFileError, UsageError
from metercert.meter.profile import MeterProfile
from metercert.meter.rbac import Rbac, Role
from metercert.safeload import load_yaml
from metercert.security import CounterStoreError, InvocationCounterStore, Key, KeyId, ReplayGuard
from metercert.security.counters import fsync_dir, make_dirs_durable
from metercert.security.journal import ReplayJournal, release_journal, shared_journal

log = logging.getLogger("metercert.meter")

DEFAULT_LLS_PASSWORD = b"00000000"
CLIENT_TITLE_PREFIX = bytes.fromhex("4D4343")  # "MCC": suggested client titles
METER_TITLE_PREFIX = bytes.fromhex("4D4354")   # "MCT"


def meter_system_title(index: int) -> bytes:
    return METER_TITLE_PREFIX + (index + 1).to_bytes(5, "big")


@dataclass
class AssociationSecrets:
    guek: Key
    ak: Key
    kek: Key
    hls_secret: bytes
    #: HLS-ECDSA: the client's key pair, made at the factory like the symmetric keys (the
    #: meter uses only its public half; the private half is handed out in the key file)
    client_key: ec.EllipticCurvePrivateKey | None = field(default=None, repr=False)
    #: the global broadcast key (key id 1); None in state folders made before it existed,
    #: until a key transfer installs one
    gbek: Key | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        return "AssociationSecrets(<redacted>)"

    def key(self, key_id: KeyId) -> Key | None:
        return {KeyId.GUEK: self.guek, KeyId.GBEK: self.gbek, KeyId.AK: self.ak,
                KeyId.KEK: self.kek}.get(key_id)


def _pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _load_pem(text: str) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(text.encode(), None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TypeError("not an EC key")
    return key


def _write_durable(path: Path, text: str) -> None:
    """Write ``path`` (0600) completely and fsync it; nothing is renamed yet."""
    data = text.encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_private(path: Path, text: str) -> None:
    """Replace ``path`` atomically and durably: temporary file synced, renamed, folder synced.

    Any error (a full disk: ENOSPC from write or fsync) is raised before the rename, so
    the old file stays in force."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        _write_durable(tmp, text)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    fsync_dir(path.parent)


def _lock_folder(folder: Path) -> int:
    """Hold ``folder/lock`` exclusively; a second meter process on the folder is refused."""
    fd = os.open(folder / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise UsageError(f"meter state folder {folder} is in use by another meter (lock "
                         f"{folder / 'lock'}): one meter process per state folder") from None
    return fd


def _close_fd(fd: int) -> None:
    os.close(fd)


class MeterState:
    """Keys, counters and firmware of one meter, persisted under its folder."""

    def __init__(self, root: Path, index: int, profile: MeterProfile, rbac: Rbac) -> None:
        self.index = index
        self.profile = profile
        self.rbac = rbac
        self.folder = Path(root) / f"meter-{index:04d}"
        #: the replay journal every meter under ``root`` in this process shares
        self.journal: ReplayJournal | None = None
        try:
            make_dirs_durable(self.folder)
            self._unlock = weakref.finalize(self, _close_fd, _lock_folder(self.folder))
            self.journal = shared_journal(Path(root))
        except OSError as exc:
            raise InputFileError(f"cannot use meter state folder {self.folder}: "
                                 f"{exc.strerror}") from None
        self.system_title = meter_system_title(index)
        self._key_size = 32 if profile.security_suite == 2 else 16
        self.secrets: dict[int, AssociationSecrets] = {}
        self.vendor_key: ec.EllipticCurvePrivateKey
        #: HLS-ECDSA: the key the meter signs f(CtoS) with
        self.signing_key: ec.EllipticCurvePrivateKey | None = None
        #: folders wiped at start by a flaw (their files may be missing, by design)
        self._wiped: set[Path] = set()
        #: associations whose counter files must exist (keys.yaml was on disk)
        self._required: set[int] = set()
        self._prepared: list[Any] | None = None  # a key transfer written, not yet in force
        counters = self.folder / "counters"
        if profile.has("ic-reset-on-power-cycle"):
            counters = self.folder / "counters-volatile"
            shutil.rmtree(counters, ignore_errors=True)
            self._wiped.add(counters)
        self.counter_dir = counters
        #: where the meter's own sending counters live (the own-ic-reset-at-boot flaw keeps
        #: them in a folder wiped at every start, the receive windows stay on disk)
        self.tx_counter_dir = counters
        if profile.has("own-ic-reset-at-boot"):
            self.tx_counter_dir = self.folder / "counters-tx-volatile"
            shutil.rmtree(self.tx_counter_dir, ignore_errors=True)
            self._wiped.add(self.tx_counter_dir)
        self._tx: dict[int, InvocationCounterStore] = {}
        self._rx: dict[int, ReplayGuard] = {}
        #: replay-window-in-ram flaw: the windows on disk, written only at a clean end
        self._rx_saved: dict[int, ReplayGuard] = {}
        fw = self.folder / "firmware.txt"
        self.active_firmware = fw.read_text().strip() if fw.exists() else "MCT-1.0.0"
        #: general-protection profiles: CA, certificates, key agreement (meter/pki.py)
        self.pki: Any = None
        try:
            self._load_or_create_keys()
            if profile.general_protection:
                from metercert.meter.pki import MeterPki

                self.pki = MeterPki(self)
        except OSError as exc:  # keys.yaml or firmware cannot be written: read-only, full
            self.close()
            raise InputFileError(f"cannot write meter state in {self.folder}: "
                                 f"{exc.strerror}") from None
        except BaseException:
            self.close()
            raise

    # -- keys -----------------------------------------------------------------------
    def _keys_path(self) -> Path:
        return self.folder / "keys.yaml"

    def _load_or_create_keys(self) -> None:
        path = self._keys_path()
        if path.exists():
            try:
                data = load_yaml(path, what="meter state")
                for e, entry in data["associations"].items():
                    client = entry.get("client_signing_key")
                    self.secrets[int(e)] = AssociationSecrets(
                        Key(bytes.fromhex(entry["guek"]), "guek"),
                        Key(bytes.fromhex(entry["ak"]), "ak"),
                        Key(bytes.fromhex(entry["kek"]), "kek"),
                        bytes.fromhex(entry["hls_secret"]),
                        _load_pem(client) if client else None,
                        Key(bytes.fromhex(entry["gbek"]), "gbek") if entry.get("gbek") else None)
                self.vendor_key = _load_pem(data["vendor_signing_key"])
                if data.get("meter_signing_key"):
                    self.signing_key = _load_pem(data["meter_signing_key"])
            except (InputFileError, OSError, KeyError, TypeError, ValueError, AttributeError,
                    RecursionError, yaml.YAMLError):
                raise InputFileError(f"meter state {path} is damaged; remove the state folder "
                                     "to start from factory keys") from None
            # keys that have been in use: every counter file must be there and sound
            self._open_counters(required=True)
            if self._ensure_signing_keys():  # a state folder from a profile without HLS-ECDSA
                self.save_keys()
            return
        for role in self.rbac.roles.values():
            if role.authenticated:
                self.secrets[role.association] = AssociationSecrets(
                    Key(os.urandom(self._key_size), "guek"), Key(os.urandom(self._key_size), "ak"),
                    Key(os.urandom(self._key_size), "kek"), os.urandom(16),
                    gbek=Key(os.urandom(self._key_size), "gbek"))
        self.vendor_key = ec.generate_private_key(self._curve())
        self._ensure_signing_keys()
        self._open_counters(required=False)  # durable before the keys they protect
        self.save_keys()

    def _open_counters(self, *, required: bool) -> None:
        """Check (or create) every association's counter files now, so damage stops the start.

        They are closed again and opened when first used: a fleet of thousands of meters
        in one process must not hold every association's files open."""
        associations = {role.association for role in self.rbac.roles.values()}
        if required:
            self._required = associations
        try:
            for association in sorted(associations):
                for store in (self.tx_counter(association), self.rx_guard(association)):
                    if store.recovered:
                        log.warning("meter %d: a counter record of association %d was damaged;"
                                    " resumed at its high-water mark (values skipped, none "
                                    "reused)", self.index, association)
        except CounterStoreError as exc:
            raise CounterStoreError(f"{exc} (reference meter: remove the state folder "
                                    f"{self.folder} to start again with new keys)") from None
        finally:
            self._close_counters()
        self._required = associations  # from now on every one of them exists

    def _close_counters(self) -> None:
        for store in self._tx.values():
            store.close()
        for guard in (*self._rx.values(), *self._rx_saved.values()):
            guard.close()
        self._tx.clear()
        self._rx.clear()
        self._rx_saved.clear()

    def _require(self, association: int, folder: Path) -> bool:
        return association in self._required and folder not in self._wiped

    def _curve(self) -> ec.EllipticCurve:
        return ec.SECP384R1() if self.profile.security_suite == 2 else ec.SECP256R1()

    def _ensure_signing_keys(self) -> bool:
        """HLS-ECDSA and general-signing profiles: make the meter's and the clients' key pairs
        if missing."""
        if self.profile.mechanism != "hls-ecdsa" and not self.profile.general_protection:
            return False
        made = False
        if self.signing_key is None or self.signing_key.curve.name != self._curve().name:
            self.signing_key, made = ec.generate_private_key(self._curve()), True
        for secrets in self.secrets.values():
            if secrets.client_key is None or secrets.client_key.curve.name != self._curve().name:
                secrets.client_key, made = ec.generate_private_key(self._curve()), True
        return made

    def save_keys(self) -> None:
        _write_private(self._keys_path(), self._render_keys())

    def _render_keys(self) -> str:
        associations: dict[int, dict[str, str]] = {}
        for e, s in sorted(self.secrets.items()):
            associations[e] = {"guek": s.guek.secret.hex(), "ak": s.ak.secret.hex(),
                               "kek": s.kek.secret.hex(), "hls_secret": s.hls_secret.hex()}
            if s.client_key is not None:
                associations[e]["client_signing_key"] = _pem(s.client_key)
            if s.gbek is not None:
                associations[e]["gbek"] = s.gbek.secret.hex()
        data: dict[str, Any] = {
            "system_title": self.system_title.hex().upper(),
            "associations": associations,
            "vendor_signing_key": _pem(self.vendor_key),
        }
        if self.signing_key is not None:
            data["meter_signing_key"] = _pem(self.signing_key)
        return "# reference meter state: secret\n" + yaml.safe_dump(data, sort_keys=False)

    def _keys_text(self, changes: list[tuple[int, KeyId, Key]]) -> str:
        """keys.yaml as it would be with ``changes`` applied (the keys in force are kept)."""
        undo = []
        try:
            for association, key_id, key in changes:
                secrets, name = self.secrets[association], key_id.name.lower()
                undo.append((secrets, name, getattr(secrets, name)))
                setattr(secrets, name, Key(key.secret, name))
            return self._render_keys()
        finally:
            for secrets, name, old in reversed(undo):
                setattr(secrets, name, old)

    def prepare_keys(self, changes: list[tuple[int, KeyId, Key]]) -> None:
        """Write the key file a key transfer would leave, synced, before it is answered.

        Raises OSError (a full disk) while nothing has changed: the transfer is refused.
        :meth:`set_key` then only renames this file into place."""
        pending = self._keys_path().with_suffix(".yaml.new")
        self._prepared = None
        self.sync_windows()
        try:
            _write_durable(pending, self._keys_text(list(changes)))
        except OSError:
            pending.unlink(missing_ok=True)
            raise
        self._prepared = list(changes)

    def set_key(self, association: int, key_id: KeyId, key: Key) -> None:
        """Put a key in force: on disk (durably) first, then in RAM."""
        self.sync_windows()
        prepared = self._prepared
        if prepared is not None and any(a == association and k == key_id and v.secret == key.secret
                                        for a, k, v in prepared):
            self._prepared = None
            pending = self._keys_path().with_suffix(".yaml.new")
            try:
                os.replace(pending, self._keys_path())
                fsync_dir(self.folder)
            except OSError as exc:
                raise CounterStoreError(f"cannot put the new key file {self._keys_path()} in "
                                        f"force: {exc.strerror}") from None
            for a, k, v in prepared:
                setattr(self.secrets[a], k.name.lower(), Key(v.secret, k.name.lower()))
            return
        current = getattr(self.secrets[association], key_id.name.lower())
        if current.secret == key.secret:
            return  # already in force (a second key of a transfer committed above)
        try:
            _write_private(self._keys_path(), self._keys_text([(association, key_id, key)]))
        except OSError as exc:
            raise CounterStoreError(f"cannot save the new key in {self._keys_path()}: "
                                    f"{exc.strerror}") from None
        setattr(self.secrets[association], key_id.name.lower(), Key(key.secret, key_id.name.lower()))

    def set_firmware(self, identifier: str) -> None:
        self.sync_windows()
        _write_private(self.folder / "firmware.txt", identifier + "\n")
        self.active_firmware = identifier

    # -- counters ---------------------------------------------------------------------
    def tx_counter(self, association: int) -> InvocationCounterStore:
        store = self._tx.get(association)
        if store is None:
            store = self._tx[association] = InvocationCounterStore(
                self.tx_counter_dir, self.system_title, f"a{association}-tx", block=64,
                require_existing=self._require(association, self.tx_counter_dir))
        return store

    def rx_guard(self, association: int) -> ReplayGuard:
        guard = self._rx.get(association)
        if guard is None:
            if self.profile.has("replay-window-in-ram"):
                saved = self._rx_saved[association] = ReplayGuard(
                    self.counter_dir, self.system_title, f"a{association}-rx",
                    require_existing=self._require(association, self.counter_dir))
                guard = ReplayGuard(None, self.system_title, f"a{association}-rx")
                if saved.last_accepted is not None:
                    guard.accept(saved.last_accepted)
            else:
                guard = ReplayGuard(self.counter_dir, self.system_title, f"a{association}-rx",
                                    require_existing=self._require(association, self.counter_dir),
                                    journal=self.journal)
            self._rx[association] = guard
        return guard

    def save_volatile_counters(self) -> None:
        """replay-window-in-ram: what a clean release or disconnect writes to disk (a power
        cut skips it). Nothing to do for every other profile: their windows are on disk."""
        for association, saved in self._rx_saved.items():
            last = self._rx[association].last_accepted
            if last is not None and saved.is_fresh(last):
                saved.accept(last)

    def sync_windows(self) -> None:
        """Make every accepted counter durable (before any effect of a request hits the disk)."""
        if self.journal is not None:
            self.journal.sync()

    def close(self) -> None:
        self._close_counters()
        journal, self.journal = self.journal, None
        if journal is not None:
            release_journal(journal)
        self._unlock()  # last: the folder is free once every counter file is closed

    # -- what a client needs ------------------------------------------------------------
    def client_entry(self, host: str, port: int, *, key_dir: Path | None = None) -> dict[str, Any]:
        """This meter's entry of a client key file (documented key-file format + extras).

        With ``key_dir``, the PEM files the entry names (firmware-signing key; for HLS-ECDSA
        the meter's public key and each association's client private key) are written there.
        """
        management = self.rbac.roles.get("SECADM")
        mechanism = self.profile.mechanism
        entry: dict[str, Any] = {
            "meter": self.index,
            "host": host,
            "port": port,
            "server_system_title": self.system_title.hex().upper(),
            "client_system_title": (CLIENT_TITLE_PREFIX + (self.index + 1).to_bytes(5, "big")).hex().upper(),
            "security_suite": self.profile.security_suite,
        }
        if self.profile.general_protection:
            entry["general_protection"] = self.profile.general_protection
        ecdsa = ((mechanism == "hls-ecdsa" or bool(self.profile.general_protection))
                 and key_dir is not None and self.signing_key is not None)
        if ecdsa:
            assert key_dir is not None and self.signing_key is not None
            public = key_dir / f"meter-signing-{self.index:04d}.pub.pem"
            public.write_bytes(self.signing_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
            entry["server_public_key"] = public.name

        def client_key(association: int, secrets: AssociationSecrets) -> dict[str, str]:
            if not ecdsa or secrets.client_key is None:
                return {}
            assert key_dir is not None
            path = key_dir / f"client-signing-{self.index:04d}-a{association}.pem"
            _write_private(path, _pem(secrets.client_key))
            return {"client_private_key": path.name}

        if management is not None and management.association in self.secrets:
            s = self.secrets[management.association]
            entry.update(client_sap=management.client_sap, mechanism=mechanism,
                         invocation_counter_object=f"0.0.43.1.{management.association}.255",
                         guek=s.guek.secret.hex().upper(),
                         ak=s.ak.secret.hex().upper(), kek=s.kek.secret.hex().upper(),
                         hls_secret=s.hls_secret.hex().upper(),
                         **client_key(management.association, s),
                         **({"gbek": s.gbek.secret.hex().upper()} if s.gbek else {}))
            if self.pki is not None and key_dir is not None:
                entry.update(self.pki.client_entry(key_dir, management.association))
        roles = []
        # LLS associations are not in the key file: a lab finds them in the object list
        lls_saps = {a.client_sap for a in self.profile.all_lls_associations()}
        for role in sorted(self.rbac.roles.values(), key=lambda r: r.association):
            if role.client_sap in lls_saps:
                continue
            item: dict[str, Any] = {"role": role.name, "client_sap": role.client_sap}
            s2 = self.secrets.get(role.association)
            if s2 is not None:
                item.update(mechanism=mechanism,
                            invocation_counter_object=f"0.0.43.1.{role.association}.255",
                            guek=s2.guek.secret.hex().upper(), ak=s2.ak.secret.hex().upper(),
                            kek=s2.kek.secret.hex().upper(), hls_secret=s2.hls_secret.hex().upper(),
                            **client_key(role.association, s2))
            roles.append(item)
        entry["roles"] = roles
        if key_dir is not None:
            pem_path = key_dir / f"firmware-signing-{self.index:04d}.pem"
            _write_private(pem_path, _pem(self.vendor_key))
            entry["firmware_signing_key"] = pem_path.name
        return entry

    def role(self, client_sap: int) -> Role | None:
        return self.rbac.role_for_sap(client_sap)
