"""Ids, free text and whole numbers as they come in (a command line, a Python call, a spec file, an
HTTP body): one check each, called by the models' validators and by the text parsers alike, so that
every way in refuses the same values with the same words. Money is in `money`, time in `timeparse`.

Empty is always an error, never "not given": a script whose variable is unset must not grant a
credit that never expires.
"""

from __future__ import annotations

import re

from incentives.domain.errors import InvalidId, InvalidNumber, InvalidText

ID_MAX_LENGTH = 128
ID_CHARACTERS = "letters, digits and . _ : @ / - (ASCII, no spaces), starting with a letter or digit"
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/-]*")

REASON_MAX_LENGTH = 500

# ASCII digits only: `str.isdigit` also accepts "²", "٣" and "３", which `int` then reads or chokes on.
_WHOLE = re.compile(r"[0-9]+")

# An echoed value is cut here: an error line stays one readable line whatever was typed.
_SHOWN_LENGTH = 40


def shown(text: str) -> str:
    """`text` quoted for an error message: escaped, so a newline, a NUL or a bidi override (U+202E)
    never reaches the terminal raw, and cut short, so a 5,000-character value stays one line."""
    if len(text) <= _SHOWN_LENGTH:
        return repr(text)
    return f"{text[:_SHOWN_LENGTH]!r}… ({len(text)} characters)"


def check_id(value: str, field: str) -> str:
    """An idempotency key or a name: 1 to 128 of `ID_CHARACTERS`. Returned unchanged."""
    if not value:
        raise InvalidId(field, f"is empty: give an id of {ID_CHARACTERS}")
    if len(value) > ID_MAX_LENGTH:
        raise InvalidId(field, f"{shown(value)} is longer than {ID_MAX_LENGTH} characters")
    if _ID.fullmatch(value) is None:
        raise InvalidId(field, f"{shown(value)} is not an id: use {ID_CHARACTERS}")
    return value


def check_reason(value: str, field: str) -> str:
    """Text a person reads later (a revocation's reason): not blank, at most 500 characters, and
    every character printable (no control, format or line-break characters). Returned unchanged."""
    if not value.strip():
        raise InvalidText(field, "is blank: say why, in words a colleague will read later")
    if len(value) > REASON_MAX_LENGTH:
        raise InvalidText(field, f"is {len(value)} characters long; at most {REASON_MAX_LENGTH}")
    if not value.isprintable():
        raise InvalidText(field, f"{shown(value)} holds a control, format or line-break character")
    return value


def parse_whole(text: str, field: str, *, low: int, high: int) -> int:
    """A whole number typed in ASCII digits, from `low` to `high` inclusive."""
    # The length is checked before `int`, which refuses strings past 4,300 digits with a ValueError.
    if _WHOLE.fullmatch(text) is None or len(text.lstrip("0")) > len(str(high)) or not low <= int(text) <= high:
        raise InvalidNumber(field, f"{shown(text)} is not a whole number from {low} to {high}")
    return int(text)
