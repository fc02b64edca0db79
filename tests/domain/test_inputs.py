"""Ids, reasons and whole numbers: one check each, whichever way they come in."""

from __future__ import annotations

import pytest

from incentives.domain.errors import InvalidId, InvalidNumber, InvalidText
from incentives.domain.inputs import check_id, check_reason, parse_whole, shown


class TestIds:
    @pytest.mark.parametrize("value", ["a", "order-1001", "2026/11/lot.7", "user@example.com", "x" * 128])
    def test_ids(self, value: str) -> None:
        assert check_id(value, "lot_id") == value

    @pytest.mark.parametrize(
        ("value", "why"),
        [
            ("", "is empty"),
            ("x" * 129, "is longer than 128 characters"),
            ("has space", "is not an id"),
            ("-leading-dash", "is not an id"),
            ("nul\x00byte", "is not an id"),
            ("new\nline", "is not an id"),
            ("trailing-newline\n", "is not an id"),
            ("\u202eevil", "is not an id"),
            ("café", "is not an id"),
            ("١٢٣", "is not an id"),
        ],
    )
    def test_what_is_not_an_id(self, value: str, why: str) -> None:
        with pytest.raises(InvalidId, match=why) as raised:
            check_id(value, "lot_id")
        assert raised.value.field == "lot_id"
        assert "\n" not in raised.value.reason
        assert "\u202e" not in raised.value.reason


class TestReasons:
    @pytest.mark.parametrize("value", ["fraud review #4411", "remboursé 🎉", "x" * 500, "[/] not markup"])
    def test_printable_text(self, value: str) -> None:
        assert check_reason(value, "reason") == value

    @pytest.mark.parametrize(
        ("value", "why"),
        [
            ("", "is blank"),
            (" \t ", "is blank"),
            ("x" * 501, "is 501 characters long"),
            ("nul\x00", "holds a control"),
            ("bell\x07", "holds a control"),
            ("two\nlines", "holds a control"),
            ("a\u202eb", "holds a control"),
            ("lone \ud800 surrogate", "holds a control"),
        ],
    )
    def test_what_is_not_a_reason(self, value: str, why: str) -> None:
        with pytest.raises(InvalidText, match=why):
            check_reason(value, "reason")


class TestWholeNumbers:
    def test_ascii_digits_within_bounds(self) -> None:
        assert parse_whole("20", "--coupon-percent", low=1, high=100) == 20
        assert parse_whole("0100", "--coupon-percent", low=1, high=100) == 100

    @pytest.mark.parametrize("text", ["", "0", "101", "²", "٣", "３", "1_0", " 5", "5.0", "+5", "-5", "9" * 4301])
    def test_anything_else_is_refused_without_reaching_int(self, text: str) -> None:
        with pytest.raises(InvalidNumber, match="is not a whole number from 1 to 100"):
            parse_whole(text, "--coupon-percent", low=1, high=100)


def test_shown_escapes_and_cuts() -> None:
    assert shown("a\nb\u202e") == "'a\\nb\\u202e'"
    assert shown("9" * 4301) == f"'{'9' * 40}'… (4301 characters)"
