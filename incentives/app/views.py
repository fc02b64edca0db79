"""Read-side queries over the ledger (Postgres, the truth): what a person or a service looks at."""

from __future__ import annotations

from datetime import UTC, datetime

from incentives.adapters.db import Pool
from incentives.adapters.rows import ledger_entry_from_row, lot_from_row
from incentives.domain import rules
from incentives.domain.errors import UnknownCustomer, UnknownOrder
from incentives.domain.inputs import check_id
from incentives.domain.models import Lot, WalletView

DEFAULT_LEDGER_LIMIT = 200


async def wallet_view(pool: Pool, customer_id: str, *, ledger_limit: int | None = DEFAULT_LEDGER_LIMIT) -> WalletView:
    """The customer's balances, lots and newest `ledger_limit` ledger rows (all of them when None);
    `ledger_total` says how many there are in all, so a reader knows what was left out."""
    check_id(customer_id, "customer_id")  # before the driver: a NUL byte is not a Postgres error
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        lot_rows = await conn.fetch(
            "SELECT * FROM lots WHERE customer_id = $1 ORDER BY granted_at, lot_id", customer_id
        )
        entry_rows = await conn.fetch(
            """SELECT * FROM (SELECT * FROM ledger_entries WHERE customer_id = $1 ORDER BY entry_id DESC LIMIT $2) recent
               ORDER BY entry_id""",
            customer_id,
            ledger_limit,
        )
        total: int = await conn.fetchval("SELECT count(*) FROM ledger_entries WHERE customer_id = $1", customer_id)
    if not lot_rows:
        raise UnknownCustomer(f"customer {customer_id} has no wallet: nothing was ever granted to them")
    lots = [lot_from_row(row) for row in lot_rows]
    balances, pending = _credit_totals(lots, datetime.now(UTC))
    ledger = [ledger_entry_from_row(row) for row in entry_rows]
    return WalletView(
        customer_id=customer_id, balances=balances, pending=pending, lots=lots, ledger=ledger, ledger_total=total
    )


def _credit_totals(lots: list[Lot], now: datetime) -> tuple[dict[str, int], dict[str, int]]:
    """Per currency: credit usable now, and credit granted but not effective yet."""
    balances: dict[str, int] = {}
    pending: dict[str, int] = {}
    for lot in lots:
        if lot.kind != "credit" or (lot.expires_at is not None and lot.expires_at <= now):
            continue
        if rules.usable_at(lot, now):
            balances[lot.currency] = balances.get(lot.currency, 0) + lot.remaining
        elif lot.status == "pending":
            pending[lot.currency] = pending.get(lot.currency, 0) + lot.remaining
    return balances, pending


async def order_currency(pool: Pool, customer_id: str, order_id: str) -> str:
    """The currency an order was redeemed in (to read a reversal amount typed in major units)."""
    check_id(customer_id, "customer_id")
    check_id(order_id, "order_id")
    currency: str | None = await pool.fetchval(
        "SELECT currency FROM redemptions WHERE customer_id = $1 AND order_id = $2", customer_id, order_id
    )
    if currency is None:
        raise UnknownOrder(f"order {order_id} has no redemption for customer {customer_id}")
    return currency
