"""The bare platform, measured beside our code in the same run: the denominators of our ratios.

- `NoopEntity`: a long-running workflow whose Update does nothing (the Update round trip), or runs
  one activity doing a redeem-shaped transaction, as a regular or a local activity (the choice we
  made for the wallet's ledger calls, measured rather than guessed).
- `bare_redeem_transaction`: the same transaction straight on asyncpg, no Temporal.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import activity, workflow

with workflow.unsafe.imports_passed_through():
    from incentives.adapters.db import Pool

PROBE_SETUP = """
CREATE TABLE IF NOT EXISTS probe_lots (lot_id text PRIMARY KEY, remaining bigint NOT NULL CHECK (remaining >= 0));
CREATE TABLE IF NOT EXISTS probe_ledger (key text PRIMARY KEY, lot_id text NOT NULL, amount bigint NOT NULL);
"""


async def bare_redeem_transaction(pool: Pool, lot_id: str, key: str) -> None:
    """A guarded decrement and a ledger row with a unique key, in one transaction: what a redeem costs Postgres."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.fetchrow(
            "UPDATE probe_lots SET remaining = remaining - 1 WHERE lot_id = $1 AND remaining >= 1 RETURNING remaining",
            lot_id,
        )
        await conn.execute(
            "INSERT INTO probe_ledger (key, lot_id, amount) VALUES ($1, $2, -1) ON CONFLICT DO NOTHING", key, lot_id
        )


class ProbeActivities:
    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    @activity.defn(name="probe_redeem")
    async def probe_redeem(self, key: str) -> None:
        await bare_redeem_transaction(self._pool, "probe", key)


@workflow.defn(name="NoopEntity")
class NoopEntity:
    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._done = False

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: self._done)

    @workflow.update
    async def noop(self, key: str) -> str:
        return key

    @workflow.update
    async def with_activity(self, key: str) -> str:
        async with self._lock:
            await workflow.execute_activity(
                "probe_redeem", key, start_to_close_timeout=timedelta(seconds=10), result_type=type(None)
            )
        return key

    @workflow.update
    async def with_local_activity(self, key: str) -> str:
        async with self._lock:
            await workflow.execute_local_activity(
                "probe_redeem", key, start_to_close_timeout=timedelta(seconds=10), result_type=type(None)
            )
        return key

    @workflow.signal
    def finish(self) -> None:
        self._done = True
