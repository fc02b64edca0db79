"""An event's `time` is when its change committed: a transaction that writes its event, then
commits after later ones did, is dated after them. On a server that keeps no commit timestamps
(`track_commit_timestamp = off`, the stock setting of a real cluster), the relay still runs, and
dates each event when it was written."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from incentives.adapters.db import Pool, create_pool
from incentives.adapters.migrations import migrate
from incentives.adapters.settings import WORKER_ROLE
from incentives.devstack.servers import EmbeddedNats, EmbeddedPostgres
from incentives.domain.events import subject_token
from tests.helpers import eventually
from tests.helpers.builders import NewId
from tests.helpers.events import broker, running_relay, stream_events


async def write_event(conn: object, customer: str) -> None:
    await conn.execute(  # type: ignore[attr-defined]
        """INSERT INTO outbox (event_type, customer_id, payload)
           VALUES ('redeemed', $1, jsonb_build_object('customer_id', $1::text))""",
        customer,
    )


async def none_unpublished(pool: Pool, customer: str) -> None:
    left = await pool.fetchval("SELECT count(*) FROM outbox WHERE customer_id = $1 AND published_at IS NULL", customer)
    assert left == 0, f"{left} events of {customer} not published yet"


async def times(pool: Pool, nats_server: EmbeddedNats, database_url: str, customer: str) -> list[datetime]:
    """The `time` of each of the customer's events, once the relay has published them all."""
    async with broker(nats_server) as (_, js), running_relay(js, database_url):
        await eventually(lambda: none_unpublished(pool, customer), timeout=20)
        events = await stream_events(js, f"incentives.*.*.{subject_token(customer)}")
    return [datetime.fromisoformat(str(event["time"])) for event, _ in events]


async def test_an_event_is_dated_when_its_transaction_committed(
    pool: Pool, worker_database_url: str, nats_server: EmbeddedNats, new_id: NewId
) -> None:
    customer = new_id("c")
    async with pool.acquire() as slow:
        transaction = slow.transaction()
        await transaction.start()
        await write_event(slow, customer)  # written first...
        await write_event(pool, customer)  # ...this one written, and committed, after it
        before_commit = datetime.now(UTC)
        await transaction.commit()
    written = await pool.fetch("SELECT created_at FROM outbox WHERE customer_id = $1 ORDER BY event_id", customer)
    assert written[0]["created_at"] < written[1]["created_at"] < before_commit
    first, second = await times(pool, nats_server, worker_database_url, customer)
    assert first >= before_commit > second  # the first written committed last
    assert second >= written[1]["created_at"]


async def test_without_commit_timestamps_an_event_is_dated_when_it_was_written(
    tmp_path: Path, own_nats: EmbeddedNats, new_id: NewId
) -> None:
    # A NATS of its own: a new database numbers its events from 1, ids the session's stream has
    # seen within its duplicate window.
    postgres = EmbeddedPostgres(tmp_path / "pg", commit_timestamps=False)
    postgres.start()
    try:
        await postgres.create_database()
        owner = await create_pool(postgres.url(), max_size=2)
        try:
            await migrate(owner)
            assert await owner.fetchval("SHOW track_commit_timestamp") == "off"
            customer = new_id("c")
            await write_event(owner, customer)
            written = await owner.fetchval("SELECT created_at FROM outbox WHERE customer_id = $1", customer)
            assert await times(owner, own_nats, postgres.url(user=WORKER_ROLE), customer) == [written]
        finally:
            await owner.close()
    finally:
        postgres.stop()
