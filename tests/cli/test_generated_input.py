"""Any string for any flag: the command answers with exit 0, 1, 2 or 3, on one stderr line when it
fails, and never with a traceback. No server listens (closed ports), so whatever gets past the
input checks exits 3; a generated case therefore never writes anything."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import client
from tests.cli.conftest import CLOSED_DATABASE, CLOSED_TEMPORAL

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
    with mock.patch.dict(os.environ, {"TEMPORAL_ADDRESS": CLOSED_TEMPORAL, "DATABASE_URL": CLOSED_DATABASE}):
        yield


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with nowhere_to_connect(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = client.run(argv)
    return code, out.getvalue(), err.getvalue()


def _check(argv: list[str]) -> None:
    code, out, err = run(argv)
    assert code in (0, 1, 2, 3), (argv, code, err)
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
    if argv[:1] in (["worker"], ["dev"], ["replay"]):  # these run servers or read files
        return
    _check(argv)
