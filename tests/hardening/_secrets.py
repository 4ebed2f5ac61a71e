"""Collect secret byte strings from key files and state, and scan output for them."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

_SECRET_FIELDS = ("guek", "gbek", "ak", "kek", "hls_secret", "encryption_key",
                  "authentication_key", "master_key", "broadcast_key", "password")
_PEM_BODY = re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----(.*?)-----END", re.DOTALL)


@dataclass(frozen=True)
class Leak:
    """Where a secret showed up (the secret itself is not kept, only its name)."""

    where: str
    secret_name: str
    encoding: str


def _walk(node: object, path: str) -> Iterator[tuple[str, bytes]]:
    if isinstance(node, dict):
        for k, v in node.items():
            if str(k) in _SECRET_FIELDS and isinstance(v, str) and v.strip():
                try:
                    yield f"{path}.{k}", bytes.fromhex(v)
                except ValueError:
                    yield f"{path}.{k}", v.encode()
            else:
                yield from _walk(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, f"{path}[{i}]")


def secrets_in(paths: Iterable[Path]) -> dict[str, bytes]:
    """Every key / secret byte string in YAML key files, meter state and PEM private keys."""
    found: dict[str, bytes] = {}
    for p in paths:
        raw = p.read_bytes()
        if p.suffix in (".yaml", ".yml"):
            data = yaml.load(raw.decode(), yaml.BaseLoader)
            for name, value in _walk(data, p.name):
                if len(value) >= 8:
                    found[name] = value
            for i, m in enumerate(_PEM_BODY.finditer(raw)):
                found[f"{p.name}:pem{i}"] = base64.b64decode(b"".join(m.group(1).split()))
        elif p.suffix in (".pem", ".key") and b"PRIVATE KEY" in raw:
            for i, m in enumerate(_PEM_BODY.finditer(raw)):
                found[f"{p.name}:pem{i}"] = base64.b64decode(b"".join(m.group(1).split()))
    return found


def needles(secret: bytes) -> dict[str, bytes]:
    """The encodings a secret could leak in: raw, hex (both cases, spaced or not), base64."""
    h = secret.hex()
    out = {
        "raw": secret,
        "hex": h.encode(),
        "HEX": h.upper().encode(),
        "spaced hex": " ".join(h[i:i + 2] for i in range(0, len(h), 2)).encode(),
        "SPACED HEX": " ".join(h[i:i + 2] for i in range(0, len(h), 2)).upper().encode(),
        "base64": base64.b64encode(secret).rstrip(b"="),
    }
    if len(secret) > 48:  # a DER private key: look for any 32-byte window of it instead
        mid = len(secret) // 2
        out = {k: v for k, v in needles(secret[mid - 16:mid + 16]).items()}
    return out


def scan(blobs: dict[str, bytes], secrets: dict[str, bytes]) -> list[Leak]:
    leaks = []
    for where, blob in blobs.items():
        for name, secret in secrets.items():
            for enc, needle in needles(secret).items():
                if needle in blob:
                    leaks.append(Leak(where, name, enc))
    return leaks


def files_under(folder: Path, exclude: Iterable[Path] = ()) -> dict[str, bytes]:
    skip = [e.resolve() for e in exclude]
    out = {}
    for p in sorted(folder.rglob("*")):
        rp = p.resolve()
        if p.is_file() and not any(rp == s or s in rp.parents for s in skip):
            out[str(p)] = p.read_bytes()
    return out
