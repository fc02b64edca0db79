"""`PromotionsClient`: start a promotion, control it, read it. The CLI's one implementation.

Starting claims the promotion's id for its terms and stages the audience in Postgres in one
transaction (`incentives.app.audience`), then starts the promotion's workflow (`promotion:<id>`).
Starting the same terms and audience again is harmless and says so; other terms under a claimed id
are refused before anything is staged or started. `PromotionBooks` reads Postgres alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Iterable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from temporalio.client import (
    Client,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.promotions import promotion_figures, promotion_movements
from incentives.adapters.db import Pool
from incentives.adapters.migrations import connect_database, connect_reader
from incentives.adapters.rows import Row
from incentives.adapters.settings import Settings
from incentives.adapters.temporal import connect_temporal
from incentives.app.audience import stage_audience, unstage_audience
from incentives.app.client import DEFAULT_CALL_TIMEOUT
from incentives.domain.errors import (
    InvalidCombination,
    OutcomeUnknown,
    PromotionConflict,
    Rejected,
    UnknownLot,
    from_failure,
)
from incentives.domain.models import Model
from incentives.domain.promotions import (
    BATCH_SIZE,
    MAX_HISTORY_EVENTS,
    AudienceLoad,
    CancelRequest,
    ControlOutcome,
    Extend,
    PromotionFigures,
    PromotionInput,
    PromotionStatus,
    PromotionTerms,
    promotion_workflow_id,
    refuse_grants_nothing,
)
from incentives.domain.search_attributes import INCENTIVE_STATE, PROMOTION_ID
from workflows.promotion import PromotionWorkflow

T = TypeVar("T")


class Started(Model):
    promotion_id: str
    workflow_id: str
    run_id: str | None
    started: bool
    audience: AudienceLoad


class UnknownPromotion(UnknownLot):
    """No promotion with this id was ever started."""


@asynccontextmanager
async def connect_promotions(settings: Settings | None = None) -> AsyncIterator[PromotionsClient]:
    """A `PromotionsClient` on the configured Temporal and Postgres, closed on exit."""
    settings = settings or Settings()
    temporal = await connect_temporal(settings)
    pool = await connect_database(settings, max_size=2)
    try:
        yield PromotionsClient(temporal, pool, task_queue=settings.task_queue)
    finally:
        await pool.close()


@asynccontextmanager
async def connect_promotion_books(settings: Settings | None = None) -> AsyncIterator[PromotionBooks]:
    """`PromotionBooks` on the configured Postgres alone: status, list and report work while
    Temporal is down, as they read only Postgres (and never migrate it)."""
    settings = settings or Settings()
    pool = await connect_reader(settings, max_size=2)
    try:
        yield PromotionBooks(pool)
    finally:
        await pool.close()


class PromotionBooks:
    """A promotion as Postgres has it: state, counters and books (the truth, and there once it closed)."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def status(self, promotion_id: str) -> PromotionStatus:
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            row = await conn.fetchrow(_STATUS, promotion_id)
            if row is None:
                raise UnknownPromotion(f"promotion {promotion_id} was never started")
            moved = await promotion_movements(conn, promotion_id)
        return _status(row, moved)

    async def list(self) -> list[PromotionStatus]:
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            rows = await conn.fetch(_STATUS.replace("WHERE p.promotion_id = $1", "ORDER BY p.created_at"))
            return [_status(row, await promotion_movements(conn, row["promotion_id"])) for row in rows]

    async def report(self, promotion_id: str) -> tuple[PromotionFigures, bool]:
        """The promotion's books from the ledger now, and whether they are final (it closed)."""
        status = await self.status(promotion_id)
        async with self._pool.acquire() as conn:
            figures = await promotion_figures(conn, promotion_id)
        return figures, status.state == "closed"


class PromotionsClient(PromotionBooks):
    def __init__(
        self,
        temporal: Client,
        pool: Pool,
        *,
        task_queue: str,
        default_timeout: timedelta = DEFAULT_CALL_TIMEOUT,
        batch_size: int = BATCH_SIZE,
        history_limit: int = MAX_HISTORY_EVENTS,
    ) -> None:
        super().__init__(pool)
        self._temporal = temporal
        self._task_queue = task_queue
        self._default_timeout = default_timeout
        self._batch_size = batch_size
        self._history_limit = history_limit

    async def start(
        self, terms: PromotionTerms, customer_ids: Iterable[str] | AsyncIterable[str], *, now: datetime | None = None
    ) -> Started:
        """Claims the promotion's id for these terms and stages the audience (one transaction: other
        terms under a claimed id are refused with nothing staged), then starts the workflow. The
        same terms and audience again start nothing, and say so; so does a start that loses a race
        to another start of the same spec."""
        refuse_grants_nothing(terms, now or datetime.now(UTC))
        await self._check_pool(terms)
        load = await stage_audience(
            self._pool, terms.promotion_id, customer_ids, first_load=True, terms_digest=terms.digest()
        )
        workflow_id = promotion_workflow_id(terms.promotion_id)
        try:
            handle = await self._temporal.start_workflow(
                PromotionWorkflow.run,
                PromotionInput(
                    terms=terms, audience=load, batch_size=self._batch_size, history_limit=self._history_limit
                ),
                id=workflow_id,
                task_queue=self._task_queue,
                # Exactly one start wins; a promotion that closed stays closed.
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                search_attributes=TypedSearchAttributes(
                    [
                        SearchAttributePair(PROMOTION_ID, terms.promotion_id),
                        SearchAttributePair(INCENTIVE_STATE, "scheduled"),
                    ]
                ),
            )
        except WorkflowAlreadyStartedError as already:
            run_id, started = already.run_id, False
        else:
            run_id, started = handle.first_execution_run_id, True
        return Started(
            promotion_id=terms.promotion_id, workflow_id=workflow_id, run_id=run_id, started=started, audience=load
        )

    async def _check_pool(self, terms: PromotionTerms) -> None:
        """Refuses a pool named with another cap than the one it has, up front."""
        pool = terms.budget.pool
        if pool is None:
            return
        async with self._pool.acquire() as conn:
            cap = await conn.fetchrow(
                "SELECT currency, cap_minor FROM promotion_pools WHERE pool_id = $1", pool.pool_id
            )
        if cap is not None and (cap["currency"], cap["cap_minor"]) != (terms.currency, pool.amount):
            raise InvalidCombination(
                "budget.pool.amount",
                f"pool {pool.pool_id} already has a cap of {cap['cap_minor']} minor units of {cap['currency']}; "
                "every promotion naming it must give the same",
            )

    async def add_audience(
        self, promotion_id: str, customer_ids: Iterable[str] | AsyncIterable[str], *, timeout: timedelta | None = None
    ) -> ControlOutcome:
        """Stages the customers as the promotion's next audience load and hands it to the promotion.
        Refused when the promotion no longer grants (before anything is staged) or when the promotion
        refuses the load (what was staged is removed): a refusal leaves nothing behind."""
        status = await self.status(promotion_id)  # an unknown promotion is refused before staging
        if status.state not in LIVE_STATES:
            raise PromotionConflict(f"cannot add an audience to promotion {promotion_id}: it is {status.state}")
        load = await stage_audience(self._pool, promotion_id, customer_ids, first_load=False)
        handle = self._handle(promotion_id)
        try:
            return await self._control(
                promotion_id,
                timeout,
                handle.execute_update(PromotionWorkflow.add_audience, load, id=f"add-audience:{load.load_no}"),
            )
        except Rejected:
            await unstage_audience(self._pool, promotion_id, load)
            raise

    async def pause(self, promotion_id: str, *, timeout: timedelta | None = None) -> ControlOutcome:
        return await self._control(
            promotion_id, timeout, self._handle(promotion_id).execute_update(PromotionWorkflow.pause)
        )

    async def resume(self, promotion_id: str, *, timeout: timedelta | None = None) -> ControlOutcome:
        return await self._control(
            promotion_id, timeout, self._handle(promotion_id).execute_update(PromotionWorkflow.resume)
        )

    async def cancel(
        self, promotion_id: str, *, revoke_outstanding: bool = False, timeout: timedelta | None = None
    ) -> ControlOutcome:
        request = CancelRequest(revoke_outstanding=revoke_outstanding)
        handle = self._handle(promotion_id)
        return await self._control(promotion_id, timeout, handle.execute_update(PromotionWorkflow.cancel, request))

    async def extend(self, promotion_id: str, ends_at: datetime, *, timeout: timedelta | None = None) -> ControlOutcome:
        handle = self._handle(promotion_id)
        return await self._control(
            promotion_id, timeout, handle.execute_update(PromotionWorkflow.extend, Extend(ends_at=ends_at))
        )

    def _handle(self, promotion_id: str) -> WorkflowHandle[PromotionWorkflow, PromotionFigures]:
        return self._temporal.get_workflow_handle_for(PromotionWorkflow.run, promotion_workflow_id(promotion_id))

    async def _control(self, promotion_id: str, timeout: timedelta | None, call: Awaitable[T]) -> T:
        """One control Update with the caller's deadline: the result, a `Rejected`, or `OutcomeUnknown`."""
        deadline = timeout or self._default_timeout
        try:
            async with asyncio.timeout(deadline.total_seconds()):
                return await call
        except WorkflowUpdateFailedError as error:
            rejected = from_failure(error.cause)
            if rejected is None:
                raise
            raise rejected from None
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                raise PromotionConflict(f"promotion {promotion_id} is not running") from None
            raise
        except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
            raise OutcomeUnknown(
                f"no answer from promotion:{promotion_id} within {deadline.total_seconds():g}s (no worker?): "
                "the control may or may not have been applied; sending it again is safe"
            ) from None


_STATUS = """
SELECT p.*, coalesce((SELECT sum(size) FROM promotion_audience_loads l WHERE l.promotion_id = p.promotion_id), 0)
       AS audience
FROM promotions p WHERE p.promotion_id = $1
"""
# The states in which a promotion still takes controls that change its granting.
LIVE_STATES = ("scheduled", "granting", "paused", "active")


def _status(r: Row, moved: Row) -> PromotionStatus:
    """Counters from the promotion's row (kept by its batches), movements from its ledger rows."""
    terms = PromotionTerms.model_validate(r["terms"])
    report = r["report"]
    return PromotionStatus(
        promotion_id=terms.promotion_id,
        name=terms.name,
        state=r["state"],
        kind=terms.kind,
        currency=terms.currency,
        audience=r["audience"],
        processed=r["processed"],
        granted=r["granted_count"],
        skipped=dict(r["skipped"]),
        committed=r["committed_minor"],
        budget=terms.budget.amount,
        redeemed=moved["redeemed"],
        reversed=moved["reversed"],
        expired=moved["expired"],
        revoked=moved["revoked"],
        starts_at=terms.starts_at or r["created_at"],
        ends_at=r["ends_at"],
        failure=r["failure"],
        report=PromotionFigures.model_validate({k: v for k, v in report.items() if k not in ("final", "as_of")})
        if report
        else None,
    )
