"""One ledger call for the first operation of a run started without memory: a new wallet, or one
restarted after it completed. The Update that starts the run does its operation and loads the
wallet's memory in one local activity (`load_and_*`); only when the ledger refuses that operation
does the run load by itself."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from activities.ledger import LedgerActivities
from incentives.adapters.db import Pool
from incentives.domain.errors import NothingToRedeem
from incentives.domain.messages import GrantInput
from incentives.domain.models import wallet_id
from tests.helpers import eventually, running_wallets
from tests.helpers.builders import NewId, credit, order
from tests.helpers.history import ledger_calls
from tests.helpers.ledger import ledger_rows, remaining
from workflows.wallet import WalletWorkflow


class TestFirstCall:
    async def test_a_grant_into_a_new_wallet_is_one_ledger_call(
        self, dev_server: WorkflowEnvironment, worker_pool: Pool, new_id: NewId
    ) -> None:
        customer, lot_id = new_id("c"), new_id("lot")
        async with running_wallets(dev_server.client, worker_pool) as wallets:
            lot = await wallets.grant(credit(lot_id, customer, 1000))
            handle = dev_server.client.get_workflow_handle(wallet_id(customer))
            assert await handle.query(WalletWorkflow.lots) == [lot]
        assert await ledger_calls(dev_server.client, customer) == ["load_and_grant"]

    async def test_concurrent_grants_into_a_new_wallet_load_it_once(
        self, dev_server: WorkflowEnvironment, worker_pool: Pool, new_id: NewId
    ) -> None:
        customer, lots = new_id("c"), [new_id("lot") for _ in range(10)]
        async with running_wallets(dev_server.client, worker_pool) as wallets:
            granted = await asyncio.gather(*(wallets.grant(credit(lot_id, customer, 100)) for lot_id in lots))
            handle = dev_server.client.get_workflow_handle(wallet_id(customer))
            assert {lot.lot_id for lot in await handle.query(WalletWorkflow.lots)} == set(lots)
        assert [lot.lot_id for lot in granted] == lots
        calls = await ledger_calls(dev_server.client, customer)
        assert calls.count("load_and_grant") == 1
        assert "load_wallet" not in calls
        assert len(calls) == len(lots)

    async def test_a_restarted_wallet_redeems_what_the_ledger_holds_in_one_call(
        self, dev_server: WorkflowEnvironment, pool: Pool, worker_pool: Pool, new_id: NewId
    ) -> None:
        """The wallet completed; a lot was then written straight into the ledger (as a bulk grant
        does); the next redeem restarts the wallet and is answered from the ledger in one call."""
        customer, first, direct = new_id("c"), new_id("lot"), new_id("direct")
        async with running_wallets(dev_server.client, worker_pool, reversal_window=timedelta(seconds=1)) as wallets:
            await wallets.grant(credit(first, customer, 300))
            await wallets.redeem(order(customer, new_id("o"), 300))
            handle = dev_server.client.get_workflow_handle(wallet_id(customer))

            async def completed() -> None:
                assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED

            await eventually(completed)
            now = await dev_server.get_current_time()
            await LedgerActivities(pool).grant_lot(GrantInput(request=credit(direct, customer, 700), granted_at=now))
            redemption = await wallets.redeem(order(customer, new_id("o"), 500))
            lots = await handle.query(WalletWorkflow.lots)
        assert [(p.lot_id, p.amount) for p in redemption.applied] == [(direct, 500)]
        assert [(lot.lot_id, lot.remaining) for lot in lots] == [(direct, 200)]
        assert await ledger_calls(dev_server.client, customer) == ["load_and_redeem"]
        assert await remaining(pool, direct) == (200, "active")

    async def test_a_refused_first_call_loads_nothing_and_the_run_loads_by_itself(
        self, dev_server: WorkflowEnvironment, pool: Pool, worker_pool: Pool, new_id: NewId
    ) -> None:
        customer, lot_id = new_id("c"), new_id("lot")
        async with running_wallets(dev_server.client, worker_pool) as wallets:
            with pytest.raises(NothingToRedeem):
                await wallets.redeem(order(customer, new_id("o"), 500))
            handle = dev_server.client.get_workflow_handle(wallet_id(customer))
            refused_run = (await handle.describe()).run_id

            async def completed() -> None:
                assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED

            await eventually(completed)  # nothing live: the run loaded an empty wallet and closed
            lot = await wallets.grant(credit(lot_id, customer, 1000))
        assert await ledger_calls(dev_server.client, customer, refused_run) == ["load_and_redeem", "load_wallet"]
        assert lot.remaining == 1000
        assert [t for t, *_ in await ledger_rows(pool, customer)] == ["grant"]
