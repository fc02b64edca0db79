"""Every activity call the workflows make, with its timeouts and retries, by method reference:
a renamed or retyped activity fails type checking, not production.

The activity classes are imported through the sandbox (passed through, never re-imported per
run), as the SDK advises for modules whose activities workflows reference.

- On a caller's path (an Update's ledger call, and loading a new run's memory before it): local
  activities, so the ledger transaction runs in the workflow task that handles the Update. They
  retry until the ledger answers: an infrastructure failure is never an Update's answer; the
  caller gets `OutcomeUnknown` at its own deadline and re-attaches with the same ids. A local
  activity's write can outlive a discarded workflow task, so the wallet's memory may be older than
  the ledger; the wallet's validators refuse only what no unseen write could make untrue
  (`workflows/wallet.py`).
- Redeems that reach a wallet while its ledger call is busy go together: one local activity
  (`redeem_together`) applies each in its own transaction, in arrival order, and answers each.
- The first operation of a run started without memory makes one call (`load_and_*`): the
  operation and the wallet's memory in one transaction.
- The wallet's own timers and the promotion's calls are regular activities retried until they
  succeed; a promotion's batches, ticks and revocations heartbeat, and its batches can be
  cancelled by a control.
- A business-rule refusal is non-retryable everywhere and surfaces as the Update's own failure,
  with the rule's type (`incentives.domain.errors.to_failure`).

Runs recorded before a change to these calls replay on the branch they took: each change is a
patch in `workflows/patches.py`, and why each was made is in `docs/decisions/` (0001 and 0006 for
the wallet's calls, 0008 for the promotion's batches).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.ledger import LedgerActivities
    from activities.promotions import PromotionActivities
    from incentives.domain.errors import from_failure, to_failure
    from incentives.domain.messages import (
        ExpireOutcome,
        FirstCall,
        GrantInput,
        Loaded,
        LoadWalletInput,
        LotTransition,
        RedeemAnswers,
        RedeemInput,
        RedeemOutcome,
        RedeemTogether,
        ReverseInput,
        ReverseOutcome,
        RevokeInput,
        RevokeOutcome,
        WalletMemory,
    )
    from incentives.domain.models import Lot, Model
    from incentives.domain.promotions import (
        BatchOutcome,
        ClockInput,
        ClockOutcome,
        GrantBatchInput,
        OpenPromotion,
        PromotionFigures,
        RevokeOutstanding,
        StateChange,
    )
    from workflows.patches import LOCAL_LEDGER_CALLS

# Wallets started before LOCAL_LEDGER_CALLS: their Update calls gave up after this.
REGULAR_UPDATE_CALL_DEADLINE = timedelta(seconds=30)
_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=100), backoff_coefficient=2.0, maximum_interval=timedelta(seconds=10)
)
_START_TO_CLOSE = timedelta(seconds=5)

Arg = TypeVar("Arg", bound=Model)
Result = TypeVar("Result", bound=Model)
Answer = TypeVar("Answer")


async def _on_callers_path(
    activity: Callable[[LedgerActivities, Arg], Awaitable[Result]], arg: Arg, *, regular_deadline: timedelta | None
) -> Result:
    """A local activity; in a run recorded before the patch, the regular call it made then."""
    if workflow.patched(LOCAL_LEDGER_CALLS):
        call = workflow.execute_local_activity_method(
            activity, arg, start_to_close_timeout=_START_TO_CLOSE, retry_policy=_RETRY
        )
    else:
        call = workflow.execute_activity_method(
            activity,
            arg,
            start_to_close_timeout=_START_TO_CLOSE,
            schedule_to_close_timeout=regular_deadline,
            retry_policy=_RETRY,
        )
    return await _refusals_as_failures(call)


async def _first_call(
    activity: Callable[[LedgerActivities, FirstCall[Arg]], Awaitable[Loaded[Result]]], arg: FirstCall[Arg]
) -> Loaded[Result]:
    call = workflow.execute_local_activity_method(
        activity, arg, start_to_close_timeout=_START_TO_CLOSE, retry_policy=_RETRY
    )
    return await _refusals_as_failures(call)


async def _on_timer(activity: Callable[[LedgerActivities, Arg], Awaitable[Result]], arg: Arg) -> Result:
    call = workflow.execute_activity_method(activity, arg, start_to_close_timeout=_START_TO_CLOSE, retry_policy=_RETRY)
    return await _refusals_as_failures(call)


async def _refusals_as_failures(call: Awaitable[Answer]) -> Answer:
    try:
        return await call
    except ActivityError as error:
        rejected = from_failure(error.cause)
        if rejected is not None:
            # The update's own failure, same type: the caller sees the rule, not the plumbing.
            raise to_failure(rejected) from None
        raise


async def grant_lot(arg: GrantInput) -> Lot:
    return await _on_callers_path(LedgerActivities.grant_lot, arg, regular_deadline=REGULAR_UPDATE_CALL_DEADLINE)


async def redeem(arg: RedeemInput) -> RedeemOutcome:
    return await _on_callers_path(LedgerActivities.redeem, arg, regular_deadline=REGULAR_UPDATE_CALL_DEADLINE)


async def redeem_together(arg: RedeemTogether) -> RedeemAnswers:
    """Only past `workflow.patched(BATCHED_REDEEMS)`, so always a local activity; a refusal is an answer, not a failure."""
    return await _refusals_as_failures(
        workflow.execute_local_activity_method(
            LedgerActivities.redeem_together, arg, start_to_close_timeout=_START_TO_CLOSE, retry_policy=_RETRY
        )
    )


async def reverse(arg: ReverseInput) -> ReverseOutcome:
    return await _on_callers_path(LedgerActivities.reverse, arg, regular_deadline=REGULAR_UPDATE_CALL_DEADLINE)


async def revoke_lot(arg: RevokeInput) -> RevokeOutcome:
    return await _on_callers_path(LedgerActivities.revoke_lot, arg, regular_deadline=REGULAR_UPDATE_CALL_DEADLINE)


async def load_wallet(arg: LoadWalletInput) -> WalletMemory:
    return await _on_callers_path(LedgerActivities.load_wallet, arg, regular_deadline=None)


async def load_and_grant(arg: FirstCall[GrantInput]) -> Loaded[Lot]:
    return await _first_call(LedgerActivities.load_and_grant, arg)


async def load_and_redeem(arg: FirstCall[RedeemInput]) -> Loaded[RedeemOutcome]:
    return await _first_call(LedgerActivities.load_and_redeem, arg)


async def load_and_reverse(arg: FirstCall[ReverseInput]) -> Loaded[ReverseOutcome]:
    return await _first_call(LedgerActivities.load_and_reverse, arg)


async def load_and_revoke(arg: FirstCall[RevokeInput]) -> Loaded[RevokeOutcome]:
    return await _first_call(LedgerActivities.load_and_revoke, arg)


async def activate_lot(arg: LotTransition) -> Lot:
    return await _on_timer(LedgerActivities.activate_lot, arg)


async def record_reminder(arg: LotTransition) -> Lot:
    return await _on_timer(LedgerActivities.record_reminder, arg)


async def expire_lot(arg: LotTransition) -> ExpireOutcome:
    return await _on_timer(LedgerActivities.expire_lot, arg)


# -- the promotion's calls: regular activities, retried until they succeed. A batch or a clock
# tick runs for seconds on a large promotion, so it heartbeats: a worker that dies mid-batch is
# noticed within `_BULK_HEARTBEAT` and the batch retried elsewhere (idempotent by its record).

_BULK_START_TO_CLOSE = timedelta(minutes=10)
_BULK_HEARTBEAT = timedelta(seconds=15)
_STEERABLE_HEARTBEAT = timedelta(seconds=5)
_BULK_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200), backoff_coefficient=2.0, maximum_interval=timedelta(seconds=30)
)


async def _bulk(activity: Callable[[PromotionActivities, Arg], Awaitable[Result]], arg: Arg) -> Result:
    call = workflow.execute_activity_method(
        activity,
        arg,
        start_to_close_timeout=_BULK_START_TO_CLOSE,
        heartbeat_timeout=_BULK_HEARTBEAT,
        retry_policy=_BULK_RETRY,
    )
    return await _refusals_as_failures(call)


async def open_promotion(arg: OpenPromotion) -> None:
    await _refusals_as_failures(
        workflow.execute_activity_method(
            PromotionActivities.open_promotion, arg, start_to_close_timeout=_START_TO_CLOSE, retry_policy=_BULK_RETRY
        )
    )


async def grant_batch(arg: GrantBatchInput) -> BatchOutcome:
    return await _bulk(PromotionActivities.grant_batch, arg)


def start_grant_batch(arg: GrantBatchInput) -> workflow.ActivityHandle[BatchOutcome]:
    """The batch as a handle the promotion can cancel; a cancel waits until the activity has
    stopped (its transaction rolled back, or committed first), so the promotion knows which."""
    return workflow.start_activity_method(
        PromotionActivities.grant_batch,
        arg,
        start_to_close_timeout=_BULK_START_TO_CLOSE,
        # A cancel reaches the activity in the answer to a heartbeat, and the SDK sends those at
        # most every 80% of this: a control waits seconds for a stuck batch to stop, not a minute.
        heartbeat_timeout=_STEERABLE_HEARTBEAT,
        retry_policy=_BULK_RETRY,
        cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    )


async def batch_outcome(handle: workflow.ActivityHandle[BatchOutcome]) -> BatchOutcome:
    """A started batch's outcome; a refusal surfaces as the rule's own failure."""
    return await _refusals_as_failures(handle)


async def tick_clock(arg: ClockInput) -> ClockOutcome:
    return await _bulk(PromotionActivities.tick_clock, arg)


async def revoke_outstanding(arg: RevokeOutstanding) -> int:
    return await _refusals_as_failures(
        workflow.execute_activity_method(
            PromotionActivities.revoke_outstanding,
            arg,
            start_to_close_timeout=_BULK_START_TO_CLOSE,
            heartbeat_timeout=_BULK_HEARTBEAT,
            retry_policy=_BULK_RETRY,
        )
    )


async def record_state(arg: StateChange) -> PromotionFigures | None:
    return await _refusals_as_failures(
        workflow.execute_activity_method(
            PromotionActivities.record_state, arg, start_to_close_timeout=_START_TO_CLOSE, retry_policy=_BULK_RETRY
        )
    )
