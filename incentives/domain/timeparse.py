"""Durations and instants: as people type them (a command line, a spec file), and the bounds every
duration and instant of a request keeps however it came in (`check_duration`, `check_instant`).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from incentives.domain.errors import InvalidDuration, InvalidInstant
from incentives.domain.inputs import shown

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_SHORT = re.compile(r"(?P<n>[0-9]+)(?P<unit>[smhdw])")
# ISO 8601 durations without years or months: those have no fixed length, so an expiry written
# with them would mean different things on different dates.
_ISO = re.compile(
    r"P(?:(?P<w>[0-9]+)W)?(?:(?P<d>[0-9]+)D)?(?:T(?:(?P<h>[0-9]+)H)?(?:(?P<m>[0-9]+)M)?(?:(?P<s>[0-9]+)S)?)?"
)
# Ten years: longer than any incentive lives, and a typo such as 1400d shows up as an error.
MAX_DURATION = timedelta(days=3660)
# Instants a request may carry. Temporal's timers count in int64 nanoseconds (about 292 years from
# 1970), so an expiry past 2200 could never fire; before 1970 is a typo, not a promotion.
EARLIEST_INSTANT = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_INSTANT = datetime(2200, 1, 1, tzinfo=UTC)
_RANGE = f"from {EARLIEST_INSTANT:%Y-%m-%d} to {LATEST_INSTANT:%Y-%m-%d} UTC"


def parse_duration(text: str, field: str) -> timedelta:
    """`30s`, `15m`, `2h`, `14d`, `2w`, or ISO 8601 such as `P14D`, `PT2H`, `P1DT12H`; positive."""
    numbers: dict[str, str] = {}
    if short := _SHORT.fullmatch(text):
        numbers = {short.group("unit"): short.group("n")}
    elif (iso := _ISO.fullmatch(text)) and text not in ("P", "PT") and not text.endswith("T"):
        numbers = {unit.lower(): n for unit, n in iso.groupdict().items() if n is not None}
    if not numbers:
        raise InvalidDuration(
            field, f"{shown(text)} is not a duration: use 30s, 15m, 2h, 14d, 2w or ISO 8601 such as P14D"
        )
    # Compared as integers before any `timedelta` exists: `9999999999d` overflows one, and `int`
    # refuses strings past 4,300 digits.
    if any(len(n.lstrip("0")) > 12 for n in numbers.values()):
        raise InvalidDuration(field, f"{shown(text)} is longer than the allowed maximum of {MAX_DURATION.days} days")
    seconds = sum(int(n) * _UNITS[unit] for unit, n in numbers.items())
    if seconds > MAX_DURATION.total_seconds():
        raise InvalidDuration(field, f"{shown(text)} is longer than the allowed maximum of {MAX_DURATION.days} days")
    if seconds == 0:
        raise InvalidDuration(field, f"{shown(text)} must be longer than zero")
    return check_duration(timedelta(seconds=seconds), field)


def check_duration(duration: timedelta, field: str) -> timedelta:
    """A duration a request may carry: whole seconds, longer than zero, at most `MAX_DURATION`."""
    if duration <= timedelta(0):
        raise InvalidDuration(field, f"{duration} must be longer than zero")
    if duration > MAX_DURATION:
        raise InvalidDuration(field, f"{duration.days} days is longer than the allowed maximum of {MAX_DURATION.days}")
    if duration.microseconds:
        raise InvalidDuration(field, f"{duration} is not a whole number of seconds")
    return duration


def parse_instant(text: str, field: str) -> datetime:
    """An ISO 8601 instant with a time zone (`2026-12-01T09:00:00Z`, `...+01:00`); naive is an error."""
    try:
        # ASCII only: some Python versions read full-width digits here too.
        instant = datetime.fromisoformat(text) if text.isascii() else None
    except ValueError:
        instant = None
    if instant is None:
        raise InvalidInstant(field, f"{shown(text)} is not an ISO 8601 instant such as 2026-12-01T09:00:00Z")
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise InvalidInstant(field, f"{shown(text)} has no time zone: add Z or an offset such as +01:00")
    return check_instant(instant, field)


def check_instant(instant: datetime, field: str) -> datetime:
    """An instant a request may carry, in UTC: aware, and from 1970 to 2200."""
    if instant.utcoffset() is None:
        raise InvalidInstant(field, f"{instant.isoformat()} has no time zone: add Z or an offset such as +01:00")
    utc = to_utc(instant, field)
    if not EARLIEST_INSTANT <= utc < LATEST_INSTANT:
        raise InvalidInstant(field, f"{instant.isoformat()} is outside the instants allowed ({_RANGE})")
    return utc


def to_utc(instant: datetime, field: str) -> datetime:
    """The same instant in UTC; an aware instant at the edge of the calendar (year 1 or 9999) has
    none, and that is an input error rather than an `OverflowError`."""
    try:
        return instant.astimezone(UTC)
    except OverflowError:
        raise InvalidInstant(field, f"{instant.isoformat()} is outside the instants allowed ({_RANGE})") from None


def format_duration(duration: timedelta) -> str:
    """The shortest exact `<int><unit>` form: 1209600 seconds is `2w`, 90 seconds is `90s`."""
    seconds = int(duration.total_seconds())
    for unit in "wdhm":
        if seconds % _UNITS[unit] == 0:
            return f"{seconds // _UNITS[unit]}{unit}"
    return f"{seconds}s"
