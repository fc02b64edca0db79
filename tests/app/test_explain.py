"""`explain`: each lot's movements exactly as the ledger has them, and the running wallet's memory
compared with the ledger (a difference planted in Postgres is reported)."""

from __future__ import annotations

from temporalio.testing import WorkflowEnvironment

from incentives.adapters.db import Pool
from incentives.app.explain import MemoryDifference, explain
from incentives.domain.models import ReverseRequest, wallet_id
from tests.helpers import running_stack
from tests.helpers.builders import NewId, credit, order


async def test_each_lots_movements_and_the_wallets_memory_against_the_ledger(
    dev_server: WorkflowEnvironment, pool: Pool, worker_pool: Pool, new_id: NewId
) -> None:
    customer, soon, later = new_id("c"), new_id("soon"), new_id("later")
    async with running_stack(dev_server.client, worker_pool, pool) as stack:
        await stack.wallets.grant(credit(soon, customer, 500, expires_in_days=5))
        await stack.wallets.grant(credit(later, customer, 1000, expires_in_days=50))
        await stack.wallets.redeem(order(customer, "o-1", 800))
        await stack.wallets.reverse(ReverseRequest(customer_id=customer, order_id="o-1", reversal_id="r-1", amount=100))
        story = await explain(pool, dev_server.client, customer)
        moves = {
            told.lot.lot_id: [(m.entry_type, m.amount, m.order_id, m.reversal_id) for m in told.movements]
            for told in story.lots
        }
        assert moves == {
            soon: [("grant", 500, None, None), ("redeem", -500, "o-1", None)],
            later: [("grant", 1000, None, None), ("redeem", -300, "o-1", None), ("reverse", 100, "o-1", "r-1")],
        }
        assert all(m.workflow_id == wallet_id(customer) for told in story.lots for m in told.movements)
        assert story.wallet_running
        assert story.differences == []
        await pool.execute("UPDATE lots SET remaining_minor = 700 WHERE lot_id = $1", later)
        story = await explain(pool, dev_server.client, customer)
        assert story.differences == [
            MemoryDifference(lot_id=later, ledger="active, 7.00 USD left", wallet="active, 8.00 USD left")
        ]
