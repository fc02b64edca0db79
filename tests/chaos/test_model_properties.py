"""The wallet's rules against the independent model, by generated sequences (hypothesis): any
sequence of grant / redeem / reverse / revoke / time passing keeps every lot within [0, amount],
never redeems more than an order's total, allocates exactly as `incentives.domain.rules` does
(the documented order of use), and a full reversal then the same redemption round-trips."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from chaos import model
from incentives.domain import rules
from incentives.domain.errors import Rejected
from incentives.domain.models import CouponTerms, Lot, RedeemRequest

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def as_lot(lot: model.Lot) -> Lot:
    coupon = None
    if lot.kind == "coupon":
        coupon = CouponTerms(amount_off=lot.amount_off, percent_off=lot.percent_off, cap=lot.cap, uses=lot.uses)
    return Lot(
        lot_id=lot.lot_id, customer_id="c", promotion_id=None, kind=lot.kind, currency=lot.currency,
        amount=lot.amount, remaining=lot.remaining, coupon=coupon, uses_left=lot.uses_left if coupon else None,
        status=lot.status, effective_at=lot.effective_at, expires_at=lot.expires_at,
        remind_before=None, reminded=False, granted_at=lot.granted_at,
    )  # fmt: skip


class Wallet(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.customer = model.Customer()
        self.now = T0
        self.count = 0
        self.totals: dict[str, int] = {}

    def _id(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    @rule(amount=st.integers(1, 5000), days=st.one_of(st.none(), st.integers(1, 30)))
    def grant_credit(self, amount: int, days: int | None) -> None:
        expires = None if days is None else self.now + timedelta(days=days)
        self.customer.grant(model.Lot(self._id("cr"), "credit", "USD", amount, self.now, None, expires), pending=False)

    @rule(percent=st.integers(1, 100), cap=st.one_of(st.none(), st.integers(1, 2000)), uses=st.integers(1, 3))
    def grant_coupon(self, percent: int, cap: int | None, uses: int) -> None:
        lot = model.Lot(self._id("cp"), "coupon", "USD", 0, self.now, None, self.now + timedelta(days=10),
                        percent_off=percent, cap=cap, uses=uses)  # fmt: skip
        self.customer.grant(lot, pending=False)

    @rule(total=st.integers(1, 8000), use_coupon=st.booleans(), max_credit=st.one_of(st.none(), st.integers(0, 3000)))
    def redeem(self, total: int, use_coupon: bool, max_credit: int | None) -> None:
        coupons = [lot.lot_id for lot in self.customer.lots.values() if lot.kind == "coupon"]
        coupon_id = coupons[-1] if use_coupon and coupons else None
        order_id = self._id("o")
        request = RedeemRequest(customer_id="c", order_id=order_id, currency="USD", total=total,
                                coupon_lot_id=coupon_id, max_credit=max_credit)  # fmt: skip
        lots = [as_lot(lot) for lot in self.customer.lots.values()]
        coupon = next((lot for lot in lots if lot.lot_id == coupon_id), None)
        try:
            expected = [(p.lot_id, p.kind, p.amount) for p in rules.allocate(request, coupon, lots, self.now)]
        except Rejected as refused:
            expected_refusal: str | None = type(refused).__name__
        else:
            expected_refusal = None
        if expected_refusal is not None:
            with pytest.raises(model.Refused, match=f"^{expected_refusal}$"):
                self.customer.redeem(order_id, "USD", total, coupon_id, max_credit, self.now)
            return
        applied = self.customer.redeem(order_id, "USD", total, coupon_id, max_credit, self.now)
        assert applied == expected
        assert sum(amount for _, _, amount in applied) <= total
        self.totals[order_id] = total

    @precondition(lambda self: bool(self.customer.orders))
    @rule(data=st.data())
    def reverse_all_then_redeem_again(self, data: st.DataObject) -> None:
        order_id = data.draw(st.sampled_from(sorted(self.customer.orders)))
        order = self.customer.orders[order_id]
        if any(order.restored.values()) or not all(self._alive(lot_id) for lot_id, _, _ in order.applied):
            return  # partly reversed already, or a lot expired or was revoked since: no round trip to expect
        given = sum(amount for _, _, amount in order.applied)
        restored, written_off = self.customer.reverse(order_id, None, self.now)
        assert sum(amount for _, amount in restored) == given
        assert written_off == []
        coupon_id = next((lot_id for lot_id, kind, _ in order.applied if kind == "coupon"), None)
        again_id = self._id("o")
        again = self.customer.redeem(again_id, "USD", self.totals[order_id], coupon_id, None, self.now)
        self.totals[again_id] = self.totals[order_id]
        assert sum(amount for _, _, amount in again) >= given  # at least what the order had before

    def _alive(self, lot_id: str) -> bool:
        lot = self.customer.lots[lot_id]
        return lot.status in ("active", "used_up") and (lot.expires_at is None or lot.expires_at > self.now)

    @precondition(lambda self: bool(self.customer.lots))
    @rule(data=st.data())
    def revoke(self, data: st.DataObject) -> None:
        lot_id = data.draw(st.sampled_from(sorted(self.customer.lots)))
        if self.customer.lots[lot_id].status == "expired":
            with pytest.raises(model.Refused, match=r"^LotNotRevocable$"):
                self.customer.revoke(lot_id)
        else:
            self.customer.revoke(lot_id)
            assert self.customer.lots[lot_id].remaining == 0

    @rule(days=st.integers(1, 15))
    def time_passes(self, days: int) -> None:
        self.now += timedelta(days=days)
        for lot in list(self.customer.lots.values()):
            if lot.status in ("pending", "active") and lot.expires_at is not None and lot.expires_at <= self.now:
                self.customer.expire(lot.lot_id)

    @invariant()
    def every_lot_within_its_amount(self) -> None:
        for lot in self.customer.lots.values():
            assert 0 <= lot.remaining <= lot.amount
            assert 0 <= lot.uses_left <= lot.uses


TestWallet = Wallet.TestCase
TestWallet.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)


def test_a_partial_reversal_reaching_a_used_up_coupon_past_its_expiry_marks_it_expired() -> None:
    """As the ledger does (tests/activities: the same case): the coupon's use does not come back,
    but its status catches up with its expiry."""
    customer = model.Customer()
    coupon = model.Lot("cp", "coupon", "USD", 0, T0, None, T0 + timedelta(days=7), amount_off=500, uses=1)
    customer.grant(coupon, pending=False)
    customer.redeem("o", "USD", 2000, "cp", None, T0)
    assert customer.lots["cp"].status == "used_up"
    restored, written_off = customer.reverse("o", 100, T0 + timedelta(days=8))
    assert (restored, written_off) == ([("cp", 100)], [])
    assert (customer.lots["cp"].uses_left, customer.lots["cp"].status) == (0, "expired")
