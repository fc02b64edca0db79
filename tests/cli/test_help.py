"""Help that teaches, and a grammar with no guessing: a description, examples and exit codes on every
command, help text on every argument, `--version`, exact flag names, each single-valued flag once."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from incentives.cli import parser
from tests.cli.conftest import Cli, grant

COMMANDS = [
    "grant",
    "redeem",
    "reverse",
    "revoke",
    "wallet",
    "promotion",
    "history",
    "explain",
    "reconcile",
    "worker",
    "replay",
    "dev",
    "events",
    "api",
    "api-key",
]
PROMOTION_ACTIONS = [
    "check", "start", "add-audience", "status", "list", "report", "pause", "resume", "cancel", "extend",
]  # fmt: skip


def _subparsers(command: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in command._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_argument_of_every_command_has_help_text() -> None:
    commands = _subparsers(parser())
    assert sorted(commands) == sorted(COMMANDS)
    actions = _subparsers(commands["promotion"])
    assert sorted(actions) == sorted(PROMOTION_ACTIONS)
    for name, command in [("incentives", parser()), *commands.items(), *actions.items()]:
        missing = [a.dest for a in command._actions if not a.help or a.help == argparse.SUPPRESS]
        assert missing == [], name


@pytest.mark.parametrize("command", [*COMMANDS, *(f"promotion {action}" for action in PROMOTION_ACTIONS)])
async def test_every_command_has_a_description_examples_and_the_exit_codes(offline_cli: Cli, command: str) -> None:
    shown = await offline_cli(*command.split(), "--help")
    assert shown.code == 0
    description = shown.out.split("\n\n")[1]
    assert len(description) > 20, shown.out
    assert f"examples:\n  incentives {command}" in shown.out or "examples:\n  incentives --" in shown.out
    assert "exit codes:\n  0  done" in shown.out
    assert "4  internal error" in shown.out


async def test_customer_total_and_json_are_explained(offline_cli: Cli) -> None:
    shown = (await offline_cli("redeem", "--help")).out
    for argument in ("CUSTOMER", "--total AMOUNT", "--json"):
        line = next(line for line in shown.splitlines() if line.startswith(f"  {argument} "))
        assert len(line.strip()) > len(argument) + 10, line


async def test_version(offline_cli: Cli) -> None:
    shown = await offline_cli("--version")
    assert (shown.code, shown.out) == (0, "incentives 0.1.0\n")


async def test_the_root_help_lists_the_connection_flags_and_exit_codes(offline_cli: Cli) -> None:
    shown = await offline_cli("--help")
    assert shown.code == 0
    assert "--address HOST:PORT" in shown.out
    assert "--namespace NAME" in shown.out
    assert "3  Temporal or Postgres unreachable" in shown.out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["grant", "c", "--lot", "l", "--cur", "USD", "--credit", "1"], "unknown flag --cur"),
        (["grant", "c", "--lot", "l", "--currency", "USD", "--cred", "1"], "unknown flag --cred"),
        (["grant", "c", "--lot", "l", "--currency", "USD", "--credit", "1", "--expires", "1d"], "--expires"),
        (["redeem", "c", "--ord", "o", "--total", "1", "--currency", "USD"], "did you mean --order?"),
        (["--addr", "127.0.0.1:7233", "wallet", "c"], "did you mean --address?"),
    ],
)
async def test_flags_are_taken_by_their_exact_name_only(offline_cli: Cli, argv: list[str], message: str) -> None:
    result = await offline_cli(*argv)
    assert result.refused_with(message), result


@pytest.mark.parametrize(
    "argv",
    [
        [*grant("c", "a", "--credit", "1"), "--lot", "b"],
        [*grant("c", "a", "--credit", "1"), "--currency", "EUR"],
        [*grant("c", "a", "--credit", "1"), "--credit", "2"],
        [*grant("c", "a", "--credit", "1", "--expires-in", "1d"), "--expires-in", "2d"],
        ["revoke", "c", "--lot", "l", "--reason", "a", "--reason", "b"],
        ["wallet", "c", "--limit", "1", "--limit", "2"],
        ["--address", "127.0.0.1:1", "--address", "127.0.0.1:2", "wallet", "c"],
    ],
)
async def test_a_single_valued_flag_given_twice_is_an_error(offline_cli: Cli, argv: list[str]) -> None:
    result = await offline_cli(*argv)
    assert result.refused_with("given more than once"), result


def test_the_readme_says_how_to_run_the_command_and_gives_temporal_its_address(project_root: Path) -> None:
    readme = (project_root / "README.md").read_text()
    assert ".venv/bin/incentives" in readme
    assert "source .venv/bin/activate" in readme
    commands = re.findall(r"temporal (?:workflow|operator) [^`\n]*", readme)
    assert len(commands) >= 4
    # Without it the Temporal CLI queries whatever listens on 7233, not INCENTIVES_TEMPORAL_PORT.
    assert [command for command in commands if "--address " not in command] == []
