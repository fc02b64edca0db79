"""The relay under faults, on real servers: two relays at once and the leader's session killed,
NATS killed and restarted mid-stream, Postgres restarted under the relay. Nothing is lost, nothing
is delivered twice (the duplicate window drops a re-publish), each customer's events stay in order."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from nats.js import JetStreamContext

from incentives.adapters.db import Pool, create_pool
from incentives.adapters.migrations import migrate
from incentives.adapters.settings import WORKER_ROLE
from incentives.app.relay import Relay
from incentives.devstack.servers import EmbeddedNats, EmbeddedPostgres
from incentives.domain.events import subject_token
from tests.helpers import eventually
from tests.helpers.builders import NewId
from tests.helpers.events import broker, running_relay, stream_events

EVENTS_PER_CUSTOMER = 150


async def plant_events(pool: Pool, customers: list[str], per_customer: int) -> None:
    """`per_customer` events for each customer, interleaved, as concurrent checkouts would write them."""
    await pool.execute(
        """INSERT INTO outbox (event_type, customer_id, payload)
           SELECT 'redeemed', c, jsonb_build_object('customer_id', c, 'n', n)
           FROM generate_series(1, $2) n, unnest($1::text[]) c ORDER BY n""",
        customers,
        per_customer,
    )


async def unpublished(pool: Pool, customers: list[str]) -> None:
    left = await pool.fetchval(
        "SELECT count(*) FROM outbox WHERE customer_id = ANY($1) AND published_at IS NULL", customers
    )
    assert left == 0, f"{left} not published yet"


async def delivered_once_in_order(js: JetStreamContext, pool: Pool, customers: list[str]) -> None:
    """Each customer's events are in the stream once each, in the order of their ids."""
    for customer in customers:
        events = await stream_events(js, f"incentives.*.*.{subject_token(customer)}")
        ids = [int(event["id"]) for event, _ in events]
        expected = [
            row["event_id"]
            for row in await pool.fetch(
                "SELECT event_id FROM outbox WHERE customer_id = $1 ORDER BY event_id", customer
            )
        ]
        assert ids == expected, (customer, len(ids), len(expected))


class TestRelayFaults:
    async def test_two_relays_take_turns_and_a_killed_leader_is_replaced_without_loss_or_disorder(
        self, pool: Pool, worker_database_url: str, own_nats: EmbeddedNats, new_id: NewId
    ) -> None:
        customers = [new_id("c") for _ in range(4)]
        await plant_events(pool, customers, EVENTS_PER_CUSTOMER)
        async with broker(own_nats) as (_, js):
            async with running_relay(js, worker_database_url, batch=50) as first:
                second_task = asyncio.create_task(_second_relay(js, worker_database_url))
                await eventually(lambda: _one_waits_on_the_lead(pool), timeout=10)
                assert first.leading.is_set()
                assert first.backend_pid is not None
                await pool.execute("SELECT pg_terminate_backend($1)", first.backend_pid)
                await plant_events(pool, customers, 20)  # more arrive while the lead changes hands
                await eventually(lambda: unpublished(pool, customers), timeout=60)
                second_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await second_task
            await delivered_once_in_order(js, pool, customers)

    async def test_nats_killed_and_restarted_mid_stream_loses_nothing(
        self, pool: Pool, worker_database_url: str, own_nats: EmbeddedNats, new_id: NewId
    ) -> None:
        customers = [new_id("c") for _ in range(4)]
        await plant_events(pool, customers, EVENTS_PER_CUSTOMER)
        async with broker(own_nats) as (_, js), running_relay(js, worker_database_url, batch=20) as relay:
            await eventually(lambda: _some_published(relay), timeout=30)
            own_nats.kill()
            own_nats.start()  # the same store: what was acknowledged survives
            await eventually(lambda: unpublished(pool, customers), timeout=60)
            await delivered_once_in_order(js, pool, customers)

    async def test_postgres_restarted_under_the_relay_loses_nothing(
        self, tmp_path: Path, own_nats: EmbeddedNats, new_id: NewId
    ) -> None:
        postgres = EmbeddedPostgres(tmp_path / "pg")
        postgres.start()
        try:
            await postgres.create_database()
            owner = await create_pool(postgres.url(), max_size=2)
            try:
                await migrate(owner)
                await _restart_under_the_relay(postgres, owner, own_nats, [new_id("c") for _ in range(3)])
            finally:
                await owner.close()
        finally:
            postgres.stop()


async def _second_relay(js: JetStreamContext, database_url: str) -> None:
    async with running_relay(js, database_url, batch=50):
        await asyncio.Event().wait()


async def _one_waits_on_the_lead(pool: Pool) -> None:
    waiting = await pool.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
    assert waiting == 1, waiting


async def _some_published(relay: Relay) -> None:
    assert sum(len(delivery.published) for delivery in relay.rounds) > 0


async def _restart_under_the_relay(
    postgres: EmbeddedPostgres, owner: Pool, nats_server: EmbeddedNats, customers: list[str]
) -> None:
    await plant_events(owner, customers, EVENTS_PER_CUSTOMER)
    async with broker(nats_server) as (_, js), running_relay(js, postgres.url(user=WORKER_ROLE), batch=20) as relay:
        await eventually(lambda: _some_published(relay), timeout=30)
        postgres.stop("immediate")
        postgres.start()
        await owner.expire_connections()
        await plant_events(owner, customers, 10)
        await eventually(lambda: unpublished(owner, customers), timeout=60)
        await delivered_once_in_order(js, owner, customers)
