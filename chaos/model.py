"""An independent model of a customer's lots, written from the README's documented rules.

It imports nothing from the project (an import contract checks it): a bug shared by the engine
and its checker would otherwise go unseen. The chaos run replays, in the ledger's commit order,
what the engine accepted, and asks this model what each step should have done, and whether what
the engine refused had to be refused (on copies: `Customer.copy`).

Rules (README, "How it works"):
- Time: a pending lot becomes active at its effective time (its clock's timer), or when a redeem
  of its customer at or after that time activates it first; either way once.
- Redeem: every due activation of the customer first; then the coupon (a fixed amount, or a
  percentage rounded down and capped; minimum order and uses checked), then credits soonest expiry
  first (no expiry last), then oldest grant, then lot id; never more than the order total or the
  credit cap; only lots active, effective and unexpired at the redemption's instant.
- Reverse: last applied, first restored, to the exact lots; a coupon's use comes back once all it
  took off the order is reversed; value reversed into a lot expired or revoked (or past its expiry)
  is written off again at once.
- Revoke: what is left is removed; expiry: what is left is written off; a used-up lot stays used up.
"""

from __future__ import annotations

from copy import copy as shallow_copy
from dataclasses import dataclass, field
from datetime import datetime


class Refused(Exception):
    """The model refuses the operation (the rule's name is the message)."""


@dataclass
class Lot:
    lot_id: str
    kind: str  # credit | coupon
    currency: str
    amount: int
    granted_at: datetime
    effective_at: datetime | None
    expires_at: datetime | None
    amount_off: int | None = None
    percent_off: int | None = None
    cap: int | None = None
    min_order: int | None = None
    uses: int = 0
    promotion_id: str | None = None
    remaining: int = 0
    uses_left: int = 0
    status: str = "active"
    pending_at_grant: bool = False
    activated_by_redeem: bool = False  # a redeem found it due and activated it (its event is certain)

    def __post_init__(self) -> None:
        self.remaining = self.amount if self.kind == "credit" else 0
        self.uses_left = self.uses if self.kind == "coupon" else 0

    def due(self, at: datetime) -> bool:
        """Whether its effective time has come (a pending lot is then active, or about to be)."""
        return self.effective_at is None or self.effective_at <= at

    def usable(self, at: datetime) -> bool:
        return (
            self.status == "active"
            and (self.effective_at is None or self.effective_at <= at)
            and (self.expires_at is None or self.expires_at > at)
        )


@dataclass
class Order:
    applied: list[tuple[str, str, int]]  # (lot id, kind, amount) in application order
    restored: dict[str, int] = field(default_factory=dict)


@dataclass
class Customer:
    lots: dict[str, Lot] = field(default_factory=dict)
    orders: dict[str, Order] = field(default_factory=dict)
    reversal_ids: set[str] = field(default_factory=set)

    def copy(self) -> Customer:
        """An independent copy: what-if questions (would this refusal have been right?) leave this one as it is."""
        return Customer(
            lots={lot_id: shallow_copy(lot) for lot_id, lot in self.lots.items()},
            orders={order_id: Order(list(o.applied), dict(o.restored)) for order_id, o in self.orders.items()},
            reversal_ids=set(self.reversal_ids),
        )

    def grant(self, lot: Lot, pending: bool) -> None:
        lot.status = "pending" if pending else "active"
        lot.pending_at_grant = pending
        self.lots[lot.lot_id] = lot

    def activate_due(self, at: datetime) -> list[str]:
        """Every pending lot whose effective time has come becomes active (what a redeem does first)."""
        due = [lot for lot in self.lots.values() if lot.status == "pending" and lot.due(at)]
        for lot in due:
            lot.status = "active"
        return [lot.lot_id for lot in due]

    def redeem(
        self, order_id: str, currency: str, total: int, coupon_id: str | None, max_credit: int | None, at: datetime
    ) -> list[tuple[str, str, int]]:
        for lot_id in self.activate_due(at):
            self.lots[lot_id].activated_by_redeem = True
        applied: list[tuple[str, str, int]] = []
        left = total
        if coupon_id is not None:
            off = self._coupon_discount(coupon_id, currency, total, at)
            if off > 0:
                applied.append((coupon_id, "coupon", off))
                left -= off
        budget = left if max_credit is None else min(left, max_credit)
        for lot in sorted(self.lots.values(), key=_credit_order):
            if budget == 0:
                break
            if lot.kind == "credit" and lot.currency == currency and lot.remaining > 0 and lot.usable(at):
                take = min(lot.remaining, budget)
                applied.append((lot.lot_id, "credit", take))
                budget -= take
        if not applied:
            raise Refused("NothingToRedeem")
        for lot_id, kind, amount in applied:
            self._take(self.lots[lot_id], kind, amount)
        self.orders[order_id] = Order(applied)
        return applied

    def _coupon_discount(self, coupon_id: str, currency: str, total: int, at: datetime) -> int:
        coupon = self.lots.get(coupon_id)
        if coupon is None:
            raise Refused("UnknownLot")
        if coupon.kind != "coupon":
            raise Refused("CouponNotUsable")
        if coupon.currency != currency:
            raise Refused("CurrencyMismatch")
        if coupon.status in ("revoked", "expired", "pending", "used_up") or not coupon.usable(at):
            raise Refused("CouponNotUsable")
        if coupon.uses_left == 0:
            raise Refused("CouponNotUsable")
        if coupon.min_order is not None and total < coupon.min_order:
            raise Refused("MinimumNotMet")
        if coupon.amount_off is not None:
            return min(coupon.amount_off, total)
        assert coupon.percent_off is not None
        off = total * coupon.percent_off // 100
        return off if coupon.cap is None else min(off, coupon.cap)

    @staticmethod
    def _take(lot: Lot, kind: str, amount: int) -> None:
        if kind == "credit":
            lot.remaining -= amount
            if lot.remaining == 0:
                lot.status = "used_up"
        else:
            lot.uses_left -= 1
            if lot.uses_left == 0:
                lot.status = "used_up"

    def reverse(self, order_id: str, amount: int | None, at: datetime) -> tuple[list[tuple[str, int]], list[str]]:
        """(restored (lot, amount) last applied first, lots whose value was written off again)."""
        order = self.orders.get(order_id)
        if order is None:
            raise Refused("UnknownOrder")
        reversible = sum(a - order.restored.get(lot_id, 0) for lot_id, _, a in order.applied)
        wanted = reversible if amount is None else amount
        if reversible == 0 or wanted > reversible:
            raise Refused("ReversalExceedsRedeemed")
        restored, written_off, left = [], [], wanted
        for lot_id, kind, applied in reversed(order.applied):
            give = min(applied - order.restored.get(lot_id, 0), left)
            if give <= 0:
                continue
            order.restored[lot_id] = order.restored.get(lot_id, 0) + give
            if self._give_back(self.lots[lot_id], kind, give, whole=order.restored[lot_id] == applied, at=at):
                written_off.append(lot_id)
            restored.append((lot_id, give))
            left -= give
            if left == 0:
                break
        return restored, written_off

    def record_reversal(self, reversal_id: str) -> None:
        """The reversal id is taken: the same request again answers its first result, never a refusal."""
        self.reversal_ids.add(reversal_id)

    @staticmethod
    def _give_back(lot: Lot, kind: str, amount: int, whole: bool, at: datetime) -> bool:
        """Gives `amount` back; True when it is a credit written off again at once. A coupon gets
        its use back only when all it took off the order is reversed; before that, nothing comes
        back, but a reversal that reaches a lot past its expiry still marks it expired (the ledger
        catches the status up then: a used-up lot is never expired by its timer)."""
        if kind == "credit":
            lot.remaining += amount
        elif whole:
            lot.uses_left += 1
        if (kind == "credit" or whole) and lot.status == "used_up":
            lot.status = "active"
        dead = lot.status in ("expired", "revoked") or (lot.expires_at is not None and lot.expires_at <= at)
        if not dead:
            return False
        if lot.status != "revoked":
            lot.status = "expired"
        written = kind == "credit"
        if written:
            lot.remaining -= amount
        return written

    def revoke(self, lot_id: str) -> int:
        lot = self.lots.get(lot_id)
        if lot is None:
            raise Refused("UnknownLot")
        if lot.status == "expired":
            raise Refused("LotNotRevocable")
        amount, lot.remaining, lot.status = lot.remaining, 0, "revoked"
        return amount

    def expire(self, lot_id: str) -> int:
        lot = self.lots[lot_id]
        amount, lot.remaining, lot.status = lot.remaining, 0, "expired"
        return amount


def net_coupon_discounts(customer: Customer, promotion_id: str) -> int:
    """What the promotion's coupons took off this customer's orders, less what reversals gave back:
    what a coupon promotion has committed against its budget for this customer."""
    net = 0
    for order in customer.orders.values():
        for lot_id, kind, amount in order.applied:
            if kind == "coupon" and customer.lots[lot_id].promotion_id == promotion_id:
                net += amount - order.restored.get(lot_id, 0)
    return net


def _credit_order(lot: Lot) -> tuple[bool, datetime, datetime, str]:
    never = lot.expires_at is None
    return (never, lot.expires_at or lot.granted_at, lot.granted_at, lot.lot_id)
