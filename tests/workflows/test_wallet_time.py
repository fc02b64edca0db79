"""The wallet in time: activation, reminders, expiry and the rules that depend on them.

These run on the time-skipping test server (which supports Updates and update-with-start), with
the real ledger activities on the real Postgres: days pass in milliseconds, the rows are real.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from incentives.adapters.db import Pool
from incentives.domain.errors import CouponNotUsable, MinimumNotMet, NothingToRedeem
from incentives.domain.models import CouponTerms, ReverseRequest, RevokeRequest, wallet_id
from tests.helpers import eventually, running_wallets
from tests.helpers.builders import NewId, coupon, credit, order
from tests.helpers.ledger import assert_ledger_balances, entry_amounts, events, ledger_rows, remaining
from workflows.wallet import WalletWorkflow

DAY = timedelta(days=1)


async def now(env: WorkflowEnvironment) -> datetime:
    return (await env.get_current_time()).astimezone(UTC)


class TestTime:
    async def test_a_pending_lot_gives_nothing_until_it_becomes_active(
        self, time_skipping: WorkflowEnvironment, pool: Pool, worker_pool: Pool, new_id: NewId
    ) -> None:
        customer, lot_id = new_id("c"), new_id("lot")
        async with running_wallets(time_skipping.client, worker_pool) as wallets:
            start = await now(time_skipping)
            lot = await wallets.grant(credit(lot_id, customer, 1000, effective_at=start + 2 * DAY))
            assert lot.status == "pending"
            with pytest.raises(NothingToRedeem):
                await wallets.redeem(order(customer, new_id("o"), 500))
            await time_skipping.sleep(2 * DAY + timedelta(minutes=1))

            async def active() -> None:
                assert await remaining(pool, lot_id) == (1000, "active")

            await eventually(active)
            redemption = await wallets.redeem(order(customer, new_id("o"), 500))
            assert redemption.discount == 500
            assert await events(pool, customer) == ["granted", "activated", "redeemed"]

    async def test_one_reminder_before_expiry_then_exactly_what_is_left_expires(
        self, time_skipping: WorkflowEnvironment, pool: Pool, worker_pool: Pool, new_id: NewId
    ) -> None:
        customer, lot_id = new_id("c"), new_id("lot")
        async with running_wallets(time_skipping.client, worker_pool) as wallets:
            await wallets.grant(credit(lot_id, customer, 1000, expires_in_days=14, remind_before=3 * DAY))
            await wallets.redeem(order(customer, new_id("o"), 333))
            await time_skipping.sleep(11 * DAY + timedelta(minutes=1))

            async def reminded() -> None:
                assert await events(pool, customer) == ["granted", "redeemed", "reminder"]

            await eventually(reminded)
            await time_skipping.sleep(3 * DAY)

            async def expired() -> None:
                assert await remaining(pool, lot_id) == (0, "expired")

            await eventually(expired)
            assert await entry_amounts(pool, customer) == [
                ("grant", 1000),
                ("redeem", -333),
                ("expire", -667),
            ]
            assert await events(pool, customer) == ["granted", "redeemed", "reminder", "expired"]
            await assert_ledger_balances(pool, customer)

    async def test_value_reversed_into_a_lot_that_expired_meanwhile_expires_again(
        self, time_skipping: WorkflowEnvironment, pool: Pool, worker_pool: Pool, new_id: NewId
    ) -> None:
        customer, lot_id, order_id = new_id("c"), new_id("lot"), new_id("o")
        async with running_wallets(time_skipping.client, worker_pool) as wallets:
            await wallets.grant(credit(lot_id, customer, 1000, expires_in_days=7))
            await wallets.redeem(order(customer, order_id, 600))
            await time_skipping.sleep(8 * DAY)

            async def expired() -> None:
                assert await remaining(pool, lot_id) == (0, "expired")

            await eventually(expired)
            reversal = await wallets.reverse(
                ReverseRequest(customer_id=customer, order_id=order_id, reversal_id=new_id("r"), amount=250)
            )
            assert [(p.lot_id, p.amount) for p in reversal.restored] == [(lot_id, 250)]
            assert [(p.lot_id, p.amount) for p in reversal.written_off] == [(lot_id, 250)]
            assert reversal.reversible_left == 350
            assert await entry_amounts(pool, customer) == [
                ("grant", 1000),
                ("redeem", -600),
                ("expire", -400),
                ("reverse", 250),
                ("expire", -250),
            ]
            await assert_ledger_balances(pool, customer)

    async def test_an_idle_wallet_completes_and_a_later_call_reloads_it_from_the_ledger(
        self, time_skipping: WorkflowEnvironment, worker_pool: Pool, new_id: NewId
    ) -> None:
        customer, short, order_id = new_id("c"), new_id("short"), new_id("o")
        async with running_wallets(time_skipping.client, worker_pool, reversal_window=10 * DAY) as wallets:
            await wallets.grant(credit(short, customer, 1000, expires_in_days=2))
            await wallets.redeem(order(customer, order_id, 400))
            handle = time_skipping.client.get_workflow_handle(wallet_id(customer))
            await time_skipping.sleep(11 * DAY)

            async def completed() -> None:
                assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED

            await eventually(completed)
            first_run = (await handle.describe()).run_id
            # A reversal long after: this client saw the wallet running, so it first sends a plain Update,
            # which finds no running run; it falls back to update-with-start: a new run, which finds the
            # order in the ledger.
            reversal = await wallets.reverse(
                ReverseRequest(customer_id=customer, order_id=order_id, reversal_id=new_id("r"))
            )
            assert reversal.amount == 400
            assert [(p.lot_id, p.amount) for p in reversal.written_off] == [(short, 400)]
            assert (await time_skipping.client.get_workflow_handle(wallet_id(customer)).describe()).run_id != first_run


class TestRulesThroughTheWallet:
    async def test_credits_go_soonest_expiry_first_across_three_lots(
        self, time_skipping: WorkflowEnvironment, worker_pool: Pool, new_id: NewId
    ) -> None:
        customer = new_id("c")
        late, never, soon = new_id("late"), new_id("never"), new_id("soon")
        async with running_wallets(time_skipping.client, worker_pool) as wallets:
            await wallets.grant(credit(late, customer, 1000, expires_in_days=30))
            await wallets.grant(credit(never, customer, 1000))
            await wallets.grant(credit(soon, customer, 1000, expires_in_days=5))
            redemption = await wallets.redeem(order(customer, new_id("o"), 2200))
            assert [(p.lot_id, p.amount) for p in redemption.applied] == [(soon, 1000), (late, 1000), (never, 200)]
            handle = time_skipping.client.get_workflow_handle(wallet_id(customer))
            assert await handle.query(WalletWorkflow.balances) == {"USD": 800}

    async def test_coupon_arithmetic_minimum_and_uses(
        self, time_skipping: WorkflowEnvironment, pool: Pool, worker_pool: Pool, new_id: NewId
    ) -> None:
        customer, percent, fixed = new_id("c"), new_id("pct"), new_id("fix")
        async with running_wallets(time_skipping.client, worker_pool) as wallets:
            await wallets.grant(coupon(percent, customer, CouponTerms(percent_off=20, cap=1500, uses=2)))
            await wallets.grant(coupon(fixed, customer, CouponTerms(amount_off=500, min_order=3000)))
            first = await wallets.redeem(order(customer, new_id("o"), 5000, coupon_lot_id=percent))
            assert (first.discount, first.to_pay) == (1000, 4000)
            capped = await wallets.redeem(order(customer, new_id("o"), 10000, coupon_lot_id=percent))
            assert (capped.discount, capped.to_pay) == (1500, 8500)
            with pytest.raises(CouponNotUsable, match="used up"):
                await wallets.redeem(order(customer, new_id("o"), 10000, coupon_lot_id=percent))
            with pytest.raises(MinimumNotMet):
                await wallets.redeem(order(customer, new_id("o"), 2999, coupon_lot_id=fixed))
            small = await wallets.redeem(order(customer, new_id("o"), 3000, coupon_lot_id=fixed))
            assert (small.discount, small.to_pay) == (500, 2500)
            assert [t for t, *_ in await ledger_rows(pool, customer)] == [
                "grant",
                "grant",
                "redeem",
                "redeem",
                "redeem",
            ]

    async def test_revoke_removes_what_is_left_and_it_gives_nothing_after(
        self, time_skipping: WorkflowEnvironment, pool: Pool, worker_pool: Pool, new_id: NewId
    ) -> None:
        customer, lot_id = new_id("c"), new_id("lot")
        async with running_wallets(time_skipping.client, worker_pool) as wallets:
            await wallets.grant(credit(lot_id, customer, 1000, expires_in_days=30))
            await wallets.redeem(order(customer, new_id("o"), 250))
            revocation = await wallets.revoke(RevokeRequest(customer_id=customer, lot_id=lot_id, reason="support #7"))
            assert revocation.amount == 750
            with pytest.raises(NothingToRedeem):
                await wallets.redeem(order(customer, new_id("o"), 100))
            assert await remaining(pool, lot_id) == (0, "revoked")
            assert await entry_amounts(pool, customer) == [
                ("grant", 1000),
                ("redeem", -250),
                ("revoke", -750),
            ]
