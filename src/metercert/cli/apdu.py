"""``metercert apdu inspect|protect``: look inside and build ciphered APDUs."""

from __future__ import annotations

import argparse
import enum
import json
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
    inspect.add_argument("--json", action="store_true", help="print a JSON object")
    inspect.set_defaults(func=_inspect)

    prot = cmds.add_parser("protect", help="cipher a plaintext xDLMS APDU")
    prot.add_argument("hex", help="the plaintext APDU in hex")
    _key_options(prot)
    prot.add_argument("--form", choices=[f.value for f in CipheringForm], default="global",
                      help="service-specific global (default) or dedicated, or general-glo / "
                           "general-ded ciphering (system title carried in the APDU)")
    prot.add_argument("--suite", type=int, choices=[0, 1, 2], default=0,
                      help="security suite written in the security control byte (default 0)")
    prot.add_argument("--mode", choices=["auth-enc", "auth", "enc"], default="auth-enc",
                      help="authenticated and encrypted (default), authenticated only, encrypted only")
    prot.add_argument("--broadcast", action="store_true", help="use the broadcast key (GBEK)")
    prot.add_argument("--ic", type=_counter, required=True, metavar="N",
                      help="invocation counter (decimal or 0x hex)")
    prot.add_argument("--json", action="store_true", help="print a JSON object")
    prot.set_defaults(func=_protect)


def _key_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--keys", metavar="FILE", help="key file (YAML or JSON, see README)")
    p.add_argument("--meter", type=int, default=0, metavar="N",
                   help="entry N of a multi-meter key file (default 0)")
    p.add_argument("--system-title", metavar="HEX", help="the sender's system title")
    p.add_argument("--dedicated-key", metavar="HEX", help="dedicated (session) key for ded-* forms")


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


def inspect_apdu(data: bytes, keys: KeySet | None,
                 sender_title: Callable[[int | None], bytes | None] | None = None,
                 dedicated_key: Key | None = None) -> dict[str, Any]:
    """Describe ``data`` as a JSON-able dict (used by the CLI and by reports).

    ``sender_title`` maps the protected service's tag to the sender's system title
    (service-specific forms do not carry it).
    """
    if not data:
        raise UsageError("APDU is empty")
    info: dict[str, Any] = {"tag": data[0], "tag_name": tag_name(data[0]), "length": len(data),
                            "ciphered": is_ciphered(data)}
    if not info["ciphered"]:
        info.update(security_control=None, invocation_counter=None, system_title=None,
                    verified=None, **_plain_fields(data))
        return info
    parsed = parse_ciphered(data)
    sc = parsed.security_control
    title = parsed.system_title or (sender_title(parsed.plain_tag) if sender_title else None)
    info.update(
        form=parsed.form.value,
        security_control={"byte": sc.byte, "suite": sc.suite, "authenticated": sc.authenticated,
                          "encrypted": sc.encrypted, "broadcast": sc.broadcast,
                          "compressed": sc.compressed, "description": sc.describe()},
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
    if info.get("verified") is not None:
        root.add("verified: [green]yes[/]" if info["verified"] else "verified: [red]NO[/]")
    if info.get("note"):
        root.add(f"note: {info['note']}")
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

    info = inspect_apdu(data, keys, title_for, dedicated)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        Console().print(_tree(info))
    return 1 if info.get("verified") is False else 0


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
