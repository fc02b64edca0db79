"""Reading the ledger back, for tests that assert on rows."""

from __future__ import annotations

from incentives.adapters.db import Pool


async def ledger_rows(pool: Pool, customer_id: str) -> list[tuple[str, str, int, str | None]]:
    """(entry_type, lot_id, amount, order_id) in the order they were written."""
    rows = await pool.fetch(
        "SELECT entry_type, lot_id, amount_minor, order_id FROM ledger_entries WHERE customer_id = $1 ORDER BY entry_id",
        customer_id,
    )
    return [(r["entry_type"], r["lot_id"], r["amount_minor"], r["order_id"]) for r in rows]


async def entry_amounts(pool: Pool, customer_id: str) -> list[tuple[str, int]]:
    """(entry_type, amount) of the customer's ledger rows, in the order they were written."""
    return [(entry_type, amount) for entry_type, _, amount, _ in await ledger_rows(pool, customer_id)]


async def remaining(pool: Pool, lot_id: str) -> tuple[int, str]:
    row = await pool.fetchrow("SELECT remaining_minor, status FROM lots WHERE lot_id = $1", lot_id)
    assert row is not None, f"lot {lot_id} exists"
    return row["remaining_minor"], row["status"]


async def events(pool: Pool, customer_id: str) -> list[str]:
    rows = await pool.fetch("SELECT event_type FROM outbox WHERE customer_id = $1 ORDER BY event_id", customer_id)
    return [r["event_type"] for r in rows]


async def counts(pool: Pool, *ids: str) -> tuple[int, int, int]:
    """(ledger rows, lots, outbox events) that name any of `ids` (a customer, lot or order): to prove
    a call wrote nothing for them, whatever other tests write in the shared database meanwhile."""
    assert ids, "name what the call could have written"
    row = await pool.fetchrow(
        """SELECT (SELECT count(*) FROM ledger_entries
                   WHERE customer_id = ANY($1) OR lot_id = ANY($1) OR order_id = ANY($1)) AS l,
                  (SELECT count(*) FROM lots WHERE customer_id = ANY($1) OR lot_id = ANY($1)) AS o,
                  (SELECT count(*) FROM outbox
                   WHERE customer_id = ANY($1) OR lot_id = ANY($1) OR order_id = ANY($1)) AS e""",
        list(ids),
    )
    assert row is not None
    return row["l"], row["o"], row["e"]


async def assert_ledger_balances(pool: Pool, customer_id: str) -> None:
    """The ledger's invariant: a credit lot's remaining is the sum of its ledger rows, within [0, amount]."""
    rows = await pool.fetch(
        """SELECT l.lot_id, l.amount_minor, l.remaining_minor, coalesce(sum(e.amount_minor), 0) AS total
           FROM lots l LEFT JOIN ledger_entries e USING (lot_id)
           WHERE l.customer_id = $1 AND l.kind = 'credit' GROUP BY l.lot_id""",
        customer_id,
    )
    for row in rows:
        assert row["remaining_minor"] == row["total"], dict(row)
        assert 0 <= row["remaining_minor"] <= row["amount_minor"], dict(row)
