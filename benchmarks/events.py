"""`./dev bench events [--customers N] [--quick]`: event delivery against the bare broker, same run.

Starts its own PostgreSQL, Temporal dev server and NATS server, then:

- drain: a credit promotion grants N customers (a million by default), writing N `granted` events;
  the relay delivers them to JetStream (read, publish, acknowledged, recorded). The ceiling is a
  bare JetStream publisher sending the very same messages (subjects, bytes, `Nats-Msg-Id`), 512 in
  flight, into a second stream on the same server. Ratio: ours ÷ bare, in events per second.
- lag: ledger redeems (the ledger transactions themselves, across 200 customers) paced at 200 a
  second with the relay running: from each event's write to its being recorded published, p50/p99.
- checkout: sequential redeems through the wallets (Temporal), in chunks alternating between the
  relay running and stopped: redeem p50 with ÷ without.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig
from temporalio.client import Client

from activities.ledger import LedgerActivities
from benchmarks.servers import servers
from incentives.adapters.broker import connect_broker, ensure_stream
from incentives.adapters.db import Pool, connect_one
from incentives.adapters.logs import configure_logging
from incentives.adapters.settings import Settings
from incentives.app.client import IncentivesClient
from incentives.app.promotions import PromotionsClient, UnknownPromotion
from incentives.app.relay import EVENT_TIME, Relay, cloud_event
from incentives.app.worker import build_worker
from incentives.devstack.servers import (
    EmbeddedNats,
    free_port,
)
from incentives.domain.messages import GrantInput, RedeemInput
from incentives.domain.models import GrantRequest, RedeemRequest
from incentives.domain.promotions import Budget, PromotionTerms, Validity

TASK_QUEUE = "bench-events"
BARE_IN_FLIGHT = 512
LAG_RATE = 200  # redeems a second
LAG_CUSTOMERS = 200


@asynccontextmanager
async def running(relay: Relay) -> AsyncIterator[None]:
    task = asyncio.create_task(relay.run())
    try:
        await asyncio.wait_for(relay.leading.wait(), 30)
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def unpublished(pool: Pool) -> int:
    count: int = await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
    return count


async def until_delivered(pool: Pool) -> None:
    """Polls the outbox (the relay's own record is the truth of what was delivered), by the first
    unpublished row of the relay's index: counting a million of them every poll would take a core
    from the relay being measured."""
    while True:
        if not await pool.fetchval("SELECT EXISTS (SELECT 1 FROM outbox WHERE published_at IS NULL)"):
            return
        await asyncio.sleep(0.05)


async def drain(pool: Pool, relay: Relay, expected: int) -> float:
    """Seconds for the relay to deliver the `expected` events waiting in the outbox."""
    started = time.perf_counter()
    async with running(relay):
        await until_delivered(pool)
    return time.perf_counter() - started


async def bare_publish(pool: Pool, js: JetStreamContext, source: str) -> tuple[int, float]:
    """The same messages, published bare by `BARE_IN_FLIGHT` publishers at once; each chunk is read
    from the outbox and rendered before its publishing is timed."""
    await js.add_stream(StreamConfig(name="BARE", subjects=["bare.>"], storage=StorageType.FILE))
    count, elapsed, after = 0, 0.0, 0
    while True:
        rows = await pool.fetch(
            f"""SELECT event_id, event_type, customer_id, promotion_id, payload, {EVENT_TIME} AS committed_at
                FROM outbox WHERE event_id > $1 ORDER BY event_id LIMIT 20000""",
            after,
        )
        if not rows:
            return count, elapsed
        after = rows[-1]["event_id"]
        messages = iter([cloud_event(row, source) for row in rows])
        started = time.perf_counter()
        await asyncio.gather(*(_publisher(js, messages) for _ in range(BARE_IN_FLIGHT)))
        elapsed += time.perf_counter() - started
        count += len(rows)


async def _publisher(js: JetStreamContext, messages: Iterator[tuple[str, bytes, str]]) -> None:
    for subject, data, event_id in messages:
        await js.publish(f"bare.{subject}", data, headers={"Nats-Msg-Id": event_id})


async def grant_promotion(client: Client, pool: Pool, customers: int) -> None:
    promotions = PromotionsClient(client, pool, task_queue=TASK_QUEUE)
    now, promotion_id = datetime.now(UTC), f"bench-{uuid.uuid4().hex[:6]}"
    terms = PromotionTerms(
        promotion_id=promotion_id, name="bench", kind="credit", currency="USD", amount=1000,
        validity=Validity(expires_after=timedelta(days=14)), budget=Budget(amount=1000 * customers),
        starts_at=now, ends_at=now + timedelta(days=1),
    )  # fmt: skip
    await promotions.start(terms, (f"{promotion_id}-{i:08d}" for i in range(customers)))
    while True:
        with contextlib.suppress(UnknownPromotion):
            if (await promotions.status(promotion_id)).state == "active":
                return
        await asyncio.sleep(0.2)


async def lag_under_load(pool: Pool, relay: Relay, seconds: float) -> dict[str, float]:
    """Ledger redeems at `LAG_RATE` a second for `seconds`, the relay running: write-to-published."""
    ledger, run = LedgerActivities(pool), uuid.uuid4().hex[:6]
    for i in range(LAG_CUSTOMERS):
        customer = f"lag-{run}-{i}"
        await ledger.grant_lot(_grant(customer))
    since = datetime.now(UTC)
    tasks: list[asyncio.Task[object]] = []
    async with running(relay):
        started = time.perf_counter()
        for i in range(int(LAG_RATE * seconds)):
            await asyncio.sleep(max(0.0, started + i / LAG_RATE - time.perf_counter()))
            request = RedeemRequest(
                customer_id=f"lag-{run}-{i % LAG_CUSTOMERS}", order_id=f"o-{i}", currency="USD", total=1
            )
            tasks.append(asyncio.create_task(ledger.redeem(RedeemInput(request=request, as_of=datetime.now(UTC)))))
        await asyncio.gather(*tasks)
        achieved = len(tasks) / (time.perf_counter() - started)
        await until_delivered(pool)
    lags = [
        row["lag"]
        for row in await pool.fetch(
            """SELECT extract(epoch FROM published_at - created_at)::float8 AS lag FROM outbox
               WHERE event_type = 'redeemed' AND created_at >= $1 ORDER BY lag""",
            since,
        )
    ]
    return {
        "redeems_per_s": round(achieved),
        "lag_p50_ms": round(statistics.median(lags) * 1000, 1),
        "lag_p99_ms": round(lags[min(len(lags) - 1, int(len(lags) * 0.99))] * 1000, 1),
    }


def _grant(customer: str) -> GrantInput:
    request = GrantRequest(lot_id=f"{customer}-big", customer_id=customer, currency="USD", kind="credit", amount=10**9)
    return GrantInput(request=request, granted_at=datetime.now(UTC))


async def checkout_with_and_without(client: Client, pool: Pool, relay: Relay, rounds: int) -> dict[str, float]:
    """Sequential redeems through the wallets, chunks alternating relay stopped / running."""
    wallets, customer = IncentivesClient(client, pool, task_queue=TASK_QUEUE), f"checkout-{uuid.uuid4().hex[:6]}"
    await wallets.grant(
        GrantRequest(lot_id=f"{customer}-big", customer_id=customer, currency="USD", kind="credit", amount=10**9)
    )
    without: list[float] = []
    with_relay: list[float] = []
    for chunk in range(rounds):
        for relaying, latencies in ((False, without), (True, with_relay)):
            async with running(relay) if relaying else contextlib.nullcontext():
                for i in range(25):
                    order = f"{chunk}-{int(relaying)}-{i}"
                    t0 = time.perf_counter()
                    await wallets.redeem(RedeemRequest(customer_id=customer, order_id=order, currency="USD", total=1))
                    latencies.append(time.perf_counter() - t0)
    p50_without, p50_with = statistics.median(without) * 1000, statistics.median(with_relay) * 1000
    return {
        "redeem_p50_without_relay_ms": round(p50_without, 1),
        "redeem_p50_with_relay_ms": round(p50_with, 1),
        "ratio": round(p50_with / p50_without, 3),
    }


async def measure(customers: int, quick: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as scratch:
        nats_server = EmbeddedNats(Path(scratch) / "nats", free_port())
        nats_server.start()
        try:
            async with (
                servers(Path(scratch)) as running,
                build_worker(running.temporal.client, running.pool, TASK_QUEUE),
            ):
                client, pool, url = running.temporal.client, running.pool, running.postgres.url()
                return await _measure(client, pool, url, nats_server, customers, quick)
        finally:
            nats_server.stop()


async def _measure(
    client: Client, pool: Pool, database_url: str, nats_server: EmbeddedNats, customers: int, quick: bool
) -> dict[str, Any]:
    source = Settings().event_source
    broker = await connect_broker(Settings(nats_url=nats_server.url), name="bench events")
    try:
        js = broker.jetstream()
        await ensure_stream(js)
        relay = Relay(lambda: connect_one(database_url), js, source=source)
        checkout = await checkout_with_and_without(client, pool, relay, 2 if quick else 8)
        lag = await lag_under_load(pool, relay, 5 if quick else 20)
        await grant_promotion(client, pool, customers)
        waiting = await unpublished(pool)
        drained_s = await drain(pool, relay, waiting)
        bare_count, bare_s = await bare_publish(pool, js, source)
    finally:
        await broker.close()
    ours_per_s, bare_per_s = waiting / drained_s, bare_count / bare_s
    return {
        "checkout": checkout,
        "lag_at_200_redeems_per_s": lag,
        "drain": {
            "customers": customers,
            "events": waiting,
            "relay_s": round(drained_s, 1),
            "relay_per_s": round(ours_per_s),
            "bare_publish_messages": bare_count,
            "bare_publish_s": round(bare_s, 1),
            "bare_publish_per_s": round(bare_per_s),
            "ratio": round(ours_per_s / bare_per_s, 2),
        },
    }


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="./dev bench events", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("--customers", type=int, default=1_000_000, help="the promotion's audience (default 1,000,000)")
    parser.add_argument("--quick", action="store_true", help="fewer rounds, 50,000 customers unless --customers")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    configure_logging("WARNING")
    customers = 50_000 if args.quick and args.customers == 1_000_000 else args.customers
    figures = asyncio.run(measure(customers, args.quick))
    text = json.dumps(figures, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
