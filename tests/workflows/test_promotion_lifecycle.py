"""A promotion a product team can't break: what happens to value reversed after it closes, a batch
the database refuses, controls racing each other and batches in flight, starts racing each other,
refused controls, and a spec without a schedule."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from temporalio.testing import WorkflowEnvironment

from incentives.adapters.db import Pool
from incentives.app.audience import stage_audience
from incentives.app.history import runs, timeline
from incentives.app.reconcile import reconcile
from incentives.domain.errors import PromotionConflict
from incentives.domain.models import ReverseRequest
from incentives.domain.promotions import PromotionStatus, Validity
from tests.helpers import Stack, eventually, running_stack
from tests.helpers.builders import NewId, order, promotion
from tests.helpers.ledger import remaining
from tests.helpers.promotions import customers, status_of

DAY = timedelta(days=1)


async def state_is(stack: Stack, promotion_id: str, state: str, timeout: float = 30) -> PromotionStatus:
    async def reached() -> PromotionStatus:
        status = await status_of(stack, promotion_id)
        assert status.state == state, status
        return status

    return await eventually(reached, timeout=timeout)


async def lot_rows(pool: Pool, lot_id: str) -> list[tuple[str, int]]:
    rows = await pool.fetch(
        "SELECT entry_type, amount_minor FROM ledger_entries WHERE lot_id = $1 ORDER BY entry_id", lot_id
    )
    return [(row["entry_type"], row["amount_minor"]) for row in rows]


async def books_agree(stack: Stack, pool: Pool, promotion_id: str) -> None:
    """The stored final report, the report from the ledger and reconcile all say the same."""
    status = await status_of(stack, promotion_id)
    figures, final = await stack.promotions.report(promotion_id)
    assert final
    assert status.report == figures
    books = await reconcile(pool, promotion=promotion_id)
    assert books.ok, books.violations


class TestReversalAfterClose:
    async def test_after_cancel_with_revocation_it_is_written_off_and_the_books_agree(
        self, dev_server: WorkflowEnvironment, pool: Pool, worker_pool: Pool, new_id: NewId
    ) -> None:
        promotion_id, customer, order_id = new_id("p"), new_id("c"), new_id("o")
        lot_id = f"{promotion_id}:{customer}"
        async with running_stack(dev_server.client, worker_pool, pool) as stack:
            await stack.promotions.start(promotion(promotion_id, datetime.now(UTC), amount=100), [customer])
            await state_is(stack, promotion_id, "active")
            await stack.wallets.redeem(order(customer, order_id, 100))  # the whole lot: it is used up
            await stack.promotions.cancel(promotion_id, revoke_outstanding=True)
            await state_is(stack, promotion_id, "closed")
            reversal = await stack.wallets.reverse(
                ReverseRequest(customer_id=customer, order_id=order_id, reversal_id=new_id("r"))
            )
            assert [part.lot_id for part in reversal.written_off] == [lot_id]
            assert await remaining(pool, lot_id) == (0, "revoked")
            assert await lot_rows(pool, lot_id) == [
                ("grant", 100),
                ("redeem", -100),
                ("revoke", 0),  # revoking the outstanding lots takes the used-up one too
                ("reverse", 100),
                ("revoke", -100),  # and what came back leaves at once
            ]
            figures, _ = await stack.promotions.report(promotion_id)
            assert (figures.reversed, figures.revoked, figures.outstanding) == (100, 100, 0)
            await books_agree(stack, pool, promotion_id)

    async def test_a_lot_of_a_promotion_closed_before_the_rule_is_written_off_when_reversed_into(
        self, dev_server: WorkflowEnvironment, pool: Pool, worker_pool: Pool, new_id: NewId
    ) -> None:
        """A promotion closed while one of its lots was used up but not expired (as before this
        rule): a reversal into that lot is written off at once; its clock has stopped."""
        promotion_id, customer, order_id = new_id("p"), new_id("c"), new_id("o")
        lot_id = f"{promotion_id}:{customer}"
        async with running_stack(dev_server.client, worker_pool, pool) as stack:
            await stack.promotions.start(promotion(promotion_id, datetime.now(UTC), amount=100), [customer])
            await state_is(stack, promotion_id, "active")
            await stack.wallets.redeem(order(customer, order_id, 100))
            await stack.promotions.cancel(promotion_id)  # no revocation: the used-up lot stays used up
            await pool.execute(  # what the promotion would have done before: closed with a final report
                "UPDATE promotions SET state = 'closed', report = report || '{\"final\": true}' WHERE promotion_id = $1",
                promotion_id,
            )
            await dev_server.client.get_workflow_handle(f"promotion:{promotion_id}").terminate("closed by the old rule")
            await pool.execute(
                """UPDATE promotions SET report = jsonb_build_object('promotion_id', promotion_id, 'currency', 'USD',
                       'customers_granted', 1, 'lots_granted', 1, 'granted', 100, 'redeemed', 100, 'reversed', 0,
                       'expired', 0, 'revoked', 0, 'outstanding', 0, 'coupon_uses_left', 0)
                   WHERE promotion_id = $1""",
                promotion_id,
            )
            reversal = await stack.wallets.reverse(
                ReverseRequest(customer_id=customer, order_id=order_id, reversal_id=new_id("r"))
            )
            assert [part.lot_id for part in reversal.written_off] == [lot_id]
            assert await remaining(pool, lot_id) == (0, "expired")
            reason = await pool.fetchval(
                "SELECT reason FROM ledger_entries WHERE lot_id = $1 AND entry_type = 'expire'", lot_id
            )
            assert reason == "reversed into a lot whose promotion has closed"
            await books_agree(stack, pool, promotion_id)


class TestClosingWaitsForLotsThatCanGetValueBack:
    async def test_a_used_up_lot_keeps_the_promotion_open_until_it_expires(
        self, time_skipping: WorkflowEnvironment, pool: Pool, worker_pool: Pool, new_id: NewId
    ) -> None:
        promotion_id, customer, order_id = new_id("p"), new_id("c"), new_id("o")
        lot_id = f"{promotion_id}:{customer}"
        start = (await time_skipping.get_current_time()).astimezone(UTC)
        terms = promotion(promotion_id, start, amount=100, lasts=DAY, validity=Validity(expires_after=3 * DAY))
        async with running_stack(time_skipping.client, worker_pool, pool) as stack:
            await stack.promotions.start(terms, [customer])
            await state_is(stack, promotion_id, "active")
            await stack.wallets.redeem(order(customer, order_id, 100))
            await time_skipping.sleep(DAY + timedelta(hours=12))
            await state_is(stack, promotion_id, "ended")  # not closed: a refund could bring value back
            partial = ReverseRequest(customer_id=customer, order_id=order_id, reversal_id=new_id("r"), amount=40)
            assert not (await stack.wallets.reverse(partial)).written_off
            assert await remaining(pool, lot_id) == (40, "active")
            await time_skipping.sleep(2 * DAY)
            await state_is(stack, promotion_id, "closed")  # the lot's clock expired it, then it closed
            assert await remaining(pool, lot_id) == (0, "expired")
            rest = ReverseRequest(customer_id=customer, order_id=order_id, reversal_id=new_id("r"))
            assert [part.amount for part in (await stack.wallets.reverse(rest)).written_off] == [60]
            figures, _ = await stack.promotions.report(promotion_id)
            assert (figures.reversed, figures.expired, figures.outstanding) == (100, 100, 0)
            await books_agree(stack, pool, promotion_id)


class TestNoSchedule:
    async def test_it_starts_at_once_and_ends_when_its_last_lot_closes(
        self, time_skipping: WorkflowEnvironment, pool: Pool, worker_pool: Pool, new_id: NewId
    ) -> None:
        promotion_id, audience = new_id("p"), customers(new_id, 3)
        terms = promotion(promotion_id, datetime.now(UTC), amount=100, validity=Validity(expires_after=2 * DAY))
        terms = terms.model_copy(update={"starts_at": None, "ends_at": None})
        async with running_stack(time_skipping.client, worker_pool, pool) as stack:
            await stack.promotions.start(terms, audience)
            status = await state_is(stack, promotion_id, "active")
            assert (status.granted, status.ends_at) == (3, None)
            await time_skipping.sleep(2 * DAY + timedelta(hours=1))
            status = await state_is(stack, promotion_id, "closed")
            assert status.report is not None
            assert (status.report.expired, status.report.outstanding) == (300, 0)


class TestFailedBatch:
    async def test_a_batch_the_database_refuses_stops_as_failed_and_cancel_still_works(
        self, dev_server: WorkflowEnvironment, pool: Pool, worker_pool: Pool, new_id: NewId
    ) -> None:
        promotion_id, audience = new_id("p"), customers(new_id, 6)
        poison = audience[3]
        constraint = f"refuse_{promotion_id.replace('-', '_')}"
        await pool.execute(f"ALTER TABLE lots ADD CONSTRAINT {constraint} CHECK (customer_id <> '{poison}') NOT VALID")
        try:
            async with running_stack(dev_server.client, worker_pool, pool, batch_size=2) as stack:
                await stack.promotions.start(promotion(promotion_id, datetime.now(UTC), amount=100), audience)
                status = await state_is(stack, promotion_id, "failed")
                assert status.failure is not None
                assert constraint in status.failure
                assert status.granted == 2  # the first batch; the second was refused, nothing after it ran
                said = await _history(dev_server, promotion_id)
                assert any(line.startswith("grant_batch failed: the database refused") for line in said), said
                assert "state: failed" in said
                cancelled = await stack.promotions.cancel(promotion_id, revoke_outstanding=True)
                assert cancelled.effect == "cancelled; outstanding lots revoked"
                status = await state_is(stack, promotion_id, "closed")
                assert status.failure is not None  # still says why granting stopped
        finally:
            await pool.execute(f"ALTER TABLE lots DROP CONSTRAINT {constraint}")


class TestControlsAndBatchesInFlight:
    async def test_a_cancel_stops_a_stuck_batch_whose_transaction_is_then_gone(
        self, dev_server: WorkflowEnvironment, pool: Pool, worker_pool: Pool, new_id: NewId
    ) -> None:
        promotion_id, audience = new_id("p"), customers(new_id, 5)
        starts_at = datetime.now(UTC) + timedelta(seconds=2)
        async with running_stack(dev_server.client, worker_pool, pool) as stack, pool.acquire() as blocker:
            await stack.promotions.start(promotion(promotion_id, starts_at, amount=100), audience)
            await state_is(stack, promotion_id, "scheduled")
            blocking = blocker.transaction()
            await blocking.start()  # the batch's own record waits for this uncommitted one
            await blocker.execute(
                """INSERT INTO promotion_batches (promotion_id, first_position, last_position, wave, outcome)
                   VALUES ($1, 1, 1, now(), '{}')""",
                promotion_id,
            )
            await eventually(lambda: _batch_waits(pool, promotion_id, waiting=True), timeout=30)
            cancelled = await stack.promotions.cancel(promotion_id)
            assert (cancelled.effect, cancelled.state) == ("cancelled", "cancelled")
            await eventually(lambda: _batch_waits(pool, promotion_id, waiting=False), timeout=10)
            await blocking.rollback()
            await state_is(stack, promotion_id, "closed")
            assert await pool.fetchval("SELECT count(*) FROM lots WHERE promotion_id = $1", promotion_id) == 0

    async def test_each_control_says_what_it_did(
        self, dev_server: WorkflowEnvironment, pool: Pool, worker_pool: Pool, new_id: NewId
    ) -> None:
        promotion_id = new_id("p")
        async with running_stack(dev_server.client, worker_pool, pool) as stack:
            await stack.promotions.start(promotion(promotion_id, datetime.now(UTC), amount=100), [new_id("c")])
            await state_is(stack, promotion_id, "active")
            controls = stack.promotions
            effects = [
                (await controls.pause(promotion_id)).effect,
                (await controls.pause(promotion_id)).effect,
                (await controls.resume(promotion_id)).effect,
                (await controls.resume(promotion_id)).effect,
                (await controls.cancel(promotion_id)).effect,
            ]
            assert effects == [
                "paused",
                "already paused",
                "resumed",
                "not paused (it was active): nothing to resume",
                "cancelled",
            ]

    async def test_racing_controls_each_answer_truly(
        self, dev_server: WorkflowEnvironment, pool: Pool, worker_pool: Pool, new_id: NewId
    ) -> None:
        """A control's answer never claims a state it did not leave the promotion in: when a later
        control changed it, the effect says so."""
        promotion_id = new_id("p")
        async with running_stack(dev_server.client, worker_pool, pool) as stack:
            await stack.promotions.start(promotion(promotion_id, datetime.now(UTC), amount=100), [new_id("c")])
            await state_is(stack, promotion_id, "active")
            for _ in range(5):
                paused, resumed = await asyncio.gather(
                    stack.promotions.pause(promotion_id), stack.promotions.resume(promotion_id)
                )
                for answer, own in ((paused, "paused"), (resumed, "active")):
                    if "superseded" not in answer.effect and answer.effect in ("paused", "resumed"):
                        assert answer.state == own, answer
                    if "superseded" in answer.effect:
                        assert answer.state != own, answer
            final = await stack.promotions.resume(promotion_id)
            assert final.state == "active"


async def _history(env: WorkflowEnvironment, promotion_id: str) -> list[str]:
    """What `incentives history promotion:<id>` says, line by line."""
    return [
        entry.text
        for run_id, history in await runs(env.client, f"promotion:{promotion_id}")
        for entry in timeline(history, run_id)
    ]


async def _batch_waits(pool: Pool, promotion_id: str, *, waiting: bool) -> None:
    """Whether a backend is waiting on a lock while writing this promotion's batch record."""
    count = await pool.fetchval(
        """SELECT count(*) FROM pg_stat_activity
           WHERE wait_event_type = 'Lock' AND query LIKE '%INSERT INTO promotion_batches%'
             AND state = 'active'"""
    )
    assert (count > 0) == waiting, (promotion_id, count)


class TestStarts:
    @pytest.mark.parametrize("trial", range(4))
    async def test_concurrent_starts_of_different_specs_under_one_id_refuse_all_but_one(
        self, dev_server: WorkflowEnvironment, pool: Pool, worker_pool: Pool, new_id: NewId, trial: int
    ) -> None:
        promotion_id, audience, now = new_id("p"), customers(new_id, 3), datetime.now(UTC)
        async with running_stack(dev_server.client, worker_pool, pool) as stack:
            answers = await asyncio.gather(
                stack.promotions.start(promotion(promotion_id, now, amount=100), audience),
                stack.promotions.start(promotion(promotion_id, now, amount=500), audience),
                return_exceptions=True,
            )
            started = [answer for answer in answers if not isinstance(answer, BaseException)]
            refused = [answer for answer in answers if isinstance(answer, PromotionConflict)]
            assert (len(started), len(refused)) == (1, 1), answers
            assert started[0].started
            status = await state_is(stack, promotion_id, "active")
            winner = answers.index(started[0])
            assert status.committed == 3 * (100, 500)[winner]

    async def test_concurrent_starts_of_one_spec_start_it_once_and_say_so(
        self, dev_server: WorkflowEnvironment, pool: Pool, worker_pool: Pool, new_id: NewId
    ) -> None:
        promotion_id, audience = new_id("p"), customers(new_id, 3)
        terms = promotion(promotion_id, datetime.now(UTC), amount=100)
        async with running_stack(dev_server.client, worker_pool, pool) as stack:
            answers = await asyncio.gather(*(stack.promotions.start(terms, audience) for _ in range(3)))
            assert sorted(answer.started for answer in answers) == [False, False, True]
            assert len({answer.run_id for answer in answers}) == 1


class TestRefusedControlsChangeNothing:
    async def test_add_audience_to_a_cancelled_promotion_stages_nothing(
        self, dev_server: WorkflowEnvironment, pool: Pool, worker_pool: Pool, new_id: NewId
    ) -> None:
        promotion_id = new_id("p")
        async with running_stack(dev_server.client, worker_pool, pool) as stack:
            await stack.promotions.start(promotion(promotion_id, datetime.now(UTC), amount=100), customers(new_id, 2))
            await state_is(stack, promotion_id, "active")
            await stack.promotions.cancel(promotion_id)
            with pytest.raises(PromotionConflict, match=r"cannot add an audience .*: it is cancelled"):
                await stack.promotions.add_audience(promotion_id, customers(new_id, 50))
            await stack.promotions.cancel(promotion_id, revoke_outstanding=True)
            await state_is(stack, promotion_id, "closed")
            with pytest.raises(PromotionConflict, match=r"cannot add an audience .*: it is closed"):
                await stack.promotions.add_audience(promotion_id, customers(new_id, 50))
            loads = await pool.fetchval(
                "SELECT count(*) FROM promotion_audience_loads WHERE promotion_id = $1", promotion_id
            )
            staged = await pool.fetchval(
                "SELECT count(*) FROM promotion_audience WHERE promotion_id = $1", promotion_id
            )
            assert (loads, staged) == (1, 2)
            assert (await status_of(stack, promotion_id)).audience == 2

    async def test_a_load_the_promotion_refuses_is_removed(
        self, dev_server: WorkflowEnvironment, pool: Pool, worker_pool: Pool, new_id: NewId
    ) -> None:
        """A load left staged by a client that died before sending it: the next load is numbered
        after it, the promotion refuses that number, and what this call staged is removed."""
        promotion_id = new_id("p")
        async with running_stack(dev_server.client, worker_pool, pool) as stack:
            await stack.promotions.start(promotion(promotion_id, datetime.now(UTC), amount=100), customers(new_id, 2))
            await state_is(stack, promotion_id, "active")
            await stage_audience(pool, promotion_id, customers(new_id, 3), first_load=False)  # never sent
            with pytest.raises(PromotionConflict, match="expected load 1"):
                await stack.promotions.add_audience(promotion_id, customers(new_id, 4))
            sizes = await pool.fetch(
                "SELECT size FROM promotion_audience_loads WHERE promotion_id = $1 ORDER BY load_no", promotion_id
            )
            assert [row["size"] for row in sizes] == [2, 3]
            assert (
                await pool.fetchval("SELECT count(*) FROM promotion_audience WHERE promotion_id = $1", promotion_id)
                == 5
            )
