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
from collections.abc import Set as AbstractSet
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

# An event's `time`: when its transaction committed, where Postgres tracks commit timestamps
# (`track_commit_timestamp`; the embedded server does), read from the row's inserting transaction
# (`xmin`, the same until it is marked published); where it does not, or for a transaction that
# committed before it did, when the event was written in its transaction. The guard keeps the
# function uncalled where tracking is off (it raises there).
EVENT_TIME = """coalesce(
    CASE WHEN current_setting('track_commit_timestamp')::bool THEN pg_xact_commit_timestamp(xmin) END, created_at
)"""
# The payload as its JSON text: spliced into the CloudEvent as it is, never parsed and re-encoded.
_COLUMNS = f"event_id, event_type, customer_id, promotion_id, payload::text AS payload, {EVENT_TIME} AS committed_at"
_UNPUBLISHED = f"""
SELECT {_COLUMNS} FROM outbox WHERE published_at IS NULL ORDER BY event_id LIMIT $1
"""
# The same, read while the events $3 (all at or below id $2) are in flight or being marked: above
# $2 in index order; at or below it, what is not among them (an event committed late, or one held
# back by a failure), found by a hash of them (a list compared row by row would be quadratic).
_UNPUBLISHED_BESIDE = f"""
SELECT * FROM (
    (SELECT {_COLUMNS} FROM outbox WHERE published_at IS NULL AND event_id > $2 ORDER BY event_id LIMIT $1)
    UNION ALL
    (SELECT {_COLUMNS} FROM outbox o WHERE published_at IS NULL AND event_id <= $2
        AND NOT EXISTS (SELECT FROM unnest($3::bigint[]) AS x(event_id) WHERE x.event_id = o.event_id))
) r ORDER BY event_id LIMIT $1
"""

Connect = Callable[[], Awaitable["asyncpg.Connection[asyncpg.Record]"]]


Whom = tuple[bool, str]  # (a promotion's own event, the customer or the promotion)
Chain = list[tuple[Row, tuple[str, bytes, str]]]  # one customer's events, rendered, in order


@dataclass
class Delivery:
    """What one round did: for the log, the tests and the benchmark."""

    read: int = 0
    published: list[int] = field(default_factory=list)
    failed: int = 0
    failed_whom: set[Whom] = field(default_factory=set)  # whose events stopped at a failure
    lags: list[float] = field(default_factory=list)  # seconds from the event's commit to its ack


@dataclass(frozen=True)
class _Round:
    read: int  # rows read (some may be left for a later round)
    chains: dict[Whom, Chain]

    @property
    def event_ids(self) -> list[int]:
        return [row["event_id"] for chain in self.chains.values() for row, _ in chain]


def cloud_event(row: Row, source: str) -> tuple[str, bytes, str]:
    """(subject, the CloudEvent as JSON bytes, its id) of an outbox row, whose payload is its JSON
    text (as the relay reads it) or already decoded. Written as text, not built as a dict and
    encoded: every event the relay publishes passes here, and only the strings a caller chose (the
    source, the subject's id) need JSON's escaping."""
    event_type = row["event_type"]
    _, cloud_type = CLOUD_EVENT_TYPES[event_type]
    about = row["promotion_id"] if event_type == "budget_threshold" else row["customer_id"]
    committed: datetime = row["committed_at"]
    event_id = str(row["event_id"])
    payload = row["payload"]
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    document = (
        f'{{"specversion":"1.0","id":"{event_id}","source":{json.dumps(source)},"type":"{cloud_type}",'
        f'"subject":{json.dumps(about)},"time":"{committed.isoformat().replace("+00:00", "Z")}",'
        f'"datacontenttype":"application/json","data":{data}}}'
    )
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
            # The outbox's statistics lag behind a promotion's burst (a million rows in a minute):
            # with them, the planner takes the unpublished rows for a few thousand, and collects and
            # sorts them all for each read instead of reading its index in order up to the batch.
            await conn.execute("SET enable_bitmapscan = off")
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
        """Rounds until the connection is lost. While a full round publishes, the next one is read
        (leaving out the events in flight) and the previous one's are marked published on a second
        connection: Postgres' work and the broker's acknowledgements overlap the relay's own.
        Between busy rounds it does not wait."""
        marker = await self._connect()
        marking: asyncio.Task[None] | None = None
        publishing: asyncio.Task[Delivery] | None = None
        marking_ids: list[int] = []
        pruned_at, backoff = 0.0, 0.2
        current = self._round(await conn.fetch(_UNPUBLISHED, self._batch))
        try:
            while True:
                wake.clear()
                publishing = asyncio.create_task(self._publish(current))
                upcoming = None
                if current.read == self._batch:  # more are waiting: read them meanwhile
                    upcoming = await self.read_beside(conn, [*marking_ids, *current.event_ids])
                delivery = await publishing
                if marking is not None:
                    await marking  # a failed mark fails the round: the relay starts over, and republishes
                marking, marking_ids = None, delivery.published
                if delivery.published:
                    marking = asyncio.create_task(self._mark(marker, delivery.published))
                if delivery.failed and not delivery.published:
                    await asyncio.sleep(backoff)  # the broker is down or refusing: do not spin
                    backoff = min(backoff * 2, 10.0)
                else:
                    backoff = 0.2
                if upcoming is not None:
                    # Not ahead of an event of theirs that this round failed to publish.
                    current = self._round(upcoming, leaving_out=delivery.failed_whom)
                    continue
                if marking is not None:
                    await marking  # idle from here: what was published is recorded now, not later
                    marking, marking_ids = None, []
                if time.monotonic() - pruned_at > PRUNE_EVERY_S:
                    await self.prune(conn)
                    pruned_at = time.monotonic()
                if not delivery.failed:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wake.wait(), IDLE_WAKE_S)
                    await asyncio.sleep(SETTLE_S)
                current = self._round(await conn.fetch(_UNPUBLISHED, self._batch))
        finally:
            # Neither outlives the round that failed: the relay that starts over publishes the
            # events again (each after its predecessor), and a leftover publisher would race it.
            for task in (publishing, marking):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task
            with contextlib.suppress(Exception):
                await marker.close()

    async def read_beside(self, conn: asyncpg.Connection[asyncpg.Record], in_flight: list[int]) -> list[Row]:
        """The next round, read while the events `in_flight` publish or are marked: none of them. There
        may be none in flight: a full round whose every event was left out (their customers' earlier
        events failed) publishes nothing."""
        return await conn.fetch(_UNPUBLISHED_BESIDE, self._batch, max(in_flight, default=0), in_flight)

    def _round(self, rows: list[Row], leaving_out: AbstractSet[Whom] = frozenset()) -> _Round:
        """Rows read in id order, as chains: one per customer (per promotion for its own events),
        its events of every type in order, each rendered; `leaving_out`'s events wait for a later
        round."""
        chains: dict[Whom, list[tuple[Row, tuple[str, bytes, str]]]] = {}
        for row in rows:
            whom = (row["customer_id"] is None, row["customer_id"] or row["promotion_id"])
            if whom not in leaving_out:
                chains.setdefault(whom, []).append((row, cloud_event(row, self._source)))
        return _Round(read=len(rows), chains=chains)

    async def _publish(self, current: _Round) -> Delivery:
        """Publishes a round: different customers' chains side by side, `in_flight` at a time."""
        delivery = Delivery(read=current.read)
        chains = iter(current.chains.items())
        publishers = min(self._in_flight, len(current.chains))
        await asyncio.gather(*(self._publisher(chains, delivery) for _ in range(publishers)))
        if delivery.failed:
            self._log.warning("events not acknowledged; retried next round", failed=delivery.failed)
        self.rounds = [*self.rounds[-99:], delivery]
        return delivery

    async def _mark(self, conn: asyncpg.Connection[asyncpg.Record], event_ids: list[int]) -> None:
        await conn.fetchval("SELECT outbox_mark_published($1::bigint[])", event_ids)

    async def _publisher(self, chains: Iterator[tuple[Whom, Chain]], delivery: Delivery) -> None:
        """Takes one customer's chain at a time, and publishes it in order."""
        for whom, events in chains:
            if not await self._publish_in_order(events, delivery):
                delivery.failed_whom.add(whom)

    async def _publish_in_order(self, events: Chain, delivery: Delivery) -> bool:
        """One customer's events, each after the previous one's acknowledgement; the first failure
        stops the rest until a later round, so none is stored ahead of an earlier one. False then."""
        for index, (row, (subject, data, event_id)) in enumerate(events):
            try:
                await self._js.publish(subject, data, timeout=PUBLISH_TIMEOUT_S, headers={"Nats-Msg-Id": event_id})
            except Exception:  # not acknowledged (timeout, disconnection, refusal): published later
                delivery.failed += len(events) - index
                return False
            delivery.published.append(row["event_id"])
            delivery.lags.append(time.time() - row["committed_at"].timestamp())
        return True

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
        except Exception:
            # A defect, not an outage: said at ERROR with its traceback, and the relay starts over
            # rather than leave the worker running without one. The outbox keeps every event, and
            # the outbox-age alert pages if the relay cannot get past it.
            log.exception("relay failed; starting over")
        finally:
            with contextlib.suppress(Exception):
                await broker.close()
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, 30.0)
