"""Which server answers the client retries (by status code and failure type): those the update ids make safe to retry."""

from __future__ import annotations

import asyncio

import pytest
from google.protobuf.any_pb2 import Any
from temporalio.api.common.v1 import GrpcStatus
from temporalio.api.errordetails.v1 import NamespaceNotFoundFailure
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from incentives.app.client import _CallsPerWallet, _retryable, update_id
from incentives.domain.models import RedeemRequest


def _namespace_not_found() -> RPCError:
    detail = Any()
    detail.Pack(NamespaceNotFoundFailure(namespace="nope"))
    status = GrpcStatus(code=RPCStatusCode.NOT_FOUND, message="namespace not found", details=[detail])
    return RPCError("namespace not found", RPCStatusCode.NOT_FOUND, status.SerializeToString())


@pytest.mark.parametrize(
    ("error", "retry"),
    [
        (
            RPCError(
                "limit on number of concurrent in-flight updates has been reached (10)",
                RPCStatusCode.RESOURCE_EXHAUSTED,
                b"",
            ),
            True,
        ),
        (
            RPCError(
                "Update-with-Start could not be executed: workflow update was aborted", RPCStatusCode.UNAVAILABLE, b""
            ),
            True,
        ),
        (RPCError("workflow update was aborted by closing workflow", RPCStatusCode.NOT_FOUND, b""), True),
        (
            WorkflowUpdateFailedError(
                ApplicationError(
                    "the Workflow completed before the Update completed", type="AcceptedUpdateCompletedWorkflow"
                )
            ),
            True,
        ),
        (WorkflowUpdateFailedError(ApplicationError("workflow update was aborted")), False),
        (WorkflowUpdateFailedError(ApplicationError("nothing to redeem", type="NothingToRedeem")), False),
        (_namespace_not_found(), False),
        (RPCError("bad request", RPCStatusCode.INVALID_ARGUMENT, b""), False),
    ],
)
def test_only_capacity_and_aborted_updates_are_retried(error: Exception, retry: bool) -> None:
    assert _retryable(error) is retry


def test_update_ids_are_the_callers_id_plus_a_payload_digest() -> None:
    request = RedeemRequest(customer_id="c", order_id="o-1", currency="USD", total=100)
    same = RedeemRequest(customer_id="c", order_id="o-1", currency="USD", total=100)
    other = RedeemRequest(customer_id="c", order_id="o-1", currency="USD", total=101)
    assert update_id("redeem", "o-1", request) == update_id("redeem", "o-1", same)
    assert update_id("redeem", "o-1", request).startswith("redeem:o-1:")
    assert update_id("redeem", "o-1", request) != update_id("redeem", "o-1", other)


async def test_calls_on_one_wallet_take_turns_and_a_wallet_with_no_caller_is_forgotten() -> None:
    turns = _CallsPerWallet(3)
    inside = {"a": 0, "b": 0}
    most = {"a": 0, "b": 0}

    async def call(customer: str) -> None:
        async with turns.take(customer):
            inside[customer] += 1
            most[customer] = max(most[customer], inside[customer])
            await asyncio.sleep(0)  # let the others try to get in
            inside[customer] -= 1

    await asyncio.gather(*(call(customer) for customer in ["a", "b"] * 10))
    assert most == {"a": 3, "b": 3}
    assert turns._gates == {}
