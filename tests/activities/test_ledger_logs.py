"""The log fields the README promises on ledger activity logs, asserted on captured structlog events."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

from structlog.testing import capture_logs
from temporalio.testing import ActivityEnvironment

from activities.ledger import LedgerActivities
from incentives.adapters.db import Pool
from incentives.domain.messages import RedeemInput, ReverseInput, RevokeInput
from incentives.domain.models import RedeemRequest, ReverseRequest, RevokeRequest
from tests.helpers.builders import T0, NewId, at, credit

Arg = TypeVar("Arg")
Result = TypeVar("Result")


async def run_as(env: ActivityEnvironment, name: str, activity: Callable[[Arg], Awaitable[Result]], arg: Arg) -> Result:
    """Runs an activity with its registered name in `activity.info()`, as a worker would."""
    env.info = dataclasses.replace(env.info, activity_type=name)
    return await env.run(activity, arg)


async def test_ledger_logs_carry_the_workflow_run_activity_and_business_ids(pool: Pool, new_id: NewId) -> None:
    ledger = LedgerActivities(pool)
    env = ActivityEnvironment()
    customer, lot_id, order_id, reversal_id = new_id("c"), new_id("lot"), new_id("o"), new_id("r")
    with capture_logs() as logs:
        await run_as(env, "grant_lot", ledger.grant_lot, at(credit(lot_id, customer, 1000, promotion_id="spring")))
        redeem = RedeemRequest(customer_id=customer, order_id=order_id, currency="USD", total=400)
        await run_as(env, "redeem", ledger.redeem, RedeemInput(request=redeem, as_of=T0 + timedelta(hours=1)))
        reverse = ReverseRequest(customer_id=customer, order_id=order_id, reversal_id=reversal_id)
        await run_as(env, "reverse", ledger.reverse, ReverseInput(request=reverse, as_of=T0 + timedelta(hours=2)))
        revoke = RevokeRequest(customer_id=customer, lot_id=lot_id, reason="support")
        await run_as(env, "revoke_lot", ledger.revoke_lot, RevokeInput(request=revoke, as_of=T0 + timedelta(hours=3)))
    by_event = {log["event"]: log for log in logs}
    common = {"workflow_id": env.info.workflow_id, "run_id": env.info.workflow_run_id, "customer_id": customer}
    expected = {
        "lot granted": {"activity": "grant_lot", "lot_id": lot_id, "promotion_id": "spring"},
        "order redeemed": {"activity": "redeem", "order_id": order_id},
        "order reversed": {"activity": "reverse", "order_id": order_id, "reversal_id": reversal_id},
        "lot revoked": {"activity": "revoke_lot", "lot_id": lot_id},
    }
    for event, fields in expected.items():
        want = common | fields
        assert {key: by_event[event].get(key) for key in want} == want, event
