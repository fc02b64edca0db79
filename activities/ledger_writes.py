"""The write primitives every ledger activity shares, each keeping one guarantee in one place.

- `lock_customer`: every transaction first takes the customer's advisory lock, so two writers for
  one customer never interleave (the wallet serializes them already; this is the second line).
- `write_entry`: one append-only ledger row, unique by (type, lot, order, reversal) in Postgres, so
  a retried write cannot double.
- `publish` and `publish_lot_events`: the outbox event, in the same transaction as the change it
  describes, one payload per event type (`incentives.domain.events`).
- `take` and `give_back`: the only decrements and increments of a lot, each a conditional UPDATE
  backed by CHECK constraints, so a stale or concurrent caller cannot overspend.
- `write_off_again`: value reversed into a lot that has expired or been revoked (or whose promotion
  has closed: `closed_promotion`) leaves it at once.
- `commit_to_budget`: a promotion's (and its pool's) committed value moves only by a conditional
  UPDATE backed by CHECK constraints, so no caller can take it past the budget.
- `announce_thresholds`: each share of a budget crossed is announced once, by grants and coupons alike.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime
from typing import Any, Literal

import structlog
from temporalio import activity

from activities.counting import moved
from incentives.adapters.db import Connection
from incentives.adapters.rows import Row
from incentives.domain.errors import BudgetExhausted, InsufficientValue, Rejected, UnknownLot, to_failure
from incentives.domain.events import BudgetThreshold, LotEventType, crossed_thresholds
from incentives.domain.models import Applied, EntryType, Model
from incentives.domain.promotions import promotion_workflow_id


@contextlib.contextmanager
def rejections_as_failures() -> Iterator[None]:
    """A business-rule refusal leaves an activity as the non-retryable failure Temporal carries."""
    try:
        yield
    except Rejected as rejected:
        raise to_failure(rejected) from None


def origin() -> tuple[str | None, str | None]:
    """The workflow on whose behalf this activity writes, recorded on every ledger row."""
    if not activity.in_activity():
        return None, None
    info = activity.info()
    return info.workflow_id, info.workflow_run_id


def activity_log(**context: Any) -> structlog.stdlib.BoundLogger:
    workflow_id, run_id = origin()
    name = activity.info().activity_type if activity.in_activity() else None
    logger: structlog.stdlib.BoundLogger = structlog.get_logger("incentives.ledger")
    return logger.bind(activity=name, workflow_id=workflow_id, run_id=run_id, **context)


async def lock_customer(conn: Connection, customer_id: str) -> None:
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('customer:' || $1, 0))", customer_id)


async def fetch_one(conn: Connection, sql: str, *args: Any) -> Row:
    """The one row that must exist: on a row this transaction holds locked, or that it checked."""
    row = await conn.fetchrow(sql, *args)
    assert row is not None, "the row is locked by this transaction or known to exist"
    return row


async def lot_for_update(conn: Connection, customer_id: str, lot_id: str) -> Row:
    row = await conn.fetchrow(
        "SELECT * FROM lots WHERE lot_id = $1 AND customer_id = $2 FOR UPDATE", lot_id, customer_id
    )
    if row is None:
        raise UnknownLot(f"lot {lot_id} does not exist for customer {customer_id}")
    return row


async def write_entry(
    conn: Connection,
    *,
    entry_type: EntryType,
    lot: Row,
    amount: int,
    order_id: str | None = None,
    reversal_id: str | None = None,
    reason: str | None = None,
) -> datetime:
    """One ledger row; (entry_type, lot, order, reversal) is its idempotency key, UNIQUE in Postgres.
    Returns the row's time."""
    workflow_id, run_id = origin()
    created_at: datetime = await conn.fetchval(
        """INSERT INTO ledger_entries (entry_type, lot_id, customer_id, promotion_id, order_id, reversal_id,
                                       amount_minor, currency, reason, workflow_id, run_id)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING created_at""",
        entry_type,
        lot["lot_id"],
        lot["customer_id"],
        lot["promotion_id"],
        order_id,
        reversal_id,
        amount,
        lot["currency"],
        reason,
        workflow_id,
        run_id,
    )
    moved(entry_type, lot["currency"], amount)
    return created_at


async def entry_amount(conn: Connection, entry_type: EntryType, lot_id: str) -> int:
    """What a lot's one `expire` or `revoke` row took out of it (0 if there is none)."""
    amount: int | None = await conn.fetchval(
        """SELECT amount_minor FROM ledger_entries
           WHERE entry_type = $1 AND lot_id = $2 AND order_id IS NULL AND reversal_id IS NULL""",
        entry_type,
        lot_id,
    )
    return -amount if amount is not None else 0


async def publish(
    conn: Connection, event_type: Literal["redeemed", "reversed"], customer_id: str, order_id: str, payload: Model
) -> None:
    """An order's event (`redeemed`, `reversed`): the `Redemption` or `Reversal` itself."""
    await conn.execute(
        "INSERT INTO outbox (event_type, customer_id, order_id, payload) VALUES ($1, $2, $3, $4)",
        event_type,
        customer_id,
        order_id,
        payload.model_dump(mode="json"),
    )


async def publish_lot_events(
    conn: Connection,
    event_type: LotEventType,
    lot_ids: list[str],
    *,
    change: int = 0,
    order_id: str | None = None,
    reversal_id: str | None = None,
    reason: str | None = None,
) -> None:
    """The lots' events, each payload built by the one SQL function `lot_event` from the lot's row as
    this transaction left it (`incentives.domain.events.LotEvent` states the shape)."""
    await conn.execute(
        """INSERT INTO outbox (event_type, customer_id, lot_id, promotion_id, payload)
           SELECT $1, l.customer_id, l.lot_id, l.promotion_id, lot_event(l, $3, $4, $5, $6)
           FROM lots l WHERE l.lot_id = ANY($2::text[]) ORDER BY l.lot_id""",
        event_type,
        lot_ids,
        change,
        order_id,
        reversal_id,
        reason,
    )


async def take(conn: Connection, part: Applied) -> Row:
    """Takes `part` out of its lot, guarded: the lot must still be active and hold enough."""
    if part.kind == "credit":
        row = await conn.fetchrow(
            """UPDATE lots SET remaining_minor = remaining_minor - $2,
                               status = CASE WHEN remaining_minor = $2 THEN 'used_up' ELSE status END
               WHERE lot_id = $1 AND status = 'active' AND remaining_minor >= $2
               RETURNING *""",
            part.lot_id,
            part.amount,
        )
    else:
        row = await conn.fetchrow(
            """UPDATE lots SET uses_left = uses_left - 1,
                               status = CASE WHEN uses_left = 1 THEN 'used_up' ELSE status END
               WHERE lot_id = $1 AND status = 'active' AND uses_left >= 1
               RETURNING *""",
            part.lot_id,
        )
    if row is None:
        raise InsufficientValue(f"lot {part.lot_id} no longer holds {part.amount}; nothing was written")
    return row


async def give_back(conn: Connection, part: Applied, *, restore_use: bool) -> Row:
    """Puts `part` back into its lot; a used-up lot becomes active again."""
    if part.kind == "credit":
        row = await conn.fetchrow(
            """UPDATE lots SET remaining_minor = remaining_minor + $2,
                               status = CASE WHEN status = 'used_up' THEN 'active' ELSE status END
               WHERE lot_id = $1 AND remaining_minor + $2 <= amount_minor
               RETURNING *""",
            part.lot_id,
            part.amount,
        )
    elif restore_use:
        row = await conn.fetchrow(
            """UPDATE lots SET uses_left = uses_left + 1,
                               status = CASE WHEN status = 'used_up' THEN 'active' ELSE status END
               WHERE lot_id = $1 AND uses_left < uses_allowed
               RETURNING *""",
            part.lot_id,
        )
    else:
        row = await conn.fetchrow("SELECT * FROM lots WHERE lot_id = $1", part.lot_id)
    if row is None:
        raise InsufficientValue(f"lot {part.lot_id} cannot take back {part.amount}; nothing was written")
    return row


def past_expiry(row: Row, as_of: datetime) -> bool:
    return row["status"] not in ("expired", "revoked") and row["expires_at"] is not None and row["expires_at"] <= as_of


def is_dead(row: Row, as_of: datetime) -> bool:
    """Whether value given back to this lot must leave it at once: it expired, was revoked, or is past its expiry."""
    return past_expiry(row, as_of) or row["status"] in ("expired", "revoked")


async def closed_promotion(conn: Connection, lot: Row, *, dead: bool) -> str | None:
    """The lot's promotion when that promotion keeps the lot's clock and has closed. A closed
    promotion's clock has stopped, so value given back to its lot is written off at once, as for an
    expired lot. (A promotion closes only once none of its lots can get value back, so this finds
    lots of promotions closed before that rule.) The promotion's row is locked whenever it may have
    closed (the lot is dead, or the promotion reads closed): its closing locks the row to write the
    final report, so it comes wholly before this write, or wholly after it."""
    promotion_id = lot["promotion_id"]
    if promotion_id is None or lot["clock_workflow_id"] != promotion_workflow_id(promotion_id):
        return None
    if (
        not dead
        and await conn.fetchval("SELECT state FROM promotions WHERE promotion_id = $1", promotion_id) != "closed"
    ):
        return None
    state = await conn.fetchval("SELECT state FROM promotions WHERE promotion_id = $1 FOR NO KEY UPDATE", promotion_id)
    return promotion_id if state == "closed" else None


async def move_closed_report(conn: Connection, promotion_id: str, *, reversed_minor: int, written_off: Row) -> None:
    """A closed promotion's stored report, moved by a reversal into one of its lots (written off at
    once): `reversed` by what came back, `expired` or `revoked` by what left again. Its outstanding
    value does not move. So the stored report stays what the ledger says (`promotion report`)."""
    left = reversed_minor if written_off["kind"] == "credit" else 0
    figure = "revoked" if written_off["status"] == "revoked" else "expired"
    await conn.execute(
        """UPDATE promotions
           SET report = report || jsonb_build_object('reversed', (report->>'reversed')::bigint + $2,
                                                     $3::text, (report->>$3)::bigint + $4)
           WHERE promotion_id = $1 AND state = 'closed' AND report IS NOT NULL""",
        promotion_id,
        reversed_minor,
        figure,
        left,
    )


async def write_off_again(
    conn: Connection, row: Row, part: Applied, reversal_id: str, order_id: str, *, reason: str | None = None
) -> Row:
    """Value reversed into a lot past its expiry (or revoked, or whose promotion has closed) leaves
    it again at once; `reason` says why on the ledger row when it is not the lot's own state.

    A lot whose expiry passed while it was used up was never expired (there was nothing to
    write off); it is marked expired now. A coupon holds no value, so only its status changes.
    """
    entry_type: EntryType = "revoke" if row["status"] == "revoked" else "expire"
    amount = part.amount if part.kind == "credit" else 0
    written = await fetch_one(
        conn,
        """UPDATE lots SET remaining_minor = remaining_minor - $2,
                           status = CASE WHEN status = 'revoked' THEN 'revoked' ELSE 'expired' END
           WHERE lot_id = $1 AND remaining_minor >= $2 RETURNING *""",
        part.lot_id,
        amount,
    )
    if amount == 0:
        return written
    if reason is None:
        reason = "reversed into an expired lot" if entry_type == "expire" else "reversed into a revoked lot"
    await write_entry(
        conn,
        entry_type=entry_type,
        lot=written,
        amount=-amount,
        order_id=order_id,
        reversal_id=reversal_id,
        reason=reason,
    )
    event: LotEventType = "expired" if entry_type == "expire" else "revoked"
    await publish_lot_events(
        conn, event, [part.lot_id], change=-amount, order_id=order_id, reversal_id=reversal_id, reason=reason
    )
    return written


async def commit_to_budget(conn: Connection, promotion_id: str, amount: int, *, kind: str | None = None) -> bool:
    """Moves `amount` (negative to give back) into the promotion's committed value and its pool's.

    `kind` limits it to promotions of that kind (a coupon's discount counts against a coupon
    promotion's budget; a credit promotion committed its value at grant). False when no such
    promotion exists. Raises `BudgetExhausted` when the budget or the pool has no room: nothing
    is written. Each threshold of the budget crossed emits one `budget_threshold` event.
    """
    row = await conn.fetchrow(
        """UPDATE promotions SET committed_minor = committed_minor + $2
           WHERE promotion_id = $1 AND ($3::text IS NULL OR kind = $3) AND committed_minor + $2 <= budget_minor
           RETURNING pool_id, currency, committed_minor, budget_minor, threshold_reached""",
        promotion_id,
        amount,
        kind,
    )
    if row is None:
        exists = await conn.fetchval(
            "SELECT true FROM promotions WHERE promotion_id = $1 AND ($2::text IS NULL OR kind = $2)",
            promotion_id,
            kind,
        )
        if exists:
            raise BudgetExhausted(f"promotion {promotion_id} has no budget left for this; nothing was written")
        return False
    if row["pool_id"] is not None:
        pooled = await conn.execute(
            """UPDATE promotion_pools SET committed_minor = committed_minor + $2
               WHERE pool_id = $1 AND committed_minor + $2 <= cap_minor""",
            row["pool_id"],
            amount,
        )
        if pooled != "UPDATE 1":
            raise BudgetExhausted(f"pool {row['pool_id']} has no budget left for this; nothing was written")
    await announce_thresholds(
        conn,
        promotion_id,
        before=row["threshold_reached"],
        committed=row["committed_minor"],
        budget=row["budget_minor"],
        currency=row["currency"],
    )
    return True


async def announce_thresholds(
    conn: Connection, promotion_id: str, *, before: int, committed: int, budget: int, currency: str
) -> None:
    """One `budget_threshold` event for each threshold the promotion's committed value crossed, and
    the highest one reached recorded, on the promotion's row this transaction has locked (a grant
    batch and a coupon's discount alike): each threshold is announced once."""
    crossed = crossed_thresholds(before, committed, budget)
    if not crossed:
        return
    await conn.execute(
        "UPDATE promotions SET threshold_reached = greatest(threshold_reached, $2) WHERE promotion_id = $1",
        promotion_id,
        crossed[-1],
    )
    for threshold in crossed:
        payload = BudgetThreshold(
            promotion_id=promotion_id, threshold=threshold, committed=committed, budget=budget, currency=currency
        )
        await conn.execute(
            "INSERT INTO outbox (event_type, promotion_id, payload) VALUES ('budget_threshold', $1, $2)",
            promotion_id,
            payload.model_dump(mode="json"),
        )
