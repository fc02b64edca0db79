"""Money parsing and formatting: integer minor units with the currency's real exponent."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from incentives.domain.errors import InvalidAmount, UnknownCurrency
from incentives.domain.money import MAX_MINOR_UNITS, check_decimal, exponent, format_amount, format_money, parse_amount


class TestParseAmount:
    @pytest.mark.parametrize(
        ("text", "currency", "minor"),
        [("10", "USD", 1000), ("10.5", "USD", 1050), ("0.01", "USD", 1), ("1500", "JPY", 1500), ("1.234", "KWD", 1234)],
    )
    def test_decimal_strings_become_minor_units(self, text: str, currency: str, minor: int) -> None:
        assert parse_amount(text, currency) == minor

    @pytest.mark.parametrize(
        ("text", "currency", "why"),
        [
            ("10.001", "USD", "more decimals than USD allows"),
            ("10.5", "JPY", "more decimals than JPY allows"),
            ("1e3", "USD", "not a positive decimal"),
            ("NaN", "USD", "not a positive decimal"),
            ("-5", "USD", "not a positive decimal"),
            ("", "USD", "not a positive decimal"),
            (" 5", "USD", "not a positive decimal"),
            ("5.", "USD", "not a positive decimal"),
            ("0", "USD", "greater than zero"),
            ("0.00", "USD", "greater than zero"),
            ("99999999999999999", "USD", "larger than the allowed maximum"),
            ("9" * 4301, "USD", "larger than the allowed maximum"),  # past `int`'s string limit
            ("١٠", "USD", "not a positive decimal"),
            ("１０", "USD", "not a positive decimal"),
            ("10²", "USD", "not a positive decimal"),
        ],
    )
    def test_malformed_amounts_are_typed_errors_naming_the_field(self, text: str, currency: str, why: str) -> None:
        with pytest.raises(InvalidAmount, match=why) as raised:
            parse_amount(text, currency, "--total")
        assert raised.value.field == "--total"

    @pytest.mark.parametrize("currency", ["XYZ", "usd", "US", "", "BTC"])
    def test_unknown_currencies_are_typed_errors(self, currency: str) -> None:
        with pytest.raises(UnknownCurrency, match="not an ISO 4217"):
            parse_amount("10", currency, "--total")

    def test_an_amount_can_be_checked_before_its_currency_is_known(self) -> None:
        check_decimal("1.250", "--amount")
        for text, why in [("abc", "not a positive decimal"), ("1.0001", "than any currency allows"), ("0", "zero")]:
            with pytest.raises(InvalidAmount, match=why):
                check_decimal(text, "--amount")

    def test_zero_is_allowed_where_it_means_something(self) -> None:
        assert parse_amount("0", "USD", "--max-credit", allow_zero=True) == 0

    @given(
        currency=st.sampled_from(["USD", "JPY", "KWD", "EUR", "CLP", "BHD"]),
        minor=st.integers(min_value=1, max_value=MAX_MINOR_UNITS),
    )
    def test_format_then_parse_is_the_identity(self, currency: str, minor: int) -> None:
        assert parse_amount(format_amount(minor, currency), currency) == minor

    @given(
        text=st.one_of(
            st.text(max_size=30),
            st.from_regex(r"-?[0-9\s٠-٩]{0,12}([.,][0-9٠-٩]{0,5})?([eE][+-]?[0-9]{1,3})?", fullmatch=True),
        ),
        currency=st.sampled_from(["USD", "JPY", "KWD"]),
    )
    def test_any_text_is_an_exact_amount_or_invalid_never_a_rounding(self, text: str, currency: str) -> None:
        """What is accepted is a plain decimal whose value is exactly the minor units returned:
        no sign, exponent, separator, space or non-ASCII digit gets through, nothing is rounded."""
        try:
            minor = parse_amount(text, currency)
        except InvalidAmount:
            return
        assert text.isascii()
        assert text.replace(".", "", 1).isdigit()
        assert Decimal(text).scaleb(exponent(currency)) == minor > 0
        assert Decimal(format_amount(minor, currency)) == Decimal(text)


class TestFormat:
    def test_formats_by_the_currency_exponent(self) -> None:
        assert format_money(1050, "USD") == "10.50 USD"
        assert format_money(1500, "JPY") == "1500 JPY"
        assert format_money(1, "KWD") == "0.001 KWD"
        assert (exponent("USD"), exponent("JPY"), exponent("KWD")) == (2, 0, 3)
