"""Every activity call the workflows make, with its timeouts and retries, by method reference:
a renamed or retyped activity fails type checking, not production.

The activity classes are imported through the sandbox (passed through, never re-imported per
run), as the SDK advises for modules whose activities workflows reference.

Two option sets. Calls made for an Update have a caller waiting at checkout: they give up after
`UPDATE_CALL_DEADLINE` and the caller may retry with the same id (the ledger keeps that safe).
Calls made by the wallet's own timers retry until they succeed: expiring a lot must not be lost.
A business-rule refusal is non-retryable in both and surfaces as the update's own failure, with
the rule's type (`incentives.domain.errors.to_failure`).
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
    from incentives.domain.errors import from_failure, to_failure
    from incentives.domain.messages import (
        ExpireOutcome,
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
    from incentives.domain.models import Lot, Model

UPDATE_CALL_DEADLINE = timedelta(seconds=30)
_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=100), backoff_coefficient=2.0, maximum_interval=timedelta(seconds=10)
)
_START_TO_CLOSE = timedelta(seconds=5)

Arg = TypeVar("Arg", bound=Model)
Result = TypeVar("Result", bound=Model)


async def _call(
    activity: Callable[[LedgerActivities, Arg], Awaitable[Result]], arg: Arg, *, for_update: bool
) -> Result:
    try:
        return await workflow.execute_activity_method(
            activity,
            arg,
            start_to_close_timeout=_START_TO_CLOSE,
            schedule_to_close_timeout=UPDATE_CALL_DEADLINE if for_update else None,
            retry_policy=_RETRY,
        )
    except ActivityError as error:
        rejected = from_failure(error.cause)
        if rejected is not None:
            # The update's own failure, same type: the caller sees the rule, not the plumbing.
            raise to_failure(rejected) from None
        raise


async def grant_lot(arg: GrantInput) -> Lot:
    return await _call(LedgerActivities.grant_lot, arg, for_update=True)


async def redeem(arg: RedeemInput) -> RedeemOutcome:
    return await _call(LedgerActivities.redeem, arg, for_update=True)


async def reverse(arg: ReverseInput) -> ReverseOutcome:
    return await _call(LedgerActivities.reverse, arg, for_update=True)


async def revoke_lot(arg: RevokeInput) -> RevokeOutcome:
    return await _call(LedgerActivities.revoke_lot, arg, for_update=True)


async def load_wallet(arg: LoadWalletInput) -> WalletMemory:
    return await _call(LedgerActivities.load_wallet, arg, for_update=False)


async def activate_lot(arg: LotTransition) -> Lot:
    return await _call(LedgerActivities.activate_lot, arg, for_update=False)


async def record_reminder(arg: LotTransition) -> Lot:
    return await _call(LedgerActivities.record_reminder, arg, for_update=False)


async def expire_lot(arg: LotTransition) -> ExpireOutcome:
    return await _call(LedgerActivities.expire_lot, arg, for_update=False)
