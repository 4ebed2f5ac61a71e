"""The new profile settings are user input: each bad value is one line naming the problem."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from metercert.errors import InputFileError
from metercert.meter.profile import load_profile, profile_from_mapping


@pytest.mark.parametrize(("settings", "message"), [
    ({"max_connections": 0}, "max_connections must be 1..10000"),
    ({"max_connections": "one"}, "max_connections has the wrong type"),
    ({"protected_release": "sometimes"}, "protected_release must be one of accepted, required"),
    ({"security_setup_version": 2}, "security_setup_version must be 0..1"),
    ({"association_version": 0}, "association_version must be 1..3"),
    ({"omit_objects": "1.0.0.2.0.255"}, "omit_objects must be a list of OBIS"),
    ({"omit_objects": ["1.0.0.2.0"]}, "'1.0.0.2.0' is not an OBIS code"),
    ({"energy_register": "energy"}, "energy_register: 'energy' is not an OBIS code"),
    ({"unsupported_service": "ignore"}, "unsupported_service must be one of"),
    ({"hls_challenge_lengths": [4]}, "hls_challenge_lengths must be a non-empty list"),
    ({"hls_challenge_lengths": []}, "hls_challenge_lengths must be a non-empty list"),
    ({"server_challenge_length": 65}, "server_challenge_length must be 8..64"),
    ({"legacy_hls": "maybe"}, "legacy_hls must be one of refused, pending"),
    ({"lls_associations": [{"client_sap": 17, "association": 8}]}, "lls_associations entry"),
    ({"lls_associations": [{"client_sap": 200, "association": 8, "password": "x"}]},
     "client_sap (1..127)"),
    ({"lls_associations": [{"client_sap": 17, "association": 8, "password": "a"},
                           {"client_sap": 17, "association": 9, "password": "b"}]},
     "two LLS associations share a client SAP"),
    ({"flaws": ["wedged-by-a-giant-frame"]}, "unknown flaws"),
])
def test_bad_settings_are_refused(settings: dict[str, object], message: str) -> None:
    with pytest.raises(InputFileError, match=message.replace("(", r"\(").replace(")", r"\)")):
        profile_from_mapping({"name": "x", **settings})


def test_password_stays_out_of_reprs() -> None:
    profile = load_profile("lls-second-association")
    assert "v9#Tq2" not in repr(profile)
    assert profile.lls_associations[0].client_sap == 17


def test_bad_profile_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\nhls_challenge_lengths: [2, 300]\n")
    proc = subprocess.run([sys.executable, "-m", "metercert", "meter", "serve", "--profile",
                           str(path), "--port", "0", "--state-dir", str(tmp_path / "s")],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "hls_challenge_lengths" in proc.stderr and "Traceback" not in proc.stderr


def test_every_builtin_profile_loads_and_flawed_ones_have_one_flaw() -> None:
    from metercert.meter.profile import FLAWS, builtin_profiles

    for name in builtin_profiles():
        profile = load_profile(name)
        assert len(profile.flaws) <= 1
        if profile.flaws:
            assert profile.flaws == {name}  # a flawed profile is named after its flaw
    assert set(FLAWS) <= set(builtin_profiles())
