"""The 62351-3 profile as data: shipped values, citations, and one-line load errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from metercert.tlsprobe import profile as profile_module
from metercert.tlsprobe.profile import ProfileError, default_profile, load_profile

SHIPPED = Path(profile_module.__file__).parent / "profiles" / "iec62351-3.yaml"


def test_shipped_profile_values_and_sources() -> None:
    p = default_profile()
    assert p.min_tls_version == "TLS 1.2"
    assert p.min_rsa_bits == 2048 and p.max_certificate_bytes == 8192
    assert set(p.allowed_curves) == {"P-256", "P-384"}
    assert {"sha1", "md5"} <= set(p.forbidden_signature_hashes)
    assert {"NULL", "anon", "EXPORT", "RC4", "3DES", "CBC-SHA1"} <= set(p.forbidden_cipher_families)
    assert p.recommend_tls13 and p.require_revocation_info and p.require_client_auth
    # every setting cites its source; recalled ones are marked [verify]
    assert all(p.source(k) for k in p.sources) and len(p.sources) == 21
    assert "[verify]" in p.source("min_rsa_bits")


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "profile.yaml"
    path.write_text(text)
    return path


def _edited(old: str, new: str) -> str:
    text = SHIPPED.read_text()
    assert old in text
    return text.replace(old, new)


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('value: "1.2"', 'value: "1.1.7"', "min_tls_version: must be one of"),
        ("value: 2048\n", "value: big\n", "min_rsa_bits: must be a non-negative integer"),
        ("value: [P-256, P-384]", "value: [P-256, P-999]", "unknown curves P-999"),
        ('value: ["NULL", anon', "value: [NULL, anon", 'quote "NULL"'),
        ("min_dh_bits:", "min_dh_bitz:", "unknown setting 'min_dh_bitz'"),
    ],
)
def test_bad_setting_names_file_and_line(tmp_path: Path, old: str, new: str, message: str) -> None:
    text = _edited(old, new)
    path = _write(tmp_path, text)
    key_line = next(
        i
        for i in range(_line_of(text, new.splitlines()[0].strip()), 0, -1)
        if not text.splitlines()[i - 1].startswith((" ", "#"))
    )
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    assert str(info.value).startswith(f"{path}:{key_line}: ")
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_source_missing_setting_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="must cite"):
        load_profile(
            _write(
                tmp_path,
                _edited(
                    'source: "IEC 62351-3 ed.2: RSA keys of at least 2048 bits [verify]"',
                    'source: ""',
                ),
            )
        )
    with pytest.raises(ProfileError, match="missing settings: forbid_compression"):
        text = SHIPPED.read_text()
        load_profile(_write(tmp_path, text[: text.index("forbid_compression:")]))
    with pytest.raises(ProfileError, match=r"profile.yaml:3: "):
        load_profile(_write(tmp_path, "a: 1\nb:\n\t- x\n"))
    with pytest.raises(ProfileError, match="not found"):
        load_profile(tmp_path / "nope.yaml")
    with pytest.raises(ProfileError, match="must be a mapping"):
        load_profile(_write(tmp_path, "- a\n- b\n"))


def test_a_tightened_copy_loads(tmp_path: Path) -> None:
    p = load_profile(_write(tmp_path, _edited('value: "1.2"', 'value: "1.3"')))
    assert p.min_tls_version == "TLS 1.3" and p.path == str(tmp_path / "profile.yaml")


def test_settings_added_later_are_optional_with_cited_defaults(tmp_path) -> None:
    """A lab's copy of the first profile version still loads; new settings get defaults."""
    from metercert.tlsprobe import profile as profile_module

    shipped = Path(profile_module.__file__).parent / "profiles" / "iec62351-3.yaml"
    old = shipped.read_text().split("\nmax_session_lifetime_s:")[0]
    (tmp_path / "old.yaml").write_text(old)
    p = load_profile(tmp_path / "old.yaml")
    assert p.max_session_lifetime_s == 86400 and p.require_extended_master_secret is True
    assert "built-in default" in p.source("min_group_security_bits")
