"""A promotion's whole life in skipped time: scheduled, granting, reminders, expiry, end, report."""

from __future__ import annotations

from datetime import UTC, timedelta

from temporalio.testing import WorkflowEnvironment

from incentives.adapters.db import Pool
from incentives.domain.promotions import PromotionFigures, PromotionStatus, Validity
from tests.helpers import eventually, running_stack
from tests.helpers.builders import NewId, order, promotion
from tests.helpers.promotions import customers, status_of

DAY = timedelta(days=1)


async def outbox_counts(pool: Pool, promotion_id: str) -> dict[str, int]:
    rows = await pool.fetch(
        "SELECT event_type, count(*) AS n FROM outbox WHERE promotion_id = $1 GROUP BY event_type", promotion_id
    )
    return {row["event_type"]: row["n"] for row in rows}


class TestPromotionClock:
    async def test_from_start_to_close_the_timers_remind_expire_and_the_report_matches_the_ledger(
        self, time_skipping: WorkflowEnvironment, pool: Pool, worker_pool: Pool, new_id: NewId
    ) -> None:
        promotion_id, audience = new_id("p"), customers(new_id, 30)
        start = (await time_skipping.get_current_time()).astimezone(UTC) + DAY
        validity = Validity(effective_after=DAY, expires_after=15 * DAY, remind_before=2 * DAY)
        async with running_stack(time_skipping.client, worker_pool, pool, batch_size=7) as stack:
            await stack.promotions.start(
                promotion(promotion_id, start, amount=1000, validity=validity, lasts=20 * DAY), audience
            )

            async def scheduled() -> None:
                assert (await status_of(stack, promotion_id)).state == "scheduled"

            await eventually(scheduled)
            await time_skipping.sleep(DAY + timedelta(minutes=1))

            async def granted_pending() -> None:
                status = await status_of(stack, promotion_id)
                assert (status.state, status.granted) == ("active", 30), status
                assert await outbox_counts(pool, promotion_id) == {"granted": 30}

            await eventually(granted_pending)
            await time_skipping.sleep(DAY)

            async def activated() -> None:
                assert (await outbox_counts(pool, promotion_id)).get("activated") == 30

            await eventually(activated)
            await stack.wallets.redeem(order(audience[0], new_id("o"), 1000))  # uses the whole lot
            await stack.wallets.redeem(order(audience[1], new_id("o"), 400))
            await time_skipping.sleep(12 * DAY)

            async def reminded() -> None:
                assert (await outbox_counts(pool, promotion_id)).get("reminder") == 29  # not the used-up lot

            await eventually(reminded)
            await time_skipping.sleep(2 * DAY)

            async def expired() -> None:
                assert (await outbox_counts(pool, promotion_id)).get("expired") == 29

            await eventually(expired)
            await time_skipping.sleep(5 * DAY)

            async def closed() -> PromotionStatus:
                status = await status_of(stack, promotion_id)
                assert status.state == "closed", status
                return status

            status = await eventually(closed)
            assert status.report == PromotionFigures(
                promotion_id=promotion_id,
                currency="USD",
                customers_granted=30,
                lots_granted=30,
                granted=30_000,
                redeemed=1_400,
                reversed=0,
                expired=28_600,
                revoked=0,
                outstanding=0,
                coupon_uses_left=0,
            )
            history_length = (
                await time_skipping.client.get_workflow_handle(f"promotion:{promotion_id}").describe()
            ).raw_description.workflow_execution_info.history_length
            assert history_length < 150  # five batches, four ticks, five states: none of it per customer
