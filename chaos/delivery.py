"""After the run: the event stream against the outbox. The worker stopped (the books are final), a
relay drains what is left, then every outbox event must be in the stream exactly once, each
customer's (and promotion's) in the order their changes took effect (`judge_order`), and the
stream must hold nothing else under the run's subjects: no event invented, none altered. What each
event's transaction saw is recorded by the stack (`Stack.record_what_events_saw`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy

from chaos.books import Verdict
from incentives.adapters.db import Pool, connect_one
from incentives.adapters.rows import Row
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


@dataclass(frozen=True)
class Seen:
    """What a transaction could see when it wrote an event: a `pg_snapshot` (`xmin:xmax:xip,...`)."""

    xmin: int
    xmax: int
    in_progress: frozenset[int]

    @classmethod
    def parse(cls, text: str) -> Seen:
        xmin, xmax, xip = text.split(":")
        return cls(int(xmin), int(xmax), frozenset(int(xid) for xid in xip.split(",") if xid))

    def sees(self, xact: int) -> bool:
        """Whether a committed transaction's writes are visible in it: `pg_visible_in_snapshot`."""
        return xact < self.xmin or (xact < self.xmax and xact not in self.in_progress)


@dataclass(frozen=True)
class Written:
    """An outbox event, the transaction that wrote it, and what that transaction saw."""

    event_id: int
    event_type: str
    lot_id: str | None
    xact: int
    saw: Seen


async def check(pool: Pool, messages: list[tuple[str, dict[str, Any]]], verdict: Verdict) -> None:
    rows = {
        str(row["event_id"]): row
        for row in await pool.fetch(
            """SELECT event_id, event_type, customer_id, promotion_id, lot_id, payload,
                      pg_xact_commit_timestamp(xid(chaos_xact)) AS committed_at,
                      chaos_xact::text AS xact, chaos_snapshot::text AS saw FROM outbox"""
        )
    }
    published = judge_delivery(rows, messages, verdict)
    for whom, events in published.items():
        judge_order(whom, events, verdict)


def judge_delivery(
    rows: dict[str, Row], messages: list[tuple[str, dict[str, Any]]], verdict: Verdict
) -> dict[str, list[Written]]:
    """Every outbox row in the stream once, as the outbox has it, nothing else; returns each
    subject's events in stream order (each at its first copy), for `judge_order`."""
    seen: dict[str, int] = defaultdict(int)
    published: dict[str, list[Written]] = defaultdict(list)
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
        if seen[event["id"]] == 1:
            written = Written(
                row["event_id"], row["event_type"], row["lot_id"], int(row["xact"]), Seen.parse(row["saw"])
            )
            published[event["subject"]].append(written)
    for event_id in rows.keys() - seen.keys():
        verdict.fail("delivered", f"event {event_id} ({rows[event_id]['event_type']}) never reached the stream")
    for event_id, count in seen.items():
        if count > 1:
            verdict.fail("delivered", f"event {event_id} is in the stream {count} times")
    return published


def judge_order(whom: str, events: list[Written], verdict: Verdict) -> None:
    """One customer's (or promotion's) events, in stream order, in the order their changes took
    effect: an event comes after every event whose transaction had committed when its own was
    written (it saw it), and a transaction's events in the order it wrote them. Two transactions
    that did not see each other (a promotion's batch, which takes no customer lock, beside a
    checkout) are concurrent: either order is one they could have taken effect in. A lot's
    `granted` comes before any other event about the lot."""
    granted_at = {event.lot_id: index for index, event in enumerate(events) if event.event_type == "granted"}
    for index, later in enumerate(events):
        if later.lot_id is not None and granted_at.get(later.lot_id, -1) > index:
            verdict.fail("delivered", f"{whom}: lot {later.lot_id}'s {later.event_type} before its granted")
        for earlier in events[:index]:
            if earlier.xact == later.xact:  # (a transaction's snapshot does not list itself as running)
                if earlier.event_id > later.event_id:
                    verdict.fail(
                        "delivered", f"{whom}: event {later.event_id} after {earlier.event_id}, one transaction's"
                    )
            elif earlier.saw.sees(later.xact):
                verdict.fail(
                    "delivered",
                    f"{whom}: event {later.event_id} ({later.event_type}) after {earlier.event_id}"
                    f" ({earlier.event_type}), whose transaction saw it committed",
                )
            elif earlier.event_id > later.event_id:
                verdict.checked["events of concurrent transactions out of id order"] += 1
