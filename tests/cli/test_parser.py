"""Argument errors name the problem once, and the certify options read naturally."""

from __future__ import annotations

import pytest

from metercert.cli import build_parser, main


@pytest.mark.parametrize("argv, expected", [
    (["--bogus"], "metercert: error: unrecognized arguments: --bogus"),
    (["certify", "--out"], "metercert: error: certify: argument --out: expected one argument"),
    (["fleet", "scan", "d", "--engine", "oracle"],
     "metercert: error: fleet scan: argument --engine: invalid choice: 'oracle'"),
])
def test_argument_errors_are_one_line_without_a_repeated_program_name(
        capsys: pytest.CaptureFixture[str], argv: list[str], expected: str) -> None:
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(expected), err


def test_certify_takes_profile_as_a_short_name_for_meter_profile() -> None:
    argv = ["certify", "--profile", "no-replay-check"]
    assert build_parser(argv).parse_args(argv).meter_profile == "no-replay-check"


def test_every_argument_of_every_command_has_help() -> None:
    import argparse

    missing: list[str] = []

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    walk(child, f"{path} {name}")
            elif not action.help and not isinstance(action, argparse._HelpAction):
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")

    walk(build_parser(), "metercert")
    assert not missing, missing
