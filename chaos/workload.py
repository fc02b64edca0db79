"""The chaos run's operations, generated from a seed: the same seed, the same sequence.

Requests are built when an operation is first sent (instants count from then), and every retry of
an operation sends that same request, as a checkout retrying with the same ids would.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

Kind = Literal["grant", "redeem", "reverse", "revoke", "promotion", "control", "hostile", "close_then_reverse"]

CUSTOMERS = 24
HOSTILE_IDS = (
    "x'; DROP TABLE lots; --",
    "a\x00b",
    "order\u202e1",
    "line\nbreak",
    "x" * 500,
    "٣٤٥",
    "",
)
HOSTILE_AMOUNTS = ("-5", "1e3", "NaN", "10.001", "١٠", "99999999999999999999", " 5")


@dataclass
class Op:
    """One operation. `fields` says what to send; `duplicate_of` marks a re-send of an earlier one."""

    index: int
    kind: Kind
    customer: str
    fields: dict[str, object] = field(default_factory=dict)
    duplicate_of: int | None = None
    abandon_first: bool = False  # the first call gives up at once; the retry must resolve it


@dataclass
class Plan:
    seed: int
    ops: list[Op]
    fault_at: dict[int, str]  # op index → fault injected when that op is sent


def plan(seed: int, ops: int, faults: int, fault_kinds: tuple[str, ...]) -> Plan:
    rng = random.Random(seed)
    generator = _Generator(rng)
    sequence = [generator.next(i) for i in range(ops)]
    positions = sorted(rng.sample(range(ops // 10, max(ops // 10 + 1, ops - ops // 10)), min(faults, ops // 2)))
    fault_at = {position: fault_kinds[i % len(fault_kinds)] for i, position in enumerate(positions)}
    return Plan(seed=seed, ops=sequence, fault_at=fault_at)


class _Generator:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.lots: dict[str, list[tuple[str, str]]] = {}  # customer → [(lot id, kind)]
        self.orders: dict[str, list[str]] = {}
        self.sent: list[Op] = []
        self.promotions = 0

    def next(self, index: int) -> Op:
        rng = self.rng
        customer = f"chaos-c{rng.randrange(CUSTOMERS):02d}"
        roll = rng.random()
        if index in (5, 60) or (index > 60 and roll < 0.01):
            op = self._promotion(index)
        elif index == 30 or (index > 60 and roll > 0.996):
            # A promotion of one customer whose lot is redeemed whole, cancelled with its outstanding
            # lots revoked (it closes), then the order reversed: the value must leave again at once.
            op = Op(index, "close_then_reverse", f"chaos-closer-{index}", {"amount": rng.choice([300, 500])})
        elif self.promotions and roll < 0.03:
            op = Op(index, "control", "", {"promotion": f"chaos-p{rng.randrange(self.promotions)}",
                                            "action": rng.choice(["pause", "resume", "resume", "cancel"])})  # fmt: skip
        elif roll < 0.06 and self.sent:
            earlier = rng.choice(self.sent)
            op = Op(index, earlier.kind, earlier.customer, dict(earlier.fields), duplicate_of=earlier.index)
        elif roll < 0.09:
            op = self._hostile(index, customer)
        elif roll < 0.30:
            op = self._grant(index, customer)
        elif roll < 0.72:
            op = self._redeem(index, customer)
        elif roll < 0.92:
            op = self._reverse(index, customer)
        else:
            op = self._revoke(index, customer)
        op.abandon_first = op.kind in ("redeem", "grant", "reverse") and rng.random() < 0.05
        self.sent.append(op)
        return op

    def _grant(self, index: int, customer: str) -> Op:
        rng = self.rng
        lot_id = f"lot-{index}"
        fields: dict[str, object] = {"lot_id": lot_id}
        if rng.random() < 0.75:
            fields.update(kind="credit", amount=rng.randrange(100, 5000))
        else:
            percent = rng.random() < 0.6
            fields.update(
                kind="coupon",
                percent_off=rng.choice([10, 20, 50]) if percent else None,
                amount_off=None if percent else rng.randrange(100, 1500),
                cap=rng.choice([None, 500, 1000]) if percent else None,
                min_order=rng.choice([None, None, 1000]),
                uses=rng.choice([1, 1, 2, 3]),
            )
        if rng.random() < 0.3:
            fields["expires_in"] = timedelta(seconds=rng.randrange(15, 90))
            if rng.random() < 0.5:
                fields["remind_before"] = timedelta(seconds=5)
        elif rng.random() < 0.5:
            fields["expires_in"] = timedelta(days=30)
        if rng.random() < 0.15:
            fields["effective_in"] = timedelta(seconds=rng.randrange(3, 12))
        self.lots.setdefault(customer, []).append((lot_id, str(fields["kind"])))
        return Op(index, "grant", customer, fields)

    def _redeem(self, index: int, customer: str) -> Op:
        rng = self.rng
        coupons = [lot for lot, kind in self.lots.get(customer, []) if kind == "coupon"]
        fields: dict[str, object] = {
            "order_id": f"o-{index}",
            "total": rng.randrange(100, 6000),
            "currency": "EUR" if rng.random() < 0.05 else "USD",
            "coupon_lot_id": None,
            "max_credit": rng.randrange(0, 2000) if rng.random() < 0.1 else None,
        }
        if coupons and rng.random() < 0.4:
            fields["coupon_lot_id"] = rng.choice(coupons)
        elif rng.random() < 0.03:
            fields["coupon_lot_id"] = "no-such-coupon"
        if rng.random() < 0.04 and self.orders.get(customer):
            fields["order_id"] = rng.choice(self.orders[customer])  # the same id, another payload: a conflict
        self.orders.setdefault(customer, []).append(str(fields["order_id"]))
        return Op(index, "redeem", customer, fields)

    def _reverse(self, index: int, customer: str) -> Op:
        rng = self.rng
        orders = self.orders.get(customer) or [f"o-unknown-{index}"]
        amount = None if rng.random() < 0.5 else rng.randrange(1, 800)
        return Op(
            index, "reverse", customer, {"order_id": rng.choice(orders), "reversal_id": f"r-{index}", "amount": amount}
        )

    def _revoke(self, index: int, customer: str) -> Op:
        lots = [lot for lot, _ in self.lots.get(customer, [])] or [f"lot-unknown-{index}"]
        return Op(index, "revoke", customer, {"lot_id": self.rng.choice(lots), "reason": "chaos: support revoked it"})

    def _promotion(self, index: int) -> Op:
        """A small promotion: every third one of coupons (their budget is what they take off
        orders), every other one's lots effective a few seconds after their grant (pending until
        then), about half drawing on the shared pool. Its customers' redeems may use its coupons,
        and support may revoke its lots, by their ids (`<promotion>:<customer>`)."""
        rng = self.rng
        number = self.promotions
        self.promotions += 1
        promotion_id = f"chaos-p{number}"
        audience = sorted({f"chaos-c{rng.randrange(CUSTOMERS):02d}" for _ in range(rng.randrange(8, 20))})
        kind = "coupon" if number % 3 == 0 else "credit"
        fields: dict[str, object] = {
            "promotion": promotion_id,
            "kind": kind,
            "budget": rng.randrange(2, 12) * 1000,
            "audience": audience,
            "expires_in": timedelta(seconds=rng.randrange(20, 80)),
            "pooled": rng.random() < 0.5,
        }
        if kind == "credit":
            fields["amount"] = rng.choice([300, 500, 1000])
        else:
            percent = rng.random() < 0.5
            fields.update(
                percent_off=rng.choice([10, 20, 50]) if percent else None,
                amount_off=None if percent else rng.randrange(100, 800),
                cap=rng.choice([None, 500]) if percent else None,
                min_order=rng.choice([None, 1000]),
                uses=rng.choice([1, 2]),
            )
        if number % 2 == 0:
            fields["effective_in"] = timedelta(seconds=rng.randrange(3, 9))
        for customer in audience:
            self.lots.setdefault(customer, []).append((f"{promotion_id}:{customer}", kind))
        return Op(index, "promotion", "", fields)

    def _hostile(self, index: int, customer: str) -> Op:
        rng = self.rng
        where = rng.choice(["customer_id", "order_id", "lot_id", "amount", "spec", "audience"])
        value = rng.choice(HOSTILE_AMOUNTS if where == "amount" else HOSTILE_IDS)
        return Op(index, "hostile", customer, {"where": where, "value": value})
