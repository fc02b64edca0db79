"""The command line's grammar, stricter than argparse's defaults: flags only by their exact name
(`--cur` is not `--currency`), a single-valued flag given once (a second `--lot` is an error, not
the one that wins), usage errors as exit 2 on one escaped line, and help that teaches (a
description, examples and the exit codes on every command)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from incentives.cli.exits import EXIT_BAD_INPUT

EXIT_CODES = """\
exit codes:
  0  done
  1  refused by the business rules (which rule and why, on one line); nothing was written
  2  bad input or usage (which flag and why); nothing was sent or written
  3  Temporal or Postgres unreachable, or no answer in time: the outcome is unknown, and
     retrying with the same ids is safe (it returns the first result, or applies it once)
  4  internal error: one line here, the detail in the log"""

# An error line quotes what was typed; past this it is cut, so it stays one readable line.
_MESSAGE_LENGTH = 300


class Once(argparse._StoreAction):
    """`store`, refusing a second value: with a script's `--lot "$A" --lot "$B"` nobody can tell
    which one was meant. Flags with this action default to None (their defaults are applied when
    they are read), so that None means "not given yet"."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        if getattr(namespace, self.dest, None) is not None:
            raise argparse.ArgumentError(self, "given more than once: give it once")
        setattr(namespace, self.dest, values)


class Parser(argparse.ArgumentParser):
    """An `ArgumentParser` with the stricter grammar above; its subcommands are parsers like it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)
        # Registered under `store` (and as the default action): every single-valued flag, in
        # this parser and in its groups, is a `Once`.
        self.register("action", None, Once)
        self.register("action", "store", Once)

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        self._arguments = list(args) if args is not None else sys.argv[1:]
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        # argparse reports a missing required flag before an unknown one; `--cur USD` is the
        # likelier mistake, and the more useful thing to say.
        if message.startswith(("the following arguments are required", "one of the arguments")) or (
            "invalid choice" in message
        ):
            message = self._unknown_flag() or message
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {escaped(message)} (see `{self.prog} --help`)\n")

    def _unknown_flag(self) -> str | None:
        for argument in getattr(self, "_arguments", []):
            if argument == "--":
                return None
            flag = argument.split("=", 1)[0]
            if flag.startswith("--") and flag not in self._option_string_actions:
                known = sorted(name for name in self._option_string_actions if name.startswith(flag))
                meant = f": did you mean {' or '.join(known)}?" if known else ""
                return f"unknown flag {flag} (flags are given by their full name){meant}"
        return None


def escaped(message: str, limit: int | None = _MESSAGE_LENGTH) -> str:
    """`message` on one line, with every character that does not print escaped (a newline, a NUL
    or a bidi override typed as an argument is echoed as `\\n`, `\\x00`, `\\u202e`), cut at `limit`."""
    text = "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in message)
    return text if limit is None or len(text) <= limit else text[:limit] + "…"


def command(
    commands: argparse._SubParsersAction[Parser], name: str, summary: str, description: str, examples: str
) -> Parser:
    """A subcommand whose help has a description, examples and the exit codes."""
    return commands.add_parser(
        name,
        help=summary,
        description=f"{summary[0].upper()}{summary[1:]}.\n\n{description}",
        epilog=f"examples:\n{examples}\n\n{EXIT_CODES}",
    )
