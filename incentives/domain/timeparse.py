"""Durations and instants as people type them on a command line or in a spec file."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from incentives.domain.errors import InvalidDuration, InvalidInstant

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_SHORT = re.compile(r"(?P<n>[0-9]+)(?P<unit>[smhdw])")
# ISO 8601 durations without years or months: those have no fixed length, so an expiry written
# with them would mean different things on different dates.
_ISO = re.compile(
    r"P(?:(?P<w>[0-9]+)W)?(?:(?P<d>[0-9]+)D)?(?:T(?:(?P<h>[0-9]+)H)?(?:(?P<m>[0-9]+)M)?(?:(?P<s>[0-9]+)S)?)?"
)
# Ten years: longer than any incentive lives, and a typo such as 1400d shows up as an error.
MAX_DURATION = timedelta(days=3660)


def parse_duration(text: str, field: str) -> timedelta:
    """`30s`, `15m`, `2h`, `14d`, `2w`, or ISO 8601 such as `P14D`, `PT2H`, `P1DT12H`; positive."""
    seconds: int | None = None
    if short := _SHORT.fullmatch(text):
        seconds = int(short.group("n")) * _UNITS[short.group("unit")]
    elif (iso := _ISO.fullmatch(text)) and text not in ("P", "PT") and not text.endswith("T"):
        seconds = sum(int(iso.group(unit) or 0) * _UNITS[unit.lower()] for unit in "wdhms")
    if seconds is None:
        raise InvalidDuration(field, f"{text!r} is not a duration: use 30s, 15m, 2h, 14d, 2w or ISO 8601 such as P14D")
    duration = timedelta(seconds=seconds)
    if duration <= timedelta(0):
        raise InvalidDuration(field, f"{text!r} must be longer than zero")
    if duration > MAX_DURATION:
        raise InvalidDuration(field, f"{text!r} is longer than the allowed maximum of {MAX_DURATION.days} days")
    return duration


def parse_instant(text: str, field: str) -> datetime:
    """An ISO 8601 instant with a time zone (`2026-12-01T09:00:00Z`, `...+01:00`); naive is an error."""
    try:
        instant = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInstant(field, f"{text!r} is not an ISO 8601 instant such as 2026-12-01T09:00:00Z") from None
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise InvalidInstant(field, f"{text!r} has no time zone: add Z or an offset such as +01:00")
    return instant


def format_duration(duration: timedelta) -> str:
    """The shortest exact `<int><unit>` form: 1209600 seconds is `2w`, 90 seconds is `90s`."""
    seconds = int(duration.total_seconds())
    for unit in "wdhm":
        if seconds % _UNITS[unit] == 0:
            return f"{seconds // _UNITS[unit]}{unit}"
    return f"{seconds}s"
