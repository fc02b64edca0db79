"""Any string for any flag: the command answers with exit 2 (bad input) or 3 (past the input checks,
and no server listens: closed ports), on one stderr line, never with a traceback; exit 0 only for
`--help` and `--version`. A generated case therefore never writes anything: every command is
exercised, the ones that run servers or read files included, with the embedded stack's home in a
temporary directory."""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Iterator
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import client
from tests.cli.conftest import CLOSED_DATABASE, CLOSED_NATS, CLOSED_TEMPORAL

# A well-formed command line per command, and the flags (and positions) a case may replace.
VALID: dict[str, list[str]] = {
    "grant": ["grant", "c", "--lot", "l", "--currency", "USD", "--credit", "1.00"],
    "coupon": ["grant", "c", "--lot", "l", "--currency", "USD", "--coupon-percent", "10"],
    "redeem": ["redeem", "c", "--order", "o", "--total", "5", "--currency", "USD"],
    "reverse": ["reverse", "c", "--order", "o", "--reversal", "r"],
    "revoke": ["revoke", "c", "--lot", "l", "--reason", "r"],
    "wallet": ["wallet", "c"],
}
FLAGS: dict[str, list[str]] = {
    "grant": [
        "--lot",
        "--currency",
        "--credit",
        "--min-order",
        "--expires-at",
        "--expires-in",
        "--effective-at",
        "--remind-before",
        "--promotion",
        "--timeout",
        "--uses",
        "--coupon-cap",
    ],
    "coupon": ["--coupon-percent", "--coupon-cap", "--min-order", "--uses", "--expires-in", "--remind-before"],
    "redeem": ["--order", "--total", "--currency", "--coupon", "--max-credit", "--timeout"],
    "reverse": ["--order", "--reversal", "--amount", "--timeout"],
    "revoke": ["--lot", "--reason", "--timeout"],
    "wallet": ["--limit"],
}
ROOT_FLAGS = ["--address", "--namespace"]


@st.composite
def command_lines(draw: st.DrawFn) -> list[str]:
    """A valid command with one flag (or the customer) set to any text, sometimes more text after."""
    name = draw(st.sampled_from(sorted(VALID)))
    argv = list(VALID[name])
    text = draw(st.text(max_size=60) | st.sampled_from(["", " ", "٣", "²", "１", "\x00", "\u202e", "9" * 4301]))
    where = draw(st.sampled_from(["CUSTOMER", *FLAGS[name], *ROOT_FLAGS]))
    if where == "CUSTOMER":
        argv[1] = text
    elif where in ROOT_FLAGS:
        argv = [where, text, *argv]
    elif where in argv:
        argv[argv.index(where) + 1] = text
    else:
        argv += [where, text]
    return argv + draw(st.lists(st.text(max_size=10), max_size=2))


@contextlib.contextmanager
def nowhere_to_connect() -> Iterator[None]:
    with (
        tempfile.TemporaryDirectory() as home,
        mock.patch.dict(
            os.environ,
            {
                "TEMPORAL_ADDRESS": CLOSED_TEMPORAL,
                "DATABASE_URL": CLOSED_DATABASE,
                "NATS_URL": CLOSED_NATS,
                "INCENTIVES_HOME": home,
            },
        ),
    ):
        yield


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with nowhere_to_connect(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = client.run(argv)
    return code, out.getvalue(), err.getvalue()


# What argparse answers with exit 0 wherever it appears among the arguments.
_HELP = {"-h", "--help", "--version"}


def _check(argv: list[str]) -> None:
    code, out, err = run(argv)
    allowed = {2, 3} | ({0} if _HELP & set(argv) or argv == ["dev", "down"] else set())
    assert code in allowed, (argv, code, err)
    assert "Traceback" not in err + out, (argv, err)
    if code != 0:
        assert err.count("\n") == 1, (argv, err)
        assert err.startswith("incentives"), (argv, err)
        assert "\u202e" not in err, (argv, err)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(command_lines())
def test_any_text_for_any_flag_exits_0_to_3_without_a_traceback(argv: list[str]) -> None:
    _check(argv)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.text(max_size=20), max_size=8))
def test_any_command_line_at_all(argv: list[str]) -> None:
    _check(argv)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from([["worker"], ["dev", "up"], ["dev", "status"], ["dev", "down"], ["replay"], ["history"]]),
    st.lists(st.text(max_size=20), max_size=4),
)
def test_commands_that_run_servers_or_read_files_too(command: list[str], rest: list[str]) -> None:
    """With every server configured elsewhere (closed ports), `dev up` starts nothing and `dev down`
    finds nothing to stop in its temporary home (exit 0, the only success here); `replay` reads
    what exists as a file, refusing the rest."""
    _check(command + rest)
