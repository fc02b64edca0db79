"""The worker's least-privilege role: what it may not do fails in Postgres, whatever the code asks;
what the activities do works under it (every worker the suite runs uses it)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from incentives.adapters.db import Pool
from incentives.adapters.endpoints import endpoints
from incentives.adapters.settings import WORKER_ROLE, load_settings
from incentives.devstack.servers import EmbeddedPostgres
from tests.conftest import TEST_DATABASE
from tests.helpers.builders import NewId


@pytest.fixture
async def as_worker(postgres: EmbeddedPostgres, database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(postgres.url(TEST_DATABASE, user=WORKER_ROLE))
    yield conn
    await conn.close()


async def a_ledger_row(pool: Pool, new_id: NewId) -> str:
    """A lot with its grant row, written as the owner."""
    lot_id, customer = new_id("lot"), new_id("c")
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            """INSERT INTO lots (lot_id, customer_id, kind, currency, amount_minor, remaining_minor, status,
                                 effective_at, expires_at, granted_at, grant_digest, clock_workflow_id)
               VALUES ($1, $2, 'credit', 'USD', 500, 500, 'active', now(), now() + interval '1 day', now(),
                       'digest', 'wallet:' || $2)""",
            lot_id,
            customer,
        )
        await conn.execute(
            """INSERT INTO ledger_entries (entry_type, lot_id, customer_id, amount_minor, currency)
               VALUES ('grant', $1, $2, 500, 'USD')""",
            lot_id,
            customer,
        )
    return lot_id


REFUSED = [
    pytest.param("UPDATE ledger_entries SET amount_minor = 1 WHERE lot_id = $1", id="update-ledger"),
    pytest.param("DELETE FROM ledger_entries WHERE lot_id = $1", id="delete-ledger"),
    pytest.param("DELETE FROM outbox WHERE lot_id = $1", id="delete-outbox"),
    pytest.param("DELETE FROM lots WHERE lot_id = $1", id="delete-lot"),
    pytest.param("UPDATE lots SET amount_minor = 1000000 WHERE lot_id = $1", id="update-lot-amount"),
    pytest.param("UPDATE lots SET customer_id = 'someone-else' WHERE lot_id = $1", id="update-lot-owner"),
    pytest.param("UPDATE lots SET expires_at = now() + interval '1 year' WHERE lot_id = $1", id="update-lot-expiry"),
    pytest.param(
        "INSERT INTO promotion_audience (promotion_id, position, customer_id) VALUES ($1, 1, 'c')",
        id="stage-audience",
    ),
]


class TestWorkerRole:
    @pytest.mark.parametrize("statement", REFUSED)
    async def test_what_no_activity_does_is_refused_and_changes_nothing(
        self, as_worker: asyncpg.Connection, pool: Pool, new_id: NewId, statement: str
    ) -> None:
        lot_id = await a_ledger_row(pool, new_id)
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await as_worker.execute(statement, lot_id)
        assert await pool.fetchval("SELECT amount_minor FROM ledger_entries WHERE lot_id = $1", lot_id) == 500
        assert await pool.fetchval("SELECT amount_minor FROM lots WHERE lot_id = $1", lot_id) == 500

    @pytest.mark.parametrize(
        "statement",
        [
            "CREATE TABLE worker_made (x int)",
            "DROP TABLE ledger_entries",
            "ALTER TABLE lots DROP CONSTRAINT lots_remaining_within_amount",
            "TRUNCATE outbox",
        ],
    )
    async def test_no_ddl(self, as_worker: asyncpg.Connection, statement: str) -> None:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await as_worker.execute(statement)

    async def test_a_transition_the_activities_make_is_allowed(
        self, as_worker: asyncpg.Connection, pool: Pool, new_id: NewId
    ) -> None:
        lot_id = await a_ledger_row(pool, new_id)
        async with as_worker.transaction():
            await as_worker.execute("SELECT * FROM lots WHERE lot_id = $1 FOR UPDATE", lot_id)
            await as_worker.execute("UPDATE lots SET remaining_minor = remaining_minor - 200 WHERE lot_id = $1", lot_id)
            await as_worker.execute(
                """INSERT INTO ledger_entries (entry_type, lot_id, customer_id, order_id, amount_minor, currency)
                   SELECT 'redeem', lot_id, customer_id, 'o-1', -200, currency FROM lots WHERE lot_id = $1""",
                lot_id,
            )
        assert await pool.fetchval("SELECT remaining_minor FROM lots WHERE lot_id = $1", lot_id) == 300

    async def test_the_embedded_worker_logs_in_as_the_role_and_another_server_needs_it_named(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv("DATABASE_URL", raising=False)
        monkeypatch.delenv("INCENTIVES_WORKER_DATABASE_URL", raising=False)
        embedded = endpoints(load_settings(home=tmp_path))
        assert embedded.database_url.startswith("postgresql://postgres@/")
        assert embedded.worker_database_url.startswith(f"postgresql://{WORKER_ROLE}@/")
        monkeypatch.setenv("DATABASE_URL", "postgresql://owner:secret@db.example:5432/incentives")
        assert endpoints(load_settings()).worker_database_url == "postgresql://owner:secret@db.example:5432/incentives"
        monkeypatch.setenv("INCENTIVES_WORKER_DATABASE_URL", "postgresql://worker:pw@db.example:5432/incentives")
        assert endpoints(load_settings()).worker_database_url == "postgresql://worker:pw@db.example:5432/incentives"
