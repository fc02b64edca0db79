"""`RecentOrders` against the plain dict it replaced: same orders kept, in the same order, and the
same earliest time, after any sequence of operations (a difference would change a wallet's timers,
and so the commands its recorded histories hold)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from incentives.domain.models import RedemptionSummary
from incentives.domain.recent_orders import RecentOrders

START = datetime(2026, 12, 1, tzinfo=UTC)
LIMIT = 5


def summary(order: int, minute: int) -> RedemptionSummary:
    return RedemptionSummary(
        order_id=f"o-{order}",
        currency="USD",
        discount=100,
        reversed=0,
        reversal_ids=[],
        redeemed_at=START + timedelta(minutes=minute),
    )


class PlainDict:
    """The wallet's memory of orders before `RecentOrders`: a dict scanned on every question."""

    def __init__(self) -> None:
        self.orders: dict[str, RedemptionSummary] = {}

    def remember(self, order: RedemptionSummary) -> None:
        self.orders.pop(order.order_id, None)
        self.orders[order.order_id] = order
        while len(self.orders) > LIMIT:
            del self.orders[next(iter(self.orders))]

    def forget_redeemed_until(self, horizon: datetime) -> None:
        for order_id in [o for o, s in self.orders.items() if s.redeemed_at <= horizon]:
            del self.orders[order_id]

    def earliest(self) -> datetime | None:
        return min((s.redeemed_at for s in self.orders.values()), default=None)


operations = st.lists(
    st.one_of(
        st.tuples(st.just("remember"), st.integers(0, 12), st.just(0)),
        st.tuples(st.just("forget"), st.integers(0, 13), st.just(0)),
    ),
    max_size=80,
)


@given(operations)
def test_keeps_what_the_plain_dict_kept_and_knows_the_earliest(ops: list[tuple[str, int, int]]) -> None:
    recent, plain = RecentOrders(LIMIT), PlainDict()
    for name, a, _ in ops:
        if name == "remember":
            # An order's time is fixed by its redemption: the same order comes back with the same time,
            # and the order ids are not in time order.
            order = summary(a, (a * 7) % 13)
            recent.remember(order)
            plain.remember(order)
        else:
            horizon = START + timedelta(minutes=a)
            recent.forget_redeemed_until(horizon)
            plain.forget_redeemed_until(horizon)
        assert list(recent) == list(plain.orders.values())
        assert recent.earliest() == plain.earliest()
        assert len(recent) == len(plain.orders)


def test_a_thousand_orders_cost_no_scan_and_the_oldest_leave_first() -> None:
    recent = RecentOrders(1000)
    for i in range(1500):
        recent.remember(summary(i, i))
    assert len(recent) == 1000
    assert recent.earliest() == START + timedelta(minutes=500)
    assert recent.get("o-499") is None
    assert recent.get("o-500") is not None
    recent.forget_redeemed_until(START + timedelta(minutes=1200))
    assert [order.order_id for order in recent][:2] == ["o-1201", "o-1202"]
    assert recent.earliest() == START + timedelta(minutes=1201)
