"""From command-line text to request models: amounts in major units to minor units, and every
validation error named by the flag the user typed, not by our field.

The checks themselves are the domain's (`incentives.domain`: the models' validators and the money,
time and input parsers), the same for a Python caller or a spec file; this module only reads
text and names flags. A flag given as an empty string is given: it is checked, and refused.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import TypeVar

from pydantic import ValidationError

from incentives.app.client import DEFAULT_CALL_TIMEOUT
from incentives.app.views import DEFAULT_LEDGER_LIMIT
from incentives.domain.errors import InvalidInput
from incentives.domain.inputs import check_id, parse_whole
from incentives.domain.models import (
    PERCENT_OFF,
    USES,
    CouponTerms,
    GrantRequest,
    Model,
    RedeemRequest,
    ReverseRequest,
    RevokeRequest,
)
from incentives.domain.money import check_currency, check_decimal, parse_amount
from incentives.domain.spec_documents import InvalidSpec
from incentives.domain.timeparse import parse_duration, parse_instant

ModelT = TypeVar("ModelT", bound=Model)
T = TypeVar("T")

MAX_LEDGER_LIMIT = 1_000_000

# Model and settings fields as the user typed them, so that an error names the flag, not our field.
FLAGS: Mapping[str, str] = {
    "customer_id": "CUSTOMER",
    "lot_id": "--lot",
    "order_id": "--order",
    "reversal_id": "--reversal",
    "promotion_id": "--promotion",
    "coupon_lot_id": "--coupon",
    "reason": "--reason",
    "currency": "--currency",
    "amount_off": "--coupon-off",
    "percent_off": "--coupon-percent",
    "cap": "--coupon-cap",
    "min_order": "--min-order",
    "uses": "--uses",
    "effective_at": "--effective-at",
    "expires_at": "--expires-at",
    "expires_in": "--expires-in",
    "remind_before": "--remind-before",
    "total": "--total",
    "max_credit": "--max-credit",
    "amount": "--amount",
    "temporal_address": "--address",
    "temporal_namespace": "--namespace",
}
# A grant's amount is its credit; `coupon` is the terms the coupon flags build.
GRANT_FLAGS: Mapping[str, str] = {**FLAGS, "amount": "--credit", "coupon": "--coupon-off or --coupon-percent"}

# The domain names fields in backquotes (`expires_at`) inside its messages.
_FIELD_IN_MESSAGE = re.compile(r"`([a-z_]+)`")


def named(error: InvalidInput, names: Mapping[str, str] = FLAGS) -> InvalidInput:
    """The same error with the field, and the fields its reason mentions, named as flags; an
    error in a spec file or an audience CSV unchanged (it names the file's field)."""
    if isinstance(error, InvalidSpec):
        return error
    reason = _FIELD_IN_MESSAGE.sub(lambda match: names.get(match[1], match[1]), error.reason)
    return type(error)(names.get(error.field, error.field), reason)


def build(model: type[ModelT], names: Mapping[str, str] = FLAGS, **fields: object) -> ModelT:
    """Builds a request model; a validation failure becomes `InvalidInput` naming the flag."""
    try:
        return model.model_validate(fields)
    except ValidationError as error:
        first = error.errors()[0]
        cause = first.get("ctx", {}).get("error")
        if not isinstance(cause, InvalidInput):
            field = str(first["loc"][-1]) if first["loc"] else "request"
            cause = InvalidInput(field, first["msg"])
        raise named(cause, names) from None


def _given(parse: Callable[[str, str], T], text: str | None, flag: str) -> T | None:
    """`parse(text, flag)` for a flag that was given (even as ""); None for one that was not."""
    return None if text is None else parse(text, flag)


def customer(args: argparse.Namespace) -> str:
    return check_id(args.customer, "CUSTOMER")


def timeout(args: argparse.Namespace) -> timedelta:
    return DEFAULT_CALL_TIMEOUT if args.timeout is None else parse_duration(args.timeout, "--timeout")


def ledger_limit(args: argparse.Namespace) -> int | None:
    """The newest rows `wallet` shows: `--limit` (default 200), or None for `--all`."""
    if args.all:
        return None
    if args.limit is None:
        return DEFAULT_LEDGER_LIMIT
    return parse_whole(args.limit, "--limit", low=1, high=MAX_LEDGER_LIMIT)


def grant_request(args: argparse.Namespace, now: datetime) -> GrantRequest:
    """`now` is the caller's clock, for the one check that needs it (a reminder already due)."""
    currency = check_currency(args.currency, "--currency")
    coupon = None
    amount = None
    if args.credit is not None:
        for flag, given in (("--coupon-cap", args.coupon_cap), ("--min-order", args.min_order), ("--uses", args.uses)):
            if given is not None:
                raise InvalidInput(flag, "applies to coupons only (--coupon-off or --coupon-percent)")
        amount = parse_amount(args.credit, currency, "--credit")
    else:
        coupon = _coupon_terms(args, currency)
    request = build(
        GrantRequest,
        GRANT_FLAGS,
        lot_id=args.lot,
        customer_id=customer(args),
        currency=currency,
        kind="credit" if amount is not None else "coupon",
        amount=amount,
        coupon=coupon,
        promotion_id=args.promotion,
        effective_at=_given(parse_instant, args.effective_at, "--effective-at"),
        expires_at=_given(parse_instant, args.expires_at, "--expires-at"),
        expires_in=_given(parse_duration, args.expires_in, "--expires-in"),
        remind_before=_given(parse_duration, args.remind_before, "--remind-before"),
    )
    try:
        request.check_reminder_at(now)
    except InvalidInput as error:
        raise named(error, GRANT_FLAGS) from None
    return request


def _coupon_terms(args: argparse.Namespace, currency: str) -> CouponTerms:
    def amount(text: str, flag: str) -> int:
        return parse_amount(text, currency, flag)

    def percent(text: str, flag: str) -> int:
        return parse_whole(text, flag, low=PERCENT_OFF[0], high=PERCENT_OFF[1])

    def uses(text: str, flag: str) -> int:
        return parse_whole(text, flag, low=USES[0], high=USES[1])

    terms = {
        "amount_off": _given(amount, args.coupon_off, "--coupon-off"),
        "percent_off": _given(percent, args.coupon_percent, "--coupon-percent"),
        "cap": _given(amount, args.coupon_cap, "--coupon-cap"),
        "min_order": _given(amount, args.min_order, "--min-order"),
        "uses": _given(uses, args.uses, "--uses"),
    }
    return build(CouponTerms, GRANT_FLAGS, **{field: value for field, value in terms.items() if value is not None})


def redeem_request(args: argparse.Namespace) -> RedeemRequest:
    currency = check_currency(args.currency, "--currency")

    def max_credit(text: str, flag: str) -> int:
        return parse_amount(text, currency, flag, allow_zero=True)

    return build(
        RedeemRequest,
        customer_id=customer(args),
        order_id=args.order,
        currency=currency,
        total=parse_amount(args.total, currency, "--total"),
        coupon_lot_id=args.coupon,
        max_credit=_given(max_credit, args.max_credit, "--max-credit"),
    )


def reverse_request(args: argparse.Namespace, currency: str | None) -> ReverseRequest:
    """`currency` is the order's, which only the ledger knows. Without it (before any server is
    contacted) everything is checked that can be: the ids, and `--amount` as an amount in any
    currency; the request it returns then gives back everything."""
    amount = None
    if args.amount is not None:
        if currency is None:
            check_decimal(args.amount, "--amount")
        else:
            amount = parse_amount(args.amount, currency, "--amount")
    return build(
        ReverseRequest, customer_id=customer(args), order_id=args.order, reversal_id=args.reversal, amount=amount
    )


def revoke_request(args: argparse.Namespace) -> RevokeRequest:
    return build(RevokeRequest, customer_id=customer(args), lot_id=args.lot, reason=args.reason)
