"""Durations and instants as typed on the command line."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from incentives.domain.errors import InvalidDuration, InvalidInstant
from incentives.domain.timeparse import format_duration, parse_duration, parse_instant


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("15m", timedelta(minutes=15)),
        ("2h", timedelta(hours=2)),
        ("14d", timedelta(days=14)),
        ("2w", timedelta(weeks=2)),
        ("P14D", timedelta(days=14)),
        ("PT2H", timedelta(hours=2)),
        ("P1DT12H", timedelta(days=1, hours=12)),
        ("P1W", timedelta(weeks=1)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text, "--expires-in") == expected


MALFORMED = ["", "14", "14x", "-1d", "0d", "P", "PT", "P1M", "P1Y", "1.5h", "P1DT", "P0D", "１d", "٣d", "2d\n"]
# Past what `timedelta` and `int` take: once an OverflowError or a ValueError.
TOO_LONG = ["99999d", "9999999999d", "P99999999999W", "PT99999999999999999999S", "9" * 4301 + "s"]


@pytest.mark.parametrize("text", MALFORMED + TOO_LONG)
def test_bad_durations_name_the_field(text: str) -> None:
    with pytest.raises(InvalidDuration) as raised:
        parse_duration(text, "--expires-in")
    assert raised.value.field == "--expires-in"


def test_instants_need_a_time_zone() -> None:
    assert parse_instant("2026-12-01T09:00:00Z", "--expires-at") == datetime(2026, 12, 1, 9, tzinfo=UTC)
    with pytest.raises(InvalidInstant, match="no time zone"):
        parse_instant("2026-12-01T09:00:00", "--expires-at")
    with pytest.raises(InvalidInstant, match="not an ISO 8601"):
        parse_instant("tomorrow", "--expires-at")


@pytest.mark.parametrize(
    "text",
    ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "1969-12-31T23:59:59Z", "2200-01-01T00:00:00Z"],
)
def test_instants_beyond_what_utc_and_temporal_timers_hold_are_input_errors(text: str) -> None:
    with pytest.raises(InvalidInstant, match="is outside the instants allowed") as raised:
        parse_instant(text, "--expires-at")
    assert raised.value.field == "--expires-at"


def test_instants_are_ascii() -> None:
    with pytest.raises(InvalidInstant, match="not an ISO 8601"):
        parse_instant("２０２６-12-01T09:00:00Z", "--expires-at")


def test_format_duration_is_the_shortest_exact_form() -> None:
    assert [format_duration(timedelta(seconds=s)) for s in (1209600, 86400, 5400, 90)] == ["2w", "1d", "90m", "90s"]
