"""The checkout call tells the truth: the ledger decides every refusal, and the caller gets a
result, a business refusal, or `OutcomeUnknown` that a retry with the same ids resolves; never a
fourth kind of answer. Each test reproduces a defect of the wallet whose validators decided from
memory, or whose client leaked raw errors."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from temporalio.testing import WorkflowEnvironment

from activities.ledger import LedgerActivities
from benchmarks.burst import checkout_burst
from incentives.adapters.db import Pool
from incentives.app.client import IncentivesClient
from incentives.app.worker import build_worker
from incentives.domain.errors import NothingToRedeem, OutcomeUnknown, Rejected
from incentives.domain.messages import GrantInput, RedeemInput
from incentives.domain.models import CouponTerms, Redemption
from tests.helpers import running_wallets
from tests.helpers.builders import NewId, coupon, credit, order
from tests.helpers.ledger import assert_ledger_balances, ledger_rows, remaining

DAY = timedelta(days=1)


class TestTheLedgerDecides:
    async def test_a_retried_order_the_wallet_no_longer_remembers_gets_its_first_result(
        self, time_skipping: WorkflowEnvironment, pool: Pool, worker_pool: Pool, new_id: NewId
    ) -> None:
        customer, credit_id, order_id = new_id("c"), new_id("cr"), new_id("o")
        async with running_wallets(time_skipping.client, worker_pool, reversal_window=2 * DAY) as wallets:
            await wallets.grant(credit(credit_id, customer, 1000))
            # A live coupon keeps the wallet running once the order has left its memory.
            await wallets.grant(coupon(new_id("cpn"), customer, CouponTerms(amount_off=100)))
            first = await wallets.redeem(order(customer, order_id, 1000))
            await time_skipping.sleep(3 * DAY)  # past the reversal window: the wallet forgets the order
            again = await wallets.redeem(order(customer, order_id, 1000))
        assert again == first
        assert [t for t, *_ in await ledger_rows(pool, customer)] == ["grant", "grant", "redeem"]

    async def test_a_lot_written_straight_into_the_ledger_is_redeemable_at_once(
        self, dev_server: WorkflowEnvironment, pool: Pool, worker_pool: Pool, new_id: NewId
    ) -> None:
        customer, direct = new_id("c"), new_id("direct")
        async with running_wallets(dev_server.client, worker_pool) as wallets:
            await wallets.grant(coupon(new_id("cpn"), customer, CouponTerms(amount_off=100)))
            # As a promotion's batch grant does: a ledger write that does not wake the wallet.
            now = await dev_server.get_current_time()
            await LedgerActivities(pool).grant_lot(GrantInput(request=credit(direct, customer, 700), granted_at=now))
            redemption = await wallets.redeem(order(customer, new_id("o"), 500))
        assert [(p.lot_id, p.amount) for p in redemption.applied] == [(direct, 500)]
        assert await remaining(pool, direct) == (200, "active")

    async def test_a_write_whose_workflow_task_was_lost_is_answered_from_the_ledger(
        self, dev_server: WorkflowEnvironment, pool: Pool, worker_pool: Pool, new_id: NewId
    ) -> None:
        """A local activity commits, then its worker dies before the workflow task completes: the
        ledger has the redemption, the wallet's history does not. The retry re-runs the ledger call,
        whose idempotency lookup returns the first result (the SIGKILL test in
        test_wallet_integration.py kills a real worker mid-redeem)."""
        customer, lot_id, order_id = new_id("c"), new_id("lot"), new_id("o")
        async with running_wallets(dev_server.client, worker_pool) as wallets:
            await wallets.grant(credit(lot_id, customer, 1000))
            request = order(customer, order_id, 1000)
            now = await dev_server.get_current_time()
            lost = await LedgerActivities(pool).redeem(RedeemInput(request=request, as_of=now))
            retried = await wallets.redeem(request)
        assert retried == lost.redemption
        assert [t for t, *_ in await ledger_rows(pool, customer)] == ["grant", "redeem"]
        assert await remaining(pool, lot_id) == (0, "used_up")


class TestThreeKindsOfAnswer:
    async def test_with_no_worker_the_caller_is_told_outcome_unknown_and_a_retry_resolves_it(
        self, dev_server: WorkflowEnvironment, pool: Pool, worker_pool: Pool, new_id: NewId
    ) -> None:
        customer, lot_id, order_id = new_id("c"), new_id("lot"), new_id("o")
        task_queue = new_id("nobody")
        wallets = IncentivesClient(dev_server.client, pool, task_queue=task_queue)
        with pytest.raises(OutcomeUnknown, match="retrying with the same ids is safe"):
            await wallets.grant(credit(lot_id, customer, 1000), timeout=timedelta(seconds=2))
        async with build_worker(dev_server.client, worker_pool, task_queue):
            lot = await wallets.grant(credit(lot_id, customer, 1000), timeout=timedelta(seconds=30))
            redemption = await wallets.redeem(order(customer, order_id, 300))
        assert (lot.remaining, redemption.discount) == (1000, 300)
        assert [t for t, *_ in await ledger_rows(pool, customer)] == ["grant", "redeem"]

    async def test_many_concurrent_calls_past_the_in_flight_limit_are_each_answered_truly(
        self, default_limits_server: WorkflowEnvironment, pool: Pool, worker_pool: Pool, new_id: NewId
    ) -> None:
        """200 concurrent redeems on one wallet of a server allowing 10 Updates in flight: each call
        ends with its breakdown, a refusal, or OutcomeUnknown; retrying the unknown ones resolves
        them; the orders answered with a breakdown are exactly the orders the ledger charged."""
        customer, lot_id = new_id("c"), new_id("lot")
        async with running_wallets(default_limits_server.client, worker_pool) as wallets:
            await wallets.grant(credit(lot_id, customer, 10_000))
            orders = [new_id("o") for _ in range(200)]

            async def redeem(order_id: str) -> Redemption | Rejected | OutcomeUnknown:
                try:
                    return await wallets.redeem(order(customer, order_id, 70), timeout=timedelta(seconds=20))
                except (Rejected, OutcomeUnknown) as answer:
                    return answer

            answers = dict(zip(orders, await asyncio.gather(*(redeem(o) for o in orders)), strict=True))
            for order_id in [o for o, a in answers.items() if isinstance(a, OutcomeUnknown)]:
                answers[order_id] = await redeem(order_id)
        kinds = {type(answer).__name__ for answer in answers.values()}
        assert kinds <= {"Redemption", "NothingToRedeem"}, kinds
        charged = {
            r["order_id"] for r in await pool.fetch("SELECT order_id FROM redemptions WHERE customer_id = $1", customer)
        }
        assert {o for o, a in answers.items() if isinstance(a, Redemption)} == charged
        assert len(charged) == 143  # 142 orders of 70, then one that takes the last 60
        assert all(isinstance(a, NothingToRedeem) for o, a in answers.items() if o not in charged)
        await assert_ledger_balances(pool, customer)

    async def test_a_rush_of_400_concurrent_redeems_on_one_wallet_is_answered_truly(
        self, dev_server: WorkflowEnvironment, pool: Pool, worker_pool: Pool, new_id: NewId
    ) -> None:
        """Four times the server's in-flight Update limit at once (the bench's checkout rush): each
        call gets a breakdown, a refusal, or OutcomeUnknown that a retry resolves; the ledger agrees."""
        async with running_wallets(dev_server.client, worker_pool) as wallets:
            burst = await checkout_burst(wallets, pool, new_id("rush"), 400)
        assert burst.problems == []
        assert set(burst.first) <= {"redeemed", "NothingToRedeem", "OutcomeUnknown"}, burst.first
        assert set(burst.after_retry) <= {"redeemed", "NothingToRedeem"}, burst.after_retry
        assert burst.first["redeemed"] + burst.after_retry["redeemed"] == 300  # credit for 300 orders of 400
