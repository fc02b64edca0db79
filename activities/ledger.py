"""The ledger activities: the only code that changes value, one Postgres transaction each.

Guarantees, for every activity here:
- Idempotent: the idempotency key (lot id, order id, reversal id, or the lot for time-driven
  transitions) is looked up first, under the customer's lock; a retry returns the first result
  and writes nothing, also when the first attempt committed and its reply was lost. The same key
  with a different payload is a conflict, never a silent second write.
- Guarded in SQL: every decrement is a conditional UPDATE (`remaining_minor >= $n`, `uses_left >= 1`,
  `status = 'active'`), backed by the table's CHECK constraints, so a stale or concurrent caller
  cannot overspend whatever it believes. A guard that fires is `InsufficientValue`.
- One transaction: lot rows, their ledger rows and their outbox event commit together or not at all.
- Serialized per customer: each transaction first takes `pg_advisory_xact_lock` on the customer, so
  two writers for one customer never interleave (the wallet workflow serializes them already;
  this is the second line of defence).

A business-rule refusal is raised as a `Rejected` subclass and leaves as a non-retryable
`ApplicationError` whose `type` is the class name.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from incentives.adapters.db import Connection, Pool
from incentives.adapters.rows import Row, lot_from_row
from incentives.domain import rules
from incentives.domain.errors import (
    ExpiryInPast,
    InsufficientValue,
    LotConflict,
    LotNotRevocable,
    NotDue,
    OrderConflict,
    Rejected,
    ReversalConflict,
    ReversalExceedsRedeemed,
    UnknownLot,
    UnknownOrder,
)
from incentives.domain.messages import (
    ExpireOutcome,
    Expiry,
    GrantInput,
    LoadWalletInput,
    LotTransition,
    RedeemInput,
    RedeemOutcome,
    ReverseInput,
    ReverseOutcome,
    RevokeInput,
    RevokeOutcome,
    WalletMemory,
)
from incentives.domain.models import (
    Applied,
    EntryType,
    EventType,
    Lot,
    Redemption,
    RedemptionSummary,
    Reversal,
    Revocation,
)


@contextlib.contextmanager
def rejections_as_application_errors() -> Iterator[None]:
    """Turns a business-rule refusal into the non-retryable failure Temporal carries to callers."""
    try:
        yield
    except Rejected as rejected:
        raise ApplicationError(rejected.message, type=type(rejected).__name__, non_retryable=True) from None


def _origin() -> tuple[str | None, str | None]:
    """The workflow on whose behalf this activity writes, recorded on every ledger row."""
    if not activity.in_activity():
        return None, None
    info = activity.info()
    return info.workflow_id, info.workflow_run_id


def _log(**context: Any) -> structlog.stdlib.BoundLogger:
    workflow_id, run_id = _origin()
    name = activity.info().activity_type if activity.in_activity() else None
    logger: structlog.stdlib.BoundLogger = structlog.get_logger("incentives.ledger")
    return logger.bind(activity=name, workflow_id=workflow_id, run_id=run_id, **context)


async def _lock_customer(conn: Connection, customer_id: str) -> None:
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('customer:' || $1, 0))", customer_id)


async def _fetch_one(conn: Connection, sql: str, *args: Any) -> Row:
    """The one row a statement on a row this transaction holds locked must return."""
    row = await conn.fetchrow(sql, *args)
    assert row is not None, "the row is locked by this transaction"
    return row


async def _lot_for_update(conn: Connection, customer_id: str, lot_id: str) -> Row:
    row = await conn.fetchrow(
        "SELECT * FROM lots WHERE lot_id = $1 AND customer_id = $2 FOR UPDATE", lot_id, customer_id
    )
    if row is None:
        raise UnknownLot(f"lot {lot_id} does not exist for customer {customer_id}")
    return row


async def _write_entry(
    conn: Connection,
    *,
    key: str,
    entry_type: EntryType,
    lot: Row,
    amount: int,
    order_id: str | None = None,
    reversal_id: str | None = None,
    reason: str | None = None,
) -> None:
    workflow_id, run_id = _origin()
    await conn.execute(
        """INSERT INTO ledger_entries (idempotency_key, entry_type, lot_id, customer_id, promotion_id, order_id,
                                       reversal_id, amount_minor, currency, reason, workflow_id, run_id)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)""",
        key,
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


async def _publish(
    conn: Connection,
    event_type: EventType,
    customer_id: str,
    payload: dict[str, Any],
    *,
    lot_id: str | None = None,
    order_id: str | None = None,
) -> None:
    await conn.execute(
        "INSERT INTO outbox (event_type, customer_id, lot_id, order_id, payload) VALUES ($1, $2, $3, $4, $5)",
        event_type,
        customer_id,
        lot_id,
        order_id,
        payload,
    )


async def _entry_amount(conn: Connection, key: str) -> int:
    amount: int | None = await conn.fetchval("SELECT amount_minor FROM ledger_entries WHERE idempotency_key = $1", key)
    return -amount if amount is not None else 0


class LedgerActivities:
    """The ledger activities over one asyncpg pool. Register `activities()` with a worker."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    def activities(self) -> list[Any]:
        return [
            self.grant_lot,
            self.redeem,
            self.reverse,
            self.revoke_lot,
            self.expire_lot,
            self.activate_lot,
            self.record_reminder,
            self.load_wallet,
        ]

    @activity.defn(name="grant_lot")
    async def grant_lot(self, grant: GrantInput) -> Lot:
        """Creates the lot, its `grant` ledger row and a `granted` event; the lot id is the key."""
        request = grant.request
        log = _log(customer_id=request.customer_id, lot_id=request.lot_id, promotion_id=request.promotion_id)
        digest = request.digest()
        with rejections_as_application_errors():
            async with self._pool.acquire() as conn, conn.transaction():
                await _lock_customer(conn, request.customer_id)
                existing = await conn.fetchrow("SELECT * FROM lots WHERE lot_id = $1", request.lot_id)
                if existing is not None:
                    if existing["grant_digest"] != digest:
                        raise LotConflict(f"lot {request.lot_id} was already granted with a different payload")
                    log.info("grant already applied")
                    return lot_from_row(existing)
                expires_at = request.resolve_expiry(grant.granted_at)
                if expires_at is not None and expires_at <= max(
                    grant.granted_at, request.effective_at or grant.granted_at
                ):
                    raise ExpiryInPast(
                        f"lot {request.lot_id} would expire at {expires_at.isoformat()}, before it is usable"
                    )
                pending = request.effective_at is not None and request.effective_at > grant.granted_at
                coupon = request.coupon
                row = await conn.fetchrow(
                    """INSERT INTO lots (lot_id, customer_id, promotion_id, kind, currency, amount_minor, remaining_minor,
                                         coupon_amount_off_minor, coupon_percent_off, coupon_cap_minor,
                                         coupon_min_order_minor, uses_allowed, uses_left, status, effective_at,
                                         expires_at, remind_before, granted_at, grant_digest)
                       VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $8, $9, $10, $11, $11, $12, $13, $14, $15, $16, $17)
                       ON CONFLICT (lot_id) DO NOTHING
                       RETURNING *""",
                    request.lot_id,
                    request.customer_id,
                    request.promotion_id,
                    request.kind,
                    request.currency,
                    request.amount or 0,
                    coupon.amount_off if coupon else None,
                    coupon.percent_off if coupon else None,
                    coupon.cap if coupon else None,
                    coupon.min_order if coupon else None,
                    coupon.uses if coupon else None,
                    "pending" if pending else "active",
                    request.effective_at,
                    expires_at,
                    request.remind_before,
                    grant.granted_at,
                    digest,
                )
                if row is None:
                    # Granted meanwhile under another customer's lock: same id, so a different payload.
                    raise LotConflict(f"lot {request.lot_id} was already granted with a different payload")
                await _write_entry(
                    conn, key=f"grant:{request.lot_id}", entry_type="grant", lot=row, amount=row["amount_minor"]
                )
                lot = lot_from_row(row)
                await _publish(conn, "granted", lot.customer_id, lot.model_dump(mode="json"), lot_id=lot.lot_id)
        log.info("lot granted", kind=lot.kind, amount=lot.amount, currency=lot.currency, status=lot.status)
        return lot

    @activity.defn(name="redeem")
    async def redeem(self, redeem: RedeemInput) -> RedeemOutcome:
        """Applies a coupon and credits to an order in one transaction; the order id is the key."""
        request = redeem.request
        log = _log(customer_id=request.customer_id, order_id=request.order_id)
        digest = request.digest()
        with rejections_as_application_errors():
            async with self._pool.acquire() as conn, conn.transaction():
                await _lock_customer(conn, request.customer_id)
                existing = await conn.fetchrow(
                    "SELECT * FROM redemptions WHERE customer_id = $1 AND order_id = $2",
                    request.customer_id,
                    request.order_id,
                )
                if existing is not None:
                    if existing["request_digest"] != digest:
                        raise OrderConflict(
                            f"order {request.order_id} was already redeemed with a different total, currency, coupon or cap"
                        )
                    log.info("redemption already applied")
                    redemption = _redemption_from_row(existing)
                    return RedeemOutcome(
                        redemption=redemption,
                        order=await _order_summary(conn, request.customer_id, request.order_id),
                        lots=await _lots(conn, redemption.applied),
                    )
                coupon = None
                if request.coupon_lot_id is not None:
                    coupon_row = await conn.fetchrow(
                        "SELECT * FROM lots WHERE lot_id = $1 FOR UPDATE", request.coupon_lot_id
                    )
                    coupon = lot_from_row(coupon_row) if coupon_row is not None else None
                credits = [
                    lot_from_row(row)
                    for row in await conn.fetch(
                        """SELECT * FROM lots
                           WHERE customer_id = $1 AND kind = 'credit' AND currency = $2
                             AND status = 'active' AND remaining_minor > 0
                           ORDER BY lot_id FOR UPDATE""",
                        request.customer_id,
                        request.currency,
                    )
                ]
                applied = rules.allocate(request, coupon, credits, redeem.as_of)
                lots = []
                for part in applied:
                    row = await _take(conn, part)
                    await _write_entry(
                        conn,
                        key=f"redeem:{request.customer_id}:{request.order_id}:{part.lot_id}",
                        entry_type="redeem",
                        lot=row,
                        amount=-part.amount,
                        order_id=request.order_id,
                    )
                    lots.append(lot_from_row(row))
                discount = sum(part.amount for part in applied)
                workflow_id, run_id = _origin()
                redemption = Redemption(
                    customer_id=request.customer_id,
                    order_id=request.order_id,
                    currency=request.currency,
                    total=request.total,
                    discount=discount,
                    to_pay=request.total - discount,
                    applied=applied,
                    redeemed_at=redeem.as_of,
                )
                await conn.execute(
                    """INSERT INTO redemptions (customer_id, order_id, currency, total_minor, discount_minor, to_pay_minor,
                                                coupon_lot_id, breakdown, request_digest, redeemed_at, workflow_id, run_id)
                       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)""",
                    request.customer_id,
                    request.order_id,
                    request.currency,
                    request.total,
                    discount,
                    redemption.to_pay,
                    request.coupon_lot_id if any(part.kind == "coupon" for part in applied) else None,
                    [part.model_dump(mode="json") for part in applied],
                    digest,
                    redeem.as_of,
                    workflow_id,
                    run_id,
                )
                await _publish(
                    conn,
                    "redeemed",
                    request.customer_id,
                    redemption.model_dump(mode="json"),
                    order_id=request.order_id,
                )
                order = await _order_summary(conn, request.customer_id, request.order_id)
        log.info("order redeemed", discount=discount, to_pay=redemption.to_pay, currency=request.currency)
        return RedeemOutcome(redemption=redemption, order=order, lots=lots)

    @activity.defn(name="reverse")
    async def reverse(self, reverse: ReverseInput) -> ReverseOutcome:
        """Gives an order's discount back to the lots it came from; the reversal id is the key.

        Value restored into a lot that has meanwhile expired or been revoked is written off again
        at once, as a `reverse` row followed by an `expire` (or `revoke`) row.
        """
        request = reverse.request
        log = _log(customer_id=request.customer_id, order_id=request.order_id, reversal_id=request.reversal_id)
        digest = request.digest()
        with rejections_as_application_errors():
            async with self._pool.acquire() as conn, conn.transaction():
                await _lock_customer(conn, request.customer_id)
                existing = await conn.fetchrow("SELECT * FROM reversals WHERE reversal_id = $1", request.reversal_id)
                if existing is not None:
                    if existing["request_digest"] != digest:
                        raise ReversalConflict(
                            f"reversal {request.reversal_id} was already used for a different request"
                        )
                    log.info("reversal already applied")
                    reversal = Reversal.model_validate(existing["breakdown"])
                    return ReverseOutcome(
                        reversal=reversal,
                        order=await _order_summary(conn, request.customer_id, request.order_id),
                        lots=await _lots(conn, reversal.restored),
                    )
                redemption_row = await conn.fetchrow(
                    "SELECT * FROM redemptions WHERE customer_id = $1 AND order_id = $2 FOR UPDATE",
                    request.customer_id,
                    request.order_id,
                )
                if redemption_row is None:
                    raise UnknownOrder(f"order {request.order_id} has no redemption for customer {request.customer_id}")
                redemption = _redemption_from_row(redemption_row)
                reversible = redemption.discount - redemption_row["reversed_minor"]
                if reversible == 0:
                    raise ReversalExceedsRedeemed(f"order {request.order_id} is already fully reversed")
                amount = request.amount if request.amount is not None else reversible
                so_far: dict[str, int] = {
                    row["lot_id"]: row["restored"]
                    for row in await conn.fetch(
                        """SELECT lot_id, sum(amount_minor) AS restored FROM ledger_entries
                           WHERE customer_id = $1 AND order_id = $2 AND entry_type = 'reverse' GROUP BY lot_id""",
                        request.customer_id,
                        request.order_id,
                    )
                }
                restored = rules.allocate_reversal(redemption.applied, so_far, amount, redemption.currency)
                written_off: list[Applied] = []
                lots = []
                for part in restored:
                    fully_reversed = so_far.get(part.lot_id, 0) + part.amount == _applied_amount(
                        redemption, part.lot_id
                    )
                    row = await _give_back(conn, part, restore_use=fully_reversed)
                    await _write_entry(
                        conn,
                        key=f"reverse:{request.reversal_id}:{part.lot_id}",
                        entry_type="reverse",
                        lot=row,
                        amount=part.amount,
                        order_id=request.order_id,
                        reversal_id=request.reversal_id,
                    )
                    if _past_expiry(row, reverse.as_of) or row["status"] in ("expired", "revoked"):
                        row = await _write_off_again(conn, row, part, request.reversal_id, request.order_id)
                        if part.kind == "credit":
                            written_off.append(part)
                    lots.append(lot_from_row(row))
                updated = await conn.execute(
                    """UPDATE redemptions SET reversed_minor = reversed_minor + $3
                       WHERE customer_id = $1 AND order_id = $2 AND reversed_minor + $3 <= discount_minor""",
                    request.customer_id,
                    request.order_id,
                    amount,
                )
                if updated != "UPDATE 1":
                    raise InsufficientValue(f"order {request.order_id} changed while reversing; nothing was written")
                workflow_id, run_id = _origin()
                reversal = Reversal(
                    customer_id=request.customer_id,
                    order_id=request.order_id,
                    reversal_id=request.reversal_id,
                    currency=redemption.currency,
                    amount=amount,
                    restored=restored,
                    written_off=written_off,
                    reversible_left=reversible - amount,
                    reversed_at=reverse.as_of,
                )
                await conn.execute(
                    """INSERT INTO reversals (reversal_id, customer_id, order_id, currency, amount_minor, breakdown,
                                              request_digest, reversed_at, workflow_id, run_id)
                       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)""",
                    request.reversal_id,
                    request.customer_id,
                    request.order_id,
                    redemption.currency,
                    amount,
                    reversal.model_dump(mode="json"),
                    digest,
                    reverse.as_of,
                    workflow_id,
                    run_id,
                )
                await _publish(
                    conn, "reversed", request.customer_id, reversal.model_dump(mode="json"), order_id=request.order_id
                )
                order = await _order_summary(conn, request.customer_id, request.order_id)
        log.info("order reversed", amount=amount, written_off=sum(p.amount for p in written_off))
        return ReverseOutcome(reversal=reversal, order=order, lots=lots)

    @activity.defn(name="revoke_lot")
    async def revoke_lot(self, revoke: RevokeInput) -> RevokeOutcome:
        """Removes what is left of a lot, with a reason; revoking twice returns the first result."""
        request = revoke.request
        log = _log(customer_id=request.customer_id, lot_id=request.lot_id)
        key = f"revoke:{request.lot_id}"
        with rejections_as_application_errors():
            async with self._pool.acquire() as conn, conn.transaction():
                await _lock_customer(conn, request.customer_id)
                row = await _lot_for_update(conn, request.customer_id, request.lot_id)
                if row["status"] == "revoked":
                    entry = await conn.fetchrow(
                        "SELECT amount_minor, reason, created_at FROM ledger_entries WHERE idempotency_key = $1", key
                    )
                    assert entry is not None, "a revoked lot has its revoke entry"
                    log.info("revocation already applied")
                    revocation = Revocation(
                        lot_id=request.lot_id,
                        currency=row["currency"],
                        amount=-entry["amount_minor"],
                        reason=entry["reason"],
                        revoked_at=entry["created_at"],
                    )
                    return RevokeOutcome(revocation=revocation, lot=lot_from_row(row))
                if row["status"] == "expired":
                    raise LotNotRevocable(f"lot {request.lot_id} has already expired")
                amount = row["remaining_minor"]
                row = await _fetch_one(
                    conn,
                    "UPDATE lots SET remaining_minor = 0, status = 'revoked' WHERE lot_id = $1 RETURNING *",
                    request.lot_id,
                )
                await _write_entry(conn, key=key, entry_type="revoke", lot=row, amount=-amount, reason=request.reason)
                revocation = Revocation(
                    lot_id=request.lot_id,
                    currency=row["currency"],
                    amount=amount,
                    reason=request.reason,
                    revoked_at=revoke.as_of,
                )
                await _publish(
                    conn, "revoked", request.customer_id, revocation.model_dump(mode="json"), lot_id=request.lot_id
                )
        log.info("lot revoked", amount=amount, reason=request.reason)
        return RevokeOutcome(revocation=revocation, lot=lot_from_row(row))

    @activity.defn(name="expire_lot")
    async def expire_lot(self, transition: LotTransition) -> ExpireOutcome:
        """Writes off what is left of a lot at its expiry; expiring twice returns the first result."""
        log = _log(customer_id=transition.customer_id, lot_id=transition.lot_id)
        key = f"expire:{transition.lot_id}"
        with rejections_as_application_errors():
            async with self._pool.acquire() as conn, conn.transaction():
                await _lock_customer(conn, transition.customer_id)
                row = await _lot_for_update(conn, transition.customer_id, transition.lot_id)
                if row["status"] in ("expired", "revoked"):
                    # Expired: the first result. Revoked: nothing was left to expire.
                    amount = await _entry_amount(conn, key) if row["status"] == "expired" else 0
                    expiry = Expiry(lot_id=transition.lot_id, currency=row["currency"], amount=amount)
                    return ExpireOutcome(expiry=expiry, lot=lot_from_row(row))
                if row["expires_at"] is None or row["expires_at"] > transition.as_of:
                    raise NotDue(f"lot {transition.lot_id} does not expire before {transition.as_of.isoformat()}")
                amount = row["remaining_minor"]
                row = await _fetch_one(
                    conn,
                    "UPDATE lots SET remaining_minor = 0, status = 'expired' WHERE lot_id = $1 RETURNING *",
                    transition.lot_id,
                )
                await _write_entry(conn, key=key, entry_type="expire", lot=row, amount=-amount)
                expiry = Expiry(lot_id=transition.lot_id, currency=row["currency"], amount=amount)
                await _publish(
                    conn, "expired", transition.customer_id, expiry.model_dump(mode="json"), lot_id=transition.lot_id
                )
        log.info("lot expired", amount=amount)
        return ExpireOutcome(expiry=expiry, lot=lot_from_row(row))

    @activity.defn(name="activate_lot")
    async def activate_lot(self, transition: LotTransition) -> Lot:
        """Makes a pending lot active once its `effective_at` has come; idempotent by status."""
        log = _log(customer_id=transition.customer_id, lot_id=transition.lot_id)
        with rejections_as_application_errors():
            async with self._pool.acquire() as conn, conn.transaction():
                await _lock_customer(conn, transition.customer_id)
                row = await _lot_for_update(conn, transition.customer_id, transition.lot_id)
                if row["status"] != "pending":
                    return lot_from_row(row)
                if row["effective_at"] > transition.as_of:
                    raise NotDue(f"lot {transition.lot_id} is not effective before {row['effective_at'].isoformat()}")
                row = await conn.fetchrow(
                    "UPDATE lots SET status = 'active' WHERE lot_id = $1 RETURNING *", transition.lot_id
                )
                lot = lot_from_row(row)
                await _publish(conn, "activated", lot.customer_id, lot.model_dump(mode="json"), lot_id=lot.lot_id)
        log.info("lot activated")
        return lot

    @activity.defn(name="record_reminder")
    async def record_reminder(self, transition: LotTransition) -> Lot:
        """Queues the one reminder event of a lot before its expiry; a second call writes nothing."""
        log = _log(customer_id=transition.customer_id, lot_id=transition.lot_id)
        with rejections_as_application_errors():
            async with self._pool.acquire() as conn, conn.transaction():
                await _lock_customer(conn, transition.customer_id)
                row = await _lot_for_update(conn, transition.customer_id, transition.lot_id)
                if row["reminded_at"] is not None:
                    return lot_from_row(row)
                row = await conn.fetchrow(
                    "UPDATE lots SET reminded_at = $2 WHERE lot_id = $1 RETURNING *",
                    transition.lot_id,
                    transition.as_of,
                )
                lot = lot_from_row(row)
                await _publish(conn, "reminder", lot.customer_id, lot.model_dump(mode="json"), lot_id=lot.lot_id)
        log.info("reminder recorded", expires_at=lot.expires_at, remaining=lot.remaining)
        return lot

    @activity.defn(name="load_wallet")
    async def load_wallet(self, load: LoadWalletInput) -> WalletMemory:
        """What a new wallet run needs from the ledger: its live lots and its reversible orders."""
        async with self._pool.acquire() as conn:
            lots = await conn.fetch(
                """SELECT * FROM lots WHERE customer_id = $1 AND status IN ('pending', 'active')
                   ORDER BY granted_at, lot_id""",
                load.customer_id,
            )
            orders = await conn.fetch(
                """SELECT order_id FROM redemptions WHERE customer_id = $1 AND redeemed_at >= $2
                   ORDER BY redeemed_at DESC LIMIT $3""",
                load.customer_id,
                load.redeemed_since,
                load.max_orders,
            )
            redemptions = [await _order_summary(conn, load.customer_id, row["order_id"]) for row in reversed(orders)]
        return WalletMemory(
            customer_id=load.customer_id,
            lots=[lot_from_row(row) for row in lots],
            grant_digests={row["lot_id"]: row["grant_digest"] for row in lots},
            redemptions=redemptions,
        )


def _redemption_from_row(row: Row) -> Redemption:
    return Redemption(
        customer_id=row["customer_id"],
        order_id=row["order_id"],
        currency=row["currency"],
        total=row["total_minor"],
        discount=row["discount_minor"],
        to_pay=row["to_pay_minor"],
        applied=[Applied.model_validate(part) for part in row["breakdown"]],
        redeemed_at=row["redeemed_at"],
    )


async def _order_summary(conn: Connection, customer_id: str, order_id: str) -> RedemptionSummary:
    row = await conn.fetchrow(
        """SELECT r.order_id, r.currency, r.discount_minor, r.reversed_minor, r.redeemed_at,
                  coalesce(array_agg(v.reversal_id ORDER BY v.created_at) FILTER (WHERE v.reversal_id IS NOT NULL),
                           '{}') AS reversal_ids
           FROM redemptions r LEFT JOIN reversals v USING (customer_id, order_id)
           WHERE r.customer_id = $1 AND r.order_id = $2
           GROUP BY r.customer_id, r.order_id""",
        customer_id,
        order_id,
    )
    assert row is not None, "the order was redeemed in this transaction or before"
    return RedemptionSummary(
        order_id=row["order_id"],
        currency=row["currency"],
        discount=row["discount_minor"],
        reversed=row["reversed_minor"],
        reversal_ids=list(row["reversal_ids"]),
        redeemed_at=row["redeemed_at"],
    )


def _applied_amount(redemption: Redemption, lot_id: str) -> int:
    return sum(part.amount for part in redemption.applied if part.lot_id == lot_id)


async def _lots(conn: Connection, parts: list[Applied]) -> list[Lot]:
    rows = await conn.fetch("SELECT * FROM lots WHERE lot_id = ANY($1::text[])", [part.lot_id for part in parts])
    return [lot_from_row(row) for row in rows]


async def _take(conn: Connection, part: Applied) -> Row:
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


async def _give_back(conn: Connection, part: Applied, *, restore_use: bool) -> Row:
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


def _past_expiry(row: Row, as_of: datetime) -> bool:
    return row["status"] not in ("expired", "revoked") and row["expires_at"] is not None and row["expires_at"] <= as_of


async def _write_off_again(conn: Connection, row: Row, part: Applied, reversal_id: str, order_id: str) -> Row:
    """Value reversed into a lot past its expiry (or revoked) leaves it again at once.

    A lot whose expiry passed while it was used up was never expired (there was nothing to
    write off); it is marked expired now. A coupon holds no value, so only its status changes.
    """
    entry_type: EntryType = "revoke" if row["status"] == "revoked" else "expire"
    amount = part.amount if part.kind == "credit" else 0
    written = await conn.fetchrow(
        """UPDATE lots SET remaining_minor = remaining_minor - $2,
                           status = CASE WHEN status = 'revoked' THEN 'revoked' ELSE 'expired' END
           WHERE lot_id = $1 AND remaining_minor >= $2 RETURNING *""",
        part.lot_id,
        amount,
    )
    assert written is not None, "the amount was just given back"
    if amount == 0:
        return written
    await _write_entry(
        conn,
        key=f"{entry_type}:{part.lot_id}:{reversal_id}",
        entry_type=entry_type,
        lot=written,
        amount=-amount,
        order_id=order_id,
        reversal_id=reversal_id,
        reason="reversed into an expired lot" if entry_type == "expire" else "reversed into a revoked lot",
    )
    event: EventType = "expired" if entry_type == "expire" else "revoked"
    await _publish(
        conn,
        event,
        row["customer_id"],
        {"lot_id": part.lot_id, "currency": row["currency"], "amount": amount, "reversal_id": reversal_id},
        lot_id=part.lot_id,
    )
    return written
