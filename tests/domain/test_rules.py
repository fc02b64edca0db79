"""The redeem and reverse rules as pure functions: arithmetic, order, and properties that hold for any input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from incentives.domain.errors import CouponNotUsable, MinimumNotMet, NothingToRedeem, ReversalExceedsRedeemed
from incentives.domain.models import Applied, CouponTerms, Lot, RedeemRequest
from incentives.domain.rules import allocate, allocate_reversal, coupon_discount

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def lot(
    lot_id: str, remaining: int, *, expires_in_days: int | None = None, granted_days_ago: int = 1, **extra: object
) -> Lot:
    fields: dict[str, object] = {
        "lot_id": lot_id,
        "customer_id": "c",
        "promotion_id": None,
        "kind": "credit",
        "currency": "USD",
        "amount": max(remaining, 1),
        "remaining": remaining,
        "coupon": None,
        "uses_left": None,
        "status": "active",
        "effective_at": None,
        "expires_at": NOW + timedelta(days=expires_in_days) if expires_in_days is not None else None,
        "remind_before": None,
        "reminded": False,
        "granted_at": NOW - timedelta(days=granted_days_ago),
    }
    fields.update(extra)
    return Lot.model_validate(fields)


def coupon_lot(terms: CouponTerms, **extra: Any) -> Lot:
    return lot("cpn", 0, **{"kind": "coupon", "amount": 0, "coupon": terms, "uses_left": terms.uses, **extra})


def request(total: int, **extra: object) -> RedeemRequest:
    return RedeemRequest.model_validate(
        {"customer_id": "c", "order_id": "o", "currency": "USD", "total": total, **extra}
    )


class TestCouponDiscount:
    @pytest.mark.parametrize(
        ("terms", "total", "expected"),
        [
            (CouponTerms(amount_off=500), 2000, 500),
            (CouponTerms(amount_off=500), 300, 300),
            (CouponTerms(percent_off=20), 4999, 999),
            (CouponTerms(percent_off=20, cap=1500), 10000, 1500),
            (CouponTerms(percent_off=100), 1234, 1234),
        ],
    )
    def test_fixed_and_percent(self, terms: CouponTerms, total: int, expected: int) -> None:
        assert coupon_discount(terms, total) == expected

    def test_terms_must_name_exactly_one_discount(self) -> None:
        with pytest.raises(ValueError, match="exactly one"):
            CouponTerms(amount_off=1, percent_off=1)
        with pytest.raises(ValueError, match="cap: applies to `percent_off` coupons only"):
            CouponTerms(amount_off=1, cap=5)


class TestAllocate:
    def test_soonest_expiry_then_oldest_grant_then_lot_id(self) -> None:
        lots = [
            lot("z-never", 100),
            lot("b-late", 100, expires_in_days=9),
            lot("a-old", 100, expires_in_days=3, granted_days_ago=5),
            lot("c-new", 100, expires_in_days=3, granted_days_ago=1),
            lot("b-tie", 100, expires_in_days=3, granted_days_ago=1),
        ]
        applied = allocate(request(450), None, lots, NOW)
        assert [(p.lot_id, p.amount) for p in applied] == [
            ("a-old", 100),
            ("b-tie", 100),
            ("c-new", 100),
            ("b-late", 100),
            ("z-never", 50),
        ]

    def test_coupon_rules(self) -> None:
        usable = coupon_lot(CouponTerms(amount_off=500, min_order=2000))
        with pytest.raises(MinimumNotMet):
            allocate(request(1999, coupon_lot_id="cpn"), usable, [], NOW)
        expired = coupon_lot(CouponTerms(amount_off=500), expires_at=NOW)
        with pytest.raises(CouponNotUsable, match="expired"):
            allocate(request(5000, coupon_lot_id="cpn"), expired, [], NOW)
        used = coupon_lot(CouponTerms(amount_off=500), status="used_up", uses_left=0)
        with pytest.raises(CouponNotUsable, match="used up"):
            allocate(request(5000, coupon_lot_id="cpn"), used, [], NOW)
        pending = coupon_lot(CouponTerms(amount_off=500), status="pending", effective_at=NOW + timedelta(hours=1))
        with pytest.raises(CouponNotUsable, match="not active yet"):
            allocate(request(5000, coupon_lot_id="cpn"), pending, [], NOW)

    def test_nothing_to_redeem(self) -> None:
        with pytest.raises(NothingToRedeem):
            allocate(request(100), None, [lot("a", 100, expires_in_days=0)], NOW)
        with pytest.raises(NothingToRedeem):
            allocate(request(100, max_credit=0), None, [lot("a", 100)], NOW)

    @given(
        total=st.integers(1, 100_000),
        remainings=st.lists(st.integers(0, 50_000), max_size=8),
        max_credit=st.none() | st.integers(0, 100_000),
        percent=st.none() | st.integers(1, 100),
    )
    def test_never_more_than_the_total_the_cap_or_a_lot(
        self, total: int, remainings: list[int], max_credit: int | None, percent: int | None
    ) -> None:
        lots = [lot(f"l{i}", r, expires_in_days=i + 1) for i, r in enumerate(remainings)]
        coupon = coupon_lot(CouponTerms(percent_off=percent)) if percent else None
        req = request(total, max_credit=max_credit, coupon_lot_id="cpn" if coupon else None)
        try:
            applied = allocate(req, coupon, lots, NOW)
        except NothingToRedeem:
            assert sum(remainings) == 0 or max_credit == 0 or total * (percent or 0) // 100 == total
            return
        assert 0 < sum(p.amount for p in applied) <= total
        credit_given = sum(p.amount for p in applied if p.kind == "credit")
        assert max_credit is None or credit_given <= max_credit
        by_id = {x.lot_id: x.remaining for x in lots}
        assert all(p.amount <= by_id[p.lot_id] for p in applied if p.kind == "credit")
        assert len({p.lot_id for p in applied}) == len(applied)


class TestAllocateReversal:
    def test_last_applied_first_and_what_was_reversed_counts(self) -> None:
        applied = [Applied(lot_id="cpn", kind="coupon", amount=500), Applied(lot_id="a", kind="credit", amount=300)]
        assert [(p.lot_id, p.amount) for p in allocate_reversal(applied, {}, 400, "USD")] == [("a", 300), ("cpn", 100)]
        assert [(p.lot_id, p.amount) for p in allocate_reversal(applied, {"a": 300, "cpn": 100}, 400, "USD")] == [
            ("cpn", 400)
        ]
        with pytest.raises(ReversalExceedsRedeemed):
            allocate_reversal(applied, {"a": 300}, 501, "USD")

    @given(parts=st.lists(st.integers(1, 1000), min_size=1, max_size=6), data=st.data())
    def test_reversals_in_any_steps_restore_exactly_what_was_applied(
        self, parts: list[int], data: st.DataObject
    ) -> None:
        applied = [Applied(lot_id=f"l{i}", kind="credit", amount=a) for i, a in enumerate(parts)]
        so_far: dict[str, int] = {}
        left = sum(parts)
        while left:
            step = data.draw(st.integers(1, left))
            for part in allocate_reversal(applied, so_far, step, "USD"):
                so_far[part.lot_id] = so_far.get(part.lot_id, 0) + part.amount
            left -= step
        assert so_far == {p.lot_id: p.amount for p in applied}
