"""The options several commands share are defined once (:mod:`eqprop.cli_options`) and
stand in the help of every command that takes them, with the same help text."""

from __future__ import annotations

import argparse

import pytest

from eqprop.cli import build_parser, main

RAY = ("--address", "--trials-at-once", "--cpus-per-trial", "--retries")
#: each shared option and the commands that take it
SHARED = {
    "--set": ("train", "topology", "check-gradient", "reproduce", "sweep"),
    "--data-dir": ("train", "check-gradient", "bench-solvers", "reproduce", "sweep"),
    **{flag: ("reproduce", "sweep") for flag in RAY},
}


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return sub.choices


def _option(parser: argparse.ArgumentParser, flag: str) -> argparse.Action:
    return next(a for a in parser._actions if flag in a.option_strings)


@pytest.mark.parametrize("flag", sorted(SHARED))
def test_a_shared_option_is_in_every_command_that_takes_it(flag, capsys):
    commands = _commands()
    for name in SHARED[flag]:
        with pytest.raises(SystemExit):
            main([name, "--help"])
        assert f"  {flag} " in capsys.readouterr().out, f"eqprop {name} --help lacks {flag}"
    if flag != "--set":  # --set says what it overrides: a field, of every run, of every trial
        helps = {_option(commands[name], flag).help for name in SHARED[flag]}
        assert len(helps) == 1, f"{flag} is described differently: {helps}"


def test_set_collects_every_override_in_each_command():
    commands = _commands()
    for name in SHARED["--set"]:
        given = ["SWEEP.toml"] if name == "sweep" else ["fig3"] if name == "reproduce" else []
        given += ["--out", "o"] * (name in ("reproduce", "sweep"))
        args = commands[name].parse_args([*given, "--set", "a=1", "--set", "b=2"])
        assert args.set == ["a=1", "b=2"]
        assert commands[name].parse_args(given).set == []


def test_the_ray_options_stand_in_one_section_with_each_commands_own():
    commands = _commands()
    for name, own in (("reproduce", "--no-ray"), ("sweep", "--gpus-per-trial")):
        help_text = commands[name].format_help()
        section = help_text[help_text.index("\nRay:\n") :]
        for flag in (*RAY, own):
            assert f"  {flag} " in section, f"{flag} is not in the Ray section of eqprop {name}"
    assert "(repeatable; named as a departure in results.md)" in " ".join(
        commands["reproduce"].format_help().split()
    )
