"""The example reminder consumer end to end: a lot with a reminder becomes exactly one notification
record, also when the consumer dies after recording it and before acknowledging it (the event is
redelivered, and recorded no second time)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import asyncpg

from activities.ledger import LedgerActivities
from incentives.adapters.db import Pool
from incentives.devstack.servers import EmbeddedNats, EmbeddedPostgres
from incentives.domain.messages import LotTransition
from tests.helpers import eventually
from tests.helpers.builders import T0, NewId, at, credit
from tests.helpers.events import broker, running_relay, stream_events

ROOT = Path(__file__).resolve().parents[2]


def consumer(database: str, nats_url: str, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "examples.reminder_consumer", "--database", database, "--nats", nats_url,
         "--ack-wait", "1", "--wait", "3", "--once", *flags],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


async def test_each_reminder_becomes_one_notification_even_when_redelivered(
    pool: Pool, postgres: EmbeddedPostgres, worker_database_url: str, own_nats: EmbeddedNats, new_id: NewId
) -> None:
    customer, lot_id = new_id("c"), new_id("lot")
    ledger = LedgerActivities(pool)
    await ledger.grant_lot(
        at(credit(lot_id, customer, 1250, expires_in=timedelta(days=3), remind_before=timedelta(days=1)))
    )
    await ledger.record_reminder(LotTransition(customer_id=customer, lot_id=lot_id, as_of=T0 + timedelta(days=2)))
    async with broker(own_nats) as (_, js), running_relay(js, worker_database_url):

        async def published() -> None:
            assert not await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")

        await eventually(published, timeout=60)
        reminders = {event["id"] for event, _ in await stream_events(js, "incentives.lot.reminder.>")}
    database = f"consumer_{uuid.uuid4().hex[:8]}"
    await postgres.create_database(database)
    url = postgres.url(database)
    died = consumer(url, own_nats.url, "--die-before-ack")
    assert died.returncode == 17, died.stderr  # recorded one event, then died before acknowledging it
    assert await _records(url) != {}
    again = consumer(url, own_nats.url)
    assert again.returncode == 0, again.stderr
    assert "already notified" in again.stdout  # the one it died on came back, and was not recorded twice
    records = await _records(url)
    assert set(records) == reminders
    ours = next(message for message in records.values() if "12.50 USD" in message)
    assert ours.startswith("You have 12.50 USD of credit, expiring ")


async def _records(url: str) -> dict[str, str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT event_id, message FROM reminder_notifications")
        return {row["event_id"]: row["message"] for row in rows}
    finally:
        await conn.close()
