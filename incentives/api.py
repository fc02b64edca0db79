"""`IncentivesClient`: the operations for a Python service, and the one implementation the CLI uses.

Every value-changing call is an update-with-start on the customer's wallet (`wallet:<customer>`,
conflict policy USE_EXISTING), so the first grant creates the wallet and any later call restarts
a wallet that completed. The caller's id (lot, order, reversal) is the Temporal update id,
suffixed with a digest of the payload: a retry of the same request is deduplicated by the server
within a run and by the ledger across runs, and a different payload under the same id reaches
the validators and is rejected as a conflict rather than answered from the first one.

Two server answers are retried here with backoff until `retry_deadline`, because the ids make a
retry safe: ResourceExhausted (too many updates in flight on one workflow) and an update aborted
because its run was closing (continue-as-new or completion).
"""

from __future__ import annotations

import asyncio
import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from temporalio.client import Client, WithStartWorkflowOperation, WorkflowUpdateFailedError
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from incentives.db import Pool
from incentives.errors import Rejected, Unavailable, UnknownCustomer, UnknownOrder, rejection_from
from incentives.models import (
    GrantRequest,
    Lot,
    Model,
    RedeemRequest,
    Redemption,
    Reversal,
    ReverseRequest,
    Revocation,
    RevokeRequest,
    WalletView,
)
from incentives.rows import ledger_entry_from_row, lot_from_row
from incentives.search_attributes import CUSTOMER_ID
from workflows.wallet import WalletInput, WalletWorkflow, wallet_id

Result = TypeVar("Result", bound=Model)

_RETRYABLE_STATUSES = {RPCStatusCode.RESOURCE_EXHAUSTED, RPCStatusCode.ABORTED, RPCStatusCode.UNAVAILABLE}


def update_id(operation: str, caller_id: str, request: Model) -> str:
    return f"{operation}:{caller_id}:{request.digest()[:16]}"


def _retryable(error: BaseException) -> bool:
    if isinstance(error, RPCError):
        return error.status in _RETRYABLE_STATUSES or "aborted" in error.message.lower()
    if isinstance(error, WorkflowUpdateFailedError):
        # The server aborts an update whose run closes under it ("workflow is closing").
        cause = error.cause
        return isinstance(cause, ApplicationError) and "aborted" in cause.message.lower() and cause.type is None
    return False


class IncentivesClient:
    """Grant, redeem, reverse, revoke through the wallets; read wallets from the ledger."""

    def __init__(
        self,
        temporal: Client,
        pool: Pool,
        *,
        task_queue: str,
        reversal_window: timedelta = timedelta(days=90),
        retry_deadline: timedelta = timedelta(seconds=30),
        search_attributes: bool = True,
    ) -> None:
        self._temporal = temporal
        self._pool = pool
        self._task_queue = task_queue
        self._reversal_window = reversal_window
        self._retry_deadline = retry_deadline
        self._search_attributes = search_attributes

    @property
    def task_queue(self) -> str:
        return self._task_queue

    async def grant(self, request: GrantRequest) -> Lot:
        """Puts a lot into the customer's wallet; the same lot id again returns the existing lot."""
        return await self._update(
            request.customer_id, WalletWorkflow.grant, request, update_id("grant", request.lot_id, request), Lot
        )

    async def redeem(self, request: RedeemRequest) -> Redemption:
        """Applies the coupon and credits to an order; the same order id again returns the same breakdown."""
        return await self._update(
            request.customer_id,
            WalletWorkflow.redeem,
            request,
            update_id("redeem", request.order_id, request),
            Redemption,
        )

    async def reverse(self, request: ReverseRequest) -> Reversal:
        """Gives an order's discount back, all or `amount`; the same reversal id again is a no-op."""
        return await self._update(
            request.customer_id,
            WalletWorkflow.reverse,
            request,
            update_id("reverse", request.reversal_id, request),
            Reversal,
        )

    async def revoke(self, request: RevokeRequest) -> Revocation:
        """Removes what is left of a lot, with a reason."""
        return await self._update(
            request.customer_id,
            WalletWorkflow.revoke,
            request,
            update_id("revoke", request.lot_id, request),
            Revocation,
        )

    async def wallet(self, customer_id: str, *, ledger_limit: int = 200) -> WalletView:
        """The customer's balances, lots and most recent ledger rows, read from Postgres (the truth)."""
        now = datetime.now(UTC)
        async with self._pool.acquire() as conn:
            lot_rows = await conn.fetch(
                "SELECT * FROM lots WHERE customer_id = $1 ORDER BY granted_at, lot_id", customer_id
            )
            entry_rows = await conn.fetch(
                """SELECT * FROM (SELECT * FROM ledger_entries WHERE customer_id = $1 ORDER BY entry_id DESC LIMIT $2) recent
                   ORDER BY entry_id""",
                customer_id,
                ledger_limit,
            )
        if not lot_rows:
            raise UnknownCustomer(f"customer {customer_id} has no wallet: nothing was ever granted to them")
        lots = [lot_from_row(row) for row in lot_rows]
        balances: dict[str, int] = {}
        pending: dict[str, int] = {}
        for lot in lots:
            if lot.kind != "credit" or (lot.expires_at is not None and lot.expires_at <= now):
                continue
            if lot.status == "active" and (lot.effective_at is None or lot.effective_at <= now):
                balances[lot.currency] = balances.get(lot.currency, 0) + lot.remaining
            elif lot.status == "pending":
                pending[lot.currency] = pending.get(lot.currency, 0) + lot.remaining
        ledger = [ledger_entry_from_row(row) for row in entry_rows]
        return WalletView(customer_id=customer_id, balances=balances, pending=pending, lots=lots, ledger=ledger)

    async def order_currency(self, customer_id: str, order_id: str) -> str:
        """The currency an order was redeemed in (to read a reversal amount typed in major units)."""
        currency: str | None = await self._pool.fetchval(
            "SELECT currency FROM redemptions WHERE customer_id = $1 AND order_id = $2", customer_id, order_id
        )
        if currency is None:
            raise UnknownOrder(f"order {order_id} has no redemption for customer {customer_id}")
        return currency

    async def _update(
        self, customer_id: str, update: Any, request: Model, update_id: str, result_type: type[Result]
    ) -> Result:
        deadline = time.monotonic() + self._retry_deadline.total_seconds()
        backoff = 0.05
        while True:
            start = WithStartWorkflowOperation(
                WalletWorkflow.run,
                WalletInput(customer_id=customer_id, reversal_window=self._reversal_window),
                id=wallet_id(customer_id),
                task_queue=self._task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                search_attributes=TypedSearchAttributes([SearchAttributePair(CUSTOMER_ID, customer_id)])
                if self._search_attributes
                else None,
            )
            try:
                result: Result = await self._temporal.execute_update_with_start_workflow(
                    update, request, start_workflow_operation=start, id=update_id, result_type=result_type
                )
                return result
            except WorkflowUpdateFailedError as failed:
                rejected = _as_rejection(failed.cause)
                if rejected is not None:
                    raise rejected from None
                if not _retryable(failed) or time.monotonic() + backoff > deadline:
                    raise
            except RPCError as error:
                if not _retryable(error) or time.monotonic() + backoff > deadline:
                    if error.status == RPCStatusCode.UNAVAILABLE:
                        raise Unavailable(f"cannot reach Temporal: {error.message}") from error
                    raise
            await asyncio.sleep(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, 1.0)


def _as_rejection(cause: BaseException) -> Rejected | None:
    if isinstance(cause, ApplicationError):
        return rejection_from(cause.type, cause.message)
    return None
