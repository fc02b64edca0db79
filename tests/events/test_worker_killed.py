"""A worker SIGKILLed while it relays a 20,000-customer promotion's events: the next worker delivers
every event, and JetStream's duplicate window drops what the first one had published but not yet
recorded: each event is in the stream exactly once."""

from __future__ import annotations

import signal
from datetime import UTC, datetime
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from incentives.adapters.db import Pool
from incentives.app.promotions import PromotionsClient
from incentives.devstack.servers import EmbeddedNats
from tests.helpers import eventually
from tests.helpers.builders import NewId, promotion
from tests.helpers.events import broker, stream_events
from tests.helpers.processes import worker_process
from tests.helpers.promotions import customers

AUDIENCE = 20_000


async def published(pool: Pool, promotion_id: str) -> int:
    count: int = await pool.fetchval(
        "SELECT count(*) FROM outbox WHERE promotion_id = $1 AND event_type = 'granted' AND published_at IS NOT NULL",
        promotion_id,
    )
    return count


async def test_a_worker_killed_mid_relay_loses_and_doubles_nothing(
    dev_server: WorkflowEnvironment,
    pool: Pool,
    database_url: str,
    own_nats: EmbeddedNats,
    new_id: NewId,
    tmp_path: Path,
) -> None:
    promotion_id, task_queue, log = new_id("p"), new_id("relay"), tmp_path / "worker.log"
    promotions = PromotionsClient(dev_server.client, pool, task_queue=task_queue, batch_size=5000)
    async with worker_process(dev_server, database_url, task_queue, log, nats_url=own_nats.url) as first:
        await promotions.start(promotion(promotion_id, datetime.now(UTC), amount=100), customers(new_id, AUDIENCE))

        async def relaying() -> None:
            assert await published(pool, promotion_id) > 0

        await eventually(relaying, timeout=60, interval=0.01)
        first.send_signal(signal.SIGKILL)
        await first.wait()
    killed_at = await published(pool, promotion_id)
    async with worker_process(dev_server, database_url, task_queue, log, nats_url=own_nats.url):

        async def all_relayed() -> None:
            assert await published(pool, promotion_id) == AUDIENCE

        await eventually(all_relayed, timeout=120, interval=0.2)
    async with broker(own_nats) as (_, js):
        events = await stream_events(
            js, "incentives.lot.granted.>", keep=lambda event: event["data"]["promotion_id"] == promotion_id
        )
    ids = [event["id"] for event, _ in events]
    assert len(ids) == AUDIENCE, (len(ids), killed_at)
    assert len(set(ids)) == AUDIENCE
    assert killed_at < AUDIENCE, "the worker was killed after it had relayed everything: nothing was tested"
