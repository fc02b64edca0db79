"""A reminder consumer: the pattern every consumer of incentives' events should copy.

It turns `incentives.lot.reminder` events into notification records ("you have 10.00 USD, expiring
Friday") in its own table, exactly once per event, although JetStream delivers at least once:

1. A durable pull consumer (`reminder-notifications`) on `incentives.lot.reminder.>`, with explicit
   acknowledgements: the stream remembers where it is, across restarts and crashes.
2. Each event's side effect (the notification record) and its deduplication (the event id as the
   table's primary key) are ONE Postgres transaction: a redelivered event inserts nothing.
3. The acknowledgement comes after the commit. A crash between the two is a redelivery after
   `ack_wait`, which step 2 makes harmless; the other order would lose a notification.

It depends on nats-py and asyncpg only, not on incentives' code: a consumer sees the events' JSON
(CloudEvents 1.0; schemas in docs/events/).

    python -m examples.reminder_consumer --database postgresql://... [--nats nats://...] [--once]

`--die-before-ack` exits after committing its first record and before acknowledging it, as a crash
there would: the end-to-end test uses it to prove the redelivery creates no second record.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from datetime import datetime
from typing import Any

import asyncpg
import nats
from nats.js.api import AckPolicy, ConsumerConfig

STREAM = "INCENTIVES"
SUBJECT = "incentives.lot.reminder.>"
DURABLE = "reminder-notifications"

TABLE = """
CREATE TABLE IF NOT EXISTS reminder_notifications (
    event_id     text PRIMARY KEY,      -- the CloudEvent's id: one record per event, whatever is redelivered
    customer_id  text NOT NULL,
    lot_id       text NOT NULL,
    remaining    bigint NOT NULL,       -- minor units of `currency`
    currency     char(3) NOT NULL,
    expires_at   timestamptz NOT NULL,
    message      text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
)
"""


def notification(event: dict[str, Any]) -> tuple[str, str, str, int, str, datetime, str]:
    """(event id, customer, lot, remaining, currency, expires_at, the message to send) of a reminder."""
    data = event["data"]
    major = data["remaining"] / 100  # for the message only; the record keeps integer minor units
    message = f"You have {major:.2f} {data['currency']} of credit, expiring {data['expires_at'][:10]}."
    return (
        event["id"],
        data["customer_id"],
        data["lot_id"],
        data["remaining"],
        data["currency"],
        datetime.fromisoformat(data["expires_at"]),
        message,
    )


async def record(conn: asyncpg.Connection[Any], event: dict[str, Any]) -> bool:
    """The notification and its deduplication in one transaction: True if this event is new."""
    event_id, customer, lot, remaining, currency, expires_at, message = notification(event)
    inserted = await conn.fetchval(
        """INSERT INTO reminder_notifications (event_id, customer_id, lot_id, remaining, currency, expires_at, message)
           VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (event_id) DO NOTHING RETURNING true""",
        event_id,
        customer,
        lot,
        remaining,
        currency,
        expires_at,
        message,
    )
    return bool(inserted)


async def consume(arguments: argparse.Namespace) -> int:
    conn = await asyncpg.connect(arguments.database)
    broker = await nats.connect(arguments.nats, name="reminder-consumer")
    try:
        await conn.execute(TABLE)
        js = broker.jetstream()
        config = ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, ack_wait=arguments.ack_wait)
        subscription = await js.pull_subscribe(SUBJECT, durable=DURABLE, stream=STREAM, config=config)
        return await _loop(conn, subscription, arguments)
    finally:
        await broker.close()
        await conn.close()


async def _loop(conn: asyncpg.Connection[Any], subscription: Any, arguments: argparse.Namespace) -> int:
    while True:
        try:
            messages = await subscription.fetch(arguments.batch, timeout=arguments.wait)
        except (TimeoutError, nats.errors.TimeoutError):
            if arguments.once:
                return 0
            continue
        for message in messages:
            new = await record(conn, json.loads(message.data))  # committed: autocommit, one statement
            if arguments.die_before_ack:
                os._exit(17)  # committed, not acknowledged: JetStream redelivers after ack_wait
            await message.ack()
            print(("notified" if new else "already notified"), message.subject, flush=True)


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m examples.reminder_consumer", description=__doc__.split("\n")[0])
    parser.add_argument("--database", required=True, help="the consumer's own Postgres (its table is created)")
    parser.add_argument("--nats", default=os.environ.get("NATS_URL", "nats://127.0.0.1:4222"), help="NATS servers")
    parser.add_argument("--batch", type=int, default=100, help="events fetched at once")
    parser.add_argument("--wait", type=float, default=2.0, help="seconds a fetch waits for events")
    parser.add_argument(
        "--ack-wait", type=float, default=30.0, help="seconds before an unacknowledged event is redelivered"
    )
    parser.add_argument("--once", action="store_true", help="stop when no event is waiting")
    parser.add_argument("--die-before-ack", action="store_true", help="crash after the first commit (for tests)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(consume(arguments())))
