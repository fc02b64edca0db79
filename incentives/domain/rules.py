"""The business rules of redeeming and reversing, as pure functions over `Lot`s.

The `redeem` and `reverse` activities apply them to rows locked in Postgres (the truth); the wallet
workflow applies them to its own copy to reject a request before it enters history. One
implementation, so the two can never disagree about what a coupon is worth.

Redeem order: the coupon first, then credits soonest expiry first (no expiry last), then oldest
grant, then lot id. A redemption never gives more than the order total, nor more credit than
`max_credit`, nor more than a lot holds.

Reverse order: last applied, first restored; so credits come back before the coupon, and a
coupon's use is given back only when all it took off the order has been reversed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from incentives.domain.errors import (
    CouponNotUsable,
    CurrencyMismatch,
    MinimumNotMet,
    NothingToRedeem,
    ReversalExceedsRedeemed,
    UnknownLot,
)
from incentives.domain.models import Applied, CouponTerms, Lot, RedeemRequest
from incentives.domain.money import format_money


def usable_at(lot: Lot, as_of: datetime) -> bool:
    """Whether a lot can give value at `as_of`: active, effective and not yet expired."""
    return (
        lot.status == "active"
        and (lot.effective_at is None or lot.effective_at <= as_of)
        and (lot.expires_at is None or lot.expires_at > as_of)
    )


def credit_order(lot: Lot) -> tuple[bool, datetime, datetime, str]:
    """Sort key of credits for redemption: soonest expiry, then oldest grant, then lot id."""
    never = lot.expires_at is None
    return (never, lot.expires_at or lot.granted_at, lot.granted_at, lot.lot_id)


def coupon_discount(terms: CouponTerms, total: int) -> int:
    """What a coupon takes off `total`: a fixed amount, or a percentage rounded down and capped."""
    if terms.amount_off is not None:
        return min(terms.amount_off, total)
    assert terms.percent_off is not None, "CouponTerms guarantees one kind of discount"
    discount = total * terms.percent_off // 100
    if terms.cap is not None:
        discount = min(discount, terms.cap)
    return discount


def check_coupon(coupon: Lot | None, request: RedeemRequest, as_of: datetime) -> Lot:
    """The coupon named by the request if it can be used on this order now, else the reason why not."""
    lot_id = request.coupon_lot_id
    if coupon is None or coupon.customer_id != request.customer_id:
        raise UnknownLot(f"coupon {lot_id} does not exist for customer {request.customer_id}")
    if coupon.kind != "coupon" or coupon.coupon is None:
        raise CouponNotUsable(f"lot {lot_id} is a credit, not a coupon")
    if coupon.currency != request.currency:
        raise CurrencyMismatch(f"coupon {lot_id} is in {coupon.currency}, the order is in {request.currency}")
    if coupon.status == "revoked":
        raise CouponNotUsable(f"coupon {lot_id} was revoked")
    if coupon.status == "expired" or (coupon.expires_at is not None and coupon.expires_at <= as_of):
        raise CouponNotUsable(f"coupon {lot_id} has expired")
    if coupon.status == "pending" or (coupon.effective_at is not None and coupon.effective_at > as_of):
        raise CouponNotUsable(f"coupon {lot_id} is not active yet")
    if coupon.status == "used_up" or not coupon.uses_left:
        raise CouponNotUsable(f"coupon {lot_id} is used up")
    minimum = coupon.coupon.min_order
    if minimum is not None and request.total < minimum:
        raise MinimumNotMet(
            f"coupon {lot_id} needs an order of at least {format_money(minimum, coupon.currency)}, "
            f"this one is {format_money(request.total, request.currency)}"
        )
    return coupon


def allocate(request: RedeemRequest, coupon: Lot | None, credits: Iterable[Lot], as_of: datetime) -> list[Applied]:
    """What each lot gives to the order, in application order. Raises a `Rejected` if nothing can.

    `coupon` is the lot named by `request.coupon_lot_id` (None if it was not found); `credits`
    are the customer's credit lots, in any order and any state: those not usable are skipped.
    """
    applied: list[Applied] = []
    left = request.total
    if request.coupon_lot_id is not None:
        usable = check_coupon(coupon, request, as_of)
        assert usable.coupon is not None
        off = coupon_discount(usable.coupon, request.total)
        if off > 0:
            applied.append(Applied(lot_id=usable.lot_id, kind="coupon", amount=off))
            left -= off
    budget = left if request.max_credit is None else min(left, request.max_credit)
    for lot in sorted(credits, key=credit_order):
        if budget == 0:
            break
        if lot.kind != "credit" or lot.currency != request.currency or lot.remaining == 0:
            continue
        if not usable_at(lot, as_of):
            continue
        take = min(lot.remaining, budget)
        applied.append(Applied(lot_id=lot.lot_id, kind="credit", amount=take))
        budget -= take
    if not applied:
        raise NothingToRedeem(
            f"customer {request.customer_id} has no coupon or active credit in {request.currency} for this order"
        )
    return applied


def allocate_reversal(
    applied: list[Applied], reversed_so_far: Mapping[str, int], amount: int, currency: str
) -> list[Applied]:
    """What each lot gets back when `amount` of an order's discount is reversed: last applied first.

    `reversed_so_far` is what earlier reversals of the order already gave back, per lot.
    """
    reversible = sum(part.amount - reversed_so_far.get(part.lot_id, 0) for part in applied)
    if amount > reversible:
        raise ReversalExceedsRedeemed(
            f"cannot reverse {format_money(amount, currency)}: "
            f"only {format_money(reversible, currency)} of this order is left to reverse"
        )
    restored: list[Applied] = []
    left = amount
    for part in reversed(applied):
        if left == 0:
            break
        give = min(part.amount - reversed_so_far.get(part.lot_id, 0), left)
        if give > 0:
            restored.append(Applied(lot_id=part.lot_id, kind=part.kind, amount=give))
            left -= give
    assert left == 0, "reversible covers amount"
    return restored
