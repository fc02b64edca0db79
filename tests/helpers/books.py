"""Books with a known ledger, for the reconcile tests (of the app and of the command)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from temporalio.testing import WorkflowEnvironment

from incentives.adapters.db import Pool
from incentives.domain.models import ReverseRequest
from incentives.domain.promotions import PoolTerms
from tests.helpers import eventually, running_stack
from tests.helpers.builders import NewId, credit, order, promotion
from tests.helpers.promotions import status_of


@dataclass(frozen=True)
class Books:
    customer: str
    big_lot: str
    small_lot: str
    order_id: str
    promotion_id: str
    pool_id: str


@pytest.fixture
async def books(dev_server: WorkflowEnvironment, pool: Pool, worker_pool: Pool, new_id: NewId) -> Books:
    """A customer with two credits, an order redeemed across them and partly reversed; a credit
    promotion on a pool, granted to the customer and two others."""
    customer, big, small, order_id = new_id("c"), new_id("big"), new_id("small"), new_id("o")
    promotion_id, pool_id = new_id("p"), new_id("pool")
    async with running_stack(dev_server.client, worker_pool, pool) as stack:
        await stack.wallets.grant(credit(big, customer, 1000, expires_in_days=30))
        await stack.wallets.grant(credit(small, customer, 500, expires_in_days=10))
        await stack.wallets.redeem(order(customer, order_id, 1200))
        await stack.wallets.reverse(
            ReverseRequest(customer_id=customer, order_id=order_id, reversal_id="r1", amount=100)
        )
        terms = promotion(promotion_id, datetime.now(UTC), amount=300, pool=PoolTerms(pool_id=pool_id, amount=10_000))
        await stack.promotions.start(terms, [customer, new_id("c"), new_id("c")])

        async def granted() -> None:
            assert (await status_of(stack, promotion_id)).state == "active"

        await eventually(granted, timeout=30)
    return Books(customer, big, small, order_id, promotion_id, pool_id)
