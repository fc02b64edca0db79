"""Promotions in tests: audiences of fresh ids, and a promotion's status once its workflow opened it."""

from __future__ import annotations

from incentives.app.promotions import UnknownPromotion
from incentives.domain.promotions import PromotionStatus
from tests.helpers import Stack
from tests.helpers.builders import NewId


async def status_of(stack: Stack, promotion_id: str) -> PromotionStatus:
    """The promotion's status; an AssertionError (so `eventually` waits) until its workflow opened it."""
    try:
        return await stack.promotions.status(promotion_id)
    except UnknownPromotion as error:
        raise AssertionError(str(error)) from None


def customers(new_id: NewId, n: int) -> list[str]:
    prefix = new_id("c")
    return [f"{prefix}-{i:05d}" for i in range(n)]
