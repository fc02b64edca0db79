"""Promotions on the dev server and a real Postgres: grants as rows, budgets, controls, the clock."""

from __future__ import annotations

import asyncio
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from incentives.adapters.db import Pool
from incentives.app.promotions import PromotionsClient
from incentives.domain.errors import BudgetExhausted, InvalidCombination, PromotionConflict
from incentives.domain.models import CouponTerms, ReverseRequest
from incentives.domain.promotions import PoolTerms, PromotionStatus, Validity, promotion_workflow_id
from tests.helpers import eventually, running_stack
from tests.helpers.builders import NewId, credit, order, promotion
from tests.helpers.ledger import ledger_rows, remaining
from tests.helpers.processes import worker_process
from tests.helpers.promotions import customers, status_of


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
        self, dev_server: WorkflowEnvironment, pool: Pool, worker_pool: Pool, new_id: NewId
    ) -> None:
        promotion_id, audience = new_id("p"), customers(new_id, 1000)
        async with running_stack(dev_server.client, worker_pool, pool, batch_size=150) as stack:
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
        self, dev_server: WorkflowEnvironment, pool: Pool, worker_pool: Pool, new_id: NewId
    ) -> None:
        promotion_id, audience = new_id("p"), customers(new_id, 3)
        async with running_stack(dev_server.client, worker_pool, pool) as stack:
            await stack.promotions.start(promotion(promotion_id, datetime.now(UTC), amount=1000), audience)

            async def granted() -> None:
                assert (await status_of(stack, promotion_id)).granted == 3

            await eventually(granted, timeout=30)
            redemption = await stack.wallets.redeem(order(audience[0], new_id("o"), 2500))
            assert redemption.discount == 1000
            assert [row[0] for row in await ledger_rows(pool, audience[0])] == ["grant", "redeem"]
            assert (await status_of(stack, promotion_id)).redeemed == 1000

    async def test_other_terms_under_the_same_id_are_refused_before_anything_is_staged(
        self, dev_server: WorkflowEnvironment, pool: Pool, worker_pool: Pool, new_id: NewId
    ) -> None:
        promotion_id, audience = new_id("p"), customers(new_id, 3)
        async with running_stack(dev_server.client, worker_pool, pool) as stack:
            now = datetime.now(UTC)
            await stack.promotions.start(promotion(promotion_id, now, amount=1000), audience)

            async def opened() -> None:
                await status_of(stack, promotion_id)

            await eventually(opened, timeout=30)
            with pytest.raises(PromotionConflict, match="different terms"):
                await stack.promotions.start(promotion(promotion_id, now, amount=2000), audience)


class TestBudget:
    async def test_a_batch_that_meets_the_budget_grants_as_many_as_fit_in_audience_order(
        self, dev_server: WorkflowEnvironment, pool: Pool, worker_pool: Pool, new_id: NewId
    ) -> None:
        promotion_id, audience = new_id("p"), customers(new_id, 500)
        async with running_stack(dev_server.client, worker_pool, pool, batch_size=200) as stack:
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
                "SELECT payload->>'threshold' AS t FROM outbox WHERE promotion_id = $1 AND event_type = 'budget_threshold' "
                "ORDER BY event_id",
                promotion_id,
            )
            assert [row["t"] for row in thresholds] == ["50", "80"]


class TestControls:
    async def test_cancel_mid_grant_with_revoke_closes_the_promotion_with_its_final_report(
        self, dev_server: WorkflowEnvironment, pool: Pool, worker_pool: Pool, new_id: NewId
    ) -> None:
        promotion_id, audience = new_id("p"), customers(new_id, 300)
        async with running_stack(dev_server.client, worker_pool, pool, batch_size=1) as stack:
            await stack.promotions.start(promotion(promotion_id, datetime.now(UTC), amount=500), audience)

            async def granting() -> None:
                assert (await status_of(stack, promotion_id)).granted >= 5

            await eventually(granting, timeout=30)
            await stack.wallets.redeem(order(audience[0], new_id("o"), 200))
            await stack.promotions.cancel(promotion_id, revoke_outstanding=True)

            async def closed() -> PromotionStatus:
                status = await status_of(stack, promotion_id)
                assert status.state == "closed", status
                return status

            status = await eventually(closed, timeout=30)
            assert 5 <= status.granted < 300
            assert status.report is not None
            report = status.report
            assert (report.granted, report.redeemed) == (status.granted * 500, 200)
            assert (report.revoked, report.outstanding) == (status.granted * 500 - 200, 0)
            with pytest.raises(PromotionConflict):
                await stack.promotions.pause(promotion_id)

            async def searchable() -> None:
                query = f"PromotionId = '{promotion_id}' AND IncentiveState = 'closed'"
                found = [execution.id async for execution in dev_server.client.list_workflows(query)]
                assert found == [promotion_workflow_id(promotion_id)]

            await eventually(searchable)  # visibility lags the workflow a little


class TestPromotionLotsInWallets:
    async def test_a_promotion_lot_redeemed_through_a_running_wallet_then_reversed_after_it_expired(
        self, dev_server: WorkflowEnvironment, pool: Pool, worker_pool: Pool, new_id: NewId
    ) -> None:
        promotion_id, customer, order_id = new_id("p"), new_id("c"), new_id("o")
        async with running_stack(dev_server.client, worker_pool, pool) as stack:
            await stack.wallets.grant(credit(new_id("lot"), customer, 500, expires_in_days=30))  # the wallet runs
            validity = Validity(expires_after=timedelta(seconds=4))
            await stack.promotions.start(
                promotion(promotion_id, datetime.now(UTC), amount=1000, validity=validity), [customer]
            )
            lot_id = f"{promotion_id}:{customer}"

            async def granted() -> None:
                assert (await status_of(stack, promotion_id)).granted == 1

            await eventually(granted, timeout=30)
            redemption = await stack.wallets.redeem(order(customer, order_id, 300))
            assert [(part.lot_id, part.amount) for part in redemption.applied] == [(lot_id, 300)]  # expires first

            async def expired() -> None:
                assert await remaining(pool, lot_id) == (0, "expired")

            await eventually(expired, timeout=30)
            reversal = await stack.wallets.reverse(
                ReverseRequest(customer_id=customer, order_id=order_id, reversal_id="r1")
            )
            assert [(part.lot_id, part.amount) for part in reversal.written_off] == [(lot_id, 300)]
            rows = [(t, amount) for t, lot, amount, _ in await ledger_rows(pool, customer) if lot == lot_id]
            assert rows == [("grant", 1000), ("redeem", -300), ("expire", -700), ("reverse", 300), ("expire", -300)]
            assert await remaining(pool, lot_id) == (0, "expired")


class TestPool:
    async def test_two_promotions_racing_on_one_pool_never_exceed_its_cap(
        self, dev_server: WorkflowEnvironment, pool: Pool, worker_pool: Pool, new_id: NewId
    ) -> None:
        pool_terms = PoolTerms(pool_id=new_id("pool"), amount=50 * 1000)
        first, second = new_id("p"), new_id("p")
        async with running_stack(dev_server.client, worker_pool, pool, batch_size=5) as stack:
            now = datetime.now(UTC)
            await asyncio.gather(
                stack.promotions.start(promotion(first, now, amount=1000, pool=pool_terms), customers(new_id, 40)),
                stack.promotions.start(promotion(second, now, amount=1000, pool=pool_terms), customers(new_id, 40)),
            )

            async def both_done() -> tuple[PromotionStatus, PromotionStatus]:
                statuses = (await status_of(stack, first), await status_of(stack, second))
                assert all(status.processed == 40 for status in statuses), statuses
                return statuses

            statuses = await eventually(both_done, timeout=30)
            assert sum(status.granted for status in statuses) == 50
            assert sum(status.skipped.get("pool", 0) for status in statuses) == 30  # the pool cap, not their budgets
            assert (
                await pool.fetchval(
                    "SELECT committed_minor FROM promotion_pools WHERE pool_id = $1", pool_terms.pool_id
                )
                == 50 * 1000
            )
            with pytest.raises(InvalidCombination, match=r"budget\.pool\.amount"):
                await stack.promotions.start(
                    promotion(new_id("p"), now, pool=PoolTerms(pool_id=pool_terms.pool_id, amount=1)), ["x"]
                )


class TestCouponBudget:
    async def test_a_coupon_over_its_promotions_budget_is_refused_at_checkout_and_a_reversal_gives_it_back(
        self, dev_server: WorkflowEnvironment, pool: Pool, worker_pool: Pool, new_id: NewId
    ) -> None:
        promotion_id, audience = new_id("p"), customers(new_id, 3)
        terms = CouponTerms(percent_off=20, cap=1500)
        async with running_stack(dev_server.client, worker_pool, pool) as stack:
            await stack.promotions.start(
                promotion(promotion_id, datetime.now(UTC), amount=None, coupon_terms=terms, budget=2500), audience
            )

            async def granted() -> None:
                assert (await status_of(stack, promotion_id)).granted == 3

            await eventually(granted, timeout=30)
            coupon_of = {c: f"{promotion_id}:{c}" for c in audience}
            first = new_id("o")
            await stack.wallets.redeem(order(audience[0], first, 10_000, coupon_lot_id=coupon_of[audience[0]]))
            with pytest.raises(BudgetExhausted):
                await stack.wallets.redeem(
                    order(audience[1], new_id("o"), 10_000, coupon_lot_id=coupon_of[audience[1]])
                )
            await stack.wallets.redeem(order(audience[1], new_id("o"), 5_000, coupon_lot_id=coupon_of[audience[1]]))
            assert (await status_of(stack, promotion_id)).committed == 2500
            await stack.wallets.reverse(ReverseRequest(customer_id=audience[0], order_id=first, reversal_id="r"))
            assert (await status_of(stack, promotion_id)).committed == 1000
            await stack.wallets.redeem(order(audience[2], new_id("o"), 5_000, coupon_lot_id=coupon_of[audience[2]]))
            assert (await status_of(stack, promotion_id)).committed == 2000


class TestAudience:
    async def test_per_customer_limit_and_an_audience_added_while_granting(
        self, dev_server: WorkflowEnvironment, pool: Pool, worker_pool: Pool, new_id: NewId
    ) -> None:
        once, twice = new_id("p"), new_id("p")
        audience = customers(new_id, 300)
        async with running_stack(dev_server.client, worker_pool, pool, batch_size=20) as stack:
            now = datetime.now(UTC)
            await stack.promotions.start(promotion(once, now), audience)
            await stack.promotions.start(promotion(twice, now, per_customer=2), audience)

            async def opened() -> None:
                await status_of(stack, once)
                await status_of(stack, twice)

            await eventually(opened, timeout=30)
            extra = [*audience[:5], *customers(new_id, 5)]
            await stack.promotions.add_audience(once, extra)
            await stack.promotions.add_audience(twice, extra)

            async def done() -> tuple[PromotionStatus, PromotionStatus]:
                statuses = (await status_of(stack, once), await status_of(stack, twice))
                assert all(s.processed == 310 and s.state == "active" for s in statuses), statuses
                return statuses

            limited, doubled = await eventually(done, timeout=30)
            assert (limited.granted, limited.skipped) == (305, {"per_customer": 5})
            assert (doubled.granted, doubled.skipped) == (310, {})
            assert await remaining(pool, f"{twice}@2:{audience[0]}") == (1000, "active")


class TestPauseAndCancel:
    async def test_pause_stops_granting_until_resumed_and_cancel_leaves_lots_to_live_out_their_validity(
        self, dev_server: WorkflowEnvironment, pool: Pool, worker_pool: Pool, new_id: NewId
    ) -> None:
        promotion_id, audience = new_id("p"), customers(new_id, 400)
        async with running_stack(dev_server.client, worker_pool, pool, batch_size=1) as stack:
            await stack.promotions.start(promotion(promotion_id, datetime.now(UTC)), audience)

            async def granting() -> None:
                assert (await status_of(stack, promotion_id)).granted >= 5

            await eventually(granting, timeout=30)
            paused = await stack.promotions.pause(promotion_id)
            assert paused.state == "paused"
            held = (await status_of(stack, promotion_id)).processed
            handle = dev_server.client.get_workflow_handle(promotion_workflow_id(promotion_id))
            assert not (await handle.describe()).raw_description.pending_activities  # no batch in flight
            batches = await _batches_scheduled(handle)
            # Another workflow task (a second pause, answered "already paused"): a promotion still
            # granting would schedule its next batch in it; a paused one schedules nothing.
            assert (await stack.promotions.pause(promotion_id)).effect == "already paused"
            assert await _batches_scheduled(handle) == batches
            assert (await status_of(stack, promotion_id)).processed == held
            assert (await stack.promotions.resume(promotion_id)).state == "granting"

            async def more() -> None:
                assert (await status_of(stack, promotion_id)).processed > held + 5

            await eventually(more, timeout=30)
            cancelled = await stack.promotions.cancel(promotion_id)
            assert cancelled.state == "cancelled"
            status = await status_of(stack, promotion_id)
            assert 0 < status.granted < 400
            assert status.state == "cancelled"
            live = await pool.fetchval(
                "SELECT count(*) FROM lots WHERE clock_workflow_id = $1 AND status = 'active'",
                promotion_workflow_id(promotion_id),
            )
            assert live == status.granted


class TestScaleAndCrashes:
    async def test_twenty_thousand_customers_with_exact_ledger_totals(
        self, dev_server: WorkflowEnvironment, pool: Pool, worker_pool: Pool, new_id: NewId
    ) -> None:
        promotion_id, audience = new_id("p"), customers(new_id, 20_000)
        async with running_stack(dev_server.client, worker_pool, pool, batch_size=5_000) as stack:
            await stack.promotions.start(promotion(promotion_id, datetime.now(UTC), amount=1234), audience)

            async def done() -> PromotionStatus:
                status = await status_of(stack, promotion_id)
                assert status.state == "active", status
                return status

            status = await eventually(done, timeout=60)
            assert (status.granted, status.committed, status.skipped) == (20_000, 20_000 * 1234, {})
            assert await grant_totals(pool, promotion_id) == (20_000, 20_000 * 1234, 20_000)
            per_customer = await pool.fetchval(
                "SELECT count(DISTINCT customer_id) FROM lots WHERE clock_workflow_id = $1",
                promotion_workflow_id(promotion_id),
            )
            assert per_customer == 20_000

    async def test_a_worker_killed_mid_batch_ends_with_every_customer_granted_exactly_once(
        self, dev_server: WorkflowEnvironment, pool: Pool, database_url: str, new_id: NewId, tmp_path: Path
    ) -> None:
        promotion_id, audience, task_queue = new_id("p"), customers(new_id, 3_000), new_id("kill")
        promotions = PromotionsClient(dev_server.client, pool, task_queue=task_queue, batch_size=1_000)
        log = tmp_path / "worker.log"
        async with worker_process(dev_server, database_url, task_queue, log) as doomed, pool.acquire() as blocker:
            # An uncommitted lot with the id the second batch will write: that batch stops inside
            # its statement, waiting to learn whether the id is taken, while the first commits.
            blocking = blocker.transaction()
            await blocking.start()
            await blocker.execute(
                """INSERT INTO lots (lot_id, customer_id, kind, currency, amount_minor, remaining_minor, status,
                                     granted_at, grant_digest, clock_workflow_id)
                   VALUES ($1, $2, 'credit', 'USD', 1, 1, 'active', now(), 'blocker', 'blocker')""",
                f"{promotion_id}:{audience[1_500]}",
                audience[1_500],
            )
            await promotions.start(promotion(promotion_id, datetime.now(UTC)), audience)

            async def first_committed_second_waiting() -> None:
                waiting = await pool.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%audience%'"
                )
                assert waiting >= 1
                recorded = "SELECT count(*) FROM promotion_batches WHERE promotion_id = $1"
                assert await pool.fetchval(recorded, promotion_id) == 1

            await eventually(first_committed_second_waiting, timeout=30)
            doomed.send_signal(signal.SIGKILL)
            await doomed.wait()
            await blocking.rollback()
        async with worker_process(dev_server, database_url, task_queue, log):

            async def done() -> PromotionStatus:
                status = await promotions.status(promotion_id)
                assert status.state == "active", status
                return status

            status = await eventually(done, timeout=90)
        assert (status.granted, status.processed) == (3_000, 3_000)
        assert await grant_totals(pool, promotion_id) == (3_000, 3_000 * 1000, 3_000)
        assert await pool.fetchval("SELECT count(*) FROM promotion_batches WHERE promotion_id = $1", promotion_id) == 3


async def _batches_scheduled(handle: WorkflowHandle[Any, Any]) -> int:
    history = await handle.fetch_history()
    return sum(
        event.activity_task_scheduled_event_attributes.activity_type.name == "grant_batch"
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    )
