"""The event relay: every outbox event reaches NATS JetStream as a CloudEvent, at least once, never
skipped, in order per customer. It runs in every worker; one relays at a time.

- **Never skipped.** It reads the events not yet published (`published_at IS NULL`), oldest id
  first, never "after the last id published": ids become visible in commit order, not in id order,
  and an event whose transaction commits late is simply found on a later read.
- **At least once.** An event counts as published only once JetStream has acknowledged it; then the
  relay records it (`outbox_mark_published`). A relay that dies in between publishes it again on
  restart, and JetStream drops the copy within its duplicate window (`Nats-Msg-Id` = the event id).
- **In order per customer** (and per promotion for promotion events). Events are read in id order,
  and one customer's events (of every type) are published one after the other, each after the
  previous one's acknowledgement; a failure stops that customer's events for this round, so none
  of them is ever stored ahead of an earlier one. Every write for a customer holds the customer's lock, so ids
  follow commit order for them; a promotion's batch and a checkout for the same customer do not see
  each other, and either order is one they could have taken effect in. A lot's `granted` event is
  always published before any event about that lot: those are written after the lot is visible,
  so they come later in id order and in visibility order alike.
- **One at a time.** The relay that holds a Postgres session lock (`LEADER_LOCK`) relays; the
  others wait on it, so any number of workers may run. A leader whose connection drops loses the
  lock; the next one takes over where the outbox says.
- **Fast.** Woken by `NOTIFY` when an event commits (a poll every `IDLE_WAKE_S` covers a missed
  one); up to `IN_FLIGHT` subjects publish at once; a round's events are marked published while
  the next round publishes. `./dev bench events` measures it against a bare JetStream publisher.

Published events are pruned after `OUTBOX_RETENTION` (the ledger itself is never pruned).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext

from incentives.adapters.broker import connect_broker, ensure_stream
from incentives.adapters.db import connect_one
from incentives.adapters.endpoints import endpoints
from incentives.adapters.failures import infrastructure_failure
from incentives.adapters.logs import get_logger
from incentives.adapters.rows import Row
from incentives.adapters.settings import Settings
from incentives.domain.errors import Unavailable
from incentives.domain.events import CLOUD_EVENT_TYPES, OUTBOX_RETENTION, event_subject

# Arbitrary but fixed: every relay of every version of this project contends for this one lock.
LEADER_LOCK = 7_243_655_193_002
# A round's rows: large enough that its two statements (read, mark) are a small share of the
# publishing between them; its memory is a few tens of MB at most.
BATCH = 20_000
IN_FLIGHT = 512
PUBLISH_TIMEOUT_S = 5.0
IDLE_WAKE_S = 1.0
# Woken, the relay lets the committing transaction's caller have its answer before it takes the
# worker's event loop (it runs beside the activities), and gathers what commits meanwhile.
SETTLE_S = 0.005
PRUNE_EVERY_S = 600.0
PRUNE_CHUNK = 10_000
_CHANNEL = "incentives_outbox"

# The payload as its JSON text: spliced into the CloudEvent as it is, never parsed and re-encoded.
# $2: the previous round's events, published and being marked meanwhile (hashed by Postgres).
_UNPUBLISHED = """
SELECT event_id, event_type, customer_id, promotion_id, payload::text AS payload, created_at
FROM outbox WHERE published_at IS NULL AND NOT (event_id = ANY($2::bigint[])) ORDER BY event_id LIMIT $1
"""

Connect = Callable[[], Awaitable["asyncpg.Connection[asyncpg.Record]"]]


@dataclass
class Delivery:
    """What one round did: for the log, the tests and the benchmark."""

    read: int = 0
    published: list[int] = field(default_factory=list)
    failed: int = 0
    lags: list[float] = field(default_factory=list)  # seconds from the event's write to its ack


def cloud_event(row: Row, source: str) -> tuple[str, bytes, str]:
    """(subject, the CloudEvent as JSON bytes, its id) of an outbox row, whose payload is its JSON
    text (as the relay reads it) or already decoded."""
    event_type = row["event_type"]
    _, cloud_type = CLOUD_EVENT_TYPES[event_type]
    about = row["promotion_id"] if event_type == "budget_threshold" else row["customer_id"]
    created: datetime = row["created_at"]
    event_id = str(row["event_id"])
    envelope = {
        "specversion": "1.0",
        "id": event_id,
        "source": source,
        "type": cloud_type,
        "subject": about,
        "time": created.isoformat().replace("+00:00", "Z"),
        "datacontenttype": "application/json",
    }
    payload = row["payload"]
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    document = json.dumps(envelope, separators=(",", ":"))[:-1] + ',"data":' + data + "}"
    return event_subject(event_type, about), document.encode(), event_id


class Relay:
    def __init__(
        self, connect: Connect, js: JetStreamContext, *, source: str, batch: int = BATCH, in_flight: int = IN_FLIGHT
    ) -> None:
        self._connect = connect
        self._js = js
        self._source = source
        self._batch = batch
        self._in_flight = in_flight
        self._log = get_logger("incentives.relay")
        self.leading = asyncio.Event()
        self.backend_pid: int | None = None  # the Postgres session that holds the lead, while it does
        self.rounds: list[Delivery] = []  # the most recent rounds, for tests and the benchmark

    async def run(self) -> None:
        """Relays for as long as it runs: waits for leadership, then delivers; a lost database
        connection or broker is waited out and the relay starts over (nothing is lost: the outbox
        says what is left to publish)."""
        backoff = 0.5
        while True:
            try:
                await self._lead()
            except Exception as error:
                failure = infrastructure_failure(error) or (
                    str(error) if isinstance(error, asyncpg.PostgresError) else None
                )
                if failure is None:
                    raise
                self.leading.clear()
                self._log.warning("relay lost its database connection; starting over", error=failure)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    async def _lead(self) -> None:
        conn = await self._connect()
        try:
            # Waits inside Postgres until no other relay's session holds the lock.
            await conn.execute("SELECT pg_advisory_lock($1)", LEADER_LOCK)
            wake = asyncio.Event()
            await conn.add_listener(_CHANNEL, lambda *_: wake.set())
            self.backend_pid = conn.get_server_pid()
            self.leading.set()
            self._log.info("relay leading", backend_pid=self.backend_pid)
            await self._deliver_forever(conn, wake)
        finally:
            self.leading.clear()
            self.backend_pid = None
            with contextlib.suppress(Exception):
                await conn.close()

    async def _deliver_forever(self, conn: asyncpg.Connection[asyncpg.Record], wake: asyncio.Event) -> None:
        """Rounds until the connection is lost. A round's published events are marked on a second
        connection while the next round reads (leaving them out) and publishes: the mark is
        Postgres' work, done meanwhile on another core. Between busy rounds it does not wait."""
        marker = await self._connect()
        marking: asyncio.Task[None] | None = None
        marking_ids: list[int] = []
        pruned_at, backoff = 0.0, 0.2
        try:
            while True:
                wake.clear()
                delivery = await self._publish(await conn.fetch(_UNPUBLISHED, self._batch, marking_ids))
                if marking is not None:
                    await marking  # a failed mark fails the round: the relay starts over, and republishes
                marking, marking_ids = None, delivery.published
                if delivery.published:
                    marking = asyncio.create_task(self._mark(marker, delivery.published))
                if delivery.failed and not delivery.published:
                    await asyncio.sleep(backoff)  # the broker is down or refusing: do not spin
                    backoff = min(backoff * 2, 10.0)
                    continue
                backoff = 0.2
                if delivery.read == self._batch:
                    continue  # more are waiting
                if marking is not None:
                    await marking  # idle from here: what was published is recorded now, not later
                    marking, marking_ids = None, []
                if time.monotonic() - pruned_at > PRUNE_EVERY_S:
                    await self.prune(conn)
                    pruned_at = time.monotonic()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), IDLE_WAKE_S)
                await asyncio.sleep(SETTLE_S)
        finally:
            if marking is not None:
                marking.cancel()
                with contextlib.suppress(BaseException):
                    await marking
            with contextlib.suppress(Exception):
                await marker.close()

    async def _publish(self, rows: list[Row]) -> Delivery:
        """Publishes `rows` (read in id order), in order per customer; says what was acknowledged."""
        delivery = Delivery(read=len(rows))
        if not rows:
            return delivery
        # In order per customer (per promotion for its own events): their events, of every type,
        # go one after the other; different customers' go side by side, `in_flight` at a time.
        by_whom: dict[tuple[bool, str], list[tuple[Row, tuple[str, bytes, str]]]] = {}
        for row in rows:
            whom = (row["customer_id"] is None, row["customer_id"] or row["promotion_id"])
            by_whom.setdefault(whom, []).append((row, cloud_event(row, self._source)))
        chains = iter(by_whom.values())
        publishers = min(self._in_flight, len(by_whom))
        await asyncio.gather(*(self._publisher(chains, delivery) for _ in range(publishers)))
        if delivery.failed:
            self._log.warning("events not acknowledged; retried next round", failed=delivery.failed)
        self.rounds = [*self.rounds[-99:], delivery]
        return delivery

    async def _mark(self, conn: asyncpg.Connection[asyncpg.Record], event_ids: list[int]) -> None:
        await conn.fetchval("SELECT outbox_mark_published($1::bigint[])", event_ids)

    async def _publisher(self, chains: Iterator[list[tuple[Row, tuple[str, bytes, str]]]], delivery: Delivery) -> None:
        """Takes one customer's events at a time, and publishes them in order."""
        for events in chains:
            await self._publish_in_order(events, delivery)

    async def _publish_in_order(self, events: list[tuple[Row, tuple[str, bytes, str]]], delivery: Delivery) -> None:
        """One customer's events, each after the previous one's acknowledgement; the first failure
        stops the rest until the next round, so none is stored ahead of an earlier one."""
        for index, (row, (subject, data, event_id)) in enumerate(events):
            try:
                await self._js.publish(subject, data, timeout=PUBLISH_TIMEOUT_S, headers={"Nats-Msg-Id": event_id})
            except Exception:  # not acknowledged (timeout, disconnection, refusal): published later
                delivery.failed += len(events) - index
                return
            delivery.published.append(row["event_id"])
            delivery.lags.append(time.time() - row["created_at"].timestamp())

    async def prune(self, conn: asyncpg.Connection[asyncpg.Record]) -> int:
        """Deletes published events older than the retention, a chunk at a time."""
        total = 0
        while True:
            pruned: int = await conn.fetchval("SELECT outbox_prune($1, $2)", OUTBOX_RETENTION, PRUNE_CHUNK)
            total += pruned
            if pruned < PRUNE_CHUNK:
                break
        if total:
            self._log.info("published events pruned", events=total)
        return total


async def relay_forever(settings: Settings) -> None:
    """What a worker runs beside its workflows: connect to NATS, bring the stream to its
    configuration, relay; a broker that cannot be reached (yet) is waited out, and the worker's
    workflows and activities run meanwhile: the outbox keeps every event until it is published."""
    log = get_logger("incentives.relay")
    database_url = endpoints(settings).worker_database_url
    backoff = 1.0
    while True:
        try:
            broker = await connect_broker(settings, name="incentives relay")
        except Unavailable as error:
            log.warning("relay cannot reach NATS; retrying", error=str(error))
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)
            continue
        try:
            js = broker.jetstream()
            await ensure_stream(js)
            backoff = 1.0
            await Relay(lambda: connect_one(database_url), js, source=settings.event_source).run()
        except (TimeoutError, NatsError) as error:
            log.warning("relay could not set up the stream; retrying", error=str(error)[:200])
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)
        finally:
            with contextlib.suppress(Exception):
                await broker.close()
