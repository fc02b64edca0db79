"""The promotion activities: set-based writes, so a grant costs Postgres rows, not a workflow.

Guarantees, for every activity here:
- A batch is one transaction: its lots, their `grant` ledger rows, their `granted` events, the
  promotion's counters and the budget (and pool) reservation commit together or not at all.
- Idempotent: a batch is recorded under (promotion, first position) and a retry returns the
  recorded outcome; lot ids are deterministic (`promotion_lot_id` in SQL), so nothing can grant
  twice. Clock transitions select only lots still due (pending, unreminded, live), so a repeated
  tick finds nothing left to do.
- Guarded in Postgres: a batch counts its grants under the promotion's row lock (near a limit it
  takes the lock, and its pool's, before granting), and CHECK constraints refuse committing past
  a budget, a pool cap or `max_grants` even to a stale caller.
- Bounded: a clock transition works in chunks of `CHUNK` lots, each its own transaction, so
  expiring a million lots never holds a million row locks at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

import asyncpg
from temporalio import activity

from activities.counting import COUNTED, Meter
from activities.ledger_writes import activity_log, announce_thresholds, fetch_one, origin, rejections_as_failures
from incentives.adapters.db import Connection, Pool, numbered
from incentives.adapters.rows import Row
from incentives.domain.errors import AudienceNotStaged, BatchRefused, PoolConflict, PromotionConflict
from incentives.domain.models import EntryType
from incentives.domain.promotions import (
    BATCHES_IN_FLIGHT,
    BatchOutcome,
    ClockInput,
    ClockOutcome,
    GrantBatchInput,
    OpenPromotion,
    PromotionFigures,
    PromotionTerms,
    RevokeOutstanding,
    SkipReason,
    StateChange,
    promotion_workflow_id,
)

CHUNK = 20_000
_HEARTBEAT_EVERY = 2.0

T = TypeVar("T")


class PromotionActivities:
    def __init__(self, pool: Pool, meter: Meter = COUNTED) -> None:
        self._pool = pool
        self._meter = meter

    def activities(self) -> list[Callable[..., Any]]:
        return [self.open_promotion, self.grant_batch, self.tick_clock, self.record_state, self.revoke_outstanding]

    @activity.defn(name="open_promotion")
    async def open_promotion(self, opening: OpenPromotion) -> None:
        """Writes the promotion's row (and its pool's) once; the same terms again change nothing."""
        terms = opening.terms
        with rejections_as_failures():
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended('promotion:' || $1, 0))", terms.promotion_id
                )
                await _check_audience(conn, opening)
                existing = await conn.fetchrow(
                    "SELECT terms_digest FROM promotions WHERE promotion_id = $1", terms.promotion_id
                )
                if existing is not None:
                    if existing["terms_digest"] != terms.digest():
                        raise PromotionConflict(f"promotion {terms.promotion_id} already exists with different terms")
                    return
                await _join_pool(conn, terms)
                await _insert_promotion(conn, terms)
        activity_log(promotion_id=terms.promotion_id).info("promotion opened", budget=terms.budget.amount)

    @activity.defn(name="grant_batch")
    async def grant_batch(self, batch: GrantBatchInput) -> BatchOutcome:
        """Grants one lot per eligible audience entry in [first, last] that fits the budget. A batch
        the database refuses for good (`_refused_for_good`) is `BatchRefused`, not retried."""
        with rejections_as_failures():
            try:
                return await _heartbeating(self._grant_batch(batch))
            except asyncpg.PostgresError as error:
                if not _refused_for_good(error):
                    raise
                reason = f"{type(error).__name__}: {str(error).splitlines()[0]}"
                activity_log(promotion_id=batch.promotion_id).error("batch refused by the database", error=reason)
                raise BatchRefused(
                    f"the database refused the batch from position {batch.first_position}: {reason}"
                ) from None

    async def _grant_batch(self, batch: GrantBatchInput) -> BatchOutcome:
        log = activity_log(promotion_id=batch.promotion_id, first_position=batch.first_position)
        async with self._pool.acquire() as conn, conn.transaction():
            recorded = await _recorded(conn, batch)
            if recorded is not None:
                log.info("batch already granted")
                return recorded
            outcome, terms = await _grant(conn, batch)
        self._meter.granted_by_promotion(outcome.granted)
        self._meter.moved_in_bulk("grant", terms.currency, outcome.granted * (terms.amount or 0))
        log.info("batch granted", granted=outcome.granted, skipped=outcome.skipped, committed=outcome.committed)
        return outcome

    @activity.defn(name="tick_clock")
    async def tick_clock(self, clock: ClockInput) -> ClockOutcome:
        """Applies every transition due at `as_of` to the promotion's lots, then says when the next is due."""
        return await _heartbeating(self._tick(clock))

    async def _tick(self, clock: ClockInput) -> ClockOutcome:
        keeper = promotion_workflow_id(clock.promotion_id)
        activated, _ = await self._in_chunks(_ACTIVATE, None, keeper, clock.as_of)
        reminded, _ = await self._in_chunks(_REMIND, None, keeper, clock.as_of)
        expired, expired_value = await self._in_chunks(_EXPIRE, "expire", keeper, clock.as_of, *origin())
        async with self._pool.acquire() as conn:
            state = await fetch_one(conn, _CLOCK_STATE, keeper, clock.as_of)
        outcome = ClockOutcome(
            activated=activated,
            reminded=reminded,
            expired=expired,
            expired_value=expired_value,
            holding=state["holding"],
            next_due=state["next_due"],
        )
        activity_log(promotion_id=clock.promotion_id).info("clock ticked", **outcome.model_dump(mode="json"))
        return outcome

    @activity.defn(name="revoke_outstanding")
    async def revoke_outstanding(self, revoke: RevokeOutstanding) -> int:
        """Revokes every live lot of the promotion (a cancel with `--revoke-outstanding`)."""
        keeper = promotion_workflow_id(revoke.promotion_id)
        count, value = await _heartbeating(
            self._in_chunks(_REVOKE, "revoke", keeper, revoke.as_of, *origin(), revoke.reason)
        )
        activity_log(promotion_id=revoke.promotion_id).info("outstanding lots revoked", lots=count, amount=value)
        return count

    @activity.defn(name="record_state")
    async def record_state(self, change: StateChange) -> PromotionFigures | None:
        """Records the promotion's state; with `write_report`, its report from the ledger too. The
        promotion's row is locked first: a write-off after close waits for it, then finds the
        promotion closed and moves the stored report with it (`activities.ledger_writes`)."""
        async with self._pool.acquire() as conn, conn.transaction():
            await _lock(conn, change.promotion_id)
            figures = await promotion_figures(conn, change.promotion_id) if change.write_report else None
            report = None
            if figures is not None:
                report = {"final": change.state == "closed", "as_of": change.as_of.isoformat(), **figures.model_dump()}
            await conn.execute(
                """UPDATE promotions SET state = $2, report = coalesce($3::jsonb, report), updated_at = $4,
                                         ends_at = $5, failure = $6
                   WHERE promotion_id = $1""",
                change.promotion_id,
                change.state,
                report,
                change.as_of,
                change.ends_at,
                change.failure,
            )
        activity_log(promotion_id=change.promotion_id).info("promotion state", state=change.state)
        return figures

    async def _in_chunks(
        self, sql: str, entry_type: EntryType | None, keeper: str, as_of: datetime, *extra: object
    ) -> tuple[int, int]:
        """Runs a chunked transition until a chunk comes back short; returns (lots, value) in all.
        The value each chunk wrote off is counted as its `entry_type` once the chunk has committed."""
        lots = value = 0
        while True:
            async with self._pool.acquire() as conn, conn.transaction():
                row = await fetch_one(conn, sql, keeper, as_of, CHUNK, *extra)
            if entry_type is not None:
                self._meter.moved_in_bulk(entry_type, row["currency"], row["value"])
            lots += row["lots"]
            value += row["value"]
            if row["lots"] < CHUNK:
                return lots, value


async def _heartbeating(work: Awaitable[T]) -> T:
    """Awaits `work`, heartbeating meanwhile: a worker that dies mid-batch is noticed in seconds,
    not at the activity's start-to-close timeout, and the batch is retried elsewhere.

    When the activity is cancelled (the workflow cancelled it, the heartbeat timed out, the worker
    shuts down), so is `work`: its transaction is rolled back before this returns, so nothing
    keeps writing while Temporal retries the activity elsewhere. If `work` had already finished,
    its result stands (it committed)."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=_HEARTBEAT_EVERY)
            if done:
                return task.result()
            if activity.in_activity():
                activity.heartbeat()
    except asyncio.CancelledError:
        task.cancel()  # does nothing if it already finished
        return await task  # its result if it committed first; else its cancellation, once rolled back


# Constraints a concurrent writer can trip and a retry resolves: the budget, max_grants and the
# pool are guarded by CHECKs that refuse an overrun, and the retry grants what fits under the lock.
_RETRYABLE_CONSTRAINTS = frozenset({"within_budget", "within_max_grants", "pool_within_cap"})


def _refused_for_good(error: asyncpg.PostgresError) -> bool:
    """A data or integrity error no retry can change (a lot's own CHECK, a value out of range);
    not a unique key (two attempts of one batch racing) nor a budget CHECK (a race a retry resolves)."""
    if isinstance(error, asyncpg.UniqueViolationError):
        return False
    if isinstance(error, asyncpg.IntegrityConstraintViolationError):
        return getattr(error, "constraint_name", None) not in _RETRYABLE_CONSTRAINTS
    return isinstance(error, asyncpg.DataError)


# -- open -----------------------------------------------------------------------------------------


async def _check_audience(conn: Connection, opening: OpenPromotion) -> None:
    load = opening.audience
    staged = await conn.fetchrow(
        "SELECT checksum, first_position, size FROM promotion_audience_loads WHERE promotion_id = $1 AND load_no = $2",
        opening.terms.promotion_id,
        load.load_no,
    )
    if staged is None or (staged["checksum"], staged["first_position"], staged["size"]) != (
        load.checksum,
        load.first_position,
        load.size,
    ):
        raise AudienceNotStaged(
            f"audience load {load.load_no} of promotion {opening.terms.promotion_id} is not staged as started"
        )


async def _join_pool(conn: Connection, terms: PromotionTerms) -> None:
    pool = terms.budget.pool
    if pool is None:
        return
    await conn.execute(
        """INSERT INTO promotion_pools (pool_id, currency, cap_minor) VALUES ($1, $2, $3)
           ON CONFLICT (pool_id) DO NOTHING""",
        pool.pool_id,
        terms.currency,
        pool.amount,
    )
    row = await fetch_one(conn, "SELECT currency, cap_minor FROM promotion_pools WHERE pool_id = $1", pool.pool_id)
    if (row["currency"], row["cap_minor"]) != (terms.currency, pool.amount):
        raise PoolConflict(
            f"budget.pool.amount: pool {pool.pool_id} has a cap of {row['cap_minor']} {row['currency']} minor units; "
            "every promotion naming it must give the same"
        )


async def _insert_promotion(conn: Connection, terms: PromotionTerms) -> None:
    workflow_id, run_id = origin()
    await conn.execute(
        """INSERT INTO promotions (promotion_id, name, kind, currency, terms, terms_digest, budget_minor,
                                   max_grants, pool_id, state, ends_at, workflow_id, run_id)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'scheduled', $10, $11, $12)""",
        terms.promotion_id,
        terms.name,
        terms.kind,
        terms.currency,
        terms.model_dump(mode="json"),
        terms.digest(),
        terms.budget.amount,
        terms.budget.max_grants,
        terms.budget.pool.pool_id if terms.budget.pool else None,
        terms.ends_at,
        workflow_id,
        run_id,
    )


# -- grant ----------------------------------------------------------------------------------------


async def _recorded(conn: Connection, batch: GrantBatchInput) -> BatchOutcome | None:
    """The batch's outcome if it committed already. Two attempts of one batch racing both find
    none; the later one then waits on the earlier one's lot ids and fails on the batch's primary
    key (or as a deadlock victim), and its retry finds the earlier one's outcome here."""
    recorded = await conn.fetchval(
        "SELECT outcome FROM promotion_batches WHERE promotion_id = $1 AND first_position = $2",
        batch.promotion_id,
        batch.first_position,
    )
    return None if recorded is None else BatchOutcome.model_validate(recorded)


async def _grant(conn: Connection, batch: GrantBatchInput) -> tuple[BatchOutcome, PromotionTerms]:
    """Far from every limit (room for `BATCHES_IN_FLIGHT` whole batches), the batch writes its rows
    first and locks the promotion only to count them, so the batches in flight write at once; the
    CHECKs still refuse any overrun (another promotion on the pool), and the retry takes the other
    way. Near a limit, it locks the promotion and its pool first and grants what fits, in audience
    order."""
    promotion = await fetch_one(conn, "SELECT * FROM promotions WHERE promotion_id = $1", batch.promotion_id)
    terms = PromotionTerms.model_validate(promotion["terms"])
    fit, bound = await _room(conn, promotion, terms, lock=False)
    if fit < BATCHES_IN_FLIGHT * (batch.last_position - batch.first_position + 1):
        promotion = await _lock(conn, batch.promotion_id)
        fit, bound = await _room(conn, promotion, terms, lock=True)
    sql, values = numbered(_GRANT, _grant_args(terms, batch, fit))
    counts = await fetch_one(conn, sql, *values)
    promotion = await _lock(conn, batch.promotion_id)
    granted = counts["granted"]
    skipped: dict[SkipReason, int] = {
        "per_customer": counts["entries"] - counts["eligible"],
        bound: counts["eligible"] - min(counts["eligible"], fit),
        "lot_id_taken": min(counts["eligible"], fit) - granted,
    }
    outcome = BatchOutcome(
        granted=granted,
        skipped={reason: n for reason, n in skipped.items() if n},
        committed=granted * terms.grant_cost,
        budget_met=granted >= fit,  # no room left: the next batch would grant nothing
    )
    await _commit(conn, promotion, terms, batch, outcome, counts["entries"])
    return outcome, terms


async def _lock(conn: Connection, promotion_id: str) -> Row:
    """The promotion's row, locked as its counters, state and report are written. NO KEY UPDATE: the
    writes never touch its key, so a batch recording itself (whose foreign key share-locks the
    row) does not wait for the batch in flight beside it, nor for a state being recorded."""
    return await fetch_one(conn, "SELECT * FROM promotions WHERE promotion_id = $1 FOR NO KEY UPDATE", promotion_id)


async def _room(conn: Connection, promotion: Row, terms: PromotionTerms, *, lock: bool) -> tuple[int, SkipReason]:
    """How many more lots the promotion may grant, and which limit says so; with `lock`, the
    pool's row stays locked to the end of the transaction."""
    room: list[tuple[int, SkipReason]] = []
    if terms.budget.max_grants is not None:
        room.append((terms.budget.max_grants - promotion["granted_count"], "max_grants"))
    if terms.grant_cost:
        room.append(((promotion["budget_minor"] - promotion["committed_minor"]) // terms.grant_cost, "budget"))
        if promotion["pool_id"] is not None:
            pool = await fetch_one(
                conn,
                "SELECT cap_minor - committed_minor AS left_minor FROM promotion_pools WHERE pool_id = $1"
                + (" FOR UPDATE" if lock else ""),
                promotion["pool_id"],
            )
            room.append((pool["left_minor"] // terms.grant_cost, "pool"))
    return min(room, default=(2**62, "budget"))


def _grant_args(terms: PromotionTerms, batch: GrantBatchInput, fit: int) -> dict[str, object]:
    validity, coupon = terms.validity, terms.coupon
    effective_at = validity.effective_at(batch.wave)
    workflow_id, run_id = origin()
    return {
        "promotion_id": batch.promotion_id,
        "first_position": batch.first_position,
        "last_position": batch.last_position,
        "per_customer": terms.budget.per_customer,
        "fit": fit,
        "clock": promotion_workflow_id(batch.promotion_id),
        "kind": terms.kind,
        "currency": terms.currency,
        "amount": terms.amount or 0,
        "amount_off": coupon.amount_off if coupon else None,
        "percent_off": coupon.percent_off if coupon else None,
        "cap": coupon.cap if coupon else None,
        "min_order": coupon.min_order if coupon else None,
        "uses": coupon.uses if coupon else None,
        "status": "pending" if effective_at is not None and effective_at > batch.wave else "active",
        "effective_at": effective_at,
        "expires_at": validity.expires_at_for(batch.wave),
        "remind_before": validity.remind_before,
        "granted_at": batch.wave,
        "grant_digest": f"promotion:{terms.digest()}",
        "workflow_id": workflow_id,
        "run_id": run_id,
    }


async def _commit(
    conn: Connection, promotion: Row, terms: PromotionTerms, batch: GrantBatchInput, outcome: BatchOutcome, entries: int
) -> None:
    """The batch's counters, budget and pool reservation, thresholds and record: CHECKs guard them."""
    skipped = dict(promotion["skipped"])
    for reason, n in outcome.skipped.items():
        skipped[reason] = skipped.get(reason, 0) + n
    committed = promotion["committed_minor"] + outcome.committed
    await conn.execute(
        """UPDATE promotions SET processed = processed + $2, granted_count = granted_count + $3,
               committed_minor = $4, skipped = $5,
               state = CASE WHEN state = 'scheduled' THEN 'granting' ELSE state END, updated_at = $6
           WHERE promotion_id = $1""",
        batch.promotion_id,
        entries,
        outcome.granted,
        committed,
        skipped,
        batch.wave,
    )
    if promotion["pool_id"] is not None and outcome.committed:
        await conn.execute(
            "UPDATE promotion_pools SET committed_minor = committed_minor + $2 WHERE pool_id = $1",
            promotion["pool_id"],
            outcome.committed,
        )
    await announce_thresholds(
        conn,
        batch.promotion_id,
        before=promotion["threshold_reached"],
        committed=committed,
        budget=promotion["budget_minor"],
        currency=terms.currency,
    )
    workflow_id, run_id = origin()
    await conn.execute(
        """INSERT INTO promotion_batches (promotion_id, first_position, last_position, wave, outcome, workflow_id, run_id)
           VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        batch.promotion_id,
        batch.first_position,
        batch.last_position,
        batch.wave,
        outcome.model_dump(mode="json"),
        workflow_id,
        run_id,
    )


# One statement: the audience entries of the range, each with its ordinal among the customer's
# lots of this promotion; those within `per_customer`, in audience order, up to `fit`; their lots
# (a lot id taken already is skipped, never overwritten), ledger rows and events. A customer's
# earlier lots can only come from an earlier load (a load holds each customer once, and batches
# never straddle loads), so entries of the first load skip the lookup; later ones probe the
# deterministic lot ids by primary key, never a scan.
_GRANT = """
WITH later AS (
    SELECT coalesce(min(first_position), 9223372036854775807) AS first_position
    FROM promotion_audience_loads WHERE promotion_id = :promotion_id AND load_no > 0
),
entries AS (
    SELECT a.position, a.customer_id,
           row_number() OVER (PARTITION BY a.customer_id ORDER BY a.position)
           + CASE WHEN a.position < (SELECT first_position FROM later) THEN 0
                  ELSE (SELECT count(*) FROM generate_series(1, :per_customer::int) k
                        WHERE EXISTS (SELECT 1 FROM lots
                                      WHERE lot_id = promotion_lot_id(:promotion_id, a.customer_id, k)))
             END AS ordinal
    FROM promotion_audience a
    WHERE a.promotion_id = :promotion_id AND a.position BETWEEN :first_position AND :last_position
),
eligible AS (
    SELECT position, customer_id, ordinal, row_number() OVER (ORDER BY position) AS k
    FROM entries WHERE ordinal <= :per_customer
),
inserted AS (
    INSERT INTO lots (lot_id, customer_id, promotion_id, kind, currency, amount_minor, remaining_minor,
                      coupon_amount_off_minor, coupon_percent_off, coupon_cap_minor, coupon_min_order_minor,
                      uses_allowed, uses_left, status, effective_at, expires_at, remind_before, granted_at,
                      grant_digest, clock_workflow_id)
    SELECT promotion_lot_id(:promotion_id, customer_id, ordinal), customer_id, :promotion_id, :kind, :currency,
           :amount, :amount, :amount_off, :percent_off, :cap, :min_order, :uses, :uses, :status, :effective_at,
           :expires_at, :remind_before, :granted_at, :grant_digest, :clock
    FROM eligible WHERE k <= :fit ORDER BY position
    ON CONFLICT (lot_id) DO NOTHING
    RETURNING lots AS lot, lot_id, customer_id, amount_minor, currency
),
ledger AS (
    INSERT INTO ledger_entries (entry_type, lot_id, customer_id, promotion_id, amount_minor, currency,
                                workflow_id, run_id)
    SELECT 'grant', lot_id, customer_id, :promotion_id, amount_minor, currency, :workflow_id, :run_id FROM inserted
),
events AS (
    INSERT INTO outbox (event_type, customer_id, lot_id, promotion_id, payload)
    SELECT 'granted', customer_id, lot_id, :promotion_id, lot_event(lot, amount_minor, NULL, NULL, NULL)
    FROM inserted ORDER BY lot_id
)
SELECT (SELECT count(*) FROM entries) AS entries,
       (SELECT count(*) FROM eligible) AS eligible,
       (SELECT count(*) FROM inserted) AS granted
"""

# -- clock ----------------------------------------------------------------------------------------
# Each takes ($1 keeper, $2 as_of, $3 chunk) and returns (lots, value); a write-off also ($4 workflow
# id, $5 run id) for its ledger rows, and a revocation ($6 reason).
# `FOR UPDATE` returns each lot as it is once locked, so a redemption committed meanwhile is seen.

_ACTIVATE = """
WITH due AS (
    SELECT lot_id FROM lots WHERE clock_workflow_id = $1 AND status = 'pending' AND effective_at <= $2
    ORDER BY lot_id LIMIT $3 FOR UPDATE
),
done AS (
    UPDATE lots l SET status = 'active' FROM due WHERE l.lot_id = due.lot_id
    RETURNING l AS lot, l.lot_id, l.customer_id, l.promotion_id
),
events AS (
    INSERT INTO outbox (event_type, customer_id, lot_id, promotion_id, payload)
    SELECT 'activated', customer_id, lot_id, promotion_id, lot_event(lot, 0, NULL, NULL, NULL)
    FROM done ORDER BY lot_id
)
SELECT count(*) AS lots, 0::bigint AS value FROM done
"""

_REMIND = """
WITH due AS (
    SELECT lot_id FROM lots
    WHERE clock_workflow_id = $1 AND status IN ('pending', 'active') AND reminded_at IS NULL
      AND expires_at - remind_before <= $2 AND expires_at > $2 AND (remaining_minor > 0 OR uses_left > 0)
    ORDER BY lot_id LIMIT $3 FOR UPDATE
),
done AS (
    UPDATE lots l SET reminded_at = $2 FROM due WHERE l.lot_id = due.lot_id
    RETURNING l AS lot, l.lot_id, l.customer_id, l.promotion_id
),
events AS (
    INSERT INTO outbox (event_type, customer_id, lot_id, promotion_id, payload)
    SELECT 'reminder', customer_id, lot_id, promotion_id, lot_event(lot, 0, NULL, NULL, NULL)
    FROM done ORDER BY lot_id
)
SELECT count(*) AS lots, 0::bigint AS value FROM done
"""

_WRITE_OFF = """
WITH due AS (
    SELECT lot_id, remaining_minor FROM lots
    WHERE clock_workflow_id = $1 AND status IN ({live}) AND {due}
    ORDER BY lot_id LIMIT $3 FOR UPDATE
),
done AS (
    UPDATE lots l SET remaining_minor = 0, status = '{status}' FROM due WHERE l.lot_id = due.lot_id
    RETURNING l AS lot, l.lot_id, l.customer_id, l.promotion_id, l.currency, due.remaining_minor AS amount
),
ledger AS (
    INSERT INTO ledger_entries (entry_type, lot_id, customer_id, promotion_id, amount_minor, currency, reason,
                                workflow_id, run_id)
    SELECT '{entry}', lot_id, customer_id, promotion_id, -amount, currency, {reason}, $4, $5 FROM done
),
events AS (
    INSERT INTO outbox (event_type, customer_id, lot_id, promotion_id, payload)
    SELECT '{status}', customer_id, lot_id, promotion_id, lot_event(lot, -amount, NULL, NULL, {reason})
    FROM done ORDER BY lot_id
)
SELECT count(*) AS lots, coalesce(sum(amount), 0)::bigint AS value, min(currency) AS currency FROM done
"""
_EXPIRE = _WRITE_OFF.format(
    live="'pending', 'active'", due="expires_at <= $2", status="expired", entry="expire", reason="NULL::text"
)
# Revoking a cancelled promotion's outstanding lots takes its used-up lots too: value a reversal
# would bring back to them later is then written off at once, so the promotion can close now.
_REVOKE = _WRITE_OFF.format(
    live="'pending', 'active', 'used_up'",
    due="$2::timestamptz IS NOT NULL",
    status="revoked",
    entry="revoke",
    reason="$6::text",
)

# How many of the promotion's lots still hold value or may get some back (a used-up lot before its
# expiry: a reversal restores value to it), and the next instant any of them is due. The promotion
# closes only when none is left, so every lot that holds value has a running clock.
_CLOCK_STATE = """
SELECT count(*) AS holding,
       least(min(effective_at) FILTER (WHERE status = 'pending'),
             min(expires_at - remind_before) FILTER (
                 WHERE status <> 'used_up' AND reminded_at IS NULL AND (remaining_minor > 0 OR uses_left > 0)),
             min(expires_at)) AS next_due
FROM lots
WHERE clock_workflow_id = $1 AND (status IN ('pending', 'active') OR (status = 'used_up' AND expires_at > $2))
"""


# -- report ---------------------------------------------------------------------------------------


# What became of a promotion's lots, summed from its ledger rows other than grants: an index range
# (`ledger_by_promotion`) that is empty while a promotion grants, so a status is cheap to poll.
_MOVEMENTS = """
SELECT coalesce(-sum(amount_minor) FILTER (WHERE entry_type = 'redeem'), 0) AS redeemed,
       coalesce(sum(amount_minor) FILTER (WHERE entry_type = 'reverse'), 0) AS reversed,
       coalesce(-sum(amount_minor) FILTER (WHERE entry_type = 'expire'), 0) AS expired,
       coalesce(-sum(amount_minor) FILTER (WHERE entry_type = 'revoke'), 0) AS revoked
FROM ledger_entries WHERE promotion_id = $1 AND entry_type IN ('redeem', 'reverse', 'expire', 'revoke')
"""


async def promotion_movements(conn: Connection, promotion_id: str) -> Row:
    """Redeemed, reversed, expired and revoked (minor units) of a promotion's lots."""
    return await fetch_one(conn, _MOVEMENTS, promotion_id)


async def promotion_figures(conn: Connection, promotion_id: str) -> PromotionFigures:
    """A promotion's books from its ledger rows (and its live coupons' uses): every grant row is
    read, so this is for reports, not for watching a promotion grant."""
    row = await fetch_one(
        conn,
        """SELECT p.currency, p.kind,
                  count(DISTINCT e.customer_id) AS customers, count(e.entry_id) AS lots,
                  coalesce(sum(e.amount_minor), 0) AS granted,
                  (SELECT coalesce(sum(uses_left), 0) FROM lots
                   WHERE clock_workflow_id = $2 AND status IN ('pending', 'active')) AS uses_left
           FROM promotions p
           LEFT JOIN ledger_entries e ON e.promotion_id = p.promotion_id AND e.entry_type = 'grant'
           WHERE p.promotion_id = $1 GROUP BY p.currency, p.kind""",
        promotion_id,
        promotion_workflow_id(promotion_id),
    )
    moved = await promotion_movements(conn, promotion_id)
    credit_left = row["granted"] - moved["redeemed"] + moved["reversed"] - moved["expired"] - moved["revoked"]
    return PromotionFigures(
        promotion_id=promotion_id,
        currency=row["currency"],
        customers_granted=row["customers"],
        lots_granted=row["lots"],
        granted=row["granted"],
        redeemed=moved["redeemed"],
        reversed=moved["reversed"],
        expired=moved["expired"],
        revoked=moved["revoked"],
        outstanding=credit_left if row["kind"] == "credit" else 0,
        coupon_uses_left=row["uses_left"],
    )
