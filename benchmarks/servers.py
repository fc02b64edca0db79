"""The servers a benchmark runs against: its own, in a scratch directory, stopped after."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from incentives.adapters.db import Pool, create_pool
from incentives.adapters.migrations import migrate
from incentives.devstack.servers import EmbeddedPostgres, start_dev_server


@dataclass(frozen=True)
class Servers:
    postgres: EmbeddedPostgres
    pool: Pool  # the owner's, at the current schema
    temporal: WorkflowEnvironment


@asynccontextmanager
async def servers(scratch: Path, *, pool_size: int = 20) -> AsyncIterator[Servers]:
    """A Postgres, migrated, with a pool of `pool_size`, and a Temporal dev server, as the embedded
    stack configures them."""
    postgres = EmbeddedPostgres(scratch / "pg")
    postgres.start()
    try:
        await postgres.create_database()
        pool = await create_pool(postgres.url(), max_size=pool_size)
        try:
            await migrate(pool)
            async with await start_dev_server() as temporal:
                yield Servers(postgres, pool, temporal)
        finally:
            await pool.close()
    finally:
        postgres.stop()
