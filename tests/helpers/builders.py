"""Requests for tests, built one way: credits, coupons, orders and activity inputs."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from incentives.domain.messages import GrantInput
from incentives.domain.models import CouponTerms, GrantRequest, RedeemRequest
from incentives.domain.promotions import Budget, PromotionTerms, Validity

NewId = Callable[[str], str]

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def credit(
    lot_id: str, customer_id: str, amount: int, currency: str = "USD", expires_in_days: int | None = None, **extra: Any
) -> GrantRequest:
    if expires_in_days is not None:
        extra["expires_in"] = timedelta(days=expires_in_days)
    return GrantRequest(
        lot_id=lot_id, customer_id=customer_id, currency=currency, kind="credit", amount=amount, **extra
    )


def coupon(lot_id: str, customer_id: str, terms: CouponTerms, currency: str = "USD", **extra: Any) -> GrantRequest:
    return GrantRequest(lot_id=lot_id, customer_id=customer_id, currency=currency, kind="coupon", coupon=terms, **extra)


def at(request: GrantRequest, granted_at: datetime = T0) -> GrantInput:
    return GrantInput(request=request, granted_at=granted_at)


def order(customer: str, order_id: str, total: int, currency: str = "USD", **extra: Any) -> RedeemRequest:
    return RedeemRequest(customer_id=customer, order_id=order_id, currency=currency, total=total, **extra)


def promotion(
    promotion_id: str,
    starts_at: datetime,
    *,
    amount: int | None = 1000,
    budget: int = 10**9,
    lasts: timedelta = timedelta(days=30),
    validity: Validity | None = None,
    coupon_terms: CouponTerms | None = None,
    **budget_extra: Any,
) -> PromotionTerms:
    """A credit promotion (or a coupon one, given `coupon_terms`) starting at `starts_at`."""
    return PromotionTerms(
        promotion_id=promotion_id,
        name=f"test {promotion_id}",
        kind="coupon" if coupon_terms else "credit",
        currency="USD",
        amount=None if coupon_terms else amount,
        coupon=coupon_terms,
        validity=validity or Validity(expires_after=timedelta(days=14), remind_before=timedelta(days=2)),
        budget=Budget(amount=budget, **budget_extra),
        starts_at=starts_at,
        ends_at=starts_at + lasts,
    )
