"""The `incentives` command: the root parser, the table of command groups, and one mapping from
each family of error to its exit code and one-line message.

Exit codes: 0 done; 1 rejected by the business rules (the reason on one stderr line); 2 bad input
or usage (which field, why); 3 Temporal or Postgres unreachable, or no answer within the deadline
(outcome unknown: a retry with the same ids is safe). Amounts on the command line are
decimal strings in major units ("10.00"); in `--json` output every amount is an integer in minor
units beside a `currency` field.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from pydantic import ValidationError

from incentives.adapters.settings import Settings
from incentives.cli import ops, render, wallet
from incentives.cli.exits import EXIT_BAD_INPUT, EXIT_OK, EXIT_REJECTED, EXIT_UNAVAILABLE
from incentives.domain.errors import InvalidInput, OutcomeUnknown, Rejected, Unavailable

# The command groups, each adding its subcommands (and their handlers) to the root parser.
COMMAND_GROUPS: list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]] = [
    wallet.register,
    ops.register,
]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}\n")


def parser() -> argparse.ArgumentParser:
    root = _Parser(prog="incentives", description="Credits and coupons on Temporal and PostgreSQL.")
    commands: argparse._SubParsersAction[argparse.ArgumentParser] = root.add_subparsers(
        dest="command", required=True, parser_class=_Parser
    )
    for register in COMMAND_GROUPS:
        register(commands)
    return root


def _fail(code: int, message: str) -> int:
    print(f"incentives: {message}", file=sys.stderr)
    return code


def run(argv: Sequence[str] | None = None) -> int:
    """The CLI as a function: parses `argv`, runs the command, returns the exit code."""
    try:
        args = parser().parse_args(argv)
    except SystemExit as usage:  # argparse has printed the usage error (or --help)
        return usage.code if isinstance(usage.code, int) else EXIT_BAD_INPUT
    console = render.console()
    try:
        settings = Settings()
        code = asyncio.run(args.handler(args, settings, console))
    except InvalidInput as error:
        return _fail(EXIT_BAD_INPUT, f"error: {error.field}: {error.reason}")
    except Rejected as error:
        return _fail(EXIT_REJECTED, f"rejected ({type(error).__name__}): {error.message}")
    except Unavailable as error:
        return _fail(EXIT_UNAVAILABLE, f"unavailable: {error}")
    except OutcomeUnknown as error:
        return _fail(EXIT_UNAVAILABLE, f"outcome unknown: {error}")
    except ValidationError as error:
        return _fail(EXIT_BAD_INPUT, f"error: settings: {error.errors()[0]['msg']}")
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`); nothing left to say to it.
        sys.stderr.close()
        return EXIT_OK
    return code if isinstance(code, int) else EXIT_OK


def main() -> None:
    sys.exit(run())
