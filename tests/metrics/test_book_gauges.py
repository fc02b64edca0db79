"""The books' gauges, read from a database of their own: exact values, absent while nobody leads,
and one worker leading at a time, another taking over when it goes."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from activities.ledger import LedgerActivities
from activities.promotions import PromotionActivities
from activities.reconcile import ReconcileActivities
from incentives.adapters.db import Pool, connect_one, create_pool
from incentives.adapters.migrations import migrate
from incentives.app.audience import stage_audience
from incentives.app.book_gauges import BookGauges
from incentives.devstack.servers import EmbeddedPostgres
from incentives.domain.messages import RedeemInput, RevokeInput
from incentives.domain.models import RedeemRequest, RevokeRequest
from incentives.domain.promotions import GrantBatchInput, OpenPromotion
from incentives.domain.reconcile import ReconcileRequest
from tests.helpers import eventually
from tests.helpers.builders import T0, NewId, at, credit, promotion

DAY = timedelta(days=1)


@pytest.fixture
async def books(postgres: EmbeddedPostgres) -> AsyncIterator[tuple[str, Pool]]:
    name = f"gauges_{uuid.uuid4().hex[:10]}"
    await postgres.create_database(name)
    url = postgres.url(name)
    pool = await create_pool(url, max_size=4)
    await migrate(pool)
    try:
        yield url, pool
    finally:
        await pool.close()


def values(gauges: BookGauges) -> dict[tuple[str, tuple[str, ...]], float]:
    return {
        (sample.name, tuple(sample.labels.values())): sample.value
        for family in gauges.collect()
        for sample in family.samples
    }


async def test_the_gauges_are_the_books_liability_budget_burn_and_outbox_age(
    books: tuple[str, Pool], new_id: NewId
) -> None:
    url, pool = books
    ledger, customer = LedgerActivities(pool), new_id("c")
    await ledger.grant_lot(at(credit(new_id("lot"), customer, 1000, expires_in=30 * DAY)))
    await ledger.grant_lot(at(credit(new_id("lot"), customer, 300, "EUR", effective_at=T0 + DAY, expires_in=9 * DAY)))
    revoked = new_id("lot")
    await ledger.grant_lot(at(credit(revoked, customer, 500, "JPY", expires_in=9 * DAY)))
    await ledger.revoke_lot(
        RevokeInput(request=RevokeRequest(customer_id=customer, lot_id=revoked, reason="x"), as_of=T0)
    )
    request = RedeemRequest(customer_id=customer, order_id=new_id("o"), currency="USD", total=250)
    await ledger.redeem(RedeemInput(request=request, as_of=T0))
    promotion_id = new_id("p")
    terms = promotion(promotion_id, T0, amount=300, budget=1200)
    load = await stage_audience(
        pool, promotion_id, [new_id("c"), new_id("c")], first_load=True, terms_digest=terms.digest()
    )
    activities = PromotionActivities(pool)
    await activities.open_promotion(OpenPromotion(terms=terms, audience=load))
    await activities.grant_batch(GrantBatchInput(promotion_id=promotion_id, first_position=1, last_position=2, wave=T0))
    await pool.execute(
        "UPDATE outbox SET created_at = now() - interval '90 seconds' WHERE event_id = (SELECT min(event_id) FROM outbox)"
    )

    gauges = BookGauges(timedelta(seconds=60))
    async with _session(url) as conn:
        await gauges.refresh(conn)
    got = values(gauges)
    # 1000 - 250 redeemed; pending lots are liability too; a revoked lot is none; 2 promotion lots of 300.
    assert got[("incentives_outstanding_minor", ("USD",))] == 750 + 600
    assert got[("incentives_outstanding_minor", ("EUR",))] == 300
    assert got[("incentives_outstanding_minor", ("JPY",))] == 0
    assert got[("incentives_promotion_budget_used_ratio", (promotion_id,))] == 0.5
    assert 90 <= got[("incentives_outbox_oldest_unpublished_seconds", ())] < 120
    assert ("incentives_reconcile_violations", ()) not in got  # no scheduled reconcile has run yet

    await pool.execute("UPDATE outbox SET published_at = now()")
    await pool.execute("UPDATE promotions SET state = 'closed' WHERE promotion_id = $1", promotion_id)
    await pool.execute("UPDATE lots SET remaining_minor = remaining_minor - 1 WHERE currency = 'EUR'")  # a violation
    summary = await ReconcileActivities(pool).reconcile_books(ReconcileRequest(run_id="r1", workflow_id="reconcile-1"))
    async with _session(url) as conn:
        await gauges.refresh(conn)
    got = values(gauges)
    assert got[("incentives_outbox_oldest_unpublished_seconds", ())] == 0
    assert summary.checks["lot_balance"] == 1  # (and the closed promotion's lots that still hold value)
    assert got[("incentives_reconcile_violations", ())] == summary.violations
    finished = got[("incentives_reconcile_last_finished_timestamp_seconds", ())]
    assert abs(finished - datetime.now(UTC).timestamp()) < 60
    assert ("incentives_promotion_budget_used_ratio", (promotion_id,)) not in got  # closed: no longer burning


async def test_one_worker_leads_and_another_takes_over_when_it_goes(books: tuple[str, Pool]) -> None:
    url, _ = books
    first, second = BookGauges(timedelta(milliseconds=50)), BookGauges(timedelta(milliseconds=50))
    sessions: list[asyncpg.Connection[asyncpg.Record]] = []

    async def connect() -> asyncpg.Connection[asyncpg.Record]:
        sessions.append(await connect_one(url))
        return sessions[-1]

    leading = asyncio.create_task(first.run(connect))
    await asyncio.wait_for(first.leading.wait(), 10)
    waiting = asyncio.create_task(second.run(connect))
    try:

        async def first_serves() -> None:
            assert values(first)

        await eventually(first_serves, timeout=10)

        async def second_waits_for_the_lock() -> None:
            waiting_sessions = await sessions[0].fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            )
            assert waiting_sessions == 1

        await eventually(second_waits_for_the_lock, timeout=10)
        assert not second.leading.is_set()
        assert not values(second)
        leading.cancel()  # the leader goes: its session closes, and with it the lock
        with contextlib.suppress(asyncio.CancelledError):
            await leading
        assert not values(first)
        await asyncio.wait_for(second.leading.wait(), 10)

        async def second_serves() -> None:
            assert values(second)

        await eventually(second_serves, timeout=10)
    finally:
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting


@contextlib.asynccontextmanager
async def _session(url: str) -> AsyncIterator[asyncpg.Connection[asyncpg.Record]]:
    conn = await connect_one(url)
    try:
        yield conn
    finally:
        await conn.close()
