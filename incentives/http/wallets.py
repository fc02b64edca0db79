"""The wallet routes: grant, redeem, reverse, revoke, and the wallet itself.

A body is the Python client's request model as JSON; the customer is the path's. The answer is the
model the Python client returns: 201 when the ledger applied it now, 200 with
`Idempotent-Replayed: true` when it held it already (the same request again: the first result).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from starlette.responses import Response

from incentives.app import views
from incentives.app.api_keys import Scope
from incentives.app.client import IncentivesClient
from incentives.app.replays import WalletRequest, caller_and_applied
from incentives.domain.errors import InvalidInput
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
)
from incentives.http.keys import allowed, authorize, presented_key
from incentives.http.operations import REPLAYED, Answer, Call, Operation, Parameter, model_response
from incentives.http.reading import customer_request, deadline, path_id, query_whole
from incentives.http.schemas import ID_SCHEMA, TIMEOUT
from incentives.http.sending import nothing_sent, sent

RequestT = TypeVar("RequestT", bound=WalletRequest)
ResultT = TypeVar("ResultT", bound=Model)
Send = Callable[[IncentivesClient, RequestT, timedelta], Awaitable[ResultT]]

# The most ledger rows one wallet read returns (`limit`): the answer stays a few MB at most.
MAX_LEDGER_LIMIT = 10_000
CUSTOMER = Parameter("customer", "path", ID_SCHEMA, "the customer's id", required=True, example="alice")
# One story, told by the examples in order (the docs show them; the fuzz test sends them).
EXAMPLES: dict[type[Model], dict[str, object]] = {
    GrantRequest: {
        "lot_id": "welcome-alice",
        "currency": "USD",
        "kind": "credit",
        "amount": 1000,
        "expires_in": "P14D",
    },
    RedeemRequest: {"order_id": "o-1001", "currency": "USD", "total": 4250},
    ReverseRequest: {"order_id": "o-1001", "reversal_id": "refund-1", "amount": 500},
    RevokeRequest: {"lot_id": "welcome-alice", "reason": "fraud review #4411"},
}
LIMIT = Parameter(
    "limit",
    "query",
    {"type": "integer", "minimum": 1, "maximum": MAX_LEDGER_LIMIT},
    f"the newest ledger rows to return (default {views.DEFAULT_LEDGER_LIMIT}, at most {MAX_LEDGER_LIMIT:,}); "
    "`ledger_total` says how many there are",
)
CHANGE_PROBLEMS = (400, 401, 403, 409, 422, 503, 504)
_LOGGED_IDS = ("lot_id", "order_id", "reversal_id")


async def _change(call: Call, model: type[RequestT], send: Send[RequestT, ResultT]) -> Response:
    """Reads the request while nothing is asked of Postgres yet, then checks the key and whether
    the ledger holds the operation in one statement: the checkout path's one round trip before
    the wallet's."""
    key = presented_key(call)
    try:
        customer = path_id(call.path["customer"], "customer")
        wait = deadline(call.request)
        request = await customer_request(call.request, model, customer)
        if isinstance(request, GrantRequest):
            request.check_reminder_at(datetime.now(UTC))
    except InvalidInput:
        await authorize(call)  # a caller without a key in scope is told that first
        raise
    call.ids.update({name: value for name in _LOGGED_IDS if isinstance(value := getattr(request, name, None), str)})
    async with nothing_sent():
        caller, replayed = await caller_and_applied(call.backends.pool(), key, request)
        call.caller = allowed(caller, call.operation)
        wallets = call.backends.wallets()
    result = await sent(send(wallets, request, wait))
    return model_response(result, 200 if replayed else 201, replayed=replayed)


async def grant(call: Call) -> Response:
    return await _change(call, GrantRequest, lambda wallets, request, wait: wallets.grant(request, timeout=wait))


async def redeem(call: Call) -> Response:
    return await _change(call, RedeemRequest, lambda wallets, request, wait: wallets.redeem(request, timeout=wait))


async def reverse(call: Call) -> Response:
    return await _change(call, ReverseRequest, lambda wallets, request, wait: wallets.reverse(request, timeout=wait))


async def revoke(call: Call) -> Response:
    return await _change(call, RevokeRequest, lambda wallets, request, wait: wallets.revoke(request, timeout=wait))


async def wallet(call: Call) -> Response:
    """Postgres alone: it answers while Temporal is down."""
    customer = path_id(call.path["customer"], "customer")
    limit = query_whole(call.request, "limit", low=1, high=MAX_LEDGER_LIMIT, default=views.DEFAULT_LEDGER_LIMIT)
    async with nothing_sent():
        view = await views.wallet_view(call.backends.pool(), customer, ledger_limit=limit)
    return model_response(view, 200)


def _applied(model: type[Model], what: str) -> tuple[Answer, Answer]:
    return (
        Answer(201, f"{what}: applied now", model),
        Answer(
            200,
            f"{what}: the same request again (same id, same payload): the first result, applied once",
            model,
            headers={REPLAYED: "`true`: the ledger held this operation before the request"},
        ),
    )


def _body(model: type[Model], what: str) -> dict[str, object]:
    return {
        "required": True,
        "description": f'{what}, as the Python client\'s `{model.__name__}` writes it (`model_dump(mode="json")`). '
        "`customer_id` may be left out: it is the path's; given, it must be the path's.",
        "content": {
            "application/json": {
                "schema": {"$ref": f"#/components/schemas/{model.__name__}"},
                "example": EXAMPLES[model],
            }
        },
    }


def _change_operation(
    path: str,
    handler: Callable[[Call], Awaitable[Response]],
    models: tuple[type[Model], type[Model]],
    scope: Scope,
    summary: str,
    description: str,
) -> Operation:
    request, result = models
    return Operation(
        method="POST",
        path=f"/v1/customers/{{customer}}/{path}",
        handler=handler,
        summary=summary,
        description=description,
        scopes=frozenset({scope}),
        answers=_applied(result, summary),
        problems=CHANGE_PROBLEMS,
        parameters=(CUSTOMER, TIMEOUT),
        body=_body(request, summary),
        body_models=(request,),
        key_with_body=True,
    )


OPERATIONS = (
    _change_operation(
        "grants",
        grant,
        (GrantRequest, Lot),
        "grant",
        "Grant a lot",
        "Puts a credit or a coupon into the customer's wallet. The lot id is the idempotency key: the same lot id "
        "with another payload is 409 (LotConflict).",
    ),
    _change_operation(
        "redemptions",
        redeem,
        (RedeemRequest, Redemption),
        "checkout",
        "Redeem an order",
        "Applies the customer's coupon and credits to an order (the coupon first, then credits, soonest expiry "
        "first). The order id is the idempotency key: the same order with another payload is 409 (OrderConflict); "
        "nothing to apply is 422 (NothingToRedeem).",
    ),
    _change_operation(
        "reversals",
        reverse,
        (ReverseRequest, Reversal),
        "checkout",
        "Reverse a redemption",
        "Gives back what an order redeemed, all of it or `amount` (minor units of the order's currency). The "
        "reversal id is the idempotency key: the same id for another order or amount is 409 (ReversalConflict).",
    ),
    _change_operation(
        "revocations",
        revoke,
        (RevokeRequest, Revocation),
        "grant",
        "Revoke a lot",
        "Removes what is left of a lot, with a reason. Revoking it again with the same reason returns the first "
        "result; another reason is 409 (RevocationConflict).",
    ),
    Operation(
        method="GET",
        path="/v1/customers/{customer}/wallet",
        handler=wallet,
        summary="Read a wallet",
        description="The customer's balances, lots and newest ledger rows, read from Postgres (the truth) alone: "
        "it answers while Temporal is down. A customer never granted anything is 404 (UnknownCustomer).",
        scopes=frozenset({"checkout", "grant", "read"}),
        answers=(Answer(200, "the wallet", WalletView),),
        problems=(400, 401, 403, 404, 503),
        parameters=(CUSTOMER, LIMIT),
    ),
)
