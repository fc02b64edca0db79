"""The timeline of a customer with a known ledger: wallet events decoded, a rejection, and the rows a
promotion wrote for them interleaved; its JSON replays; `replay` fetches a workflow by id."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

from temporalio.client import WorkflowHistory
from temporalio.testing import WorkflowEnvironment

from incentives.adapters.db import Pool
from incentives.app import history
from incentives.app.replay import replay_workflow, replayer
from incentives.domain.errors import NothingToRedeem
from incentives.domain.models import wallet_id
from tests.helpers import eventually, running_stack
from tests.helpers.builders import NewId, credit, order, promotion
from tests.helpers.promotions import status_of


async def test_a_customers_timeline_interleaves_wallet_events_and_promotion_rows(
    dev_server: WorkflowEnvironment, pool: Pool, worker_pool: Pool, new_id: NewId
) -> None:
    customer, lot_id, promotion_id = new_id("c"), new_id("lot"), new_id("p")
    async with running_stack(dev_server.client, worker_pool, pool) as stack:
        await stack.promotions.start(promotion(promotion_id, datetime.now(UTC), amount=300), [customer])

        async def granted() -> None:
            assert (await status_of(stack, promotion_id)).granted == 1

        await eventually(granted, timeout=30)
        await stack.wallets.grant(credit(lot_id, customer, 1000, currency="EUR"))
        await stack.wallets.redeem(order(customer, "o-1", 250, currency="EUR"))
        with contextlib.suppress(NothingToRedeem):
            await stack.wallets.redeem(order(customer, "o-2", 100, currency="JPY"))
        workflow_id = await history.resolve(pool, customer)
        assert workflow_id == wallet_id(customer)
        runs = await history.runs(dev_server.client, workflow_id)
        entries = [entry for run_id, events in runs for entry in history.timeline(events, run_id)]
        entries += await history.ledger_rows_by_others(pool, customer)
        texts = [entry.text for entry in sorted(entries, key=lambda entry: entry.at) if "timer" not in entry.text]
        grant_row = await pool.fetchval(
            "SELECT entry_id FROM ledger_entries WHERE lot_id = $1 AND entry_type = 'grant'",
            f"{promotion_id}:{customer}",
        )
        assert texts == [
            f"promotion:{promotion_id}: grant 3.00 USD lot {promotion_id}:{customer} (ledger row {grant_row})",
            "Wallet started",
            f"update grant accepted: lot {lot_id}",
            f"granted 10.00 EUR lot {lot_id}",
            "update redeem accepted: order o-1, total 2.50 EUR",
            "redeemed 2.50 EUR on order o-1 (to pay 0.00 EUR)",
            "update redeem accepted: order o-2, total 100 JPY",
            f"update redeem rejected (NothingToRedeem): customer {customer} has no coupon or active credit in JPY "
            "for this order",
        ]
        assert await history.resolve(pool, promotion_id) == f"promotion:{promotion_id}"

        raw = runs[-1][1].to_json()
        result = await replayer().replay_workflow(WorkflowHistory.from_json(workflow_id, raw))
        assert result.replay_failure is None
        outcomes = await replay_workflow(dev_server.client, f"promotion:{promotion_id}")
        assert [outcome.failure for outcome in outcomes] == [None]
