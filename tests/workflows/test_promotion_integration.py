"""Promotions on the dev server and a real Postgres: grants as rows, budgets, controls, the clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from temporalio.testing import WorkflowEnvironment

from incentives.adapters.db import Pool
from incentives.app.promotions import UnknownPromotion
from incentives.domain.errors import PromotionConflict
from incentives.domain.promotions import PromotionStatus, promotion_workflow_id
from tests.helpers import Stack, eventually, running_stack
from tests.helpers.builders import NewId, order, promotion
from tests.helpers.ledger import ledger_rows


async def status_of(stack: Stack, promotion_id: str) -> PromotionStatus:
    """The promotion's status; an AssertionError (so `eventually` waits) until its workflow opened it."""
    try:
        return await stack.promotions.status(promotion_id)
    except UnknownPromotion as error:
        raise AssertionError(str(error)) from None


def customers(new_id: NewId, n: int) -> list[str]:
    prefix = new_id("c")
    return [f"{prefix}-{i:05d}" for i in range(n)]


async def grant_totals(pool: Pool, promotion_id: str) -> tuple[int, int, int]:
    """(grant ledger rows, their value, granted outbox events) of a promotion."""
    row = await pool.fetchrow(
        """SELECT count(*) AS n, coalesce(sum(amount_minor), 0) AS value,
                  (SELECT count(*) FROM outbox WHERE promotion_id = $1 AND event_type = 'granted') AS events
           FROM ledger_entries WHERE promotion_id = $1 AND entry_type = 'grant'""",
        promotion_id,
    )
    assert row is not None
    return row["n"], row["value"], row["events"]


class TestGranting:
    async def test_every_customer_is_granted_once_as_ledger_rows_and_no_wallet_starts(
        self, dev_server: WorkflowEnvironment, pool: Pool, new_id: NewId
    ) -> None:
        promotion_id, audience = new_id("p"), customers(new_id, 1000)
        async with running_stack(dev_server.client, pool, batch_size=150) as stack:
            terms = promotion(promotion_id, datetime.now(UTC), amount=1000)
            started = await stack.promotions.start(terms, audience + audience[:10])
            assert started.started
            assert started.audience.size == 1000
            assert started.audience.duplicates == 10

            async def granted() -> PromotionStatus:
                status = await status_of(stack, promotion_id)
                assert status.state == "active", status
                return status

            status = await eventually(granted, timeout=30)
            assert (status.granted, status.processed, status.committed) == (1000, 1000, 1_000_000)
            assert await grant_totals(pool, promotion_id) == (1000, 1_000_000, 1000)
            lot = await pool.fetchrow("SELECT * FROM lots WHERE lot_id = $1", f"{promotion_id}:{audience[7]}")
            assert lot is not None
            assert lot["clock_workflow_id"] == promotion_workflow_id(promotion_id)
            wallets = [w async for w in dev_server.client.list_workflows(f"WorkflowId = 'wallet:{audience[7]}'")]
            assert wallets == []

            again = await stack.promotions.start(terms, audience + audience[:10])
            assert not again.started
            assert again.run_id == started.run_id

    async def test_a_promotion_lot_is_redeemable_through_the_wallet_at_once(
        self, dev_server: WorkflowEnvironment, pool: Pool, new_id: NewId
    ) -> None:
        promotion_id, audience = new_id("p"), customers(new_id, 3)
        async with running_stack(dev_server.client, pool) as stack:
            await stack.promotions.start(promotion(promotion_id, datetime.now(UTC), amount=1000), audience)

            async def granted() -> None:
                assert (await status_of(stack, promotion_id)).granted == 3

            await eventually(granted, timeout=30)
            redemption = await stack.wallets.redeem(order(audience[0], new_id("o"), 2500))
            assert redemption.discount == 1000
            assert [row[0] for row in await ledger_rows(pool, audience[0])] == ["grant", "redeem"]
            assert (await status_of(stack, promotion_id)).redeemed == 1000

    async def test_other_terms_under_the_same_id_are_refused_before_anything_is_staged(
        self, dev_server: WorkflowEnvironment, pool: Pool, new_id: NewId
    ) -> None:
        promotion_id, audience = new_id("p"), customers(new_id, 3)
        async with running_stack(dev_server.client, pool) as stack:
            now = datetime.now(UTC)
            await stack.promotions.start(promotion(promotion_id, now, amount=1000), audience)

            async def opened() -> None:
                await status_of(stack, promotion_id)

            await eventually(opened, timeout=30)
            with pytest.raises(PromotionConflict, match="different terms"):
                await stack.promotions.start(promotion(promotion_id, now, amount=2000), audience)


class TestBudget:
    async def test_a_batch_that_meets_the_budget_grants_as_many_as_fit_in_audience_order(
        self, dev_server: WorkflowEnvironment, pool: Pool, new_id: NewId
    ) -> None:
        promotion_id, audience = new_id("p"), customers(new_id, 500)
        async with running_stack(dev_server.client, pool, batch_size=200) as stack:
            terms = promotion(promotion_id, datetime.now(UTC), amount=1000, budget=317 * 1000 + 999)
            await stack.promotions.start(terms, audience)

            async def done() -> PromotionStatus:
                status = await status_of(stack, promotion_id)
                assert status.processed == 500, status
                return status

            status = await eventually(done, timeout=30)
            assert (status.granted, status.skipped, status.committed) == (317, {"budget": 183}, 317_000)
            granted = await pool.fetch(
                "SELECT customer_id FROM lots WHERE clock_workflow_id = $1 ORDER BY customer_id",
                promotion_workflow_id(promotion_id),
            )
            assert [row["customer_id"] for row in granted] == audience[:317]
            thresholds = await pool.fetch(
                "SELECT payload->>'threshold' AS t FROM outbox WHERE promotion_id = $1 AND event_type = 'budget_threshold'",
                promotion_id,
            )
            assert [row["t"] for row in thresholds] == ["50", "80"]


class TestControls:
    async def test_cancel_with_revoke_closes_the_promotion_with_its_final_report(
        self, dev_server: WorkflowEnvironment, pool: Pool, new_id: NewId
    ) -> None:
        promotion_id, audience = new_id("p"), customers(new_id, 40)
        async with running_stack(dev_server.client, pool, batch_size=10) as stack:
            await stack.promotions.start(promotion(promotion_id, datetime.now(UTC), amount=500), audience)

            async def granted() -> None:
                assert (await status_of(stack, promotion_id)).granted == 40

            await eventually(granted, timeout=30)
            await stack.wallets.redeem(order(audience[0], new_id("o"), 200))
            await stack.promotions.cancel(promotion_id, revoke_outstanding=True)

            async def closed() -> PromotionStatus:
                status = await status_of(stack, promotion_id)
                assert status.state == "closed", status
                return status

            status = await eventually(closed, timeout=30)
            assert status.report is not None
            assert (status.report.granted, status.report.redeemed, status.report.revoked) == (20_000, 200, 19_800)
            assert status.report.outstanding == 0
            with pytest.raises(PromotionConflict):
                await stack.promotions.pause(promotion_id)


def later(minutes: int) -> datetime:
    return datetime.now(UTC) + timedelta(minutes=minutes)
