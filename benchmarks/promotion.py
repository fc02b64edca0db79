"""`./dev bench promotion --customers N`: a credit promotion for N synthetic customers, end to end
(start → every customer granted), beside two ceilings measured in the same run on the same
servers: COPY of the same rows into copies of the same tables (what Postgres can write at best),
and grants through wallets by update-with-start (the path a promotion does not take). Also: the
worker process's peak RSS, the promotion's history per run, the Temporal actions it cost, and how
long `reconcile` takes over the result."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from benchmarks.servers import servers
from incentives.adapters.db import Pool
from incentives.adapters.logs import configure_logging
from incentives.app.client import IncentivesClient
from incentives.app.promotions import PromotionsClient, UnknownPromotion
from incentives.app.reconcile import reconcile
from incentives.app.worker import build_worker
from incentives.domain.models import GrantRequest
from incentives.domain.promotions import BATCH_SIZE, Budget, PromotionTerms, Validity, promotion_workflow_id

WALLET_SAMPLE = 200
_ACTIONS = {
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED,
    EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
    EventType.EVENT_TYPE_TIMER_STARTED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED,
    EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES,
}


def customer_ids(n: int, prefix: str) -> Iterator[str]:
    return (f"{prefix}-{i:08d}" for i in range(n))


async def copy_ceiling(database_url: str, n: int) -> float:
    """COPY n lots, n ledger rows and n events into copies of the tables (their indexes and checks),
    on a plain connection: asyncpg's own binary codecs, the fastest COPY it has."""
    now = datetime.now(UTC)
    conn = await asyncpg.connect(database_url)
    try:
        return await _copy(conn, n, now)
    finally:
        await conn.close()


async def _copy(conn: asyncpg.Connection, n: int, now: datetime) -> float:
    """Into logged tables like the real ones (a temporary table would skip the WAL), then dropped."""
    tables = ("lots", "ledger_entries", "outbox")
    for table in tables:
        await conn.execute(f"CREATE TABLE copy_{table} (LIKE {table} INCLUDING ALL)")
    try:
        return await _copy_rows(conn, n, now)
    finally:
        for table in tables:
            await conn.execute(f"DROP TABLE copy_{table}")


async def _copy_rows(conn: asyncpg.Connection, n: int, now: datetime) -> float:
    async with conn.transaction():
        started = time.perf_counter()
        await conn.copy_records_to_table(
            "copy_lots",
            columns=["lot_id", "customer_id", "promotion_id", "kind", "currency", "amount_minor", "remaining_minor",
                     "status", "expires_at", "granted_at", "grant_digest", "clock_workflow_id"],
            records=((f"p:c{i}", f"c{i}", "p", "credit", "USD", 1000, 1000, "active", now + timedelta(days=14), now,
                      "d", "promotion:p") for i in range(n)),
        )  # fmt: skip
        await conn.copy_records_to_table(
            "copy_ledger_entries",
            columns=["entry_type", "lot_id", "customer_id", "promotion_id", "amount_minor", "currency"],
            records=(("grant", f"p:c{i}", f"c{i}", "p", 1000, "USD") for i in range(n)),
        )
        await conn.copy_records_to_table(
            "copy_outbox",
            columns=["event_type", "customer_id", "lot_id", "promotion_id", "payload"],
            records=(("granted", f"c{i}", f"p:c{i}", "p", '{"amount": 1000}') for i in range(n)),
        )
        return time.perf_counter() - started


async def wallet_path(client: Client, pool: Pool, task_queue: str) -> float:
    """Grants/s into new wallets by update-with-start, 50 in flight."""
    wallets = IncentivesClient(client, pool, task_queue=task_queue)
    gate = asyncio.Semaphore(50)
    run = uuid.uuid4().hex[:6]

    async def one(i: int) -> None:
        async with gate:
            customer = f"wallet-{run}-{i}"
            await wallets.grant(
                GrantRequest(lot_id=f"{customer}-l", customer_id=customer, currency="USD", kind="credit", amount=1000)
            )

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(WALLET_SAMPLE)))
    return WALLET_SAMPLE / (time.perf_counter() - started)


async def promotion_run(client: Client, pool: Pool, task_queue: str, n: int, batch_size: int) -> dict[str, Any]:
    promotions = PromotionsClient(client, pool, task_queue=task_queue, batch_size=batch_size)
    now = datetime.now(UTC)
    promotion_id = f"bench-{uuid.uuid4().hex[:6]}"
    terms = PromotionTerms(
        promotion_id=promotion_id, name="bench", kind="credit", currency="USD", amount=1000,
        validity=Validity(expires_after=timedelta(days=14)), budget=Budget(amount=1000 * n),
        starts_at=now, ends_at=now + timedelta(days=1),
    )  # fmt: skip
    started = time.perf_counter()
    await promotions.start(terms, customer_ids(n, promotion_id))
    staged = time.perf_counter() - started
    while True:
        with contextlib.suppress(UnknownPromotion):  # until the workflow has opened it
            status = await promotions.status(promotion_id)
            if status.state == "active":
                break
        await asyncio.sleep(0.2)
    granted_in = time.perf_counter() - started
    runs = [e async for e in client.list_workflows(f"WorkflowId = '{promotion_workflow_id(promotion_id)}'")]
    events, actions = [], 0
    for execution in runs:
        history = await client.get_workflow_handle(execution.id, run_id=execution.run_id).fetch_history()
        events.append(len(history.events))
        actions += sum(1 for event in history.events if event.event_type in _ACTIONS)
    reconciled_at = time.perf_counter()
    books = await reconcile(pool, promotion=promotion_id)
    return {
        "customers": n,
        "granted": status.granted,
        "staging_s": round(staged, 2),
        "start_to_all_granted_s": round(granted_in, 2),
        "grants_per_s": round(n / granted_in),
        "runs": len(runs),
        "max_history_events_per_run": max(events),
        "temporal_actions": actions,
        "reconcile_s": round(time.perf_counter() - reconciled_at, 2),
        "reconcile_ok": books.ok,
    }


async def measure(customers: int, batch_size: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as scratch:
        async with servers(Path(scratch), pool_size=8) as running:
            env, pool = running.temporal, running.pool
            async with build_worker(env.client, pool, "bench-promotion"):
                copy_s = await copy_ceiling(running.postgres.url(), customers)
                ours = await promotion_run(env.client, pool, "bench-promotion", customers, batch_size)
                wallets_per_s = await wallet_path(env.client, pool, "bench-promotion")
    copy_per_s = customers / copy_s
    return {
        **ours,
        "copy_ceiling_s": round(copy_s, 2),
        "copy_ceiling_per_s": round(copy_per_s),
        "ratio_to_copy": round(ours["grants_per_s"] / copy_per_s, 2),
        "wallet_path_per_s": round(wallets_per_s),
        "ratio_to_wallet_path": round(ours["grants_per_s"] / wallets_per_s),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "batch_size": batch_size,
    }


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="./dev bench promotion", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    configure_logging("WARNING")
    figures = asyncio.run(measure(args.customers, args.batch_size))
    text = json.dumps(figures, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
