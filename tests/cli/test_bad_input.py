"""Every bad input is refused with exit 2, on one stderr line naming the flag and why, with no
traceback and nothing written; an empty value is given, and refused, never taken as not given."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from incentives.adapters.db import Pool
from tests.cli.conftest import INTERNAL_NAMES, Cli, grant
from tests.helpers.builders import NewId
from tests.helpers.ledger import counts

ONE_DAY_IN_2030 = ["--effective-at", "2030-01-01T00:00:00Z", "--expires-at", "2030-01-02T00:00:00Z"]
SOON = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0).isoformat()

GRANT_BAD_INPUT: list[tuple[list[str], str]] = [
    (["--credit", "10.001"], "--credit: '10.001' has more decimals than USD allows"),
    (["--credit", "-5"], "--credit: '-5' is not a positive decimal"),
    (["--credit", "0"], "--credit: '0' must be greater than zero"),
    (["--credit", "1e3"], "--credit: '1e3' is not a positive decimal"),
    (["--credit", "NaN"], "--credit: 'NaN' is not a positive decimal"),
    (["--credit", ""], "--credit: '' is not a positive decimal"),
    (["--coupon-percent", "101"], "--coupon-percent: '101' is not a whole number from 1 to 100"),
    (["--coupon-percent", "12.5"], "--coupon-percent: '12.5' is not a whole number"),
    (["--credit", "5", "--uses", "2"], "--uses: applies to coupons only"),
    (["--coupon-off", "5", "--coupon-cap", "2"], "--coupon-cap: applies to --coupon-percent coupons only"),
    (["--credit", "5", "--expires-at", "2030-01-01T00:00:00"], "--expires-at: '2030-01-01T00:00:00' has no time zone"),
    (["--credit", "5", "--expires-in", "14x"], "--expires-in: '14x' is not a duration"),
    (["--credit", "5", "--remind-before", "3d"], "--remind-before: needs an expiry (--expires-at or --expires-in)"),
    # Empty values: a script's unset variable must not grant a credit that never expires, or an uncapped coupon.
    (["--credit", "1.00", "--expires-at", ""], "--expires-at: '' is not an ISO 8601 instant"),
    (["--credit", "1.00", "--expires-in", ""], "--expires-in: '' is not a duration"),
    (["--coupon-off", "1.00", "--min-order", ""], "--min-order: '' is not a positive decimal"),
    (["--coupon-percent", "10", "--coupon-cap", ""], "--coupon-cap: '' is not a positive decimal"),
    (["--coupon-off", "1.00", "--uses", ""], "--uses: '' is not a whole number"),
    (["--credit", "1.00", "--effective-at", ""], "--effective-at: '' is not an ISO 8601 instant"),
    (["--credit", "1.00", "--expires-in", "1d", "--remind-before", ""], "--remind-before: '' is not a duration"),
    (["--coupon-off", ""], "--coupon-off: '' is not a positive decimal"),
    (["--coupon-percent", ""], "--coupon-percent: '' is not a whole number"),
    (["--credit", "1.00", "--promotion", ""], "--promotion: is empty"),
    # Past what `int`, `timedelta` and the UTC conversion take: once tracebacks with exit 1.
    (["--credit", "9" * 4301], "(4301 characters) is larger than the allowed maximum"),
    (["--coupon-percent", "²"], "--coupon-percent: '²' is not a whole number from 1 to 100"),
    (["--coupon-off", "1", "--uses", "²"], "--uses: '²' is not a whole number from 1 to 10000"),
    (["--credit", "1", "--expires-in", "9999999999d"], "--expires-in: '9999999999d' is longer than the allowed"),
    (["--credit", "1", "--expires-in", "1d", "--remind-before", "P99999999999W"], "--remind-before: 'P99999999999W'"),
    (
        ["--credit", "1", "--expires-at", "0001-01-01T00:00:00+01:00"],
        "--expires-at: 0001-01-01T00:00:00+01:00 is outside",
    ),
    (["--credit", "1", "--effective-at", "9999-12-31T23:59:59-01:00"], "--effective-at: 9999-12-31T23:59:59-01:00 is"),
    (["--credit", "1", "--expires-at", "2300-01-01T00:00:00Z"], "--expires-at: 2300-01-01T00:00:00+00:00 is outside"),
    # Digits that are not ASCII: once accepted by `str.isdigit` and `int`.
    (["--coupon-percent", "٣"], "--coupon-percent: '٣' is not a whole number"),
    (["--coupon-percent", "３"], "--coupon-percent: '３' is not a whole number"),
    (["--coupon-off", "1", "--uses", "٢"], "--uses: '٢' is not a whole number"),
    (["--coupon-off", "1", "--uses", "２"], "--uses: '２' is not a whole number"),
    # A reminder due before the lot is usable would be sent at once.
    (["--credit", "1", "--expires-in", "1d", "--remind-before", "2d"], "--remind-before: 2d is not shorter than"),
    (["--credit", "1", "--expires-in", "1d", "--remind-before", "1d"], "--remind-before: 1d is not shorter than"),
    (["--credit", "1", *ONE_DAY_IN_2030, "--remind-before", "2d"], "--remind-before: 2d is not shorter than"),
    (["--credit", "1", "--expires-at", SOON, "--remind-before", "2d"], "--remind-before: 2d before --expires-at is"),
    (["--credit", "1", "--timeout", "0s"], "--timeout: '0s' must be longer than zero"),
    (["--credit", "1", "--timeout", ""], "--timeout: '' is not a duration"),
]


class TestGrant:
    @pytest.mark.parametrize(("extra", "message"), GRANT_BAD_INPUT)
    async def test_bad_input_exits_2_naming_the_flag_and_writes_nothing(
        self, cli: Cli, pool: Pool, new_id: NewId, extra: list[str], message: str
    ) -> None:
        customer, lot_id = new_id("c"), new_id("lot")
        before = await counts(pool, customer, lot_id)
        result = await cli(*grant(customer, lot_id, *extra))
        assert result.refused_with(message), result
        assert not INTERNAL_NAMES.search(result.err), result.err
        assert await counts(pool, customer, lot_id) == before


OTHER_BAD_INPUT: list[tuple[list[str], str]] = [
    (["redeem", "c", "--order", "o", "--total", "10", "--currency", "XYZ"], "--currency: 'XYZ' is not an ISO 4217"),
    (["redeem", "c", "--order", "o", "--total", "10.5", "--currency", "JPY"], "--total: '10.5' has more decimals"),
    (["redeem", "c", "--order", "has space", "--total", "1", "--currency", "USD"], "--order: 'has space' is not an id"),
    (["redeem", "c", "--order", "o", "--total", "1", "--currency", "USD", "--max-credit", "-1"], "--max-credit"),
    (["redeem", "c", "--order", "o", "--total", "1", "--currency", "USD", "--max-credit", ""], "--max-credit: ''"),
    (["redeem", "c", "--order", "o", "--total", "1", "--currency", "USD", "--coupon", ""], "--coupon: is empty"),
    (["redeem", "c", "--total", "1", "--currency", "USD"], "the following arguments are required: --order"),
    (["grant", "c", "--lot", "l", "--currency", "USD"], "one of the arguments --credit --coupon-off --coupon-percent"),
    (["revoke", "c", "--lot", "l", "--reason", ""], "--reason: is blank"),
    (["revoke", "c", "--lot", "l", "--reason", " "], "--reason: is blank"),
    (["revoke", "c", "--lot", "l", "--reason", "a\x01b"], "--reason: 'a\\x01b' holds a control"),
    (["revoke", "c", "--lot", "l", "--reason", "a\u202eb"], "--reason: 'a\\u202eb' holds a control"),
    (["revoke", "c", "--lot", "l", "--reason", "two\nlines"], "--reason: 'two\\nlines' holds a control"),
    (["revoke", "c", "--lot", "l", "--reason", "x" * 501], "--reason: is 501 characters long; at most 500"),
    (["wallet", ""], "CUSTOMER: is empty"),
    (["wallet", "a\nb"], "CUSTOMER: 'a\\nb' is not an id"),
    (["wallet", "\u202eabc"], "CUSTOMER: '\\u202eabc' is not an id"),
    (["wallet", "c", "--limit", "0"], "--limit: '0' is not a whole number"),
    (["grant", "c\x00", "--lot", "l", "--currency", "USD", "--credit", "1"], "CUSTOMER: 'c\\x00' is not an id"),
    (["reverse", "c", "--order", "o", "--reversal", "r", "--amount", ""], "--amount: '' is not a positive decimal"),
    (["reverse", "c", "--order", "o", "--reversal", "r", "--amount", "1.0001"], "more decimals than any currency"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["--address", "nope", "wallet", "c"], "--address: 'nope' is not HOST:PORT"),
    (["--namespace", "", "wallet", "c"], "--namespace: '' is not a namespace name"),
]


class TestOtherCommands:
    @pytest.mark.parametrize(("argv", "message"), OTHER_BAD_INPUT)
    async def test_bad_input_exits_2_naming_the_flag_and_writes_nothing(
        self, cli: Cli, pool: Pool, argv: list[str], message: str
    ) -> None:
        named = [arg for arg in argv if "\x00" not in arg]  # what the command names; Postgres text holds no NUL
        before = await counts(pool, *named)
        result = await cli(*argv)
        assert result.refused_with(message), result
        assert "\u202e" not in result.err
        assert await counts(pool, *named) == before

    async def test_reverse_checks_its_amount_before_contacting_any_server(self, offline_cli: Cli) -> None:
        result = await offline_cli("reverse", "c", "--order", "o", "--reversal", "r", "--amount", "abc")
        assert result.refused_with("--amount: 'abc' is not a positive decimal amount"), result


class TestEnvironment:
    @pytest.mark.parametrize(
        ("variable", "value", "argv", "message"),
        [
            ("INCENTIVES_LOG_LEVEL", "bogus", ["worker"], "INCENTIVES_LOG_LEVEL: 'bogus' is not a log level"),
            ("INCENTIVES_TEMPORAL_PORT", "abc", ["wallet", "c"], "INCENTIVES_TEMPORAL_PORT: 'abc': Input should be"),
            ("INCENTIVES_TEMPORAL_PORT", "70000", ["wallet", "c"], "INCENTIVES_TEMPORAL_PORT: '70000'"),
            ("TEMPORAL_ADDRESS", "no-port", ["wallet", "c"], "TEMPORAL_ADDRESS: 'no-port' is not HOST:PORT"),
            ("DATABASE_URL", "", ["wallet", "c"], "DATABASE_URL: is empty"),
        ],
    )
    async def test_a_malformed_setting_exits_2_naming_the_variable(
        self,
        offline_cli: Cli,
        monkeypatch: pytest.MonkeyPatch,
        variable: str,
        value: str,
        argv: list[str],
        message: str,
    ) -> None:
        monkeypatch.setenv(variable, value)
        result = await offline_cli(*argv)
        assert result.refused_with(message), result
