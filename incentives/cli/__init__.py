"""The `incentives` command: the root parser, the table of command groups, and one mapping from
each family of error to its exit code and one-line message.

Exit codes: 0 done; 1 rejected by the business rules (the reason on one stderr line); 2 bad input
or usage (which flag, why); 3 Temporal or Postgres unreachable, or no answer within the deadline
(outcome unknown: a retry with the same ids is safe); 4 internal error (one line, the traceback in
the log). No traceback reaches the terminal. Amounts on the command line are decimal strings in
major units ("10.00"); in `--json` output every amount is an integer in minor units beside a
`currency` field.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import NoReturn

from incentives.adapters.failures import infrastructure_failure
from incentives.adapters.logs import configure_logging, log_destination
from incentives.adapters.settings import DEFAULT_HOME, load_settings
from incentives.cli import api, events, flags, oncall, ops, promotion, render, wallet
from incentives.cli.arguments import EXIT_CODES, Parser, escaped
from incentives.cli.exits import (
    EXIT_BAD_INPUT,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_UNAVAILABLE,
)
from incentives.domain.errors import InvalidInput, OutcomeUnknown, Rejected, Unavailable

# The command groups, each adding its subcommands (and their handlers) to the root parser.
COMMAND_GROUPS: list[Callable[[argparse._SubParsersAction[Parser]], None]] = [
    wallet.register,
    promotion.register,
    oncall.register,
    ops.register,
    api.register,
    events.register,
]

ENVIRONMENT = """\
environment:
  TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS_*, TEMPORAL_PROFILE
                           Temporal, as the Temporal CLI reads it (--address and --namespace win)
  DATABASE_URL             Postgres (unset: the embedded one `incentives dev up` runs)
  NATS_URL, NATS_CREDS, NATS_USER, NATS_PASSWORD
                           NATS JetStream for events (unset: the embedded server)
  INCENTIVES_TASK_QUEUE, INCENTIVES_LOG_LEVEL, INCENTIVES_HOME, INCENTIVES_TEMPORAL_PORT, ...
                           see the README"""


def _version() -> str:
    try:
        return version("incentives")
    except PackageNotFoundError:
        return "unknown (not installed)"


def parser() -> Parser:
    root = Parser(
        prog="incentives",
        description="Credits and coupons on Temporal and PostgreSQL: grant, redeem, reverse, revoke, look.\n"
        "`incentives COMMAND --help` describes a command, with examples.",
        epilog=f"{EXIT_CODES}\n\n{ENVIRONMENT}",
    )
    root.add_argument("--version", action="version", version=f"incentives {_version()}")
    root.add_argument(
        "--address",
        metavar="HOST:PORT",
        help="Temporal's frontend (default: TEMPORAL_ADDRESS, a Temporal profile, or the embedded server)",
    )
    root.add_argument(
        "--namespace", metavar="NAME", help="Temporal namespace (default: TEMPORAL_NAMESPACE, or default)"
    )
    commands: argparse._SubParsersAction[Parser] = root.add_subparsers(
        dest="command", required=True, parser_class=Parser, metavar="COMMAND", title="commands", help="one of:"
    )
    for register in COMMAND_GROUPS:
        register(commands)
    return root


def _fail(code: int, message: str) -> int:
    # One line, whatever the message quotes: nothing the user typed reaches the terminal raw.
    print(f"incentives: {escaped(message, limit=None)}", file=sys.stderr)
    return code


def run(argv: Sequence[str] | None = None) -> int:
    """The CLI as a function: parses `argv`, runs the command, returns the exit code."""
    try:
        args = parser().parse_args(argv)
    except SystemExit as usage:  # argparse has printed the usage error (or --help, --version)
        return usage.code if isinstance(usage.code, int) else EXIT_BAD_INPUT
    try:
        settings = load_settings(temporal_address=args.address, temporal_namespace=args.namespace)
        code: int = asyncio.run(args.handler(args, settings, render.console()))
    except InvalidInput as error:
        flagged = flags.named(error)
        return _fail(EXIT_BAD_INPUT, f"error: {flagged.field}: {flagged.reason}")
    except Rejected as error:
        return _fail(EXIT_REJECTED, f"rejected ({type(error).__name__}): {error.message}")
    except Unavailable as error:
        return _fail(EXIT_UNAVAILABLE, f"unavailable: {error}")
    except OutcomeUnknown as error:
        return _fail(EXIT_UNAVAILABLE, f"outcome unknown: {error}")
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`| head`); nothing left to say to it.
        return EXIT_OK
    except Exception as error:
        return _unexpected(error)
    return code


def _unexpected(error: Exception) -> int:
    """Infrastructure failing mid-call is exit 3; anything else is a bug: exit 4, the traceback in the log."""
    failure = infrastructure_failure(error)
    if failure is not None:
        return _fail(
            EXIT_UNAVAILABLE,
            f"outcome unknown: {failure}; retrying the same command is safe (same ids, same result)",
        )
    if not logging.getLogger().handlers:  # a caller of `run` that configured no logging
        configure_logging("WARNING", path=log_path())
    logging.getLogger("incentives.cli").error("internal error", exc_info=error)
    return _fail(
        EXIT_INTERNAL,
        f"internal error ({type(error).__name__}: {error}); the traceback is in the log: {log_destination()}",
    )


def log_path() -> Path:
    """The command's own log (warnings, internal errors), under INCENTIVES_HOME."""
    return Path(os.environ.get("INCENTIVES_HOME") or DEFAULT_HOME) / "logs" / "incentives.log"


def main() -> NoReturn:
    configure_logging("WARNING", path=log_path())  # `worker` logs to stdout instead, at its own level
    _exit(run())


def _exit(code: int) -> NoReturn:
    """Ends the process without the interpreter's finalization. The Temporal core's threads may
    still be handing a result back to Python when the command is done; if the interpreter is
    finalizing then, the process aborts (`PyGILState_Release`, SIGABRT) after the command has
    reported its outcome. What was written is flushed; nothing else is left to do."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    logging.shutdown()
    os._exit(code)
