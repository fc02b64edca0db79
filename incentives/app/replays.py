"""Whether an operation is already in Postgres: read before the operation is sent, so that an edge
(the HTTP API) can tell a caller "this was applied now" from "this was applied before".

The ledger keys each operation by the caller's id (a lot, an order, a reversal; a lot's
revocation). A row under that key before the call, and a result from the call, means the result is
the first one, returned again: the operation was a replay. A row with another payload under the
same key makes the call a conflict, which the ledger refuses itself; this only reads.

Two identical requests sent at once may both find no row, and both be told "applied now": each of
them was in flight when it was applied.
"""

from __future__ import annotations

from incentives.adapters.db import Pool
from incentives.app.api_keys import KEY_IN_USE, Caller, key_hash, well_formed
from incentives.domain.models import GrantRequest, RedeemRequest, ReverseRequest, RevokeRequest
from incentives.domain.promotions import ControlOutcome

WalletRequest = GrantRequest | RedeemRequest | ReverseRequest | RevokeRequest


def _applied_sql(request: WalletRequest) -> tuple[str, str]:
    """An `EXISTS` over the row that records `request`'s operation ($2 its id, $3 its customer)."""
    if isinstance(request, GrantRequest):
        return "EXISTS (SELECT 1 FROM lots WHERE lot_id = $2 AND customer_id = $3)", request.lot_id
    if isinstance(request, RedeemRequest):
        return "EXISTS (SELECT 1 FROM redemptions WHERE order_id = $2 AND customer_id = $3)", request.order_id
    if isinstance(request, ReverseRequest):
        return "EXISTS (SELECT 1 FROM reversals WHERE reversal_id = $2 AND customer_id = $3)", request.reversal_id
    return (
        "EXISTS (SELECT 1 FROM lots WHERE lot_id = $2 AND customer_id = $3 AND status = 'revoked')",
        request.lot_id,
    )


async def caller_and_applied(pool: Pool, presented: str, request: WalletRequest) -> tuple[Caller | None, bool]:
    """The caller holding the API key `presented` (None: no key in use), and whether the ledger
    holds `request`'s operation: one statement, one round trip, on the checkout path."""
    if not well_formed(presented):
        return None, False
    exists, key = _applied_sql(request)
    row = await pool.fetchrow(
        f"SELECT k.name, k.scopes, {exists} AS applied FROM ({KEY_IN_USE}) k",
        key_hash(presented),
        key,
        request.customer_id,
    )
    if row is None:
        return None, False
    return Caller(name=row["name"], scopes=frozenset(row["scopes"])), row["applied"]


async def staged_loads(pool: Pool, promotion_id: str) -> frozenset[int]:
    """The numbers of the audience loads staged for a promotion so far."""
    rows = await pool.fetch("SELECT load_no FROM promotion_audience_loads WHERE promotion_id = $1", promotion_id)
    return frozenset(row["load_no"] for row in rows)


def audience_replayed(before: frozenset[int], outcome: ControlOutcome) -> bool:
    """Whether an `add-audience` answered with `outcome` handed in a load staged before it was sent
    (`before`): the same CSV again. A load staged by this call is in the promotion's loads and not
    in `before`. (Another add-audience of another CSV to the same promotion, at the same moment,
    can make a replay look new.)"""
    return all(load.load_no in before for load in outcome.loads)
