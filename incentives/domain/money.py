"""Money: integer minor units plus an ISO 4217 currency, never floats.

Amounts cross the boundary as decimal strings in major units ("10.00 USD") and live everywhere
else as `int` minor units. A currency's exponent is its real ISO 4217 minor-unit count
(USD 2, JPY 0, KWD 3), so "10.001 USD" and "10.5 JPY" are errors rather than roundings.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated

from pydantic import AfterValidator, Field, Strict

from incentives.domain.errors import InvalidAmount, UnknownCurrency
from incentives.domain.inputs import shown

# Active ISO 4217 codes (list one, 2024) and their minor-unit exponents. Funds codes (BOV, CLF,
# COU, MXV, USN, UYI, UYW, CHE, CHW) and precious metals (XAU...) are left out on purpose:
# nobody pays for groceries in them.
_TWO_DIGITS = """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BRL BSD BTN BWP BYN BZD
    CAD CDF CHF CNY COP CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD
    GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR KES KGS KHR KPW KYD KZT LAK LBP LKR LRD LSL MAD MDL
    MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR
    PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT
    TOP TRY TTD TWD TZS UAH USD UYU UZS VES WST XCD XCG YER ZAR ZMW ZWG
"""
_ZERO_DIGITS = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX VND VUV XAF XOF XPF"
_THREE_DIGITS = "BHD IQD JOD KWD LYD OMR TND"
_EXPONENTS: dict[str, int] = {
    **dict.fromkeys(_TWO_DIGITS.split(), 2),
    **dict.fromkeys(_ZERO_DIGITS.split(), 0),
    **dict.fromkeys(_THREE_DIGITS.split(), 3),
}

# ASCII digits, optionally a point and digits. No sign, exponent, spaces, NaN or infinity.
_DECIMAL = re.compile(r"(?P<whole>[0-9]+)(?:\.(?P<fraction>[0-9]+))?")

# Far above any real incentive, and well inside Postgres' bigint: an obvious typo is an error,
# not a liability.
MAX_MINOR_UNITS = 10**15
# The most minor-unit digits any currency has (KWD, BHD...): more decimals fit no currency.
MAX_EXPONENT = max(_EXPONENTS.values())


def exponent(currency: str) -> int:
    """The number of minor-unit digits of an ISO 4217 currency."""
    return _EXPONENTS[check_currency(currency)]


def check_currency(value: str, field: str = "currency") -> str:
    """The currency code itself, if it is a known ISO 4217 code (upper case, three letters)."""
    if value not in _EXPONENTS:
        raise UnknownCurrency(field, f"{shown(value)} is not an ISO 4217 currency code (e.g. USD, EUR, JPY)")
    return value


def check_decimal(text: str, field: str, *, currency: str | None = None, allow_zero: bool = False) -> None:
    """What an amount must be: a positive decimal such as 10.00, within the maximum, with at most
    the decimals of `currency` (of any currency when None: a command can refuse `--amount abc`
    before it asks the ledger for the order's currency)."""
    match = _DECIMAL.fullmatch(text)
    if match is None:
        raise InvalidAmount(field, f"{shown(text)} is not a positive decimal amount such as 10.00")
    fraction = match.group("fraction") or ""
    digits = MAX_EXPONENT if currency is None else exponent(currency)
    if len(fraction) > digits:
        allowed = "no decimals" if digits == 0 else f"at most {digits} decimal(s)"
        which = currency or "any currency"
        raise InvalidAmount(field, f"{shown(text)} has more decimals than {which} allows ({allowed})")
    # Bounded before `int`, which refuses strings past 4,300 digits with a ValueError.
    if len(match.group("whole").lstrip("0")) > len(str(MAX_MINOR_UNITS)):
        raise InvalidAmount(field, f"{shown(text)} is larger than the allowed maximum")
    if not allow_zero and int(match.group("whole") + fraction) == 0:
        raise InvalidAmount(field, f"{shown(text)} must be greater than zero")


def parse_amount(text: str, currency: str, field: str = "amount", *, allow_zero: bool = False) -> int:
    """A decimal string in major units, as integer minor units of `currency`.

    "10.5" USD is 1050; "10.001" USD, "10.5" JPY, "1e3", "NaN", "-5" and "" are `InvalidAmount`
    naming `field`. Zero is refused unless `allow_zero` (a cap of zero is meaningful; a grant of
    zero is not).
    """
    check_decimal(text, field, currency=currency, allow_zero=allow_zero)
    whole, _, fraction = text.partition(".")
    minor = int(whole + fraction.ljust(exponent(currency), "0"))
    if minor > MAX_MINOR_UNITS:
        raise InvalidAmount(field, f"{shown(text)} is larger than the allowed maximum")
    return minor


def format_amount(minor: int, currency: str) -> str:
    """Integer minor units as a decimal string in major units: 1050 USD is "10.50"."""
    digits = exponent(currency)
    return f"{Decimal(minor).scaleb(-digits):.{digits}f}"


def format_money(minor: int, currency: str) -> str:
    """Minor units with their currency, for people: "10.50 USD"."""
    return f"{format_amount(minor, currency)} {currency}"


Currency = Annotated[str, AfterValidator(check_currency)]
"""An ISO 4217 code, checked wherever a model carries one."""

MinorUnits = Annotated[int, Field(ge=0, le=MAX_MINOR_UNITS)]
"""A non-negative amount in the minor units of the currency beside it."""

PositiveMinorUnits = Annotated[int, Field(gt=0, le=MAX_MINOR_UNITS)]
"""A strictly positive amount in the minor units of the currency beside it."""

# What a caller sends is strictly an int: never a bool, a float, or a string that reads as one
# ("10" would be ten cents, not ten dollars). What the engine computes (sums from Postgres arrive
# as Decimal) stays coerced by the two above.
RequestMinorUnits = Annotated[int, Strict(), Field(ge=0, le=MAX_MINOR_UNITS)]
RequestPositiveMinorUnits = Annotated[int, Strict(), Field(gt=0, le=MAX_MINOR_UNITS)]
