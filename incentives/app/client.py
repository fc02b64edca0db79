"""`IncentivesClient`: the operations for a Python service, and the one implementation the CLI uses.

Every value-changing call is an Update on the customer's wallet (`wallet:<customer>`): an
update-with-start (conflict policy USE_EXISTING), so that the first grant creates the wallet and
a later call restarts a wallet that completed; or, on a wallet this client saw running recently, a
plain Update, which costs the server less (a redeem 1-2 ms less here) and falls back to
update-with-start when the server says the wallet has no running run. The caller's id (lot,
order, reversal) is the Temporal update id, suffixed with a digest of the payload: a retry of the
same request is deduplicated by the server within a run and by the ledger across runs, and a
different payload under the same id reaches the validators and is rejected as a conflict rather
than answered from the first one.

Capacity answers are retried here with backoff until the call's deadline, because the ids make a
retry safe. They are told apart by status code and failure type, never by message text:
RESOURCE_EXHAUSTED (too many updates in flight on one workflow), UNAVAILABLE (the server aborted
the update), NOT_FOUND unless its detail is a missing namespace (the update was aborted because its
run was closing: continue-as-new or completion), and the failure type
`AcceptedUpdateCompletedWorkflow`.

Calls on one wallet are also held back here, at most `max_in_flight_per_wallet` sent at once: past
the server's in-flight limit an Update is not only refused but others are aborted, and the retries
feed the abort (measured on the dev server, 100 concurrent Updates with a local activity on one
workflow finish in 1.2 s, 200 in 9 s, 300 not in a minute). Waiting for a turn happens inside the
caller's deadline, like any retry.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any, TypeVar

from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.workflow import UpdateMethodMultiParam

from incentives.adapters.db import Pool
from incentives.adapters.migrations import connect_reader
from incentives.adapters.settings import Settings
from incentives.adapters.temporal import connect_temporal
from incentives.app import views
from incentives.domain.errors import OutcomeUnknown, from_failure
from incentives.domain.messages import DEFAULT_REVERSAL_WINDOW, WalletInput
from incentives.domain.models import (
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
    wallet_id,
)
from incentives.domain.search_attributes import CUSTOMER_ID
from workflows.wallet import WalletWorkflow

Arg = TypeVar("Arg", bound=Model)
Result = TypeVar("Result", bound=Model)
WalletStart = WithStartWorkflowOperation[WalletWorkflow, Any]
UpdateMethod = UpdateMethodMultiParam[[WalletWorkflow, Arg], Result]

# A caller at checkout waits this long by default; past it, the answer is `OutcomeUnknown`.
DEFAULT_CALL_TIMEOUT = timedelta(seconds=30)
# Half the per-workflow in-flight Update limit the README asks operators to set (100): room for
# other client processes, and still more than a wallet runs in one workflow task.
DEFAULT_MAX_IN_FLIGHT_PER_WALLET = 50
_CAPACITY_STATUSES = {RPCStatusCode.RESOURCE_EXHAUSTED, RPCStatusCode.UNAVAILABLE, RPCStatusCode.NOT_FOUND}
# How many wallets a client remembers having seen running (a few hundred kB of customer ids).
RECENT_WALLETS = 10_000
# The server's failure type for an update accepted by a run that then closed before finishing it.
_CLOSED_UNDER_UPDATE = "AcceptedUpdateCompletedWorkflow"


def update_id(operation: str, caller_id: str, request: Model) -> str:
    return f"{operation}:{caller_id}:{request.digest()[:16]}"


def _retryable(error: BaseException) -> bool:
    if isinstance(error, RPCError):
        if error.status == RPCStatusCode.NOT_FOUND:
            # A missing namespace is NOT_FOUND too, and says so in a typed detail.
            return not any(
                detail.type_url.endswith(".NamespaceNotFoundFailure") for detail in error.grpc_status.details
            )
        return error.status in _CAPACITY_STATUSES
    if isinstance(error, WorkflowUpdateFailedError):
        cause = error.cause
        return isinstance(cause, ApplicationError) and cause.type == _CLOSED_UNDER_UPDATE
    return False


@asynccontextmanager
async def connect(settings: Settings | None = None) -> AsyncIterator[IncentivesClient]:
    """An `IncentivesClient` on the configured Temporal and Postgres, closed on exit."""
    settings = settings or Settings()
    temporal = await connect_temporal(settings)
    pool = await connect_reader(settings, max_size=4)
    try:
        yield IncentivesClient(temporal, pool, task_queue=settings.task_queue, reversal_window=settings.reversal_window)
    finally:
        await pool.close()


class IncentivesClient:
    """Grant, redeem, reverse, revoke through the wallets; read wallets from the ledger."""

    def __init__(
        self,
        temporal: Client,
        pool: Pool,
        *,
        task_queue: str,
        reversal_window: timedelta = DEFAULT_REVERSAL_WINDOW,
        default_timeout: timedelta = DEFAULT_CALL_TIMEOUT,
        search_attributes: bool = True,
        max_in_flight_per_wallet: int = DEFAULT_MAX_IN_FLIGHT_PER_WALLET,
    ) -> None:
        self._temporal = temporal
        self._pool = pool
        self._task_queue = task_queue
        self._reversal_window = reversal_window
        self._default_timeout = default_timeout
        self._search_attributes = search_attributes
        self._in_flight = _CallsPerWallet(max_in_flight_per_wallet)
        self._running = _RecentWallets(RECENT_WALLETS)

    @property
    def task_queue(self) -> str:
        return self._task_queue

    async def grant(self, request: GrantRequest, *, timeout: timedelta | None = None) -> Lot:
        """Puts a lot into the customer's wallet; the same lot id again returns the existing lot."""
        return await self._update(
            WalletWorkflow.grant, request, request.customer_id, update_id("grant", request.lot_id, request), timeout
        )

    async def redeem(self, request: RedeemRequest, *, timeout: timedelta | None = None) -> Redemption:
        """Applies the coupon and credits to an order; the same order id again returns the same breakdown."""
        return await self._update(
            WalletWorkflow.redeem, request, request.customer_id, update_id("redeem", request.order_id, request), timeout
        )

    async def reverse(self, request: ReverseRequest, *, timeout: timedelta | None = None) -> Reversal:
        """Gives an order's discount back, all or `amount`; the same reversal id again is a no-op."""
        return await self._update(
            WalletWorkflow.reverse,
            request,
            request.customer_id,
            update_id("reverse", request.reversal_id, request),
            timeout,
        )

    async def revoke(self, request: RevokeRequest, *, timeout: timedelta | None = None) -> Revocation:
        """Removes what is left of a lot, with a reason."""
        return await self._update(
            WalletWorkflow.revoke, request, request.customer_id, update_id("revoke", request.lot_id, request), timeout
        )

    async def wallet(self, customer_id: str, *, ledger_limit: int = 200) -> WalletView:
        """The customer's balances, lots and most recent ledger rows, read from Postgres (the truth)."""
        return await views.wallet_view(self._pool, customer_id, ledger_limit=ledger_limit)

    async def order_currency(self, customer_id: str, order_id: str) -> str:
        return await views.order_currency(self._pool, customer_id, order_id)

    def _start(self, customer_id: str) -> WalletStart:
        return WithStartWorkflowOperation(
            WalletWorkflow.run,
            WalletInput(customer_id=customer_id, reversal_window=self._reversal_window),
            id=wallet_id(customer_id),
            task_queue=self._task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            search_attributes=TypedSearchAttributes([SearchAttributePair(CUSTOMER_ID, customer_id)])
            if self._search_attributes
            else None,
        )

    async def _update(
        self,
        update: UpdateMethod[Arg, Result],
        request: Arg,
        customer_id: str,
        update_id: str,
        timeout: timedelta | None,
    ) -> Result:
        """Sends the update, again on a capacity answer, until `timeout` (the caller's deadline).

        Three kinds of answer, never a fourth: the result; a `Rejected` (nothing was written); or
        `OutcomeUnknown` when the deadline passes first, which a retry with the same ids resolves
        to the first result.
        """
        deadline = timeout or self._default_timeout
        try:
            async with asyncio.timeout(deadline.total_seconds()), self._in_flight.take(customer_id):
                return await self._until_answered(update, request, customer_id, update_id)
        except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
            # The SDK turns the deadline's cancellation of a waiting update into its own error.
            raise OutcomeUnknown(
                f"no answer from wallet:{customer_id} within {deadline.total_seconds():g}s (no worker, or the "
                "ledger is down): the operation may or may not have been applied; retrying with the same ids "
                "is safe and returns the first result"
            ) from None

    async def _until_answered(
        self, update: UpdateMethod[Arg, Result], request: Arg, customer_id: str, update_id: str
    ) -> Result:
        backoff = 0.05
        while True:
            try:
                if self._running.seen(customer_id):
                    answer = await self._plain_update(update, request, customer_id, update_id)
                    if answer is not None:
                        return answer
                answer = await self._update_with_start(update, request, customer_id, update_id)
                self._running.add(customer_id)
                return answer
            except (WorkflowUpdateFailedError, RPCError) as error:
                rejected = from_failure(error.cause) if isinstance(error, WorkflowUpdateFailedError) else None
                if rejected is not None:
                    self._running.add(customer_id)
                    raise rejected from None
                if not _retryable(error):
                    raise
            await asyncio.sleep(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, 1.0)

    async def _plain_update(
        self, update: UpdateMethod[Arg, Result], request: Arg, customer_id: str, update_id: str
    ) -> Result | None:
        """An Update to the wallet's current run, or None if it has none (it completed): the caller
        then sends update-with-start. Any other answer is the update's."""
        handle = self._temporal.get_workflow_handle(wallet_id(customer_id))
        try:
            return await handle.execute_update(update, request, id=update_id)
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND or not _retryable(error):
                raise
            self._running.forget(customer_id)
            return None

    async def _update_with_start(
        self, update: UpdateMethod[Arg, Result], request: Arg, customer_id: str, update_id: str
    ) -> Result:
        start = self._start(customer_id)
        try:
            return await self._temporal.execute_update_with_start_workflow(
                update, request, start_workflow_operation=start, id=update_id
            )
        finally:
            _retrieve_start_error(start)


class _RecentWallets:
    """The customers whose wallet this client recently saw running, the most recent last."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._customers: dict[str, None] = {}

    def seen(self, customer_id: str) -> bool:
        return customer_id in self._customers

    def add(self, customer_id: str) -> None:
        self._customers.pop(customer_id, None)
        self._customers[customer_id] = None
        if len(self._customers) > self._size:
            del self._customers[next(iter(self._customers))]

    def forget(self, customer_id: str) -> None:
        self._customers.pop(customer_id, None)


class _CallsPerWallet:
    """At most `size` calls in flight per wallet from this client; the others wait, first come first served."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._gates: dict[str, tuple[asyncio.Semaphore, int]] = {}

    @asynccontextmanager
    async def take(self, customer_id: str) -> AsyncIterator[None]:
        gate, holders = self._gates.get(customer_id, (asyncio.Semaphore(self._size), 0))
        self._gates[customer_id] = (gate, holders + 1)
        try:
            async with gate:
                yield
        finally:
            gate, holders = self._gates[customer_id]
            if holders == 1:
                del self._gates[customer_id]  # no caller left for this wallet: forget it
            else:
                self._gates[customer_id] = (gate, holders - 1)


def _retrieve_start_error(start: WalletStart) -> None:
    """The SDK keeps a failed start's error in the operation's handle future, which nobody else
    reads; unread, asyncio logs it as "Future exception was never retrieved" at exit.

    The SDK's only public way to it, `await start.workflow_handle()`, waits until the start has
    answered, which a call cancelled at the caller's deadline never does; so this reads the future
    without waiting, through its private name (the SDK's version is pinned in the lock file)."""
    handle = start._workflow_handle
    if handle.done() and not handle.cancelled():
        handle.exception()
