"""After the run: the event stream against the outbox. The worker stopped (the books are final), a
relay drains what is left, then every outbox event must be in the stream exactly once, each
customer's (and promotion's) in the order of their ids, and the stream must hold nothing else
under the run's subjects: no event invented, none altered."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import defaultdict
from typing import Any

from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy

from chaos.books import Verdict
from incentives.adapters.db import Pool, connect_one
from incentives.app.relay import Relay, cloud_event

SOURCE = "/incentives-chaos"
DRAIN_DEADLINE_S = 180.0


async def drain(pool: Pool, js: JetStreamContext, database_url: str) -> bool:
    """Runs a relay until no event is left unpublished (True), or the deadline passes (False)."""
    relay = Relay(lambda: connect_one(database_url), js, source=SOURCE)
    task = asyncio.create_task(relay.run())
    deadline = time.monotonic() + DRAIN_DEADLINE_S
    try:
        while time.monotonic() < deadline:
            if not await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL"):
                return True
            await asyncio.sleep(0.2)
        return False
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def stream(js: JetStreamContext) -> list[tuple[str, dict[str, Any]]]:
    """(subject, CloudEvent) of every message in the stream, in stream order."""
    subscription = await js.subscribe("incentives.>", ordered_consumer=True, deliver_policy=DeliverPolicy.ALL)
    found: list[tuple[str, dict[str, Any]]] = []
    try:
        while True:
            try:
                message = await subscription.next_msg(timeout=1.0)
            except TimeoutError:
                return found
            found.append((message.subject, json.loads(message.data)))
    finally:
        await subscription.unsubscribe()


async def check(pool: Pool, messages: list[tuple[str, dict[str, Any]]], verdict: Verdict) -> None:
    rows = {
        str(row["event_id"]): row
        for row in await pool.fetch(
            "SELECT event_id, event_type, customer_id, promotion_id, payload, created_at FROM outbox"
        )
    }
    seen: dict[str, int] = defaultdict(int)
    order: dict[str, list[int]] = defaultdict(list)
    for subject, event in messages:
        seen[event["id"]] += 1
        row = rows.get(event["id"])
        verdict.checked["events delivered"] += 1
        if row is None:
            verdict.fail("delivered", f"event {event['id']} ({event['type']}) is in the stream, not in the outbox")
            continue
        expected_subject, data, _ = cloud_event(row, event["source"])
        if (subject, json.loads(data)) != (expected_subject, event):
            verdict.fail("delivered", f"event {event['id']}: the stream's differs from the outbox's")
        order[event["subject"]].append(int(event["id"]))
    for event_id in rows.keys() - seen.keys():
        verdict.fail("delivered", f"event {event_id} ({rows[event_id]['event_type']}) never reached the stream")
    for event_id, count in seen.items():
        if count > 1:
            verdict.fail("delivered", f"event {event_id} is in the stream {count} times")
    for whom, ids in order.items():
        if ids != sorted(ids):
            verdict.fail("delivered", f"{whom}'s events out of order in the stream: {ids[:20]}")
