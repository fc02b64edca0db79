"""A Postgres outage is never an answer: a redeem that meets one waits for the ledger, its caller
is told `OutcomeUnknown` meanwhile, and the retried order completes once when Postgres is back.

The outage needs a Postgres of its own (stopping the session's would break every other test), so
this module starts one on a temporary directory, with its own pool and its own worker; the
Temporal dev server is the session's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from incentives.adapters.db import Pool, create_pool
from incentives.adapters.migrations import migrate
from incentives.adapters.rows import redemption_from_row
from incentives.devstack.servers import EmbeddedPostgres
from incentives.domain.errors import OutcomeUnknown
from tests.helpers import running_wallets
from tests.helpers.builders import NewId, credit, order
from tests.helpers.ledger import assert_ledger_balances, ledger_rows, remaining

# What the issue measured poisoning an order id (~25 s) with room to spare.
OUTAGE = timedelta(seconds=60)
# A checkout's own deadline while the ledger is down: short, so it retries several times.
CALLER_DEADLINE = timedelta(seconds=10)


@dataclass(frozen=True)
class OwnPostgres:
    server: EmbeddedPostgres
    pool: Pool


@pytest.fixture
async def own_postgres(tmp_path: Path) -> AsyncIterator[OwnPostgres]:
    server = EmbeddedPostgres(tmp_path / "pg")
    await asyncio.to_thread(server.start)
    try:
        await server.create_database()
        pool = await create_pool(server.url(), max_size=4)
        try:
            await migrate(pool)
            yield OwnPostgres(server, pool)
        finally:
            await pool.close()
    finally:
        await asyncio.to_thread(server.stop)


class TestPostgresOutage:
    async def test_a_redeem_during_a_60s_outage_completes_once_when_postgres_returns(
        self, dev_server: WorkflowEnvironment, own_postgres: OwnPostgres, new_id: NewId
    ) -> None:
        customer, lot_id, order_id = new_id("c"), new_id("lot"), new_id("o")
        pool = own_postgres.pool
        request = order(customer, order_id, 300)
        async with running_wallets(dev_server.client, pool) as wallets:
            await wallets.grant(credit(lot_id, customer, 1000))
            await asyncio.to_thread(own_postgres.server.stop)
            outage_ends = time.monotonic() + OUTAGE.total_seconds()
            # The checkout retries with the same ids for the whole outage; each attempt re-attaches
            # to the one Update, whose ledger call keeps retrying, and is told OutcomeUnknown.
            unknown = 0
            while (left := outage_ends - time.monotonic()) > 0:
                with pytest.raises(OutcomeUnknown, match="retrying with the same ids is safe"):
                    await wallets.redeem(request, timeout=min(CALLER_DEADLINE, timedelta(seconds=left)))
                unknown += 1
            await asyncio.to_thread(own_postgres.server.start)
            # The pool reconnects on its own: the retry gets the ledger's one result.
            redemption = await wallets.redeem(request, timeout=timedelta(seconds=60))
            again = await wallets.redeem(request)
        assert unknown >= OUTAGE // CALLER_DEADLINE
        assert again == redemption
        assert (redemption.discount, redemption.to_pay) == (300, 0)
        assert [(r[0], r[2], r[3]) for r in await ledger_rows(pool, customer)] == [
            ("grant", 1000, None),
            ("redeem", -300, order_id),
        ]
        assert await remaining(pool, lot_id) == (700, "active")
        rows = await pool.fetch("SELECT * FROM redemptions WHERE customer_id = $1", customer)
        assert [redemption_from_row(row) for row in rows] == [redemption]
        await assert_ledger_balances(pool, customer)
