"""The ledger activities: the only code that changes value, one Postgres transaction each.

Guarantees, for every activity here:
- Idempotent: the idempotency key (lot id; order id or reversal id, scoped to the customer; the
  lot for time-driven transitions) is looked up first, under the customer's lock; a retry returns
  the first result and writes nothing, also when the first attempt committed and its reply was
  lost. The same key with a different payload is a conflict, never a silent second write.
- Guarded in SQL: a redemption takes from a lot only by a conditional UPDATE
  (`activities.ledger_writes.take`: active, and holding enough), and a reversal gives back only
  within the lot's amount (`give_back`); expiry and revocation zero what is left of a lot they
  hold locked (`FOR UPDATE`), so nothing takes from it meanwhile, and a write-off after a reversal
  takes back no more than the lot holds. CHECK constraints (0 <= remaining <= amount, uses within
  their bounds) back all of them, so a stale or concurrent caller cannot overspend whatever it
  believes. A guard that fires is `InsufficientValue`.
- One transaction: lot rows, their ledger rows and their outbox event commit together or not at all.
- Serialized per customer: each transaction first takes the customer's advisory lock.

A business-rule refusal is raised as a `Rejected` subclass and leaves as a non-retryable
`ApplicationError` whose `type` is the class name.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.counting import COUNTED, Meter, OperationName, replayed
from activities.ledger_writes import (
    activity_log,
    closed_promotion,
    commit_to_budget,
    entry_amount,
    fetch_one,
    give_back,
    is_dead,
    lock_customer,
    lot_for_update,
    move_closed_report,
    origin,
    publish,
    publish_lot_events,
    rejections_as_failures,
    take,
    write_entry,
    write_off_again,
)
from incentives.adapters.db import Connection, Pool
from incentives.adapters.rows import Row, lot_from_row, order_summary_from_row, redemption_from_row
from incentives.domain import rules
from incentives.domain.errors import (
    ExpiryInPast,
    InsufficientValue,
    LotConflict,
    LotNotRevocable,
    NotDue,
    OrderConflict,
    ReversalConflict,
    ReversalExceedsRedeemed,
    RevocationConflict,
    UnknownOrder,
)
from incentives.domain.messages import (
    ExpireOutcome,
    Expiry,
    FirstCall,
    GrantInput,
    Loaded,
    LoadWalletInput,
    LotTransition,
    Operation,
    RedeemAnswer,
    RedeemAnswers,
    RedeemInput,
    RedeemOutcome,
    RedeemTogether,
    Refusal,
    Result,
    ReverseInput,
    ReverseOutcome,
    RevokeInput,
    RevokeOutcome,
    WalletMemory,
)
from incentives.domain.models import (
    Applied,
    Lot,
    Redemption,
    RedemptionSummary,
    Reversal,
    Revocation,
    wallet_id,
)


class LedgerActivities:
    """The ledger activities over one asyncpg pool. Register `activities()` with a worker."""

    def __init__(self, pool: Pool, meter: Meter = COUNTED) -> None:
        self._pool = pool
        self._meter = meter

    def activities(self) -> list[Callable[..., Any]]:
        return [
            self.grant_lot,
            self.redeem,
            self.redeem_together,
            self.reverse,
            self.revoke_lot,
            self.expire_lot,
            self.activate_lot,
            self.record_reminder,
            self.load_wallet,
            self.load_and_grant,
            self.load_and_redeem,
            self.load_and_reverse,
            self.load_and_revoke,
        ]

    @asynccontextmanager
    async def _customer_transaction(self, customer_id: str) -> AsyncIterator[Connection]:
        """One transaction under the customer's lock; a `Rejected` inside leaves as its failure."""
        async with self._pool.acquire() as conn, _under_customer_lock(conn, customer_id):
            yield conn

    @activity.defn(name="grant_lot")
    async def grant_lot(self, grant: GrantInput) -> Lot:
        """Creates the lot, its `grant` ledger row and a `granted` event; the lot id is the key."""
        with self._meter.counted("grant"):
            async with self._customer_transaction(grant.request.customer_id) as conn:
                return await _grant(conn, grant)

    @activity.defn(name="redeem")
    async def redeem(self, redeem: RedeemInput) -> RedeemOutcome:
        """Applies a coupon and credits to an order in one transaction; the order id is the key."""
        with self._meter.counted("redeem"):
            async with self._customer_transaction(redeem.request.customer_id) as conn:
                return await _redeem(conn, redeem)

    @activity.defn(name="redeem_together")
    async def redeem_together(self, together: RedeemTogether) -> RedeemAnswers:
        """Several redeems of one customer, in order, each in its own transaction under the
        customer's lock, exactly as one `redeem` each would apply them: what the wallet sends when
        redeems arrive while its ledger call is busy (a checkout rush on one wallet). A refusal is
        that redeem's answer, and the next one goes on; a retry after a failure mid-way returns the
        first result of every redeem already committed (each is idempotent by its order id)."""
        answers: list[RedeemAnswer] = []
        async with self._pool.acquire() as conn:
            for redeem in together.redeems:
                try:
                    with self._meter.counted("redeem"):
                        async with _under_customer_lock(conn, redeem.request.customer_id):
                            answers.append(RedeemAnswer(outcome=await _redeem(conn, redeem)))
                except ApplicationError as refused:
                    answers.append(RedeemAnswer(refusal=Refusal(type=refused.type or "", message=refused.message)))
        return RedeemAnswers(answers=answers)

    @activity.defn(name="reverse")
    async def reverse(self, reverse: ReverseInput) -> ReverseOutcome:
        """Gives an order's discount back to the lots it came from; the reversal id is the key.

        Value restored into a lot that has meanwhile expired or been revoked is written off again
        at once, as a `reverse` row followed by an `expire` (or `revoke`) row.
        """
        with self._meter.counted("reverse"):
            async with self._customer_transaction(reverse.request.customer_id) as conn:
                return await _reverse(conn, reverse)

    @activity.defn(name="revoke_lot")
    async def revoke_lot(self, revoke: RevokeInput) -> RevokeOutcome:
        """Removes what is left of a lot, with a reason; revoking twice returns the first result."""
        with self._meter.counted("revoke"):
            async with self._customer_transaction(revoke.request.customer_id) as conn:
                return await _revoke(conn, revoke)

    # -- the first operation of a run started without memory: the operation, then the load ------

    @activity.defn(name="load_and_grant")
    async def load_and_grant(self, call: FirstCall[GrantInput]) -> Loaded[Lot]:
        return await self._first_call("grant", call, _grant)

    @activity.defn(name="load_and_redeem")
    async def load_and_redeem(self, call: FirstCall[RedeemInput]) -> Loaded[RedeemOutcome]:
        return await self._first_call("redeem", call, _redeem)

    @activity.defn(name="load_and_reverse")
    async def load_and_reverse(self, call: FirstCall[ReverseInput]) -> Loaded[ReverseOutcome]:
        return await self._first_call("reverse", call, _reverse)

    @activity.defn(name="load_and_revoke")
    async def load_and_revoke(self, call: FirstCall[RevokeInput]) -> Loaded[RevokeOutcome]:
        return await self._first_call("revoke", call, _revoke)

    async def _first_call(
        self,
        counted_as: OperationName,
        call: FirstCall[Operation],
        operation: Callable[[Connection, Operation], Awaitable[Result]],
    ) -> Loaded[Result]:
        """The operation and `load_wallet` in one transaction under the customer's lock: one ledger
        call where a new or restarted wallet would make two, and a memory that already holds the
        operation's effect. A refusal rolls back both: nothing written, nothing loaded."""
        with self._meter.counted(counted_as):
            async with self._customer_transaction(call.load.customer_id) as conn:
                result = await operation(conn, call.operation)
                return Loaded(result=result, memory=await _memory(conn, call.load))

    @activity.defn(name="expire_lot")
    async def expire_lot(self, transition: LotTransition) -> ExpireOutcome:
        """Writes off what is left of a lot at its expiry; expiring twice returns the first result."""
        with self._meter.counted(None):
            return await self._expire(transition)

    async def _expire(self, transition: LotTransition) -> ExpireOutcome:
        log = activity_log(customer_id=transition.customer_id, lot_id=transition.lot_id)
        async with self._customer_transaction(transition.customer_id) as conn:
            row = await lot_for_update(conn, transition.customer_id, transition.lot_id)
            if row["status"] in ("expired", "revoked"):
                # Expired: the first result. Revoked: nothing was left to expire.
                amount = await entry_amount(conn, "expire", transition.lot_id) if row["status"] == "expired" else 0
                expiry = Expiry(lot_id=transition.lot_id, currency=row["currency"], amount=amount)
                return ExpireOutcome(expiry=expiry, lot=lot_from_row(row))
            if row["expires_at"] is None or row["expires_at"] > transition.as_of:
                raise NotDue(f"lot {transition.lot_id} does not expire before {transition.as_of.isoformat()}")
            amount = row["remaining_minor"]
            row = await fetch_one(
                conn,
                "UPDATE lots SET remaining_minor = 0, status = 'expired' WHERE lot_id = $1 RETURNING *",
                transition.lot_id,
            )
            await write_entry(conn, entry_type="expire", lot=row, amount=-amount)
            expiry = Expiry(lot_id=transition.lot_id, currency=row["currency"], amount=amount)
            await publish_lot_events(conn, "expired", [transition.lot_id], change=-amount)
        log.info("lot expired", amount=amount)
        return ExpireOutcome(expiry=expiry, lot=lot_from_row(row))

    @activity.defn(name="activate_lot")
    async def activate_lot(self, transition: LotTransition) -> Lot:
        """Makes a pending lot active once its `effective_at` has come; idempotent by status."""
        log = activity_log(customer_id=transition.customer_id, lot_id=transition.lot_id)
        async with self._customer_transaction(transition.customer_id) as conn:
            row = await lot_for_update(conn, transition.customer_id, transition.lot_id)
            if row["status"] != "pending":
                return lot_from_row(row)
            if row["effective_at"] > transition.as_of:
                raise NotDue(f"lot {transition.lot_id} is not effective before {row['effective_at'].isoformat()}")
            row = await fetch_one(
                conn, "UPDATE lots SET status = 'active' WHERE lot_id = $1 RETURNING *", transition.lot_id
            )
            lot = lot_from_row(row)
            await publish_lot_events(conn, "activated", [lot.lot_id])
        log.info("lot activated")
        return lot

    @activity.defn(name="record_reminder")
    async def record_reminder(self, transition: LotTransition) -> Lot:
        """Queues the one reminder event of a lot before its expiry; a second call writes nothing."""
        log = activity_log(customer_id=transition.customer_id, lot_id=transition.lot_id)
        async with self._customer_transaction(transition.customer_id) as conn:
            row = await lot_for_update(conn, transition.customer_id, transition.lot_id)
            if row["reminded_at"] is not None:
                return lot_from_row(row)
            row = await fetch_one(
                conn,
                "UPDATE lots SET reminded_at = $2 WHERE lot_id = $1 RETURNING *",
                transition.lot_id,
                transition.as_of,
            )
            lot = lot_from_row(row)
            await publish_lot_events(conn, "reminder", [lot.lot_id])
        log.info("reminder recorded", expires_at=lot.expires_at, remaining=lot.remaining)
        return lot

    @activity.defn(name="load_wallet")
    async def load_wallet(self, load: LoadWalletInput) -> WalletMemory:
        """What a new wallet run needs from the ledger: the live lots whose clock it keeps (a
        promotion keeps its own lots' clock; the ledger redeems them whatever the wallet holds)
        and its reversible orders."""
        async with self._pool.acquire() as conn:
            return await _memory(conn, load)


@asynccontextmanager
async def _under_customer_lock(conn: Connection, customer_id: str) -> AsyncIterator[None]:
    """A transaction on `conn` that first takes the customer's lock; a `Rejected` inside leaves as its failure."""
    with rejections_as_failures():
        async with conn.transaction():
            await lock_customer(conn, customer_id)
            yield


# -- grant ----------------------------------------------------------------------------------------


async def _grant(conn: Connection, grant: GrantInput) -> Lot:
    request = grant.request
    log = activity_log(customer_id=request.customer_id, lot_id=request.lot_id, promotion_id=request.promotion_id)
    existing = await conn.fetchrow("SELECT * FROM lots WHERE lot_id = $1", request.lot_id)
    if existing is not None:
        if existing["grant_digest"] != request.digest():
            raise LotConflict(f"lot {request.lot_id} was already granted with a different payload")
        log.info("grant already applied")
        replayed()
        return lot_from_row(existing)
    lot = await _insert_lot(conn, grant)
    log.info("lot granted", kind=lot.kind, amount=lot.amount, currency=lot.currency, status=lot.status)
    return lot


async def _insert_lot(conn: Connection, grant: GrantInput) -> Lot:
    request = grant.request
    expires_at = request.resolve_expiry(grant.granted_at)
    usable_from = max(grant.granted_at, request.effective_at or grant.granted_at)
    if expires_at is not None and expires_at <= usable_from:
        raise ExpiryInPast(f"lot {request.lot_id} would expire at {expires_at.isoformat()}, before it is usable")
    pending = request.effective_at is not None and request.effective_at > grant.granted_at
    coupon = request.coupon
    columns: dict[str, object] = {
        "lot_id": request.lot_id,
        "customer_id": request.customer_id,
        "promotion_id": request.promotion_id,
        "kind": request.kind,
        "currency": request.currency,
        "amount_minor": request.amount or 0,
        "remaining_minor": request.amount or 0,
        "coupon_amount_off_minor": coupon.amount_off if coupon else None,
        "coupon_percent_off": coupon.percent_off if coupon else None,
        "coupon_cap_minor": coupon.cap if coupon else None,
        "coupon_min_order_minor": coupon.min_order if coupon else None,
        "uses_allowed": coupon.uses if coupon else None,
        "uses_left": coupon.uses if coupon else None,
        "status": "pending" if pending else "active",
        "effective_at": request.effective_at,
        "expires_at": expires_at,
        "remind_before": request.remind_before,
        "granted_at": grant.granted_at,
        "grant_digest": request.digest(),
        "clock_workflow_id": wallet_id(request.customer_id),
    }
    row = await conn.fetchrow(
        _insert_sql("lots", columns, "ON CONFLICT (lot_id) DO NOTHING RETURNING *"), *columns.values()
    )
    if row is None:
        # Granted meanwhile under another customer's lock: same id, so a different payload.
        raise LotConflict(f"lot {request.lot_id} was already granted with a different payload")
    await write_entry(conn, entry_type="grant", lot=row, amount=row["amount_minor"])
    await publish_lot_events(conn, "granted", [request.lot_id], change=row["amount_minor"])
    return lot_from_row(row)


def _insert_sql(table: str, columns: dict[str, object], suffix: str = "") -> str:
    """An INSERT that pairs each value with its column by name, not by counting placeholders."""
    names = ", ".join(columns)
    placeholders = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
    return f"INSERT INTO {table} ({names}) VALUES ({placeholders}) {suffix}"


# -- redeem ---------------------------------------------------------------------------------------


async def _redeem(conn: Connection, redeem: RedeemInput) -> RedeemOutcome:
    request = redeem.request
    log = activity_log(customer_id=request.customer_id, order_id=request.order_id)
    existing = await conn.fetchrow(
        "SELECT * FROM redemptions WHERE customer_id = $1 AND order_id = $2", request.customer_id, request.order_id
    )
    if existing is not None:
        if existing["request_digest"] != request.digest():
            raise OrderConflict(
                f"order {request.order_id} was already redeemed with a different total, currency, coupon or cap"
            )
        log.info("redemption already applied")
        replayed()
        redemption = redemption_from_row(existing)
        return await _redeem_outcome(conn, redemption, await _lots(conn, redemption.applied))
    redemption, lots = await _apply_redemption(conn, redeem)
    outcome = RedeemOutcome(redemption=redemption, order=_new_order(redemption), lots=lots)
    log.info("order redeemed", discount=redemption.discount, to_pay=redemption.to_pay, currency=request.currency)
    return outcome


async def _apply_redemption(conn: Connection, redeem: RedeemInput) -> tuple[Redemption, list[Lot]]:
    """Allocates on the rows locked here (the truth), takes each part, records the redemption."""
    request = redeem.request
    await _activate_due(conn, request.customer_id, redeem.as_of)
    coupon = None
    if request.coupon_lot_id is not None:
        coupon_row = await conn.fetchrow("SELECT * FROM lots WHERE lot_id = $1 FOR UPDATE", request.coupon_lot_id)
        coupon = lot_from_row(coupon_row) if coupon_row is not None else None
    # The snapshot this statement reads with, taken in it (under READ COMMITTED each statement has its
    # own): recorded with the redemption, it says which lots granted meanwhile without the customer's
    # lock (a promotion's batch) the redemption could see. One row even when there are no credits.
    credit_rows = await conn.fetch(
        """SELECT s.credit_snapshot, l.* FROM (SELECT pg_current_snapshot() AS credit_snapshot) s
           LEFT JOIN LATERAL (
               SELECT * FROM lots
               WHERE customer_id = $1 AND kind = 'credit' AND currency = $2 AND status = 'active'
                 AND remaining_minor > 0
               ORDER BY lot_id FOR UPDATE) l ON true""",
        request.customer_id,
        request.currency,
    )
    credits = [lot_from_row(row) for row in credit_rows if row["lot_id"] is not None]
    applied = rules.allocate(request, coupon, credits, redeem.as_of)
    lots = []
    for part in applied:
        if part.kind == "coupon" and coupon is not None and coupon.promotion_id is not None:
            # A coupon promotion's budget is what its coupons actually take off orders.
            await commit_to_budget(conn, coupon.promotion_id, part.amount, kind="coupon")
        row = await take(conn, part)
        await write_entry(conn, entry_type="redeem", lot=row, amount=-part.amount, order_id=request.order_id)
        lots.append(lot_from_row(row))
    discount = sum(part.amount for part in applied)
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
    await _insert_redemption(conn, redemption, request.digest(), credit_rows[0]["credit_snapshot"])
    await publish(conn, "redeemed", request.customer_id, request.order_id, redemption)
    return redemption, lots


async def _activate_due(conn: Connection, customer_id: str, as_of: datetime) -> None:
    """A lot is redeemable from its effective time, not from when its clock's timer fires: a timer
    fires late while a worker or the server is down. So a redeem first applies every activation of
    the customer's that is due, with its event, under the customer's lock; the clock, when it
    fires, finds the lot active and does nothing (its transition is idempotent by status)."""
    rows = await conn.fetch(
        "UPDATE lots SET status = 'active' WHERE customer_id = $1 AND status = 'pending' AND effective_at <= $2 "
        "RETURNING lot_id",
        customer_id,
        as_of,
    )
    if rows:
        await publish_lot_events(conn, "activated", [row["lot_id"] for row in rows])


async def _insert_redemption(conn: Connection, redemption: Redemption, digest: str, credit_snapshot: object) -> None:
    """The redemption's row, with the snapshot its credit query read with (`credit_snapshot`)."""
    workflow_id, run_id = origin()
    coupon = next((part.lot_id for part in redemption.applied if part.kind == "coupon"), None)
    columns: dict[str, object] = {
        "customer_id": redemption.customer_id,
        "order_id": redemption.order_id,
        "currency": redemption.currency,
        "total_minor": redemption.total,
        "discount_minor": redemption.discount,
        "to_pay_minor": redemption.to_pay,
        "coupon_lot_id": coupon,
        "breakdown": [part.model_dump(mode="json") for part in redemption.applied],
        "request_digest": digest,
        "redeemed_at": redemption.redeemed_at,
        "credit_snapshot": credit_snapshot,
        "workflow_id": workflow_id,
        "run_id": run_id,
    }
    await conn.execute(_insert_sql("redemptions", columns), *columns.values())


def _new_order(redemption: Redemption) -> RedemptionSummary:
    """The order as this transaction just wrote it (nothing reversed yet), without reading it back."""
    return RedemptionSummary(
        order_id=redemption.order_id,
        currency=redemption.currency,
        discount=redemption.discount,
        reversed=0,
        reversal_ids=[],
        redeemed_at=redemption.redeemed_at,
    )


async def _redeem_outcome(conn: Connection, redemption: Redemption, lots: list[Lot]) -> RedeemOutcome:
    order = await _order_summary(conn, redemption.customer_id, redemption.order_id)
    return RedeemOutcome(redemption=redemption, order=order, lots=lots)


# -- reverse --------------------------------------------------------------------------------------


async def _reverse(conn: Connection, reverse: ReverseInput) -> ReverseOutcome:
    request = reverse.request
    log = activity_log(customer_id=request.customer_id, order_id=request.order_id, reversal_id=request.reversal_id)
    existing = await conn.fetchrow(
        "SELECT * FROM reversals WHERE customer_id = $1 AND reversal_id = $2", request.customer_id, request.reversal_id
    )
    if existing is not None:
        if existing["request_digest"] != request.digest():
            raise ReversalConflict(f"reversal {request.reversal_id} was already used for a different request")
        log.info("reversal already applied")
        replayed()
        reversal = Reversal.model_validate(existing["breakdown"])
    else:
        reversal = await _apply_reversal(conn, reverse)
        log.info("order reversed", amount=reversal.amount, written_off=sum(p.amount for p in reversal.written_off))
    order = await _order_summary(conn, request.customer_id, request.order_id)
    return ReverseOutcome(reversal=reversal, order=order, lots=await _lots(conn, reversal.restored))


async def _apply_reversal(conn: Connection, reverse: ReverseInput) -> Reversal:
    request = reverse.request
    redemption_row = await conn.fetchrow(
        "SELECT * FROM redemptions WHERE customer_id = $1 AND order_id = $2 FOR UPDATE",
        request.customer_id,
        request.order_id,
    )
    if redemption_row is None:
        raise UnknownOrder(f"order {request.order_id} has no redemption for customer {request.customer_id}")
    redemption = redemption_from_row(redemption_row)
    reversible = redemption.discount - redemption_row["reversed_minor"]
    if reversible == 0:
        raise ReversalExceedsRedeemed(f"order {request.order_id} is already fully reversed")
    amount = request.amount if request.amount is not None else reversible
    so_far = await _reversed_so_far(conn, request.customer_id, request.order_id)
    restored = rules.allocate_reversal(redemption.applied, so_far, amount, redemption.currency)
    written_off = await _restore(conn, reverse, redemption, so_far, restored)
    updated = await conn.execute(
        """UPDATE redemptions SET reversed_minor = reversed_minor + $3
           WHERE customer_id = $1 AND order_id = $2 AND reversed_minor + $3 <= discount_minor""",
        request.customer_id,
        request.order_id,
        amount,
    )
    if updated != "UPDATE 1":
        raise InsufficientValue(f"order {request.order_id} changed while reversing; nothing was written")
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
    await _insert_reversal(conn, reversal, request.digest())
    await publish(conn, "reversed", request.customer_id, request.order_id, reversal)
    return reversal


async def _reversed_so_far(conn: Connection, customer_id: str, order_id: str) -> dict[str, int]:
    rows = await conn.fetch(
        """SELECT lot_id, sum(amount_minor) AS restored FROM ledger_entries
           WHERE customer_id = $1 AND order_id = $2 AND entry_type = 'reverse' GROUP BY lot_id""",
        customer_id,
        order_id,
    )
    return {row["lot_id"]: row["restored"] for row in rows}


async def _restore(
    conn: Connection, reverse: ReverseInput, redemption: Redemption, so_far: dict[str, int], restored: list[Applied]
) -> list[Applied]:
    """Gives each part back to its lot; returns the credit parts written off again at once."""
    request = reverse.request
    written_off: list[Applied] = []
    for part in restored:
        applied = sum(p.amount for p in redemption.applied if p.lot_id == part.lot_id)
        row = await give_back(conn, part, restore_use=so_far.get(part.lot_id, 0) + part.amount == applied)
        if part.kind == "coupon" and row["promotion_id"] is not None:
            await commit_to_budget(conn, row["promotion_id"], -part.amount, kind="coupon")
        await write_entry(
            conn,
            entry_type="reverse",
            lot=row,
            amount=part.amount,
            order_id=request.order_id,
            reversal_id=request.reversal_id,
        )
        if await _write_off_if_dead(conn, reverse, row, part):
            written_off.append(part)
    return written_off


async def _write_off_if_dead(conn: Connection, reverse: ReverseInput, row: Row, part: Applied) -> bool:
    """Writes off at once what came back to a dead lot (expired, revoked, past its expiry, or
    whose promotion has closed); True when that was a credit's value."""
    request, dead = reverse.request, is_dead(row, reverse.as_of)
    closed = await closed_promotion(conn, row, dead=dead)
    if not dead and closed is None:
        return False
    reason = None if dead else "reversed into a lot whose promotion has closed"
    written = await write_off_again(conn, row, part, request.reversal_id, request.order_id, reason=reason)
    if closed is not None:
        await move_closed_report(conn, closed, reversed_minor=part.amount, written_off=written)
    return part.kind == "credit"


async def _insert_reversal(conn: Connection, reversal: Reversal, digest: str) -> None:
    workflow_id, run_id = origin()
    columns: dict[str, object] = {
        "reversal_id": reversal.reversal_id,
        "customer_id": reversal.customer_id,
        "order_id": reversal.order_id,
        "currency": reversal.currency,
        "amount_minor": reversal.amount,
        "breakdown": reversal.model_dump(mode="json"),
        "request_digest": digest,
        "reversed_at": reversal.reversed_at,
        "workflow_id": workflow_id,
        "run_id": run_id,
    }
    await conn.execute(_insert_sql("reversals", columns), *columns.values())


# -- revoke ---------------------------------------------------------------------------------------


async def _revoke(conn: Connection, revoke: RevokeInput) -> RevokeOutcome:
    request = revoke.request
    log = activity_log(customer_id=request.customer_id, lot_id=request.lot_id)
    row = await lot_for_update(conn, request.customer_id, request.lot_id)
    if row["status"] == "revoked":
        outcome = await _existing_revocation(conn, row)
        if outcome.revocation.reason != request.reason:
            raise RevocationConflict(
                f"lot {request.lot_id} was already revoked for another reason: {outcome.revocation.reason!r}"
            )
        log.info("revocation already applied")
        replayed()
        return outcome
    if row["status"] == "expired":
        raise LotNotRevocable(f"lot {request.lot_id} has already expired")
    amount = row["remaining_minor"]
    row = await fetch_one(
        conn, "UPDATE lots SET remaining_minor = 0, status = 'revoked' WHERE lot_id = $1 RETURNING *", request.lot_id
    )
    # The revocation's time is its ledger row's, so that a retry, which reads the row, answers the same.
    revoked_at = await write_entry(conn, entry_type="revoke", lot=row, amount=-amount, reason=request.reason)
    revocation = Revocation(
        lot_id=request.lot_id, currency=row["currency"], amount=amount, reason=request.reason, revoked_at=revoked_at
    )
    await publish_lot_events(conn, "revoked", [request.lot_id], change=-amount, reason=request.reason)
    log.info("lot revoked", amount=amount, reason=request.reason)
    return RevokeOutcome(revocation=revocation, lot=lot_from_row(row))


async def _existing_revocation(conn: Connection, row: Row) -> RevokeOutcome:
    entry = await fetch_one(
        conn,
        """SELECT amount_minor, reason, created_at FROM ledger_entries
           WHERE entry_type = 'revoke' AND lot_id = $1 AND order_id IS NULL AND reversal_id IS NULL""",
        row["lot_id"],
    )
    revocation = Revocation(
        lot_id=row["lot_id"],
        currency=row["currency"],
        amount=-entry["amount_minor"],
        reason=entry["reason"],
        revoked_at=entry["created_at"],
    )
    return RevokeOutcome(revocation=revocation, lot=lot_from_row(row))


# -- reads inside a transaction -------------------------------------------------------------------


async def _memory(conn: Connection, load: LoadWalletInput) -> WalletMemory:
    """What a new wallet run needs from the ledger: the live lots whose clock it keeps (a
    promotion keeps its own lots' clock; the ledger redeems them whatever the wallet holds) and
    its reversible orders."""
    lots = await conn.fetch(
        """SELECT * FROM lots WHERE clock_workflow_id = $1 AND status IN ('pending', 'active')
           ORDER BY granted_at, lot_id""",
        wallet_id(load.customer_id),
    )
    orders = await conn.fetch(
        """SELECT order_id FROM redemptions WHERE customer_id = $1 AND redeemed_at >= $2
           ORDER BY redeemed_at DESC LIMIT $3""",
        load.customer_id,
        load.redeemed_since,
        load.max_orders,
    )
    return WalletMemory(
        customer_id=load.customer_id,
        lots=[lot_from_row(row) for row in lots],
        grant_digests={row["lot_id"]: row["grant_digest"] for row in lots},
        redemptions=[await _order_summary(conn, load.customer_id, row["order_id"]) for row in reversed(orders)],
    )


async def _order_summary(conn: Connection, customer_id: str, order_id: str) -> RedemptionSummary:
    row = await fetch_one(
        conn,
        """SELECT r.order_id, r.currency, r.discount_minor, r.reversed_minor, r.redeemed_at,
                  coalesce(array_agg(v.reversal_id ORDER BY v.created_at) FILTER (WHERE v.reversal_id IS NOT NULL),
                           '{}') AS reversal_ids
           FROM redemptions r LEFT JOIN reversals v USING (customer_id, order_id)
           WHERE r.customer_id = $1 AND r.order_id = $2
           GROUP BY r.customer_id, r.order_id""",
        customer_id,
        order_id,
    )
    return order_summary_from_row(row)


async def _lots(conn: Connection, parts: list[Applied]) -> list[Lot]:
    rows = await conn.fetch("SELECT * FROM lots WHERE lot_id = ANY($1::text[])", [part.lot_id for part in parts])
    return [lot_from_row(row) for row in rows]
