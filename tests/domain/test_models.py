"""The request models refuse for a Python caller exactly what the command refuses: the same checks
(`InvalidInput` inside pydantic's `ValidationError`), naming fields in backquotes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from incentives.domain.errors import InvalidCombination, InvalidId, InvalidInput, InvalidInstant, InvalidText
from incentives.domain.models import CouponTerms, GrantRequest, RedeemRequest, RevokeRequest

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)


def credit(**extra: Any) -> GrantRequest:
    return GrantRequest.model_validate(
        {"lot_id": "l", "customer_id": "c", "currency": "USD", "kind": "credit", "amount": 100, **extra}
    )


def cause(error: ValidationError) -> InvalidInput:
    found = error.errors()[0].get("ctx", {}).get("error")
    assert isinstance(found, InvalidInput), error
    return found


@pytest.mark.parametrize(
    ("build", "kind", "field"),
    [
        (lambda: RevokeRequest(customer_id="c", lot_id="l", reason="nul\x00byte"), InvalidText, "reason"),
        (lambda: RevokeRequest(customer_id="c", lot_id="l", reason="   "), InvalidText, "reason"),
        (lambda: RevokeRequest(customer_id="c\x00", lot_id="l", reason="r"), InvalidId, "customer_id"),
        (lambda: RedeemRequest(customer_id="c", order_id="", currency="USD", total=1), InvalidId, "order_id"),
        (lambda: credit(expires_at=datetime(1, 1, 1, tzinfo=UTC) + timedelta(hours=1)), InvalidInstant, "expires_at"),
        (lambda: credit(effective_at="9999-12-31T23:59:59-01:00"), InvalidInstant, "effective_at"),
        (lambda: credit(expires_at="2300-01-01T00:00:00Z"), InvalidInstant, "expires_at"),
        (
            lambda: credit(expires_in=timedelta(days=1), remind_before=timedelta(days=2)),
            InvalidCombination,
            "remind_before",
        ),
        (lambda: credit(remind_before=timedelta(days=2)), InvalidCombination, "remind_before"),
        (lambda: CouponTerms(amount_off=100, cap=50), InvalidCombination, "cap"),
    ],
)
def test_python_callers_get_the_same_checks(build: Any, kind: type[InvalidInput], field: str) -> None:
    with pytest.raises(ValidationError) as raised:
        build()
    assert isinstance(cause(raised.value), kind)
    assert cause(raised.value).field == field


@pytest.mark.parametrize("amount", [True, 10.0, "10", None])
def test_amounts_are_ints_never_bools_floats_or_strings(amount: object) -> None:
    with pytest.raises(ValidationError):
        credit(amount=amount)


@pytest.mark.parametrize("value", [True, "5", 5.0, 0, 101])
def test_percent_off_is_an_int_from_1_to_100(value: object) -> None:
    with pytest.raises(ValidationError):
        CouponTerms.model_validate({"percent_off": value})


@pytest.mark.parametrize(
    "duration", [timedelta(0), timedelta(seconds=-1), timedelta(days=3661), timedelta(seconds=1.5)]
)
def test_durations_are_whole_positive_seconds_up_to_ten_years(duration: timedelta) -> None:
    with pytest.raises(ValidationError):
        credit(expires_in=duration)


def test_messages_name_fields_in_backquotes() -> None:
    with pytest.raises(ValidationError) as raised:
        credit(expires_at=NOW, expires_in=timedelta(days=1))
    assert cause(raised.value).reason == "give `expires_at` or `expires_in`, not both"


class TestReminders:
    def test_a_reminder_shorter_than_the_life_of_the_lot(self) -> None:
        assert credit(expires_in=timedelta(days=2), remind_before=timedelta(days=1)).remind_before == timedelta(days=1)

    def test_between_effective_and_expiry(self) -> None:
        with pytest.raises(ValidationError, match="is not shorter than the lot's life"):
            credit(effective_at=NOW, expires_at=NOW + timedelta(days=1), remind_before=timedelta(days=1))

    def test_an_absolute_expiry_is_checked_against_the_callers_clock(self) -> None:
        request = credit(expires_at=NOW + timedelta(days=1), remind_before=timedelta(days=2))
        with pytest.raises(InvalidCombination, match="already past"):
            request.check_reminder_at(NOW)
        request.check_reminder_at(NOW - timedelta(days=2))
        request.check_reminder_at(NOW + timedelta(days=2))  # expired already: the ledger refuses that one


def test_instants_are_stored_in_utc() -> None:
    request = credit(expires_at="2030-01-01T01:00:00+01:00")
    assert request.expires_at == datetime(2030, 1, 1, tzinfo=UTC)
    assert request.expires_at is not None
    assert request.expires_at.tzinfo is UTC
