"""From command-line text to request models: amounts in major units to minor units, and every
validation error named by the flag the user typed, not by our field."""

from __future__ import annotations

import argparse
from typing import TypeVar

from pydantic import ValidationError

from incentives.domain.errors import InvalidInput
from incentives.domain.models import CouponTerms, GrantRequest, Model, RedeemRequest, ReverseRequest, RevokeRequest
from incentives.domain.money import check_currency, parse_amount
from incentives.domain.timeparse import parse_duration, parse_instant

ModelT = TypeVar("ModelT", bound=Model)

# Model fields as the user typed them, so that an error names the flag, not our field.
FLAGS = {
    "customer_id": "CUSTOMER",
    "lot_id": "--lot",
    "order_id": "--order",
    "reversal_id": "--reversal",
    "promotion_id": "--promotion",
    "coupon_lot_id": "--coupon",
    "reason": "--reason",
    "percent_off": "--coupon-percent",
    "uses": "--uses",
}


def build(model: type[ModelT], **fields: object) -> ModelT:
    """Builds a request model; a validation failure becomes `InvalidInput` naming the flag."""
    try:
        return model.model_validate(fields)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "request"
        field = FLAGS.get(where, where)
        reason = first["msg"].removeprefix("Value error, ")
        if first["type"] == "string_pattern_mismatch":
            reason = f"{first['input']!r} is not an id: use letters, digits and . _ : @ / - (no spaces)"
        raise InvalidInput(field, reason) from None


def whole(text: str, field: str, *, low: int, high: int) -> int:
    if not text.isdigit() or not low <= int(text) <= high:
        raise InvalidInput(field, f"{text!r} is not a whole number from {low} to {high}")
    return int(text)


def grant_request(args: argparse.Namespace) -> GrantRequest:
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
    return build(
        GrantRequest,
        lot_id=args.lot,
        customer_id=args.customer,
        currency=currency,
        kind="credit" if amount is not None else "coupon",
        amount=amount,
        coupon=coupon,
        promotion_id=args.promotion,
        effective_at=parse_instant(args.effective_at, "--effective-at") if args.effective_at else None,
        expires_at=parse_instant(args.expires_at, "--expires-at") if args.expires_at else None,
        expires_in=parse_duration(args.expires_in, "--expires-in") if args.expires_in else None,
        remind_before=parse_duration(args.remind_before, "--remind-before") if args.remind_before else None,
    )


def _coupon_terms(args: argparse.Namespace, currency: str) -> CouponTerms:
    if args.coupon_cap is not None and args.coupon_percent is None:
        raise InvalidInput("--coupon-cap", "applies to --coupon-percent coupons only")
    return build(
        CouponTerms,
        amount_off=parse_amount(args.coupon_off, currency, "--coupon-off") if args.coupon_off else None,
        percent_off=whole(args.coupon_percent, "--coupon-percent", low=1, high=100) if args.coupon_percent else None,
        cap=parse_amount(args.coupon_cap, currency, "--coupon-cap") if args.coupon_cap else None,
        min_order=parse_amount(args.min_order, currency, "--min-order") if args.min_order else None,
        uses=whole(args.uses, "--uses", low=1, high=10_000) if args.uses else 1,
    )


def redeem_request(args: argparse.Namespace) -> RedeemRequest:
    currency = check_currency(args.currency, "--currency")
    return build(
        RedeemRequest,
        customer_id=args.customer,
        order_id=args.order,
        currency=currency,
        total=parse_amount(args.total, currency, "--total"),
        coupon_lot_id=args.coupon,
        max_credit=parse_amount(args.max_credit, currency, "--max-credit", allow_zero=True)
        if args.max_credit is not None
        else None,
    )


def reverse_request(args: argparse.Namespace, currency: str | None) -> ReverseRequest:
    """`currency` is the order's, which only the ledger knows; None when no `--amount` was given."""
    amount = parse_amount(args.amount, currency, "--amount") if currency is not None else None
    return build(
        ReverseRequest, customer_id=args.customer, order_id=args.order, reversal_id=args.reversal, amount=amount
    )


def revoke_request(args: argparse.Namespace) -> RevokeRequest:
    return build(RevokeRequest, customer_id=args.customer, lot_id=args.lot, reason=args.reason)
