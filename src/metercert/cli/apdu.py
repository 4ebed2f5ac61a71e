"""``metercert apdu inspect|protect``: look inside and build ciphered APDUs."""

from __future__ import annotations

import argparse
import enum
import json
import os
from collections.abc import Callable
from dataclasses import fields, is_dataclass
from typing import Any

from rich.console import Console
from rich.tree import Tree

from metercert.cosem import ObisCode, ObjectIdentifier
from metercert.errors import UsageError
from metercert.security import (
    AuthenticationFailed,
    CipheringForm,
    Key,
    KeySet,
    SecurityControl,
    is_ciphered,
    load_keyset,
    parse_ciphered,
    parse_hex,
    parse_system_title,
    protect,
    select_encryption_key,
    tag_name,
    unprotect_parsed,
)
from metercert.security import agreement as _agreement
from metercert.security import general as _general
from metercert.security.errors import SecurityError
from metercert.security.keys import load_pem_key
from metercert.security.keywrap import wrap_key
from metercert.security.suites import suite as _suite_spec

# Green Book example (public test vectors, not secrets): see STANDARDS.md.
EXAMPLE_APDU = "C81E3001234567411312FF935A47566827C467BC7D825C3BE4A77C3FCC056B6B"
EXAMPLE_KEYS = KeySet(
    client_system_title=bytes.fromhex("4D4D4D0000BC614E"),
    server_system_title=bytes.fromhex("4D4D4D0000BC614E"),
    guek=Key(bytes.fromhex("000102030405060708090A0B0C0D0E0F"), "guek"),
    ak=Key(bytes.fromhex("D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF"), "ak"),
)

# Plain services sent by the meter (their sender title is the server's).
_FROM_SERVER = {0xC2, 0xC4, 0xC5, 0xC7, 0x08, 0x0E, 0xD8, 0x61, 0x63}


def register(sub: argparse._SubParsersAction) -> None:
    apdu = sub.add_parser("apdu", help="decode, verify and build DLMS APDUs")
    cmds = apdu.add_subparsers(dest="apdu_command", metavar="ACTION", required=True)

    inspect = cmds.add_parser("inspect", help="decode an APDU; decrypt and verify it with keys")
    inspect.add_argument("hex", nargs="?", help="the APDU in hex (spaces allowed)")
    inspect.add_argument("--example", action="store_true",
                         help="inspect the Green Book example glo-get-request with its test keys")
    _key_options(inspect)
    _asymmetric_options(inspect)
    inspect.add_argument("--suite", type=int, choices=[1, 2],
                         help="suite a general-signing APDU outside any general-ciphering is "
                              "verified under (default: the signer key's curve)")
    inspect.add_argument("--json", action="store_true", help="print a JSON object")
    inspect.set_defaults(func=_inspect)

    prot = cmds.add_parser("protect", help="cipher a plaintext xDLMS APDU")
    prot.add_argument("hex", help="the plaintext APDU in hex")
    _key_options(prot)
    prot.add_argument("--form", choices=[f.value for f in CipheringForm] + ["general", "signed"],
                      default="global",
                      help="service-specific global (default) or dedicated, general-glo / "
                           "general-ded ciphering (system title carried in the APDU), general "
                           "(general-ciphering 0xDD) or signed (general-signing 0xDF only)")
    prot.add_argument("--suite", type=int, choices=[0, 1, 2], default=0,
                      help="security suite written in the security control byte (default 0)")
    prot.add_argument("--mode", choices=["auth-enc", "auth", "enc"], default="auth-enc",
                      help="authenticated and encrypted (default), authenticated only, encrypted only")
    prot.add_argument("--broadcast", action="store_true", help="use the broadcast key (GBEK)")
    prot.add_argument("--ic", type=_counter, required=True, metavar="N",
                      help="invocation counter (decimal or 0x hex)")
    _asymmetric_options(prot)
    gen = prot.add_argument_group("general-ciphering / general-signing")
    gen.add_argument("--recipient-title", metavar="HEX",
                     help="recipient system title (default: the peer's title from the key file)")
    gen.add_argument("--transaction-id", metavar="HEX",
                     help="transaction-id (default: the invocation counter as 8 bytes)")
    gen.add_argument("--date-time", metavar="HEX", default="", help="date-time field (hex)")
    gen.add_argument("--other-info", metavar="HEX", default="", help="other-information (hex)")
    gen.add_argument("--key-info", choices=["identified", "wrapped", "agreed-1e1s", "agreed-0e2s",
                                            "none"], default="identified",
                     help="how general-ciphering names its key: the global key (default), a "
                          "fresh key wrapped under the KEK, or one agreed with C(1e,1s) / "
                          "C(0e,2s)")
    gen.add_argument("--sign", choices=["first", "last"],
                     help="with --form general, also sign: first (signed then ciphered) or last "
                          "(ciphered then signed); needs --signing-key")
    prot.add_argument("--json", action="store_true", help="print a JSON object")
    prot.set_defaults(func=_protect)


def _key_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--keys", metavar="FILE", help="key file (YAML or JSON, see README)")
    p.add_argument("--meter", type=int, default=0, metavar="N",
                   help="entry N of a multi-meter key file (default 0)")
    p.add_argument("--system-title", metavar="HEX", help="the sender's system title")
    p.add_argument("--dedicated-key", metavar="HEX", help="dedicated (session) key for ded-* forms")


def _asymmetric_options(p: argparse.ArgumentParser) -> None:
    grp = p.add_argument_group("suites 1/2 keys (PEM files; certificates accepted for public keys)")
    grp.add_argument("--signing-key", metavar="PEM",
                     help="our ECDSA private key (protect: signs; C(1e,1s) signs the "
                          "ephemeral key)")
    grp.add_argument("--signer-key", metavar="PEM", action="append", default=[],
                     help="an originator's ECDSA public key or certificate (inspect: verifies "
                          "general-signing and C(1e,1s) ephemeral keys); repeatable")
    grp.add_argument("--agreement-key", metavar="PEM",
                     help="our static key-agreement private key (agreed keys)")
    grp.add_argument("--peer-agreement-key", metavar="PEM",
                     help="the peer's static key-agreement public key or certificate "
                          "(protect: C(1e,1s) and C(0e,2s); inspect: C(0e,2s))")


def _pem(path: str | None, *, private: bool) -> Any:
    return None if not path else load_pem_key(path, None, "PEM file", private=private)


def _counter(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 0 <= value <= 0xFFFFFFFF:
        raise argparse.ArgumentTypeError("invocation counter must fit in 32 bits")
    return value


def _keys(args: argparse.Namespace) -> KeySet | None:
    return load_keyset(args.keys, args.meter) if args.keys else None


def _sender_title(args: argparse.Namespace, keys: KeySet | None, plain_tag: int | None) -> bytes | None:
    if args.system_title:
        return parse_system_title(args.system_title, "--system-title")
    if keys is None:
        return None
    if plain_tag in _FROM_SERVER:
        return keys.server_system_title
    return keys.client_system_title


def _dedicated(args: argparse.Namespace) -> Key | None:
    return Key.from_hex(args.dedicated_key, "--dedicated-key") if args.dedicated_key else None


def _jsonable(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex().upper()
    if isinstance(value, enum.Enum):
        return value.name.lower()
    if isinstance(value, (ObisCode, ObjectIdentifier)):
        return str(value)
    if is_dataclass(value) and not isinstance(value, type):
        out = {"type": type(value).__name__}
        for f in fields(value):
            item = getattr(value, f.name)
            if f.metadata.get("secret") and item is not None:
                out[f.name] = "<redacted>"  # dedicated keys, passwords, challenges
            else:
                out[f.name] = _jsonable(item)
        return out
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if value is None or isinstance(value, (int, float, str, bool)):
        return value
    return str(value)


def _secret_values(value: Any) -> list[bytes]:
    if not (is_dataclass(value) and not isinstance(value, type)):
        return []
    return [getattr(value, f.name) for f in fields(value)
            if f.metadata.get("secret") and isinstance(getattr(value, f.name), bytes)]


def _plain_fields(data: bytes) -> dict[str, Any]:
    """``plaintext`` (hex, secrets masked) and ``decoded`` (structure via the COSEM codec)."""
    from metercert.cosem import decode_apdu

    text = data.hex().upper()
    try:
        apdu = decode_apdu(data)
    except Exception as exc:  # noqa: BLE001 - reported, not raised: inspect is a viewer
        return {"plaintext": text, "decoded": {"error": str(exc)}}
    for secret in _secret_values(apdu):
        if secret:
            text = text.replace(secret.hex().upper(), "<redacted>")
    return {"plaintext": text, "decoded": _jsonable(apdu)}


class AsymmetricKeys:
    """Public and private EC keys the inspector may use (never printed)."""

    __slots__ = ("agreement_key", "peer_agreement_key", "signers", "suite")

    def __init__(self, *, signers: list[Any] | None = None, agreement_key: Any = None,
                 peer_agreement_key: Any = None, suite: int | None = None) -> None:
        self.signers = list(signers or [])
        self.agreement_key = agreement_key
        self.peer_agreement_key = peer_agreement_key
        self.suite = suite

    def __repr__(self) -> str:
        return "AsymmetricKeys(<redacted>)"


def _sc_json(sc: SecurityControl) -> dict[str, Any]:
    return {"byte": sc.byte, "suite": sc.suite, "authenticated": sc.authenticated,
            "encrypted": sc.encrypted, "broadcast": sc.broadcast, "compressed": sc.compressed,
            "description": sc.describe()}


def _key_info_json(ki: Any) -> dict[str, Any] | None:
    if ki is None:
        return None
    if isinstance(ki, _general.IdentifiedKey):
        return {"choice": "identified-key", "key_id": ki.key_id,
                "key": "GBEK" if ki.key_id == 1 else "GUEK"}
    if isinstance(ki, _general.WrappedKey):
        return {"choice": "wrapped-key", "kek_id": ki.kek_id,
                "key_ciphered_data": ki.key_ciphered_data.hex().upper()}
    scheme = ki.scheme
    return {"choice": "agreed-key", "key_parameters": ki.key_parameters.hex().upper(),
            "scheme": {1: "C(1e,1s) one-pass Diffie-Hellman",
                       2: "C(0e,2s) static unified model"}.get(int(scheme) if scheme else -1),
            "key_ciphered_data": ki.key_ciphered_data.hex().upper()}


def _header_json(h: _general.GeneralHeader) -> dict[str, Any]:
    return {"transaction_id": h.transaction_id.hex().upper(),
            "originator_system_title": h.originator_system_title.hex().upper(),
            "recipient_system_title": h.recipient_system_title.hex().upper() or None,
            "date_time": h.date_time.hex().upper() or None,
            "other_information": h.other_information.hex().upper() or None}


def _open_layer(data: bytes, keys: KeySet | None, asym: AsymmetricKeys,
                suite: int | None) -> tuple[dict[str, Any], bytes | None, int | None]:
    """One general layer: its description, the inner bytes (None if not opened), its suite."""
    if data[0] == _general.GENERAL_CIPHERING:
        gc = _general.parse_general_ciphering(data)
        layer: dict[str, Any] = {"tag": data[0], "tag_name": tag_name(data[0]),
                                 **_header_json(gc.header), "key_info": _key_info_json(gc.key_info),
                                 "security_control": _sc_json(gc.security_control),
                                 "invocation_counter": gc.invocation_counter, "verified": None}
        if not gc.security_control.protected:
            layer["note"] = "security control applies no protection"
            return layer, gc.payload, gc.security_control.suite
        if keys is None and asym.agreement_key is None:
            layer["note"] = "no keys given: not decrypted"
            return layer, None, gc.security_control.suite
        agr = _general.AgreementKeys(asym.agreement_key, None, asym.peer_agreement_key)
        candidates = asym.signers or [None]
        last: SecurityError | None = None
        for signer in candidates:  # C(1e,1s): the ephemeral key must verify with some signer
            agr = _general.AgreementKeys(asym.agreement_key, signer, asym.peer_agreement_key)
            try:
                opened = _general.open_general(gc, keys=keys, agreement=agr,
                                               require_authenticated=False)
            except AuthenticationFailed as exc:
                last = exc
                continue
            except SecurityError as exc:  # a key we were not given: say which
                layer["note"] = str(exc)
                return layer, None, gc.security_control.suite
            layer["verified"] = opened.authenticated
            if not opened.authenticated:
                layer["note"] = "encrypted only: decrypted but nothing authenticates it"
            return layer, opened.plaintext, gc.security_control.suite
        layer.update(verified=False, note=str(last))
        return layer, None, gc.security_control.suite
    gs = _general.parse_general_signing(data)
    layer = {"tag": data[0], "tag_name": tag_name(data[0]), **_header_json(gs.header),
             "signature": gs.signature.hex().upper(), "verified": None}
    if not asym.signers:
        layer["note"] = "no signer public key given: signature not checked"
        return layer, gs.content, suite
    layer["verified"] = False
    for signer in asym.signers:
        try:
            use = suite or asym.suite or _general.suite_of_key(signer)
            _general.verify_general(gs, public_key=signer, suite=use)
        except SecurityError:
            continue
        layer.update(verified=True, suite=use)
        break
    else:
        layer["note"] = "signature does not verify with any key given"
    return layer, gs.content, suite


def _inspect_general(data: bytes, keys: KeySet | None, asym: AsymmetricKeys,
                     info: dict[str, Any]) -> dict[str, Any]:
    layers: list[dict[str, Any]] = []
    inner: bytes | None = data
    suite = asym.suite
    while inner and inner[0] in (_general.GENERAL_CIPHERING, _general.GENERAL_SIGNING):
        if len(layers) == 4:
            raise UsageError("more than 4 nested general-ciphering / general-signing layers")
        layer, inner, suite = _open_layer(inner, keys, asym, suite)
        layers.append(layer)
    first = layers[0]
    flags = [layer["verified"] for layer in layers]
    info.update(form=first["tag_name"], layers=layers,
                security_control=first.get("security_control"),
                invocation_counter=first.get("invocation_counter"),
                system_title=first["originator_system_title"],
                verified=False if False in flags else (None if None in flags else True),
                plaintext=None, decoded=None)
    if inner is not None:
        info.update(_plain_fields(inner))
    notes = [f"{layer['tag_name']}: {layer['note']}" for layer in layers if layer.get("note")]
    if notes:
        info["note"] = "; ".join(notes)
    return info


def _association_user_information(data: bytes, keys: KeySet | None,
                                  dedicated_key: Key | None) -> dict[str, Any] | None:
    """The ciphered InitiateRequest/Response inside an AARQ/AARE, opened with the AP title."""
    from metercert.cosem import AARE, AARQ, decode_apdu

    try:
        apdu = decode_apdu(data)
    except Exception:  # noqa: BLE001 - the outer decode already reported it
        return None
    if not isinstance(apdu, (AARQ, AARE)) or not apdu.user_information:
        return None
    inner = apdu.user_information
    if not is_ciphered(inner):
        return None
    title = apdu.calling_ap_title if isinstance(apdu, AARQ) else apdu.responding_ap_title
    return inspect_apdu(inner, keys, lambda _tag: title, dedicated_key)


def inspect_apdu(data: bytes, keys: KeySet | None,
                 sender_title: Callable[[int | None], bytes | None] | None = None,
                 dedicated_key: Key | None = None,
                 asymmetric: AsymmetricKeys | None = None) -> dict[str, Any]:
    """Describe ``data`` as a JSON-able dict (used by the CLI and by reports).

    ``sender_title`` maps the protected service's tag to the sender's system title
    (service-specific forms do not carry it). ``asymmetric`` holds the EC keys for
    general-signing and agreed keys.
    """
    if not data:
        raise UsageError("APDU is empty")
    info: dict[str, Any] = {"tag": data[0], "tag_name": tag_name(data[0]), "length": len(data),
                            "ciphered": is_ciphered(data)}
    if data[0] in (_general.GENERAL_CIPHERING, _general.GENERAL_SIGNING):
        return _inspect_general(data, keys, asymmetric or AsymmetricKeys(), info)
    if not info["ciphered"]:
        info.update(security_control=None, invocation_counter=None, system_title=None,
                    verified=None, **_plain_fields(data))
        user_info = _association_user_information(data, keys, dedicated_key)
        if user_info is not None:
            info["user_information"] = user_info
            info["verified"] = user_info["verified"]
        return info
    parsed = parse_ciphered(data)
    sc = parsed.security_control
    title = parsed.system_title or (sender_title(parsed.plain_tag) if sender_title else None)
    info.update(
        form=parsed.form.value,
        security_control=_sc_json(sc),
        invocation_counter=parsed.invocation_counter,
        system_title=title.hex().upper() if title else None,
        verified=None, plaintext=None, decoded=None,
    )
    if not sc.protected:
        info.update(_plain_fields(parsed.payload))
        info["note"] = "security control applies no protection"
        return info
    if keys is None and dedicated_key is None:
        info["note"] = "no keys given: not decrypted"
        return info
    ek = select_encryption_key(keys or KeySet(), parsed, dedicated_key)
    try:
        result = unprotect_parsed(parsed, encryption_key=ek,
                                  authentication_key=keys.ak if keys else None, system_title=title)
    except AuthenticationFailed as exc:
        info.update(verified=False, note=str(exc))
        return info
    info.update(verified=result.authenticated, **_plain_fields(result.plaintext))
    if not result.authenticated:
        info["note"] = "encrypted only: decrypted but nothing authenticates it"
    return info


def _tree(info: dict[str, Any]) -> Tree:
    root = Tree(f"[bold]{info['tag_name']}[/] (0x{info['tag']:02X}), {info['length']} bytes")
    if info.get("form"):
        root.add(f"form: {info['form']}")
    if info.get("security_control"):
        sc = info["security_control"]
        root.add(f"security control: 0x{sc['byte']:02X} ({sc['description']})")
        root.add(f"invocation counter: {info['invocation_counter']} (0x{info['invocation_counter']:08X})")
        root.add(f"system title: {info['system_title'] or 'unknown'}")
    for i, layer in enumerate(info.get("layers") or []):
        node = root.add(f"layer {i + 1}: {layer['tag_name']} (0x{layer['tag']:02X})")
        for key, value in layer.items():
            if key in ("tag", "tag_name") or value is None:
                continue
            if isinstance(value, dict):
                _add_structure(node.add(key), value)
            else:
                node.add(f"{key}: {value}")
    if info.get("verified") is not None:
        root.add("verified: [green]yes[/]" if info["verified"] else "verified: [red]NO[/]")
    if info.get("note"):
        root.add(f"note: {info['note']}")
    if info.get("user_information"):
        root.add(_tree(info["user_information"]))
    if info.get("plaintext"):
        root.add(f"plaintext: {info['plaintext']}")
    if info.get("decoded"):
        _add_structure(root.add("decoded"), info["decoded"])
    return root


def _add_structure(node: Tree, value: Any) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                _add_structure(node.add(str(key)), item)
            else:
                node.add(f"{key}: {item}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _add_structure(node.add(f"[{i}]"), item)
    else:
        node.add(str(value))


def _inspect(args: argparse.Namespace) -> int:
    keys: KeySet | None
    if args.example:
        data, keys = bytes.fromhex(EXAMPLE_APDU), EXAMPLE_KEYS
    else:
        if not args.hex:
            raise UsageError("give the APDU as hex, or --example")
        data, keys = parse_hex(args.hex, "APDU"), _keys(args)
    dedicated = _dedicated(args)

    def title_for(plain_tag: int | None) -> bytes | None:
        return _sender_title(args, keys, plain_tag)

    signers = [_pem(path, private=False) for path in args.signer_key]
    if not signers and keys is not None and keys.server_public_key is not None:
        signers = [keys.server_public_key]
    asym = AsymmetricKeys(signers=signers, agreement_key=_pem(args.agreement_key, private=True),
                          peer_agreement_key=_pem(args.peer_agreement_key, private=False),
                          suite=args.suite)
    info = inspect_apdu(data, keys, title_for, dedicated, asym)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        Console().print(_tree(info))
    problem = _decode_error(info)
    if problem is not None:  # shown in the tree for context, and a failure all the same
        raise UsageError(f"the APDU does not decode: {problem}")
    return 1 if info.get("verified") is False else 0


def _decode_error(info: Any) -> str | None:
    """The first ``decoded: {error: ...}`` anywhere in an inspection (nested APDUs too)."""
    if isinstance(info, dict):
        decoded = info.get("decoded")
        if isinstance(decoded, dict) and set(decoded) == {"error"}:
            return str(decoded["error"])
        for value in info.values():
            found = _decode_error(value)
            if found is not None:
                return found
    elif isinstance(info, list):
        for value in info:
            found = _decode_error(value)
            if found is not None:
                return found
    return None


_MODES = {"auth-enc": (True, True), "auth": (True, False), "enc": (False, True)}


def _protect(args: argparse.Namespace) -> int:
    plain = parse_hex(args.hex, "APDU")
    if not plain:
        raise UsageError("APDU is empty")
    keys = _keys(args) or KeySet()
    title = _sender_title(args, keys, plain[0])
    if title is None:
        raise UsageError("the sender's system title is needed: --system-title or a key file")
    auth, enc = _MODES[args.mode]
    sc = SecurityControl(suite=args.suite, authenticated=auth, encrypted=enc, broadcast=args.broadcast)
    if args.form in ("general", "signed"):
        return _protect_general(args, plain, keys, title, sc)
    if args.sign:
        raise UsageError("--sign goes with --form general (use --form signed to sign only)")
    form = CipheringForm(args.form)
    if form.dedicated:
        ek = _dedicated(args)
        if ek is None:
            raise UsageError("dedicated forms need --dedicated-key")
    else:
        ek = keys.gbek if args.broadcast else keys.guek
    out = protect(plain, security_control=sc, system_title=title, invocation_counter=args.ic,
                  encryption_key=ek, authentication_key=keys.ak, form=form)
    if args.json:
        print(json.dumps({"apdu": out.hex().upper(), "tag": out[0], "tag_name": tag_name(out[0]),
                          "security_control": sc.byte, "invocation_counter": args.ic,
                          "system_title": title.hex().upper()}, indent=2))
    else:
        print(out.hex().upper())
    return 0


def _hex_option(value: str | None, what: str) -> bytes:
    return parse_hex(value, what) if value else b""


def _protect_general(args: argparse.Namespace, plain: bytes, keys: KeySet, title: bytes,
                     sc: SecurityControl) -> int:
    """--form general / signed: build 0xDD and/or 0xDF (nested in the order --sign asks)."""
    if args.recipient_title:
        recipient = parse_system_title(args.recipient_title, "--recipient-title")
    else:
        recipient = next((t for t in (keys.server_system_title, keys.client_system_title)
                          if t is not None and t != title), b"")
    tid = _hex_option(args.transaction_id, "--transaction-id") or args.ic.to_bytes(8, "big")
    header = _general.GeneralHeader(tid, title, recipient,
                                    _hex_option(args.date_time, "--date-time"),
                                    _hex_option(args.other_info, "--other-info"))
    signing_key = _pem(args.signing_key, private=True)
    sign_suite = sc.suite or (None if signing_key is None else _general.suite_of_key(
        signing_key.public_key()))

    def signed(content: bytes) -> bytes:
        if signing_key is None:
            raise UsageError("general-signing needs --signing-key (an ECDSA private key PEM)")
        return _general.sign_general(content, header=header, signing_key=signing_key,
                                     suite=sign_suite or 0)

    if args.form == "signed":
        out = signed(plain)
    else:
        inner = signed(plain) if args.sign == "first" else plain
        key_info, ek = _general_key(args, keys, header, sc, signing_key)
        sc = SecurityControl(sc.suite, sc.authenticated, sc.encrypted)  # key-set bit: 0
        out = _general.protect_general(inner, header=header, security_control=sc,
                                       invocation_counter=args.ic, encryption_key=ek,
                                       authentication_key=keys.ak, key_info=key_info)
        if args.sign == "last":
            out = signed(out)
    if args.json:
        print(json.dumps({"apdu": out.hex().upper(), "tag": out[0], "tag_name": tag_name(out[0]),
                          "security_control": sc.byte if args.form == "general" else None,
                          "invocation_counter": args.ic, "system_title": title.hex().upper(),
                          "recipient_system_title": recipient.hex().upper() or None,
                          "transaction_id": tid.hex().upper()}, indent=2))
    else:
        print(out.hex().upper())
    return 0


def _general_key(args: argparse.Namespace, keys: KeySet, header: _general.GeneralHeader,
                 sc: SecurityControl, signing_key: Any) -> tuple[Any, Key | None]:
    """key-info and the encryption key it stands for, per --key-info."""
    choice = args.key_info
    if choice == "identified" and args.broadcast:  # key-info names the GBEK; the SC bit stays 0
        return _general.IdentifiedKey(1), keys.gbek
    if args.broadcast:
        raise UsageError("--broadcast goes with --key-info identified (key-info names the GBEK)")
    if choice in ("identified", "none"):
        return (_general.IdentifiedKey(0) if choice == "identified" else None), keys.guek
    if choice == "wrapped":
        if keys.kek is None:
            raise UsageError("--key-info wrapped needs a KEK in the key file")
        size = _key_bytes(sc)
        session = Key(os.urandom(size), "session key")
        return _general.WrappedKey(wrap_key(keys.kek, session)), session
    if sc.suite not in (1, 2):
        raise UsageError("agreed keys need --suite 1 or 2")
    if not header.recipient_system_title:
        raise UsageError("agreed keys need a recipient system title (--recipient-title)")
    peer = _pem(args.peer_agreement_key, private=False)
    if peer is None:
        raise UsageError("agreed keys need --peer-agreement-key (the recipient's public key)")
    if choice == "agreed-1e1s":
        if signing_key is None:
            raise UsageError("C(1e,1s) signs its ephemeral key: --signing-key is needed")
        key, kcd = _agreement.one_pass_originate(
            suite=sc.suite, recipient_static=peer, signing_key=signing_key,
            party_u=header.originator_system_title, party_v=header.recipient_system_title)
        return _general.AgreedKey(b"\x01", kcd), key
    own = _pem(args.agreement_key, private=True)
    if own is None:
        raise UsageError("C(0e,2s) needs --agreement-key (our static private key)")
    key = _agreement.static_unified_model(
        own, peer, suite=sc.suite, party_u=header.originator_system_title,
        party_v=header.recipient_system_title, transaction_id=header.transaction_id)
    return _general.AgreedKey(b"\x02"), key


def _key_bytes(sc: SecurityControl) -> int:
    return _suite_spec(sc.suite).key_bytes
