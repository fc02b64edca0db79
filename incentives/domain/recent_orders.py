"""`RecentOrders`: the orders a wallet remembers, and the earliest of their redemption times.

A wallet remembers its most recently touched orders (up to a limit) so that it can recognise a
retried redeem or reversal, and it must know when the oldest of them leaves the reversal window,
to plan its next timer. It plans after every lot it remembers, so on a wallet that remembers a
thousand orders, scanning them each time was most of the CPU a redeem cost the workflow; a heap
keeps the earliest time at O(log n) per change.

Deterministic, so safe in workflow code: ties in the heap break on the order id, and stale heap
entries (an order forgotten or remembered again) are dropped only when they reach the top, or all
at once when they outnumber the live ones.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from datetime import datetime

from incentives.domain.models import RedemptionSummary


class RecentOrders:
    """At most `limit` orders, the least recently remembered forgotten first."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._orders: dict[str, RedemptionSummary] = {}
        self._by_time: list[tuple[datetime, str]] = []

    def __len__(self) -> int:
        return len(self._orders)

    def __iter__(self) -> Iterator[RedemptionSummary]:
        return iter(self._orders.values())

    def get(self, order_id: str) -> RedemptionSummary | None:
        return self._orders.get(order_id)

    def remember(self, summary: RedemptionSummary) -> None:
        """Remembers an order (again) as the most recent one; past the limit, forgets the least recent."""
        self._orders.pop(summary.order_id, None)
        self._orders[summary.order_id] = summary
        heapq.heappush(self._by_time, (summary.redeemed_at, summary.order_id))
        while len(self._orders) > self._limit:
            del self._orders[next(iter(self._orders))]
        if len(self._by_time) > 2 * len(self._orders) + 16:
            self._by_time = [(order.redeemed_at, order.order_id) for order in self._orders.values()]
            heapq.heapify(self._by_time)

    def earliest(self) -> datetime | None:
        """The earliest redemption time among the remembered orders."""
        while self._by_time:
            redeemed_at, order_id = self._by_time[0]
            order = self._orders.get(order_id)
            if order is not None and order.redeemed_at == redeemed_at:
                return redeemed_at
            heapq.heappop(self._by_time)  # forgotten, or remembered again with another time
        return None

    def forget_redeemed_until(self, horizon: datetime) -> None:
        """Forgets every order redeemed at or before `horizon`."""
        while (earliest := self.earliest()) is not None and earliest <= horizon:
            _, order_id = heapq.heappop(self._by_time)
            del self._orders[order_id]
